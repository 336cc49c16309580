-- Attachments: files (photos, signatures, scans) attached to records. The
-- bytes live outside the database, content-addressed by their SHA-256;
-- the database keeps what is attached where and which bytes were verified.

-- +goose Up

-- attachments is the record's list of attachments in the order they were
-- attached, each with its status (uploading until the server holds
-- verified bytes for its hash, then ready).
ALTER TABLE records ADD COLUMN attachments TEXT NOT NULL DEFAULT '[]';

-- blobs lists the verified files the server holds, one row per distinct
-- SHA-256. A row is written only after the file is durably in place.
CREATE TABLE blobs (
    sha256       TEXT    PRIMARY KEY, -- lower-case hex
    size         INTEGER NOT NULL,    -- bytes
    content_type TEXT    NOT NULL,
    stored_at    INTEGER NOT NULL     -- Unix milliseconds, server clock
) STRICT;

-- attachment_refs finds the records that carry an attachment of a given
-- hash, so the arrival of its bytes can mark them ready. Attachments are
-- never removed from a record, so neither are these rows.
CREATE TABLE attachment_refs (
    sha256 TEXT NOT NULL,
    type   TEXT NOT NULL,
    id     TEXT NOT NULL,
    PRIMARY KEY (sha256, type, id)
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE attachment_refs;
DROP TABLE blobs;
ALTER TABLE records DROP COLUMN attachments;
