-- The device's local store.

-- +goose Up

-- meta: device_id, cursor (with the server's epoch), sync times and errors.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- counters: 'seq' is the next per-device sequence number. It is bumped in
-- the same transaction that queues an op, so it never goes back, even
-- after a crash, and no number is ever used twice.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO counters (name, value) VALUES ('seq', 1);

-- records: the server-confirmed state, as last pulled.
CREATE TABLE records (
    type    TEXT    NOT NULL,
    id      TEXT    NOT NULL,
    number  TEXT    NOT NULL DEFAULT '',
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    fields  TEXT    NOT NULL,
    review  TEXT    NOT NULL DEFAULT '[]',
    seq     INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (type, id)
) STRICT;

-- outbox: every user action as one op, never rewritten once queued; only
-- its delivery state changes. status: queued, sending, delivered,
-- conflict (needs review), error (rejected by the server), discarded.
CREATE TABLE outbox (
    seq            INTEGER PRIMARY KEY,
    op_id          TEXT    NOT NULL UNIQUE,
    type           TEXT    NOT NULL,
    entity_id      TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    base_version   INTEGER NOT NULL,
    prev_seq       INTEGER NOT NULL,
    fields         TEXT    NOT NULL,
    local_time     INTEGER NOT NULL, -- Unix milliseconds
    status         TEXT    NOT NULL DEFAULT 'queued',
    attempts       INTEGER NOT NULL DEFAULT 0,
    last_code      TEXT    NOT NULL DEFAULT '',
    last_message   TEXT    NOT NULL DEFAULT '',
    result         TEXT    NOT NULL DEFAULT '', -- the server's answer, JSON
    result_version INTEGER NOT NULL DEFAULT 0,
    number         TEXT    NOT NULL DEFAULT '',
    decided_at     INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX outbox_status ON outbox (status, seq);
CREATE INDEX outbox_entity ON outbox (type, entity_id, seq);

-- attempts: the trail of every send of every op.
CREATE TABLE attempts (
    op_seq  INTEGER NOT NULL REFERENCES outbox (seq),
    at      INTEGER NOT NULL, -- Unix milliseconds
    outcome TEXT    NOT NULL, -- applied, duplicate, conflict, rejected, retry, failed, interrupted, resend
    code    TEXT    NOT NULL DEFAULT '',
    message TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX attempts_op ON attempts (op_seq);

-- +goose Down
DROP TABLE attempts;
DROP TABLE outbox;
DROP TABLE records;
DROP TABLE counters;
DROP TABLE meta;
