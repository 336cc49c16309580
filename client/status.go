package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

// Status is what the device shows a person about its sync state.
type Status struct {
	DeviceID      string
	Counts        map[string]int // ops by status
	OldestPending time.Time      // zero when nothing is pending
	LastSync      time.Time      // last fully successful sync; zero if never
	LastAttempt   time.Time
	LastError     string   // of the last sync attempt, "" if it succeeded
	Resynced      string   // when and why the device last started over with the server
	Attention     []OpInfo // rejected ops and ops with fields to review
	Reviews       []Review // open conflicts a person must settle
	Failing       []OpInfo // queued ops that failed 5 times or more
	Cursor        string
	Storage       Storage // what the device's data takes, attachments not yet on the server
	// Auth is the device's standing with the server: AuthOK,
	// AuthNotEnrolled or AuthRevoked; AuthMessage says what to do when
	// it is not ok. The queue is kept whatever it says.
	Auth        string
	AuthMessage string
	Enrolment   Enrolment // what the device keeps of its enrolment (no token)
}

// Review is one open conflict on a record, as the device knows it.
type Review struct {
	Type     string
	ID       string
	Number   string
	Conflict fieldsync.Conflict
}

// NeedsReview is the number of open conflicts not yet settled on the device.
func (s Status) NeedsReview() int { return len(s.Reviews) }

// Pending is the number of ops not yet delivered.
func (s Status) Pending() int { return s.Counts[OpQueued] + s.Counts[OpSending] }

// OpInfo describes one op of the outbox.
type OpInfo struct {
	Seq       int64
	ID        string
	Type      string
	EntityID  string
	Kind      string
	Fields    map[string]json.RawMessage
	Status    string
	Attempts  int
	Code      string
	Message   string
	Version   int64
	Number    string
	LocalTime time.Time
	DecidedAt time.Time
	// Overridden lists the values that lost a clash to a field policy, from
	// the server's answer: the op's own values that lost, or the values
	// its winning values replaced.
	Overridden []fieldsync.Overridden
}

// Attempt is one line of an op's trail.
type Attempt struct {
	At      time.Time
	Outcome string
	Code    string
	Message string
}

// Status reports counts by status, the oldest pending op, the last sync
// and what needs attention.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	s := Status{DeviceID: e.deviceID, Counts: map[string]int{}}
	tx, err := e.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return s, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT status, count(*) FROM outbox GROUP BY status`)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			rows.Close()
			return s, err
		}
		s.Counts[st] = n
	}
	rows.Close()
	var oldest sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT min(local_time) FROM outbox WHERE status IN ('queued', 'sending')`).Scan(&oldest); err != nil {
		return s, err
	}
	if oldest.Valid {
		s.OldestPending = time.UnixMilli(oldest.Int64).UTC()
	}
	msTime := func(key string) time.Time {
		v, _ := e.meta(ctx, tx, key)
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	s.LastSync = msTime("last_sync")
	s.LastAttempt = msTime("last_attempt")
	s.LastError, _ = e.meta(ctx, tx, "last_error")
	s.Cursor, _ = e.meta(ctx, tx, "cursor")
	if s.Auth, s.AuthMessage, err = e.authStatus(ctx, tx); err != nil {
		return s, err
	}
	if s.Enrolment, err = e.enrolment(ctx, tx); err != nil {
		return s, err
	}
	if r, _ := e.meta(ctx, tx, "resynced"); r != "" {
		if ms, reason, ok := strings.Cut(r, " "); ok {
			if n, err := strconv.ParseInt(ms, 10, 64); err == nil {
				s.Resynced = time.UnixMilli(n).UTC().Format(time.RFC3339) + ": " + reason
			}
		}
	}
	if s.Attention, err = e.ops(ctx, tx, `status IN ('error', 'conflict')`, 100); err != nil {
		return s, err
	}
	if s.Failing, err = e.ops(ctx, tx, `status = 'queued' AND attempts >= 5`, 100); err != nil {
		return s, err
	}
	if s.Reviews, err = e.reviews(ctx, tx); err != nil {
		return s, err
	}
	if s.Storage, err = e.storage(ctx, tx); err != nil {
		return s, err
	}
	return s, nil
}

