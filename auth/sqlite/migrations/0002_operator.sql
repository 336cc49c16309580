-- The installation's operator credentials and temporary test
-- organisations (see docs/security.md, "The operator credential").

-- +goose Up

-- operators: credentials of no organisation, made on the host with
-- `fieldsync admin operator-token`, by the SHA-256 of the token. They
-- reach the operator API only (/v1/operator/: make and remove test
-- organisations). A revoked one is kept, by name, for the record.
CREATE TABLE operators (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    hash         BLOB    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
) STRICT;

-- A test organisation has test_expires_at set: when it is removed with
-- everything in it (identity rows and its store files). Its tokens stop
-- working at that time even before the removal runs. test_by names the
-- operator credential that made it. A real organisation has both NULL.
ALTER TABLE orgs ADD COLUMN test_expires_at INTEGER;
ALTER TABLE orgs ADD COLUMN test_by TEXT;

-- +goose Down
ALTER TABLE orgs DROP COLUMN test_by;
ALTER TABLE orgs DROP COLUMN test_expires_at;
DROP TABLE operators;
