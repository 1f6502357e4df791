-- Run once by the postgres image when its volume is first created
-- (/docker-entrypoint-initdb.d), as the image's owner role `todo`, a superuser.
--
-- The api connects as `todo_app`: no superuser, no BYPASSRLS, only table rights, so that
-- row-level security applies to every query it makes (specs/data-model.md). The release
-- step (`todo-api migrate`) runs as `todo` and owns the schema; whatever it creates in
-- `public` is granted to `todo_app` by the default privileges below.
CREATE ROLE todo_app LOGIN PASSWORD 'todo_app';
GRANT CONNECT ON DATABASE todo TO todo_app;
GRANT USAGE ON SCHEMA public TO todo_app;
ALTER DEFAULT PRIVILEGES FOR ROLE todo IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO todo_app;
