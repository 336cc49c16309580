// Package client is the device engine that an app embeds: a durable outbox
// on a local SQLite database, a read view of the server-confirmed state
// with the device's pending ops on top, and a sync loop that pushes in
// small batches with per-op acknowledgements and pulls changes since a
// persisted cursor.
//
// Every Save commits to disk (a fully synced SQLite transaction) before it
// returns, so what the app shows as saved survives a crash or a power cut.
// An Engine is safe for concurrent use, and several processes may open the
// same device directory: SQLite serialises their writes.
package client

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/driver"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/media"
	"github.com/fieldsync/fieldsync/protocol"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Op statuses on the device.
const (
	OpQueued    = "queued"
	OpSending   = "sending"
	OpDelivered = "delivered"
	OpConflict  = "conflict" // delivered, but a field needs review
	OpError     = "error"    // rejected by the server: needs a person
	OpDiscarded = "discarded"
)

// Config configures an Engine. Dir is required; every other zero value is
// the documented default.
type Config struct {
	Dir string // device directory; the database is Dir/device.db
	// ServerURL is the server to sync with, e.g. https://sync.example:8443;
	// empty: the one the device enrolled with, else offline only.
	ServerURL  string
	HTTPClient *http.Client // default: a client with sane timeouts
	Logger     *slog.Logger // default: discard

	BatchSize      int           // ops per push (default 1000, at most protocol.MaxBatchOps)
	PullLimit      int           // records per pull page (default 1000)
	RequestTimeout time.Duration // per HTTP request (default 60s)
	MinBackoff     time.Duration // first retry delay (default 1s)
	MaxBackoff     time.Duration // longest retry delay (default 5m)
	Interval       time.Duration // Run: pull at least this often (default 30s)
	// Progress, when set, is called as a sync makes progress.
	Progress func(Progress)
	// Now is the device's clock, read for each op's local time and its
	// hybrid logical clock reading (default time.Now). A test or a fault
	// drill sets it to a clock that is wrong.
	Now func() time.Time

	// Limits bound what attachments may take on the device; a zero field
	// is its default (see Limits).
	Limits Limits
	// Retention says how long original files stay on the device once the
	// server holds them (see Retention).
	Retention Retention
	// Photo tunes how photos and scans are prepared; zero fields are the
	// media package's defaults.
	Photo media.PhotoOptions

	// Token is the device's bearer token, sent on every request; empty:
	// the one stored when the device enrolled (Enroll), if any.
	Token string
	// TLS says how the server's certificate is checked: a pinned
	// fingerprint, or the authorities to trust (see TLSConfig).
	TLS TLSConfig

	// PIN, when set, encrypts the device's data at rest (see
	// docs/security.md): the database, its WAL and the attachment
	// files. A new device starts encrypted; a device with plain data is
	// encrypted when first opened with a PIN. Open fails with EWrongPIN
	// or ELocked for a wrong PIN, and with EPINRequired when the data is
	// encrypted and no PIN is given.
	PIN string
	// Key, when set instead of PIN, returns the 32-byte data key (e.g.
	// from an OS keystore); no key file is kept.
	Key func(context.Context) ([]byte, error)
	// PINParams are the costs of deriving a key from the PIN, used when
	// the key file is made; zero fields are the defaults.
	PINParams KDFParams
}

// Progress reports a sync's progress.
type Progress struct {
	Stage string // "push" or "pull"
	Done  int    // ops decided or records pulled so far in this sync
	Total int    // ops to push (push); 0 when unknown (pull)
}

// Validate checks cfg and names the bad field.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("client: Config.Dir is required")
	}
	if c.BatchSize < 0 || c.BatchSize > protocol.MaxBatchOps {
		return fmt.Errorf("client: Config.BatchSize must be 0..%d", protocol.MaxBatchOps)
	}
	if c.PullLimit < 0 || c.PullLimit > protocol.MaxPullLimit {
		return fmt.Errorf("client: Config.PullLimit must be 0..%d", protocol.MaxPullLimit)
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if c.PIN != "" && c.Key != nil {
		return errors.New("client: give Config.PIN or Config.Key, not both")
	}
	if c.Retention.KeepOriginalsFor < 0 {
		return errors.New("client: Config.Retention.KeepOriginalsFor must be 0 (default) or more")
	}
	if err := c.Photo.Validate(); err != nil {
		return fmt.Errorf("client: Config.Photo: %w", err)
	}
	if err := c.TLS.validate(); err != nil {
		return err
	}
	return nil
}

