package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/ncruces/go-sqlite3"

	"github.com/fieldsync/fieldsync"
)

// putAttachmentRefs encodes r's attachments for the records table and
// indexes each of their hashes in attachment_refs. A record without
// attachments costs nothing here: attachments are never removed from a
// record, so there is no stale reference to clear.
func (t *tx) putAttachmentRefs(r *fieldsync.Record) ([]byte, error) {
	if len(r.Attachments) == 0 {
		return []byte("[]"), nil
	}
	data, err := json.Marshal(r.Attachments)
	if err != nil {
		return nil, err
	}
	for i, a := range r.Attachments {
		if seenBefore(r.Attachments[:i], a.SHA256) {
			continue
		}
		if err := t.exec(`INSERT INTO attachment_refs (sha256, type, id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
			a.SHA256, r.Type, r.ID); err != nil {
			return nil, err
		}
	}
	return data, nil
}

func seenBefore(as []fieldsync.Attachment, sha string) bool {
	for _, a := range as {
		if a.SHA256 == sha {
			return true
		}
	}
	return false
}

// Blob implements fieldsync.StoreTx.
func (t *tx) Blob(sha string) (fieldsync.Blob, bool, error) {
	var b fieldsync.Blob
	ok, err := t.row(`SELECT sha256, size, content_type, stored_at FROM blobs WHERE sha256 = ?`, func(st *sqlite3.Stmt) error {
		b = fieldsync.Blob{SHA256: st.ColumnText(0), Size: st.ColumnInt64(1), ContentType: st.ColumnText(2),
			StoredAt: time.UnixMilli(st.ColumnInt64(3)).UTC()}
		return nil
	}, sha)
	if !ok || err != nil {
		return fieldsync.Blob{}, false, err
	}
	return b, true, nil
}

// PutBlob implements fieldsync.StoreTx.
func (t *tx) PutBlob(b fieldsync.Blob) error {
	return t.exec(`INSERT INTO blobs (sha256, size, content_type, stored_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		b.SHA256, b.Size, b.ContentType, b.StoredAt.UnixMilli())
}

// RecordsWithBlob implements fieldsync.StoreTx.
func (t *tx) RecordsWithBlob(sha string) ([][2]string, error) {
	st, err := t.stmt(`SELECT type, id FROM attachment_refs WHERE sha256 = ? ORDER BY type, id`, sha)
	if err != nil {
		return nil, err
	}
	var out [][2]string
	for st.Step() {
		out = append(out, [2]string{st.ColumnText(0), st.ColumnText(1)})
	}
	if err := st.Reset(); err != nil {
		return nil, t.fail(err)
	}
	return out, nil
}

// Blob implements fieldsync.Store.
func (s *Store) Blob(ctx context.Context, sha string) (fieldsync.Blob, error) {
	var b fieldsync.Blob
	var stored int64
	err := s.db.QueryRowContext(ctx, `SELECT sha256, size, content_type, stored_at FROM blobs WHERE sha256 = ?`, sha).
		Scan(&b.SHA256, &b.Size, &b.ContentType, &stored)
	if errors.Is(err, sql.ErrNoRows) {
		return b, fieldsync.Errorf(fieldsync.ENotFound, "the server holds no file with sha256 %s", sha)
	}
	if err != nil {
		return b, unavailable(err)
	}
	b.StoredAt = time.UnixMilli(stored).UTC()
	return b, nil
}
