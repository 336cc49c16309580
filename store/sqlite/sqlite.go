// Package sqlite is the server store on an embedded SQLite database: the
// zero-setup default. One writer at a time (SQLite's rule); readers run in
// parallel under WAL. Commits are fully synced.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/internal/sqlitedb"
	"github.com/fieldsync/fieldsync/protocol"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a fieldsync.Store on SQLite.
type Store struct {
	db    *sql.DB
	epoch string
	mu    sync.Mutex // one writer
}

var _ fieldsync.Store = (*Store)(nil)

// Open opens or creates the store at path.
func Open(ctx context.Context, path string) (*Store, error) {
	sub, _ := fs.Sub(migrations, "migrations")
	db, err := sqlitedb.Open(ctx, path, sub, sqlitedb.Options{})
	if err != nil {
		return nil, err
	}
	s := &Store{db: db}
	if err := s.loadEpoch(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) loadEpoch(ctx context.Context) error {
	var b [8]byte
	rand.Read(b[:])
	if _, err := s.db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('epoch', ?) ON CONFLICT DO NOTHING`, hex.EncodeToString(b[:])); err != nil {
		return fmt.Errorf("epoch: %w", err)
	}
	return s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'epoch'`).Scan(&s.epoch)
}

// Epoch implements fieldsync.Store.
func (s *Store) Epoch() string { return s.epoch }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Update implements fieldsync.Store.
func (s *Store) Update(ctx context.Context, fn func(fieldsync.StoreTx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sqltx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(err)
	}
	tx := &tx{ctx: ctx, tx: sqltx, stmts: map[string]*sql.Stmt{}}
	defer tx.close()
	defer sqltx.Rollback() // after a commit, a no-op; after a panic, releases the write lock
	if err := fn(tx); err != nil {
		return err
	}
	if err := sqltx.Commit(); err != nil {
		return unavailable(err)
	}
	return nil
}

// unavailable marks a storage failure as retryable for the caller; the
// cause stays in the chain for the log.
func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &storeError{err}
}

type storeError struct{ err error }

func (e *storeError) Error() string { return "store: " + e.err.Error() }
func (e *storeError) Unwrap() []error {
	return []error{e.err, fieldsync.Errorf(fieldsync.EUnavailable, "the server's database is busy or failing; try again")}
}

type tx struct {
	ctx     context.Context
	tx      *sql.Tx
	stmts   map[string]*sql.Stmt
	nextSeq int64 // 0 until loaded
}

func (t *tx) close() {
	for _, st := range t.stmts {
		st.Close()
	}
}

func (t *tx) stmt(q string) (*sql.Stmt, error) {
	if st, ok := t.stmts[q]; ok {
		return st, nil
	}
	st, err := t.tx.PrepareContext(t.ctx, q)
	if err != nil {
		return nil, unavailable(err)
	}
	t.stmts[q] = st
	return st, nil
}

const opColumns = `op_id, device_id, seq, prev_seq, entity_type, entity_id, kind, base_version, fields, local_time, received_at, result, change_seq`

type scanner interface{ Scan(...any) error }

func scanOp(row scanner) (fieldsync.OpEntry, error) {
	var e fieldsync.OpEntry
	var kind, fields, result string
	var local, received int64
	err := row.Scan(&e.Op.ID, &e.Op.DeviceID, &e.Op.Seq, &e.Op.PrevSeq, &e.Op.EntityType, &e.Op.EntityID,
		&kind, &e.Op.BaseVersion, &fields, &local, &received, &result, &e.ChangeSeq)
	if err != nil {
		return e, err
	}
	e.Op.Kind = fieldsync.OpKind(kind)
	e.Op.LocalTime = time.UnixMilli(local).UTC()
	e.ReceivedAt = time.UnixMilli(received).UTC()
	if err := json.Unmarshal([]byte(fields), &e.Op.Fields); err != nil {
		return e, fmt.Errorf("op %s fields: %w", e.Op.ID, err)
	}
	var w protocol.Result
	if err := json.Unmarshal([]byte(result), &w); err != nil {
		return e, fmt.Errorf("op %s result: %w", e.Op.ID, err)
	}
	e.Result = protocol.ToResult(&w)
	return e, nil
}