// Engine is an open device store with its sync machinery.
type Engine struct {
	cfg      Config
	db       *sql.DB
	log      *slog.Logger
	http     *http.Client
	deviceID string

	syncMu sync.Mutex    // one sync at a time in this process
	kick   chan struct{} // Save wakes Run
	files  *fileStore    // attachment files and their uploader
	keys   *dataKeys     // nil when the device's data is not encrypted

	reauth atomic.Bool // Enroll ran: Run syncs at once, whatever the backoff
	authMu sync.Mutex
	token  string // the bearer token requests carry; "" when none
	fixed  string // Config.Token, until Enroll replaces it

	// Save's statements, prepared once on each pooled connection's SQLite
	// handle; Close waits for the saves under way (closeMu), then
	// finalizes them.
	closeMu sync.RWMutex
	stmtMu  sync.Mutex
	stmts   map[*sqlite3.Conn]map[string]*sqlite3.Stmt
}

// Save's statements.
const (
	sqlNextSeq = `UPDATE counters SET value = value + 1 WHERE name = 'seq' RETURNING value - 1`
	sqlHLC     = `UPDATE counters SET value = max(value + 1, ?) WHERE name = 'hlc' RETURNING value`
	sqlBase    = `SELECT version FROM records WHERE type = ? AND id = ?`
	sqlPrev    = `SELECT coalesce(max(seq), 0) FROM outbox WHERE type = ? AND entity_id = ?`
	sqlInsert  = `INSERT INTO outbox (seq, op_id, type, entity_id, kind, base_version, prev_seq, fields, local_time, hlc)
		VALUES (?,?,?,?,?,?,?,?,?,?)`
)

// Open opens or creates the device store in cfg.Dir.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = protocol.MaxBatchOps
	}
	if cfg.PullLimit == 0 {
		cfg.PullLimit = 1000
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 60 * time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.Interval == 0 {
		cfg.Interval = 30 * time.Second
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, http: cfg.HTTPClient, kick: make(chan struct{}, 1)}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.http == nil {
		e.http = &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 15 * time.Second,
		}}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open device store: %w", err)
	}
	sub, _ := fs.Sub(migrations, "migrations")
	keys, err := e.unlock(ctx)
	if err != nil {
		return nil, fmt.Errorf("open device store: %w", err)
	}
	e.keys = keys
	db, err := e.openDB(ctx, sub)
	if err != nil {
		return nil, fmt.Errorf("open device store: %w", err)
	}
	e.db = db
	if err := e.init(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open device store: %w", err)
	}
	if err := e.initAuth(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open device store: %w", err)
	}
	if err := e.openFiles(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open device store: %w", err)
	}
	return e, nil
}

func (e *Engine) init(ctx context.Context) error {
	id := uuid.Must(uuid.NewV7()).String()
	if _, err := e.db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('device_id', ?) ON CONFLICT DO NOTHING`, id); err != nil {
		return err
	}
	if err := e.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'device_id'`).Scan(&e.deviceID); err != nil {
		return err
	}
	var err error
	return err
}

// now reads the device's clock: Config.Now, or time.Now.
func (e *Engine) now() time.Time {
	if e.cfg.Now != nil {
		return e.cfg.Now()
	}
	return time.Now()
}

// DeviceID returns the device's id, made when the store was created.
func (e *Engine) DeviceID() string { return e.deviceID }

// Close closes the store. Nothing is lost: every Save already committed.
func (e *Engine) Close() error {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	e.stmtMu.Lock()
	for c, byQuery := range e.stmts {
		for _, st := range byQuery {
			st.Close()
		}
		delete(e.stmts, c)
	}
	e.stmtMu.Unlock()
	defer e.clearKeys()
	return e.db.Close()
}

