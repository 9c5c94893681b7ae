ALTER TABLE it_pg_migrate.members DROP COLUMN club_id;
DROP TABLE it_pg_migrate.clubs;