// Ops lists the outbox's ops in device order; status "" lists all.
func (e *Engine) Ops(ctx context.Context, status string, limit int) ([]OpInfo, error) {
	if limit <= 0 {
		limit = 1000
	}
	if status == "" {
		return e.ops(ctx, e.db, `1 = 1`, limit)
	}
	return e.ops(ctx, e.db, `status = ?`, limit, status)
}

type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

func (e *Engine) ops(ctx context.Context, q querier, where string, limit int, args ...any) ([]OpInfo, error) {
	args = append(args, limit)
	rows, err := q.QueryContext(ctx, `SELECT seq, op_id, type, entity_id, kind, fields, status, attempts, last_code, last_message,
		result_version, number, local_time, decided_at, result FROM outbox WHERE `+where+` ORDER BY seq LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OpInfo
	for rows.Next() {
		var o OpInfo
		var raw []byte
		var local, decided int64
		var result string
		if err := rows.Scan(&o.Seq, &o.ID, &o.Type, &o.EntityID, &o.Kind, &raw, &o.Status, &o.Attempts, &o.Code, &o.Message,
			&o.Version, &o.Number, &local, &decided, &result); err != nil {
			return nil, err
		}
		if strings.Contains(result, `"overridden"`) {
			var w protocol.Result
			if json.Unmarshal([]byte(result), &w) == nil {
				o.Overridden = protocol.ToResult(&w).Effective().Overridden
			}
		}
		json.Unmarshal(raw, &o.Fields)
		o.LocalTime = time.UnixMilli(local).UTC()
		if decided > 0 {
			o.DecidedAt = time.UnixMilli(decided).UTC()
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Op returns one op of the outbox with its trail: every send attempt and
// its outcome.
func (e *Engine) Op(ctx context.Context, opID string) (OpInfo, []Attempt, error) {
	ops, err := e.ops(ctx, e.db, `op_id = ?`, 1, opID)
	if err != nil {
		return OpInfo{}, nil, err
	}
	if len(ops) == 0 {
		return OpInfo{}, nil, fieldsync.Errorf(fieldsync.ENotFound, "no op %s on this device", opID)
	}
	rows, err := e.db.QueryContext(ctx, `SELECT at, outcome, code, message FROM attempts WHERE op_seq = ? ORDER BY rowid`, ops[0].Seq)
	if err != nil {
		return ops[0], nil, err
	}
	defer rows.Close()
	trail := []Attempt{{At: ops[0].LocalTime, Outcome: "created"}}
	for rows.Next() {
		var a Attempt
		var at int64
		if err := rows.Scan(&at, &a.Outcome, &a.Code, &a.Message); err != nil {
			return ops[0], nil, err
		}
		a.At = time.UnixMilli(at).UTC()
		trail = append(trail, a)
	}
	return ops[0], trail, rows.Err()
}

// ErrNotFound reports whether err means "no such thing".
func ErrNotFound(err error) bool {
	var fe *fieldsync.Error
	return errors.As(err, &fe) && fe.Code == fieldsync.ENotFound
}

// reviews lists the open conflicts of every record, minus those the device
// has already settled in an op not yet confirmed.
func (e *Engine) reviews(ctx context.Context, tx *sql.Tx) ([]Review, error) {
	rows, err := tx.QueryContext(ctx, `SELECT type, id FROM records WHERE conflicts != '[]' ORDER BY type, id`)
	if err != nil {
		return nil, err
	}
	type key struct{ typ, id string }
	var keys []key
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.typ, &k.id); err != nil {
			rows.Close()
			return nil, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	var out []Review
	for _, k := range keys {
		v, err := e.view(ctx, tx, k.typ, k.id)
		if err != nil {
			return nil, err
		}
		for _, c := range v.Conflicts {
			out = append(out, Review{Type: v.Type, ID: v.ID, Number: v.Number, Conflict: c})
		}
	}
	return out, nil
}
