ALTER TABLE it_pg_migrate.members ADD COLUMN display_name text;
UPDATE it_pg_migrate.members SET display_name = split_part(email, '@', 1);
