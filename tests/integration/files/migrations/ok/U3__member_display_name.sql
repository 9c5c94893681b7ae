ALTER TABLE it_pg_migrate.members DROP COLUMN display_name;
