-- The server's data model on SQLite.

-- +goose Up

-- meta holds the store's epoch: a random id made once, carried in every
-- device cursor, so a restored or replaced database is noticed.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- records is the current state of every record. seq is the record's
-- position in the change feed: it moves to the end each time the record
-- changes, so "changes since N" is a range scan.
CREATE TABLE records (
    type       TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    number     TEXT    NOT NULL DEFAULT '',
    version    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    fields     TEXT    NOT NULL, -- JSON object: field -> value
    meta       TEXT    NOT NULL, -- JSON object: field -> {v, by, seq} of its last change
    review     TEXT    NOT NULL DEFAULT '[]', -- JSON array: fields that need review
    seq        INTEGER NOT NULL UNIQUE,
    updated_at INTEGER NOT NULL, -- Unix milliseconds, server clock
    PRIMARY KEY (type, id)
) STRICT;

-- ops is the op log: every op the server decided, with its recorded
-- result, written in the same transaction as the op's effect. A repeated
-- op id finds its row here and changes nothing. (device_id, seq) is
-- unique: a device's sequence number names one op forever.
CREATE TABLE ops (
    op_id        TEXT    PRIMARY KEY,
    device_id    TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    prev_seq     INTEGER NOT NULL,
    entity_type  TEXT    NOT NULL,
    entity_id    TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    base_version INTEGER NOT NULL,
    fields       TEXT    NOT NULL,
    local_time   INTEGER NOT NULL, -- device clock, Unix milliseconds
    received_at  INTEGER NOT NULL, -- server clock, Unix milliseconds
    status       TEXT    NOT NULL,
    result       TEXT    NOT NULL, -- the wire result, JSON
    change_seq   INTEGER NOT NULL DEFAULT 0, -- feed position of its change, 0 if none
    UNIQUE (device_id, seq)
);
CREATE INDEX ops_entity ON ops (entity_type, entity_id);
CREATE INDEX ops_change ON ops (change_seq) WHERE change_seq > 0;

-- counters hands out record numbers (WO-1001…) and office sequence numbers.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE counters;
DROP TABLE ops;
DROP TABLE records;
DROP TABLE meta;
