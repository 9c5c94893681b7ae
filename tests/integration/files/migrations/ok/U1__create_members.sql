DROP TABLE it_pg_migrate.members;
