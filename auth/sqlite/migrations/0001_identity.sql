-- The identity store: organisations, users, devices, tokens and enrolment
-- codes. Secrets are never kept: passwords as Argon2id hashes, tokens as
-- SHA-256 hashes, enrolment codes as Argon2id hashes keyed with the
-- installation's key. Times are Unix milliseconds (server clock); a NULL
-- time means "not yet" (not revoked, never used).

-- +goose Up

-- meta holds the installation's secret key for enrolment-code hashes,
-- made once at the first open.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

-- orgs: one row per organisation. The name is also the name of the
-- organisation's own sync database, hence its narrow shape.
CREATE TABLE orgs (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

-- users: people of an organisation. name is what records carry in their
-- assignee field. password is '' for a user who never logs in (a field
-- worker who only uses enrolled devices). A revoked user is kept (its name
-- stays in records and trails) but can do nothing.
CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES orgs (id),
    name       TEXT    NOT NULL,
    role       TEXT    NOT NULL CHECK (role IN ('field_worker', 'dispatcher', 'admin')),
    password   TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    UNIQUE (org_id, name)
) STRICT;

-- devices: enrolled devices. device_id is the id the device's ops carry,
-- unique within the organisation (each organisation has its own op log);
-- it is kept when the device enrols again, so what it holds can still be
-- delivered. last_seen_at is refreshed at most once a minute.
CREATE TABLE devices (
    id           INTEGER PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES orgs (id),
    device_id    TEXT    NOT NULL,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    name         TEXT    NOT NULL,
    enrolled_at  INTEGER NOT NULL,
    last_seen_at INTEGER,
    revoked_at   INTEGER,
    UNIQUE (org_id, device_id)
) STRICT;

-- tokens: bearer tokens by the SHA-256 of the token. A device token
-- (kind 'device') names its device and has no expiry; a user session
-- (kind 'user') has none and expires.
CREATE TABLE tokens (
    hash       BLOB    PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('device', 'user')),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    device     INTEGER REFERENCES devices (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    CHECK ((kind = 'device') = (device IS NOT NULL))
) STRICT;
CREATE INDEX tokens_user ON tokens (user_id);
CREATE INDEX tokens_device ON tokens (device);

-- enrolments: one-time enrolment codes by their keyed hash. used_at and
-- device are set when the code is redeemed; a used code is never
-- accepted again.
CREATE TABLE enrolments (
    hash       BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    issued_by  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    device     INTEGER REFERENCES devices (id)
) STRICT;
CREATE INDEX enrolments_user ON enrolments (user_id);

-- +goose Down
DROP TABLE enrolments;
DROP TABLE tokens;
DROP TABLE devices;
DROP TABLE users;
DROP TABLE orgs;
DROP TABLE meta;