// requeueInterrupted puts back in the queue the ops a crashed process left
// "sending"; their trail says the attempt was interrupted. Only the holder
// of the sync lock calls it.
func (e *Engine) requeueInterrupted(ctx context.Context) error {
	return e.update(ctx, func(tx *sql.Tx) error {
		now := time.Now().UnixMilli()
		if _, err := tx.ExecContext(ctx, `INSERT INTO attempts (op_seq, at, outcome, message)
			SELECT seq, ?, 'interrupted', 'the app stopped while this op was being sent' FROM outbox WHERE status = 'sending'`, now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'queued' WHERE status = 'sending'`)
		return err
	})
}

// update runs fn in one write transaction.
func (e *Engine) update(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// saveTx runs fn in one write transaction on a pooled connection's SQLite
// handle. Save is the hot path of every user action: database/sql would
// start a goroutine for the transaction and one for each query in it,
// which costs as much CPU as the rest of the save. stmt returns a
// statement prepared once per connection, bound to args (string, []byte,
// int64); fn must leave each one reset.
func (e *Engine) saveTx(ctx context.Context, fn func(stmt func(q string, args ...any) (*sqlite3.Stmt, error)) error) error {
	e.closeMu.RLock()
	defer e.closeMu.RUnlock()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return err
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
		if err := c.Exec(`BEGIN IMMEDIATE`); err != nil {
			return err
		}
		var used []*sqlite3.Stmt
		defer func() {
			for _, st := range used {
				st.Reset()
			}
			if !c.GetAutocommit() {
				c.SetInterrupt(context.Background())
				c.Exec(`ROLLBACK`)
			}
		}()
		stmt := func(q string, args ...any) (*sqlite3.Stmt, error) {
			st, err := e.connStmt(c, q)
			if err != nil {
				return nil, err
			}
			used = append(used, st)
			for i, a := range args {
				switch v := a.(type) {
				case string:
					err = st.BindText(i+1, v)
				case []byte:
					err = st.BindRawText(i+1, v)
				case int64:
					err = st.BindInt64(i+1, v)
				default:
					err = fmt.Errorf("cannot bind %T", a)
				}
				if err != nil {
					return nil, err
				}
			}
			return st, nil
		}
		if err := fn(stmt); err != nil {
			return err
		}
		return c.Exec(`COMMIT`)
	})
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// connStmt returns q prepared on c, preparing it the first time.
func (e *Engine) connStmt(c *sqlite3.Conn, q string) (*sqlite3.Stmt, error) {
	e.stmtMu.Lock()
	defer e.stmtMu.Unlock()
	if st, ok := e.stmts[c][q]; ok {
		return st, nil
	}
	st, _, err := c.Prepare(q)
	if err != nil {
		return nil, err
	}
	if e.stmts == nil {
		e.stmts = map[*sqlite3.Conn]map[string]*sqlite3.Stmt{}
	}
	if e.stmts[c] == nil {
		e.stmts[c] = map[string]*sqlite3.Stmt{}
	}
	e.stmts[c][q] = st
	return st, nil
}

// Change is one user action to save.
type Change struct {
	Kind     fieldsync.OpKind
	Type     string // entity type, e.g. "work_order"
	EntityID string // empty on create: a new id is made
	Fields   map[string]json.RawMessage
}

// Save queues one user action as one op and returns it once it is durably
// on disk. A create gets a new entity id made on the device.
func (e *Engine) Save(ctx context.Context, c Change) (fieldsync.Op, error) {
	op := fieldsync.Op{
		ID: uuid.Must(uuid.NewV7()).String(), DeviceID: e.deviceID, Kind: c.Kind,
		EntityType: c.Type, EntityID: c.EntityID, Fields: c.Fields, LocalTime: e.now().UTC(),
	}
	if c.Kind == fieldsync.KindCreate {
		if op.EntityID == "" {
			op.EntityID = uuid.Must(uuid.NewV7()).String()
		}
	}
	if err := checkChange(&op); err != nil {
		return op, err
	}
	fields, err := json.Marshal(op.Fields)
	if err != nil {
		return op, fieldsync.Errorf(fieldsync.EInvalidField, "fields: %v", err)
	}
	if op.Fields == nil {
		fields = []byte("{}")
	}
	err = e.saveTx(ctx, func(stmt stmtFunc) error { return queueOp(stmt, &op, fields) })
	if err != nil {
		return op, fmt.Errorf("save: %w", e.diskFull(err))
	}
	select {
	case e.kick <- struct{}{}:
	default:
	}
	return op, nil
}

// stmtFunc returns a statement of a saveTx transaction, bound to args.
type stmtFunc = func(q string, args ...any) (*sqlite3.Stmt, error)

// queueOp queues op inside a saveTx transaction: it takes the next
// sequence number and clock reading, the record's confirmed version (the
// op's base) and the device's previous op on the record (its prev), and
// inserts the op with its encoded fields.
func queueOp(stmt stmtFunc, op *fieldsync.Op, fields []byte) error {
	row := func(q string, args []any, dst *int64) (bool, error) {
		st, err := stmt(q, args...)
		if err != nil {
			return false, err
		}
		if !st.Step() {
			return false, st.Reset()
		}
		*dst = st.ColumnInt64(0)
		return true, st.Reset()
	}
	if ok, err := row(sqlNextSeq, nil, &op.Seq); err != nil || !ok {
		return cmp.Or(err, errors.New("no sequence counter"))
	}
	// The device's hybrid logical clock: at least the wall clock, above
	// every reading issued or seen, kept across restarts.
	var hlc int64
	if ok, err := row(sqlHLC, []any{int64(fieldsync.HLCFromTime(op.LocalTime))}, &hlc); err != nil || !ok {
		return cmp.Or(err, errors.New("no clock counter"))
	}
	op.HLC = fieldsync.HLC(hlc)
	if _, err := row(sqlBase, []any{op.EntityType, op.EntityID}, &op.BaseVersion); err != nil {
		return err
	}
	if op.Kind == fieldsync.KindCreate {
		op.BaseVersion = 0
	}
	if _, err := row(sqlPrev, []any{op.EntityType, op.EntityID}, &op.PrevSeq); err != nil {
		return err
	}
	st, err := stmt(sqlInsert, op.Seq, op.ID, op.EntityType, op.EntityID, string(op.Kind),
		op.BaseVersion, op.PrevSeq, fields, op.LocalTime.UnixMilli(), int64(op.HLC))
	if err != nil {
		return err
	}
	return st.Exec()
}

// checkChange refuses, before anything is stored, what the server would
// refuse for its shape alone.
func checkChange(op *fieldsync.Op) error {
	w := protocol.FromOp(op)
	w.Seq, w.Prev = 1, 0 // not known yet
	if !protocol.ValidID(op.EntityID) {
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "entity id %q: want 1-64 letters, digits, '_', '.', '-'", op.EntityID)
	}
	req, err := json.Marshal(protocol.PushRequest{Device: "d", Ops: []protocol.Op{w}})
	if err != nil {
		return fieldsync.Errorf(fieldsync.EInvalidField, "fields: %v", err)
	}
	_, err = protocol.DecodePush(req)
	return err
}

// Create saves a new record of type typ and returns its op (op.EntityID is
// the new record's id).
func (e *Engine) Create(ctx context.Context, typ string, fields map[string]any) (fieldsync.Op, error) {
	f, err := rawFields(fields)
	if err != nil {
		return fieldsync.Op{}, err
	}
	return e.Save(ctx, Change{Kind: fieldsync.KindCreate, Type: typ, Fields: f})
}

// Update saves a change of some fields of a record.
func (e *Engine) Update(ctx context.Context, typ, id string, fields map[string]any) (fieldsync.Op, error) {
	f, err := rawFields(fields)
	if err != nil {
		return fieldsync.Op{}, err
	}
	return e.Save(ctx, Change{Kind: fieldsync.KindUpdate, Type: typ, EntityID: id, Fields: f})
}

// Append saves one item added to a list field (a comment, a reading…).
func (e *Engine) Append(ctx context.Context, typ, id, field string, item any) (fieldsync.Op, error) {
	f, err := rawFields(map[string]any{field: item})
	if err != nil {
		return fieldsync.Op{}, err
	}
	return e.Save(ctx, Change{Kind: fieldsync.KindAppend, Type: typ, EntityID: id, Fields: f})
}

// Delete saves the deletion of a record.
func (e *Engine) Delete(ctx context.Context, typ, id string) (fieldsync.Op, error) {
	return e.Save(ctx, Change{Kind: fieldsync.KindDelete, Type: typ, EntityID: id})
}

func rawFields(in map[string]any) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(in))
	for k, v := range in {
		if raw, ok := v.(json.RawMessage); ok {
			out[k] = raw
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fieldsync.Errorf(fieldsync.EInvalidField, "field %q: %v", k, err)
		}
		out[k] = b
	}
	return out, nil
}

// Discard gives up an op that the server rejected (status error): it will
// never be sent. Ops in any other status cannot be discarded.
func (e *Engine) Discard(ctx context.Context, opID string) error {
	return e.update(ctx, func(tx *sql.Tx) error {
		var seq int64
		var status string
		err := tx.QueryRowContext(ctx, `SELECT seq, status FROM outbox WHERE op_id = ?`, opID).Scan(&seq, &status)
		if errors.Is(err, sql.ErrNoRows) {
			return fieldsync.Errorf(fieldsync.ENotFound, "no op %s on this device", opID)
		}
		if err != nil {
			return err
		}
		if status != OpError {
			return fieldsync.Errorf(fieldsync.EInvalidRequest, "op %s is %s: only a rejected op can be discarded", opID, status)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'discarded' WHERE seq = ?`, seq); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO attempts (op_seq, at, outcome, message) VALUES (?, ?, 'discarded', 'discarded by the user')`, seq, time.Now().UnixMilli())
		return err
	})
}

func (e *Engine) meta(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, key string) (string, error) {
	var v string
	err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

func setMeta(ctx context.Context, tx *sql.Tx, key, value string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	return err
}
