// Package sqlite is the server store on an embedded SQLite database: the
// zero-setup default. One writer at a time (SQLite's rule); readers run in
// parallel under WAL. Commits are fully synced.
package sqlite

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/driver"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/internal/sqlitedb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a fieldsync.Store on SQLite.
type Store struct {
	db    *sql.DB
	epoch string
	mu    sync.Mutex // one writer; guards the fields below
	wconn *sql.Conn  // the connection that writes; nil until the first write
	cache recordCache
}

var _ fieldsync.Store = (*Store)(nil)

// Open opens or creates the store at path.
func Open(ctx context.Context, path string) (*Store, error) {
	sub, _ := fs.Sub(migrations, "migrations")
	db, err := sqlitedb.Open(ctx, path, sub, sqlitedb.Options{Init: func(c *sqlite3.Conn) error {
		// A page cache (up to 32 MiB a connection, filled as used) that
		// holds the hot part of the op log and the records: a miss costs
		// a system call. Checkpoints every 8000 pages (32 MiB of WAL)
		// rather than 1000: a push batch dirties hundreds of pages, many
		// the same from batch to batch, and each checkpoint writes them
		// all again.
		return c.Exec(`PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 8000`)
	}})
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
func (s *Store) Close() error {
	s.mu.Lock()
	if s.wconn != nil {
		s.wconn.Close()
		s.wconn = nil
	}
	s.mu.Unlock()
	return s.db.Close()
}

// Update implements fieldsync.Store. The transaction runs on the
// connection's SQLite handle directly, with statements prepared once per
// transaction: a write batch runs several statements per op, and
// database/sql would cost more than SQLite itself. Writes always use the
// same connection, so the record cache can tell its own commits from
// others' (see cache.go).
func (s *Store) Update(ctx context.Context, fn func(fieldsync.StoreTx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wconn == nil {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return unavailable(err)
		}
		s.wconn = conn
		s.cache = recordCache{m: map[recordKey]*cachedRecord{}}
	}
	conn := s.wconn
	var fnErr error
	err := conn.Raw(func(dc any) error {
		dconn, ok := dc.(driver.Conn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		c := dconn.Raw()
		if old := c.SetInterrupt(ctx); old != ctx {
			defer c.SetInterrupt(old)
		}
		if err := c.Exec(`BEGIN IMMEDIATE`); err != nil {
			return err
		}
		t := &tx{ctx: ctx, c: c, stmts: map[string]*sqlite3.Stmt{}, chainState: chainState{devices: map[string]int64{}, maxSeqs: map[int64]int64{}}}
		if cacheFits() {
			t.cache, t.dirty = &s.cache, map[recordKey]*cachedRecord{}
		}
		// After a commit, nothing to do; after an error or a panic, the
		// statements are finalized and the write lock released.
		defer func() {
			t.close()
			if !c.GetAutocommit() {
				c.SetInterrupt(context.Background())
				c.Exec(`ROLLBACK`)
			}
		}()
		if err := t.checkDataVersion(); err != nil {
			return err
		}
		if err := fn(t); err != nil {
			fnErr = err
			return nil
		}
		if err := t.settle(); err != nil {
			return err
		}
		t.close()
		if err := c.Exec(`COMMIT`); err != nil {
			// Whether it was kept or not is not sure: start afresh.
			clear(s.cache.m)
			return err
		}
		t.commitCache()
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		if badConn(err) {
			s.wconn.Close()
			s.wconn = nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
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

// tx is one write transaction on a raw SQLite connection. Every statement
// is reset after use, so none is left running at COMMIT.
type tx struct {
	ctx     context.Context
	c       *sqlite3.Conn
	stmts   map[string]*sqlite3.Stmt
	nextSeq int64 // 0 until loaded
	chainState
	cache *recordCache                // nil when off
	dirty map[recordKey]*cachedRecord // records this transaction changed: their state, or nil if not known
}

func (t *tx) close() {
	for q, st := range t.stmts {
		st.Close()
		delete(t.stmts, q)
	}
}

// fail wraps a storage error; a cancelled context is reported as such.
func (t *tx) fail(err error) error {
	if cerr := t.ctx.Err(); cerr != nil {
		return cerr
	}
	return unavailable(err)
}

// stmt returns the statement for q, bound to args (string, []byte as
// text, blob, int64, int, bool or nil).
func (t *tx) stmt(q string, args ...any) (*sqlite3.Stmt, error) {
	st, ok := t.stmts[q]
	if !ok {
		var err error
		if st, _, err = t.c.Prepare(q); err != nil {
			return nil, t.fail(err)
		}
		t.stmts[q] = st
	}
	for i, a := range args {
		var err error
		switch v := a.(type) {
		case string:
			err = st.BindText(i+1, v)
		case []byte:
			if v == nil {
				err = st.BindNull(i + 1)
			} else {
				// BindText copies the text into SQLite before it returns;
				// BindRawText would first copy it into a Go string.
				err = st.BindText(i+1, unsafe.String(unsafe.SliceData(v), len(v)))
			}
		case blob:
			err = st.BindBlob(i+1, v)
		case int64:
			err = st.BindInt64(i+1, v)
		case int:
			err = st.BindInt64(i+1, int64(v))
		case bool:
			err = st.BindBool(i+1, v)
		case nil:
			err = st.BindNull(i + 1)
		default:
			err = fmt.Errorf("cannot bind %T", a)
		}
		if err != nil {
			st.Reset()
			return nil, t.fail(err)
		}
	}
	return st, nil
}

// exec runs q once with args.
func (t *tx) exec(q string, args ...any) error {
	st, err := t.stmt(q, args...)
	if err != nil {
		return err
	}
	if err := st.Exec(); err != nil {
		return t.fail(err)
	}
	return nil
}

// row runs q with args and calls scan on its first row, if any.
func (t *tx) row(q string, scan func(*sqlite3.Stmt) error, args ...any) (bool, error) {
	st, err := t.stmt(q, args...)
	if err != nil {
		return false, err
	}
	if !st.Step() {
		if err := st.Reset(); err != nil {
			return false, t.fail(err)
		}
		return false, nil
	}
	err = scan(st)
	if rerr := st.Reset(); err == nil && rerr != nil {
		err = t.fail(rerr)
	}
	return err == nil, err
}

type scanner interface{ Scan(...any) error }

const recordColumns = `type, id, number, version, deleted, fields, meta, review, seq, updated_at, conflicts, attachments`

func scanRecord(row scanner) (fieldsync.Record, error) {
	var r fieldsync.Record
	var fields, meta, review, conflicts, attachments string
	var updated int64
	if err := row.Scan(&r.Type, &r.ID, &r.Number, &r.Version, &r.Deleted, &fields, &meta, &review, &r.Seq, &updated, &conflicts, &attachments); err != nil {
		return r, err
	}
	return decodeRecord(r, []byte(fields), []byte(meta), []byte(review), []byte(conflicts), []byte(attachments), updated)
}

func decodeRecord(r fieldsync.Record, fields, meta, review, conflicts, attachments []byte, updated int64) (fieldsync.Record, error) {
	r.UpdatedAt = time.UnixMilli(updated).UTC()
	if err := decodeFields(fields, &r.Fields); err != nil {
		return r, fmt.Errorf("record %s/%s fields: %w", r.Type, r.ID, err)
	}
	if err := decodeMeta(meta, &r.Meta); err != nil {
		return r, fmt.Errorf("record %s/%s meta: %w", r.Type, r.ID, err)
	}
	if string(review) == "[]" {
		r.Review = []string{}
	} else if err := json.Unmarshal(review, &r.Review); err != nil {
		return r, fmt.Errorf("record %s/%s review: %w", r.Type, r.ID, err)
	}
	if len(conflicts) > 2 { // "[]" is by far the most common
		if err := json.Unmarshal(conflicts, &r.Conflicts); err != nil {
			return r, fmt.Errorf("record %s/%s conflicts: %w", r.Type, r.ID, err)
		}
	}
	if len(attachments) > 2 {
		if err := json.Unmarshal(attachments, &r.Attachments); err != nil {
			return r, fmt.Errorf("record %s/%s attachments: %w", r.Type, r.ID, err)
		}
	}
	return r, nil
}

// scanRecordRaw reads a record row of recordColumns from a raw statement.
func scanRecordRaw(st *sqlite3.Stmt) (fieldsync.Record, error) {
	var r fieldsync.Record
	r.Type = st.ColumnText(0)
	r.ID = st.ColumnText(1)
	r.Number = st.ColumnText(2)
	r.Version = st.ColumnInt64(3)
	r.Deleted = st.ColumnBool(4)
	r.Seq = st.ColumnInt64(8)
	return decodeRecord(r, st.ColumnRawText(5), st.ColumnRawText(6), st.ColumnRawText(7), st.ColumnRawText(10), st.ColumnRawText(11), st.ColumnInt64(9))
}

func (t *tx) Record(typ, id string) (fieldsync.Record, bool, error) {
	if err := t.settle(); err != nil {
		return fieldsync.Record{}, false, err
	}
	k := recordKey{typ, id}
	if e, ok := t.take(k); ok {
		t.cur = recordHead{typ: typ, id: id, known: true, row: e.row, lastOp: e.lastOp}
		return e.rec, true, nil
	}
	var r fieldsync.Record
	t.cur = recordHead{typ: typ, id: id, known: true}
	ok, err := t.row(`SELECT `+recordColumns+`, rowid, last_op FROM records WHERE type = ? AND id = ?`, func(st *sqlite3.Stmt) (err error) {
		t.cur.row, t.cur.lastOp = st.ColumnInt64(numRecordColumns), st.ColumnInt64(numRecordColumns+1)
		r, err = scanRecordRaw(st)
		return err
	}, typ, id)
	if err != nil {
		t.cur = recordHead{}
	}
	if !ok || err != nil {
		return fieldsync.Record{}, false, err
	}
	return r, true, nil
}

// PutRecord writes the record and, ahead of the op that goes with it, links
// that op into the record's history (see link).
func (t *tx) PutRecord(r *fieldsync.Record) (int64, error) { return t.putRecord(r, false) }

// PutRecordOwned is PutRecord of a record the caller will not change
// again: the record cache keeps it without copying it.
func (t *tx) PutRecordOwned(r *fieldsync.Record) (int64, error) { return t.putRecord(r, true) }

func (t *tx) putRecord(r *fieldsync.Record, owned bool) (int64, error) {
	if err := t.settle(); err != nil {
		return 0, err
	}
	head, err := t.head(r.Type, r.ID)
	if err != nil {
		return 0, err
	}
	opRow, err := t.nextOpRow()
	if err != nil {
		return 0, err
	}
	if t.nextSeq == 0 {
		if _, err := t.row(`SELECT coalesce(max(seq), 0) FROM records`, func(st *sqlite3.Stmt) error {
			t.nextSeq = st.ColumnInt64(0) + 1
			return nil
		}); err != nil {
			return 0, err
		}
	}
	r.Seq = t.nextSeq
	t.nextSeq++
	fields, meta, review, err := encodeRecord(r)
	if err != nil {
		return 0, err
	}
	conflicts := []byte("[]")
	if len(r.Conflicts) > 0 {
		if conflicts, err = json.Marshal(r.Conflicts); err != nil {
			return 0, err
		}
	}
	attachments, err := t.putAttachmentRefs(r)
	if err != nil {
		return 0, err
	}
	if head.row != 0 {
		err = t.exec(`UPDATE records SET number = ?, version = ?, deleted = ?, fields = ?, meta = ?,
			review = ?, seq = ?, updated_at = ?, conflicts = ?, attachments = ?, last_op = ? WHERE rowid = ?`,
			r.Number, r.Version, r.Deleted, fields, meta, review, r.Seq, r.UpdatedAt.UnixMilli(), conflicts, attachments, opRow, head.row)
	} else {
		err = t.exec(`INSERT INTO records (`+recordColumns+`, last_op) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			r.Type, r.ID, r.Number, r.Version, r.Deleted, fields, meta, review, r.Seq, r.UpdatedAt.UnixMilli(), conflicts, attachments, opRow)
		head.row = t.c.LastInsertRowID()
	}
	if err != nil {
		return 0, err
	}
	t.linkAhead(head, opRow)
	if c, ok := cacheable(r, owned); ok {
		t.remember(recordKey{r.Type, r.ID}, &cachedRecord{rec: c, row: head.row, lastOp: opRow})
	} else {
		t.remember(recordKey{r.Type, r.ID}, nil)
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
	if fields, err = encodeFields(r.Fields); err != nil {
		return
	}
	if meta, err = encodeMeta(r.Meta); err != nil {
		return
	}
	if len(r.Review) == 0 {
		return fields, meta, []byte("[]"), nil
	}
	review, err = json.Marshal(r.Review)
	return
}

func (t *tx) NextNumber(counter string, start int64) (int64, error) {
	var n int64
	ok, err := t.row(`INSERT INTO counters (name, value) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value`, func(st *sqlite3.Stmt) error {
		n = st.ColumnInt64(0)
		return nil
	}, counter, start)
	if err == nil && !ok {
		err = unavailable(errors.New("counter: no value returned"))
	}
	return n, err
}

// Changes implements fieldsync.Store. Like Update, it reads through the
// connection's SQLite handle: a page is thousands of rows.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]fieldsync.Record, int64, error) {
	var out []fieldsync.Record
	var max int64
	err := s.raw(ctx, func(c *sqlite3.Conn) error {
		if err := c.Exec(`BEGIN DEFERRED`); err != nil {
			return err
		}
		defer func() {
			if !c.GetAutocommit() {
				c.SetInterrupt(context.Background())
				c.Exec(`ROLLBACK`)
			}
		}()
		st, _, err := c.Prepare(`SELECT coalesce(max(seq), 0) FROM records`)
		if err != nil {
			return err
		}
		if st.Step() {
			max = st.ColumnInt64(0)
		}
		if err := st.Close(); err != nil {
			return err
		}
		st, _, err = c.Prepare(`SELECT ` + recordColumns + ` FROM records WHERE seq > ? ORDER BY seq LIMIT ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		if err := st.BindInt64(1, after); err != nil {
			return err
		}
		if err := st.BindInt64(2, int64(limit)); err != nil {
			return err
		}
		out = make([]fieldsync.Record, 0, min(limit, 1024))
		for st.Step() {
			r, err := scanRecordRaw(st)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return st.Err()
	})
	if err != nil {
		return nil, 0, err
	}
	return out, max, nil
}

// raw runs fn on a pooled connection's SQLite handle, interruptible by
// ctx. Errors come back marked retryable; a cancelled ctx as itself.
func (s *Store) raw(ctx context.Context, fn func(*sqlite3.Conn) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return unavailable(err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		dconn, ok := dc.(driver.Conn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		c := dconn.Raw()
		if old := c.SetInterrupt(ctx); old != ctx {
			defer c.SetInterrupt(old)
		}
		return fn(c)
	})
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return unavailable(err)
	}
	return nil
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

// DB exposes the database to tests and admin tools in this module.
func (s *Store) DB() *sql.DB { return s.db }

// Fast paths for the JSON columns of records. On the apply and pull paths
// encoding/json costs about as much as SQLite itself. These handle the
// shapes this store writes (objects with plain keys; compact values) and
// hand anything else to encoding/json, so the results are the same. They
// check the structure of what they read, not every byte inside a value:
// the columns hold JSON this store wrote.

// decodeFields decodes a record's fields column.
func decodeFields(data []byte, dst *map[string]json.RawMessage) error {
	buf := bytes.Clone(data) // one copy; the values are slices of it
	m := map[string]json.RawMessage{}
	ok := eachMember(buf, func(key, val []byte) bool {
		m[string(key)] = val[:len(val):len(val)]
		return true
	})
	if !ok {
		return json.Unmarshal(data, dst)
	}
	*dst = m
	return nil
}

// decodeMeta decodes a record's meta column.
func decodeMeta(data []byte, dst *map[string]fieldsync.FieldMeta) error {
	m := map[string]fieldsync.FieldMeta{}
	ok := eachMember(data, func(key, val []byte) bool {
		fm, ok := parseFieldMeta(val)
		m[string(key)] = fm
		return ok
	})
	if !ok {
		return json.Unmarshal(data, dst)
	}
	*dst = m
	return nil
}

// parseFieldMeta parses one FieldMeta as encoding/json writes it; any key
// it does not know makes it give up.
func parseFieldMeta(data []byte) (fieldsync.FieldMeta, bool) {
	var fm fieldsync.FieldMeta
	ok := eachMember(data, func(key, val []byte) bool {
		var ok bool
		switch string(key) {
		case "v":
			fm.Version, ok = parseInt(val)
		case "seq":
			fm.Seq, ok = parseInt(val)
		case "hlc":
			var n int64
			n, ok = parseInt(val)
			fm.HLC = fieldsync.HLC(n)
		case "by":
			fm.By, ok = parseString(val)
		case "role":
			fm.Role, ok = parseString(val)
		case "op":
			fm.OpID, ok = parseString(val)
		case "at":
			fm.At, ok = parseInt(val)
		case "since":
			fm.Since, ok = parseInt(val)
		}
		return ok
	})
	return fm, ok
}

// eachMember calls fn with the key and raw value of each member of the
// JSON object data, in order. It reports false when data is not a plain
// object (or a key is escaped), or when fn returns false.
func eachMember(data []byte, fn func(key, val []byte) bool) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	for {
		key, end, ok := plainString(data, i)
		if !ok {
			return false
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		vs := skipSpace(data, i+1)
		ve, ok := skipValue(data, vs)
		if !ok || !fn(key, data[vs:ve]) {
			return false
		}
		i = skipSpace(data, ve)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// plainString returns the contents of the JSON string at data[i] when it
// has no escapes, no control characters and is valid UTF-8, and the index
// after it.
func plainString(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			s := data[i+1 : j]
			return s, j + 1, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, 0, false
}

// skipValue returns the index after the JSON value at data[i].
func skipValue(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, ok := skipString(data, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	case ',', ':', '}', ']':
		return 0, false
	}
	j := i
	for j < len(data) {
		c := data[j]
		if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			break
		}
		j++
	}
	return j, true
}

func skipString(data []byte, i int) (int, bool) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// parseInt parses a JSON integer as encoding/json would into an int64.
func parseInt(val []byte) (int64, bool) {
	digits := val
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || digits[0] < '0' || digits[0] > '9' || digits[0] == '0' && len(digits) > 1 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(val), 10, 64)
	return n, err == nil
}

// parseString parses a JSON string without escapes.
func parseString(val []byte) (string, bool) {
	s, end, ok := plainString(val, 0)
	if !ok || end != len(val) {
		return "", false
	}
	return string(s), true
}

// encodeFields encodes a record's fields exactly as json.Marshal does
// (keys sorted, values compact, HTML characters escaped), without its
// reflection; unusual keys or values go through json.Marshal.
func encodeFields(m map[string]json.RawMessage) ([]byte, error) {
	keys := make([]string, 0, len(m))
	size := 2
	for k, v := range m {
		if !plainJSON(k, false) || !plainJSON(string(v), true) {
			return json.Marshal(m)
		}
		keys = append(keys, k)
		size += len(k) + len(v) + 4
	}
	slices.Sort(keys)
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, k...)
		out = append(out, '"', ':')
		out = append(out, m[k]...)
	}
	return append(out, '}'), nil
}

// plainJSON reports whether s needs no change from json.Marshal: for a
// key, printable ASCII that needs no escape; for a raw value, non-empty
// with no white space outside strings and nothing encoding/json would
// escape for HTML.
func plainJSON(s string, value bool) bool {
	if value && len(s) == 0 {
		return false
	}
	inString := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '<' || c == '>' || c == '&' || c >= 0x80:
			return false
		case !value && (c < 0x20 || c == '"' || c == '\\'):
			return false
		case !value:
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}

// metaLayout is the FieldMeta this file's encoder writes. encodeMeta
// checks the real one against it once and uses encoding/json if they
// differ, so a field added to FieldMeta is never dropped.
var metaLayout = []struct{ name, tag string }{
	{"Version", "v"}, {"By", "by"}, {"Seq", "seq"}, {"Role", "role,omitempty"},
	{"HLC", "hlc,omitempty"}, {"OpID", "op,omitempty"}, {"At", "at,omitempty"}, {"Since", "since,omitempty"},
}

var metaFast = sync.OnceValue(func() bool {
	t := reflect.TypeFor[fieldsync.FieldMeta]()
	if t.NumField() != len(metaLayout) {
		return false
	}
	for i, f := range metaLayout {
		sf := t.Field(i)
		if sf.Name != f.name || sf.Tag.Get("json") != f.tag {
			return false
		}
		if k := sf.Type.Kind(); k != reflect.Int64 && k != reflect.String {
			return false
		}
	}
	return true
})

// encodeMeta encodes a record's meta exactly as json.Marshal does.
func encodeMeta(m map[string]fieldsync.FieldMeta) ([]byte, error) {
	if !metaFast() {
		return json.Marshal(m)
	}
	keys := make([]string, 0, len(m))
	for k, fm := range m {
		if !plainJSON(k, false) || !plainJSON(fm.By, false) || !plainJSON(fm.Role, false) || !plainJSON(fm.OpID, false) {
			return json.Marshal(m)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]byte, 0, 2+len(m)*192) // an entry with two UUIDs and a clock is about 180 bytes
	out = append(out, '{')
	str := func(key, v string, omitEmpty bool) {
		if omitEmpty && v == "" {
			return
		}
		out = append(out, ",\""...)
		out = append(out, key...)
		out = append(out, "\":\""...)
		out = append(out, v...)
		out = append(out, '"')
	}
	num := func(key string, v int64, omitEmpty bool) {
		if omitEmpty && v == 0 {
			return
		}
		out = append(out, ",\""...)
		out = append(out, key...)
		out = append(out, "\":"...)
		out = strconv.AppendInt(out, v, 10)
	}
	for i, k := range keys {
		fm := m[k]
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, k...)
		out = append(out, "\":{\"v\":"...)
		out = strconv.AppendInt(out, fm.Version, 10)
		str("by", fm.By, false)
		num("seq", fm.Seq, false)
		str("role", fm.Role, true)
		num("hlc", int64(fm.HLC), true)
		str("op", fm.OpID, true)
		num("at", fm.At, true)
		num("since", fm.Since, true)
		out = append(out, '}')
	}
	return append(out, '}'), nil
}

// LoadSchema returns the schema document the server last used.
func (s *Store) LoadSchema(ctx context.Context) ([]byte, bool, error) {
	var doc string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema'`).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, unavailable(err)
	}
	return []byte(doc), true, nil
}

// SaveSchema keeps the schema document in use.
func (s *Store) SaveSchema(ctx context.Context, doc []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('schema', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, string(doc))
	if err != nil {
		return unavailable(err)
	}
	return nil
}
