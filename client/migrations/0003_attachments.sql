-- Attachments: photos, scans and signatures saved on the device. Their
-- bytes live in files named by their SHA-256 (attachments/ab/cdef…, with
-- thumbnails under thumbs/); these tables describe them and carry the
-- state of their upload.

-- +goose Up

-- blobs: one row per distinct file (content-addressed: the same bytes
-- attached twice are one blob). state: pending (the server does not hold
-- the bytes yet), uploaded (it holds them, verified), failed (the file on
-- the device is damaged; it will not be sent). upload_url and
-- upload_offset are the tus upload under way, stored as it goes, so a
-- restarted device resumes it; the offset is a hint, the server's answer
-- to HEAD decides. reclaimed_at is set once the original file was
-- removed to free space (the thumbnail stays).
CREATE TABLE blobs (
    sha256        TEXT    PRIMARY KEY,
    size          INTEGER NOT NULL,
    content_type  TEXT    NOT NULL,
    category      TEXT    NOT NULL, -- original or signature: how storage is reported
    thumb_size    INTEGER NOT NULL DEFAULT 0, -- 0: no separate thumbnail file
    state         TEXT    NOT NULL DEFAULT 'pending',
    upload_url    TEXT    NOT NULL DEFAULT '',
    upload_offset INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT    NOT NULL DEFAULT '',
    last_attempt  INTEGER NOT NULL DEFAULT 0, -- Unix milliseconds
    uploaded_at   INTEGER NOT NULL DEFAULT 0,
    reclaimed_at  INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX blobs_state ON blobs (state, size);

-- attachments: one row per attach op: which record, which blob, and what
-- the person attached (the size before preparation is kept to show what
-- compression saved).
CREATE TABLE attachments (
    id          TEXT    PRIMARY KEY, -- UUIDv7, the attachment's id everywhere
    op_seq      INTEGER NOT NULL UNIQUE REFERENCES outbox (seq),
    type        TEXT    NOT NULL,
    entity_id   TEXT    NOT NULL,
    sha256      TEXT    NOT NULL REFERENCES blobs (sha256),
    role        TEXT    NOT NULL,
    name        TEXT    NOT NULL DEFAULT '',
    input_size  INTEGER NOT NULL DEFAULT 0,
    width       INTEGER NOT NULL DEFAULT 0,
    height      INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX attachments_record ON attachments (type, entity_id);
CREATE INDEX attachments_blob ON attachments (sha256);

-- The server's attachments of each record, as last pulled (JSON list).
ALTER TABLE records ADD COLUMN attachments TEXT NOT NULL DEFAULT '[]';

-- +goose Down
ALTER TABLE records DROP COLUMN attachments;
DROP TABLE attachments;
DROP TABLE blobs;
