-- The op log in a compact layout. Per op the server looks up an op id and
-- a device's sequence numbers, and appends one row; the old layout keyed
-- both on text and kept a (type, id) index of every op, written at a
-- thousand scattered places per batch. Here:
--
-- * devices gives each device id a small number, so (device, seq) is an
--   index of two integers;
-- * an op id that is a lowercase UUID (every id the protocol accepts) is
--   kept as its 16 bytes; any other id stays text;
-- * a record's history is a chain: records.last_op is the row of the
--   record's latest op, and each op's prev_op the row of the one before it
--   (0 for the first). An op whose record did not exist when it was
--   recorded has prev_op NULL and is found through oplog_loose, a small
--   index of those ops only. A record's history is both, in row order;
-- * row is the order in which the server decided the ops.
--
-- ops is a view of the log in the old shape (text ids), for people and
-- tools that read the database directly.

-- +goose Up
CREATE TABLE devices (
    no INTEGER PRIMARY KEY,
    id TEXT    NOT NULL UNIQUE
) STRICT;
INSERT INTO devices (id) SELECT device_id FROM ops GROUP BY device_id ORDER BY min(rowid);

CREATE TABLE oplog (
    row          INTEGER PRIMARY KEY, -- decision order
    op_id        BLOB    NOT NULL,    -- 16 bytes of a lowercase UUID, else the id as text
    device_no    INTEGER NOT NULL,    -- devices.no
    seq          INTEGER NOT NULL,
    prev_seq     INTEGER NOT NULL,
    entity_type  TEXT    NOT NULL,
    entity_id    TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    base_version INTEGER NOT NULL,
    fields       TEXT    NOT NULL,
    local_time   INTEGER NOT NULL,    -- device clock, Unix milliseconds
    received_at  INTEGER NOT NULL,    -- server clock, Unix milliseconds
    status       TEXT    NOT NULL,
    result       TEXT    NOT NULL,    -- the wire result, JSON
    change_seq   INTEGER NOT NULL DEFAULT 0, -- feed position of its change, 0 if none
    prev_op      INTEGER              -- row of the record's op before it; 0 first; NULL outside a chain
);

-- Every op of a record that exists now joins its record's chain; the
-- others stay outside one.
INSERT INTO oplog (row, op_id, device_no, seq, prev_seq, entity_type, entity_id, kind, base_version,
                   fields, local_time, received_at, status, result, change_seq, prev_op)
SELECT o.rowid,
       CASE WHEN length(o.op_id) = 36 AND o.op_id GLOB
            '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'
            THEN unhex(replace(o.op_id, '-', '')) ELSE o.op_id END,
       d.no, o.seq, o.prev_seq, o.entity_type, o.entity_id, o.kind, o.base_version,
       o.fields, o.local_time, o.received_at, o.status, o.result, o.change_seq,
       CASE WHEN r.rowid IS NULL THEN NULL
            ELSE coalesce(lag(o.rowid) OVER (PARTITION BY o.entity_type, o.entity_id ORDER BY o.rowid), 0) END
FROM ops o
JOIN devices d ON d.id = o.device_id
LEFT JOIN records r ON r.type = o.entity_type AND r.id = o.entity_id
ORDER BY o.rowid;

ALTER TABLE records ADD COLUMN last_op INTEGER NOT NULL DEFAULT 0; -- oplog.row of its latest op, 0 if none
UPDATE records SET last_op = coalesce((SELECT max(o.rowid) FROM ops o
    WHERE o.entity_type = records.type AND o.entity_id = records.id), 0);

DROP TABLE ops;
CREATE UNIQUE INDEX oplog_id ON oplog (op_id);
CREATE UNIQUE INDEX oplog_device ON oplog (device_no, seq);
CREATE INDEX oplog_change ON oplog (change_seq) WHERE change_seq > 0;
CREATE INDEX oplog_loose ON oplog (entity_type, entity_id) WHERE prev_op IS NULL;

CREATE VIEW ops AS
SELECT o.row AS rowid,
       CASE WHEN typeof(o.op_id) = 'blob' THEN lower(substr(hex(o.op_id), 1, 8) || '-' || substr(hex(o.op_id), 9, 4) || '-' ||
            substr(hex(o.op_id), 13, 4) || '-' || substr(hex(o.op_id), 17, 4) || '-' || substr(hex(o.op_id), 21, 12))
            ELSE o.op_id END AS op_id,
       d.id AS device_id, o.seq, o.prev_seq, o.entity_type, o.entity_id, o.kind, o.base_version, o.fields,
       o.local_time, o.received_at, o.status, o.result, o.change_seq
FROM oplog o JOIN devices d ON d.no = o.device_no;

-- +goose Down
DROP VIEW ops;
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
    local_time   INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    result       TEXT    NOT NULL,
    change_seq   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (device_id, seq)
);
INSERT INTO ops (rowid, op_id, device_id, seq, prev_seq, entity_type, entity_id, kind, base_version,
                 fields, local_time, received_at, status, result, change_seq)
SELECT o.row,
       CASE WHEN typeof(o.op_id) = 'blob' THEN lower(substr(hex(o.op_id), 1, 8) || '-' || substr(hex(o.op_id), 9, 4) || '-' ||
            substr(hex(o.op_id), 13, 4) || '-' || substr(hex(o.op_id), 17, 4) || '-' || substr(hex(o.op_id), 21, 12))
            ELSE o.op_id END,
       d.id, o.seq, o.prev_seq, o.entity_type, o.entity_id, o.kind, o.base_version, o.fields,
       o.local_time, o.received_at, o.status, o.result, o.change_seq
FROM oplog o JOIN devices d ON d.no = o.device_no
ORDER BY o.row;
CREATE INDEX ops_entity ON ops (entity_type, entity_id);
CREATE INDEX ops_change ON ops (change_seq) WHERE change_seq > 0;
DROP TABLE oplog;
DROP TABLE devices;
ALTER TABLE records DROP COLUMN last_op;
