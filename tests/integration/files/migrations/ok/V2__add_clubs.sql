CREATE TABLE it_pg_migrate.clubs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
ALTER TABLE it_pg_migrate.members ADD COLUMN club_id bigint REFERENCES it_pg_migrate.clubs (id);
