CREATE TABLE it_pg_migrate.should_never_exist (id int);
