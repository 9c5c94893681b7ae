-- Members of the HingeCraft community.
CREATE TABLE it_pg_migrate.members (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    note text
);
-- a literal with a percent sign and braces must reach the server unchanged
INSERT INTO it_pg_migrate.members (email, note) VALUES ('first@example.org', '100% {not a placeholder}');