func (t *tx) queryOp(q string, args ...any) (fieldsync.OpEntry, bool, error) {
	st, err := t.stmt(q)
	if err != nil {
		return fieldsync.OpEntry{}, false, err
	}
	e, err := scanOp(st.QueryRowContext(t.ctx, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return e, false, nil
	}
	if err != nil {
		return e, false, unavailable(err)
	}
	return e, true, nil
}

func (t *tx) OpByID(opID string) (fieldsync.OpEntry, bool, error) {
	return t.queryOp(`SELECT `+opColumns+` FROM ops WHERE op_id = ?`, opID)
}

func (t *tx) OpByDeviceSeq(device string, seq int64) (fieldsync.OpEntry, bool, error) {
	return t.queryOp(`SELECT `+opColumns+` FROM ops WHERE device_id = ? AND seq = ?`, device, seq)
}

const recordColumns = `type, id, number, version, deleted, fields, meta, review, seq, updated_at`

func scanRecord(row scanner) (fieldsync.Record, error) {
	var r fieldsync.Record
	var fields, meta, review string
	var updated int64
	if err := row.Scan(&r.Type, &r.ID, &r.Number, &r.Version, &r.Deleted, &fields, &meta, &review, &r.Seq, &updated); err != nil {
		return r, err
	}
	r.UpdatedAt = time.UnixMilli(updated).UTC()
	if err := json.Unmarshal([]byte(fields), &r.Fields); err != nil {
		return r, fmt.Errorf("record %s/%s fields: %w", r.Type, r.ID, err)
	}
	if err := json.Unmarshal([]byte(meta), &r.Meta); err != nil {
		return r, fmt.Errorf("record %s/%s meta: %w", r.Type, r.ID, err)
	}
	if err := json.Unmarshal([]byte(review), &r.Review); err != nil {
		return r, fmt.Errorf("record %s/%s review: %w", r.Type, r.ID, err)
	}
	return r, nil
}

func (t *tx) Record(typ, id string) (fieldsync.Record, bool, error) {
	st, err := t.stmt(`SELECT ` + recordColumns + ` FROM records WHERE type = ? AND id = ?`)
	if err != nil {
		return fieldsync.Record{}, false, err
	}
	r, err := scanRecord(st.QueryRowContext(t.ctx, typ, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, unavailable(err)
	}
	return r, true, nil
}

func (t *tx) PutRecord(r *fieldsync.Record) (int64, error) {
	if t.nextSeq == 0 {
		var max sql.NullInt64
		if err := t.tx.QueryRowContext(t.ctx, `SELECT max(seq) FROM records`).Scan(&max); err != nil {
			return 0, unavailable(err)
		}
		t.nextSeq = max.Int64 + 1
	}
	r.Seq = t.nextSeq
	t.nextSeq++
	fields, meta, review, err := encodeRecord(r)
	if err != nil {
		return 0, err
	}
	st, err := t.stmt(`INSERT INTO records (` + recordColumns + `) VALUES (?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (type, id) DO UPDATE SET number = excluded.number, version = excluded.version,
		deleted = excluded.deleted, fields = excluded.fields, meta = excluded.meta,
		review = excluded.review, seq = excluded.seq, updated_at = excluded.updated_at`)
	if err != nil {
		return 0, err
	}
	if _, err := st.ExecContext(t.ctx, r.Type, r.ID, r.Number, r.Version, r.Deleted, string(fields), string(meta), string(review), r.Seq, r.UpdatedAt.UnixMilli()); err != nil {
		return 0, unavailable(err)
	}
	return r.Seq, nil
}

func encodeRecord(r *fieldsync.Record) (fields, meta, review []byte, err error) {
	if r.Fields == nil {
		r.Fields = map[string]json.RawMessage{}
	}
	if r.Meta == nil {
		r.Meta = map[string]fieldsync.FieldMeta{}
	}
	if r.Review == nil {
		r.Review = []string{}
	}
	if fields, err = json.Marshal(r.Fields); err != nil {
		return
	}
	if meta, err = json.Marshal(r.Meta); err != nil {
		return
	}
	review, err = json.Marshal(r.Review)
	return
}

func (t *tx) NextNumber(counter string, start int64) (int64, error) {
	st, err := t.stmt(`INSERT INTO counters (name, value) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value`)
	if err != nil {
		return 0, err
	}
	var n int64
	if err := st.QueryRowContext(t.ctx, counter, start).Scan(&n); err != nil {
		return 0, unavailable(err)
	}
	return n, nil
}

func (t *tx) RecordOp(e fieldsync.OpEntry) error {
	fields, err := json.Marshal(e.Op.Fields)
	if err != nil {
		return err
	}
	if e.Op.Fields == nil {
		fields = []byte("{}")
	}
	w := protocol.FromResult(&e.Result)
	result, err := json.Marshal(&w)
	if err != nil {
		return err
	}
	st, err := t.stmt(`INSERT INTO ops (` + opColumns + `, status) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(t.ctx, e.Op.ID, e.Op.DeviceID, e.Op.Seq, e.Op.PrevSeq, e.Op.EntityType, e.Op.EntityID,
		string(e.Op.Kind), e.Op.BaseVersion, string(fields), e.Op.LocalTime.UnixMilli(), e.ReceivedAt.UnixMilli(), string(result), e.ChangeSeq,
		string(e.Result.Status))
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// Changes implements fieldsync.Store.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]fieldsync.Record, int64, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, unavailable(err)
	}
	defer tx.Rollback()
	var max sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max(seq) FROM records`).Scan(&max); err != nil {
		return nil, 0, unavailable(err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+recordColumns+` FROM records WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, 0, unavailable(err)
	}
	defer rows.Close()
	var out []fieldsync.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, 0, unavailable(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, unavailable(err)
	}
	return out, max.Int64, nil
}

// ChangeTag implements fieldsync.Store.
func (s *Store) ChangeTag(ctx context.Context, seq int64) (string, bool, error) {
	var id string
	err := s.db.QueryRowContext(ctx, `SELECT op_id FROM ops WHERE change_seq = ? AND change_seq > 0`, seq).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, unavailable(err)
	}
	return fieldsync.ChangeTag(id), true, nil
}

// Record implements fieldsync.Store.
func (s *Store) Record(ctx context.Context, typ, id string) (fieldsync.Record, error) {
	r, err := scanRecord(s.db.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM records WHERE type = ? AND id = ?`, typ, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fieldsync.Errorf(fieldsync.ENotFound, "no %s %s", typ, id)
	}
	if err != nil {
		return r, unavailable(err)
	}
	return r, nil
}

// OpEntry implements fieldsync.Store.
func (s *Store) OpEntry(ctx context.Context, opID string) (fieldsync.OpEntry, error) {
	e, err := scanOp(s.db.QueryRowContext(ctx, `SELECT `+opColumns+` FROM ops WHERE op_id = ?`, opID))
	if errors.Is(err, sql.ErrNoRows) {
		return e, fieldsync.Errorf(fieldsync.ENotFound, "the server has no op %s", opID)
	}
	if err != nil {
		return e, unavailable(err)
	}
	return e, nil
}

// RecordOps implements fieldsync.Store.
func (s *Store) RecordOps(ctx context.Context, typ, id string) ([]fieldsync.OpEntry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+opColumns+` FROM ops WHERE entity_type = ? AND entity_id = ? ORDER BY rowid`, typ, id)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []fieldsync.OpEntry
	for rows.Next() {
		e, err := scanOp(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// DB exposes the database to tests and admin tools in this module.
func (s *Store) DB() *sql.DB { return s.db }
