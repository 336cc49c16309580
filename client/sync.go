package client

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ncruces/go-sqlite3"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/internal/gzpool"
	"github.com/fieldsync/fieldsync/protocol"
)

// Report sums up one Sync.
type Report struct {
	Sent      int // ops sent (attempts)
	Delivered int // ops now delivered (applied or duplicate of an applied op)
	Conflicts int // ops that came back with a field to review
	Rejected  int // ops the server refused
	Retry     int // ops to send again later
	Pulled    int // records received
	Resynced  bool

	BytesSent   int64 // attachment bytes sent, those lost to a cut included
	Uploaded    int   // attachment files the server now holds
	UploadsLeft int   // attachment files still to send
	yielded     bool  // uploads stopped to let new ops go first
}

// ErrOffline is returned by Sync when no server is configured.
var ErrOffline = fieldsync.Errorf(fieldsync.EUnavailable, "no server configured: working offline")

// Sync pushes every queued op, then pulls every change since the cursor,
// then uploads the bytes of attachments whose ops the server has. It may
// be cancelled at any point: progress exists only as committed
// transactions. A retryable failure (network, timeout, 5xx) returns an
// error whose code is retryable; the ops stay queued.
func (e *Engine) Sync(ctx context.Context) (Report, error) {
	var rep Report
	if e.cfg.ServerURL == "" {
		return rep, ErrOffline
	}
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	lock, err := lockSync(filepath.Join(e.cfg.Dir, "sync.lock"))
	if err != nil {
		return rep, err
	}
	defer lock.unlock()
	if err := e.requeueInterrupted(ctx); err != nil {
		return rep, err
	}
	if err := e.loadToken(ctx); err != nil {
		return rep, err
	}
	token := e.currentToken()
	err = e.push(ctx, &rep)
	if err == nil {
		err = e.pull(ctx, &rep)
	}
	if err == nil {
		err = uploadPhase(e.upload(ctx, &rep))
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	e.update(context.WithoutCancel(ctx), func(tx *sql.Tx) error {
		if err := e.noteAuth(ctx, tx, err, token); err != nil {
			return err
		}
		if err != nil {
			setMeta(ctx, tx, "last_error", fieldsync.ErrorMessage(err))
			return setMeta(ctx, tx, "last_attempt", now)
		}
		setMeta(ctx, tx, "last_error", "")
		setMeta(ctx, tx, "last_attempt", now)
		return setMeta(ctx, tx, "last_sync", now)
	})
	return rep, err
}

type pending struct {
	op fieldsync.Op
}

// push sends every queued op in batches. Batches are pipelined: while one
// is on the wire, the device stores the answers to the one before and
// prepares the one after, so the device's disk work overlaps the server's.
// The server still gets one batch at a time, in device order.
func (e *Engine) push(ctx context.Context, rep *Report) error {
	var total int
	if err := e.db.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE status = 'queued'`).Scan(&total); err != nil {
		return err
	}
	done := 0
	cur, err := e.prepareBatch(ctx, 0)
	if err != nil || cur == nil {
		return err
	}
	var prev *outgoing // sent, answers not yet stored
	var firstErr error
	keep := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	store := func(b *outgoing) {
		n, err := e.storeBatch(ctx, b, rep)
		done += n
		if e.cfg.Progress != nil {
			e.cfg.Progress(Progress{Stage: "push", Done: done, Total: total})
		}
		keep(err)
		keep(b.sendErr)
	}
	for cur != nil {
		sent := make(chan struct{})
		go func(b *outgoing) {
			defer close(sent)
			b.results, b.sendErr = e.send(ctx, b.body)
		}(cur)
		rep.Sent += len(cur.batch)
		var next *outgoing
		if prev != nil {
			store(prev)
			prev = nil
		}
		if firstErr == nil {
			next, err = e.prepareBatch(ctx, cur.batch[len(cur.batch)-1].op.Seq)
			keep(err)
		}
		<-sent
		prev, cur = cur, next
		if firstErr != nil || prev.sendErr != nil {
			store(prev)
			prev = nil
			if cur != nil {
				keep(e.unprepare(ctx, cur))
			}
			return firstErr
		}
	}
	if prev != nil {
		store(prev)
	}
	return firstErr
}

// outgoing is a batch marked as being sent, with its encoded body, and
// once sent, the answers received.
type outgoing struct {
	batch   []pending
	body    []byte
	at      int64 // Unix milliseconds when it was marked
	results []protocol.Result
	sendErr error
}

// prepareBatch loads the next batch after seq `after`, marks it as being
// sent (a crash from here on is seen when the device next syncs) and
// encodes it. It returns nil when nothing is queued. Loading and marking
// are one transaction on the SQLite handle (see saveTx).
func (e *Engine) prepareBatch(ctx context.Context, after int64) (*outgoing, error) {
	var batch []pending
	err := e.saveTx(ctx, func(stmt func(q string, args ...any) (*sqlite3.Stmt, error)) error {
		var err error
		batch, err = e.nextBatch(stmt, after)
		if err != nil || len(batch) == 0 {
			return err
		}
		st, err := stmt(`UPDATE outbox SET status = 'sending', attempts = attempts + 1
			WHERE seq IN (SELECT value FROM json_each(?)) AND status = 'queued'`, seqList(batch))
		if err != nil {
			return err
		}
		return st.Exec()
	})
	if err != nil || len(batch) == 0 {
		return nil, err
	}
	b := &outgoing{batch: batch, at: time.Now().UnixMilli()}
	req := protocol.PushRequest{Device: e.deviceID, Ops: make([]protocol.Op, len(batch))}
	for i := range batch {
		req.Ops[i] = protocol.FromOp(&batch[i].op)
	}
	var buf bytes.Buffer
	buf.Grow(80 * len(batch)) // compressed, an op takes about 60 bytes
	zw := gzpool.Get(&buf)
	raw, err := protocol.AppendPushRequest(make([]byte, 0, 256*len(batch)), &req)
	if err == nil {
		_, err = zw.Write(append(raw, '\n')) // as json.Encoder writes it
	}
	if err == nil {
		err = zw.Close()
	}
	gzpool.Put(zw)
	if err != nil {
		return nil, errors.Join(err, e.unprepare(ctx, b))
	}
	b.body = buf.Bytes()
	return b, nil
}

// unprepare puts a batch that was marked but never sent back in the queue,
// as it was.
func (e *Engine) unprepare(ctx context.Context, b *outgoing) error {
	return e.update(context.WithoutCancel(ctx), func(tx *sql.Tx) error {
		_, err := tx.ExecContext(context.WithoutCancel(ctx), `UPDATE outbox SET status = 'queued', attempts = attempts - 1
			WHERE seq IN (SELECT value FROM json_each(?)) AND status = 'sending'`, seqList(b.batch))
		return err
	})
}

// seqList is the JSON array of a batch's sequence numbers.
func seqList(batch []pending) string {
	buf := make([]byte, 0, 8*len(batch)+2)
	buf = append(buf, '[')
	for i, p := range batch {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendInt(buf, p.op.Seq, 10)
	}
	return string(append(buf, ']'))
}

// storeBatch stores every answer received for a sent batch, even from a
// cut response: those ops were committed by the server. The rest go back
// to the queue. It returns how many ops got a final answer. Like Save, it
// runs on the SQLite handle: three statements an op through database/sql
// cost about a fifth more.
func (e *Engine) storeBatch(ctx context.Context, b *outgoing, rep *Report) (int, error) {
	final := 0
	err := e.saveTx(context.WithoutCancel(ctx), func(stmt func(q string, args ...any) (*sqlite3.Stmt, error)) error {
		var err error
		final, err = storeResults(stmt, b.batch, b.results, b.sendErr, b.at, rep)
		return err
	})
	return final, err
}

// nextBatch loads queued ops after seq `after`, in device order, up to the
// batch size and about half the server's body limit, through stmt (see
// saveTx).
func (e *Engine) nextBatch(stmt func(q string, args ...any) (*sqlite3.Stmt, error), after int64) ([]pending, error) {
	// An op whose predecessor was discarded names the op before that one
	// instead: a discarded op is never sent again, so a server that lost
	// it (restored from a backup) would otherwise wait for it forever.
	st, err := stmt(`SELECT o.seq, o.op_id, o.type, o.entity_id, o.kind, o.base_version,
		CASE WHEN p.status = 'discarded' THEN (SELECT coalesce(max(q.seq), 0) FROM outbox q
			WHERE q.type = o.type AND q.entity_id = o.entity_id AND q.seq < o.seq AND q.status != 'discarded')
		ELSE o.prev_seq END, o.fields, o.local_time, o.hlc
		FROM outbox o LEFT JOIN outbox p ON p.seq = o.prev_seq
		WHERE o.status = 'queued' AND o.seq > ? ORDER BY o.seq LIMIT ?`, after, int64(e.cfg.BatchSize))
	if err != nil {
		return nil, err
	}
	defer st.Reset()
	out := make([]pending, 0, e.cfg.BatchSize)
	size := 0
	var lastType, lastKind string
	for st.Step() {
		var p pending
		p.op.Seq = st.ColumnInt64(0)
		p.op.ID = st.ColumnText(1)
		// A batch is mostly of one type and a few kinds: their strings are
		// shared.
		if t := st.ColumnRawText(2); string(t) != lastType {
			lastType = string(t)
		}
		if k := st.ColumnRawText(4); string(k) != lastKind {
			lastKind = string(k)
		}
		p.op.EntityType, p.op.Kind = lastType, fieldsync.OpKind(lastKind)
		p.op.EntityID = st.ColumnText(3)
		p.op.BaseVersion = st.ColumnInt64(5)
		p.op.PrevSeq = st.ColumnInt64(6)
		fields := st.ColumnRawText(7) // valid until the next step
		p.op.LocalTime = time.UnixMilli(st.ColumnInt64(8)).UTC()
		p.op.HLC = fieldsync.HLC(st.ColumnInt64(9))
		p.op.DeviceID = e.deviceID
		var err error
		if p.op.Fields, err = protocol.DecodeFields(fields); err != nil {
			return nil, fmt.Errorf("outbox op %d: %w", p.op.Seq, err)
		}
		size += len(fields) + 200
		if len(out) > 0 && size > protocol.MaxBodyBytes/2 {
			break
		}
		out = append(out, p)
	}
	return out, st.Err()
}

// The statements that store a batch's answers.
const (
	sqlSetFinal = `UPDATE outbox SET status = ?, last_code = ?, last_message = ?, result = ?,
		result_version = ?, number = ?, decided_at = ? WHERE seq = ?`
	sqlRequeue = `UPDATE outbox SET status = 'queued', last_code = ?, last_message = ? WHERE seq = ?`
	sqlTrail   = `INSERT INTO attempts (op_seq, at, outcome, code, message) VALUES (?, ?, ?, ?, ?)`
)

// storeResults stores the answers to a batch through stmt (see saveTx)
// and counts them in rep.
func storeResults(stmt func(q string, args ...any) (*sqlite3.Stmt, error), batch []pending, results []protocol.Result, sendErr error, now int64, rep *Report) (int, error) {
	exec := func(q string, args ...any) error {
		st, err := stmt(q, args...)
		if err != nil {
			return err
		}
		return st.Exec()
	}
	requeue := func(code, msg string, seq int64) error { return exec(sqlRequeue, code, msg, seq) }
	trail := func(seq, at int64, outcome, code, msg string) error {
		return exec(sqlTrail, seq, at, outcome, code, msg)
	}

	if len(results) == 0 && IsAuthRefusal(sendErr) {
		// Refused at the door, before the server read the batch: the
		// ops go back as they were. The device's status says why; a
		// trail line per op and per retry would only bury it.
		return 0, exec(`UPDATE outbox SET status = 'queued', attempts = max(attempts - 1, 0)
			WHERE seq IN (SELECT value FROM json_each(?)) AND status = 'sending'`, seqList(batch))
	}
	final := 0
	for i, p := range batch {
		if i >= len(results) || results[i].Op != p.op.ID {
			code, msg := fieldsync.EUnavailable, "no answer from the server"
			if sendErr != nil {
				code, msg = fieldsync.ErrorCode(sendErr), fieldsync.ErrorMessage(sendErr)
			}
			outcome := "failed"
			if !code.Retryable() && sendErr != nil {
				// The whole request was refused: a bug or a limit; nothing
				// in it was applied. Keep the ops queued but say why.
				outcome = "refused"
			}
			if err := requeue(string(code), msg, p.op.Seq); err != nil {
				return final, err
			}
			if err := trail(p.op.Seq, now, outcome, string(code), msg); err != nil {
				return final, err
			}
			rep.Retry++
			continue
		}
		r := protocol.ToResult(&results[i])
		eff := r.Effective()
		var status string
		switch eff.Status {
		case fieldsync.StatusApplied:
			status = OpDelivered
			rep.Delivered++
		case fieldsync.StatusConflict:
			status = OpConflict
			rep.Conflicts++
		case fieldsync.StatusRejected:
			status = OpError
			rep.Rejected++
		default: // retry, or anything this build does not know
			if err := requeue(string(r.Code), r.Message, p.op.Seq); err != nil {
				return final, err
			}
			if err := trail(p.op.Seq, now, string(r.Status), string(r.Code), r.Message); err != nil {
				return final, err
			}
			rep.Retry++
			continue
		}
		raw, _ := results[i].MarshalJSON() // compact already: encoding/json would only scan it again
		if err := exec(sqlSetFinal, status, string(eff.Code), eff.Message, raw, eff.Version, eff.Number, now, p.op.Seq); err != nil {
			return final, err
		}
		if err := trail(p.op.Seq, now, string(r.Status), string(eff.Code), eff.Message); err != nil {
			return final, err
		}
		final++
	}
	return final, nil
}

// send posts an encoded batch and decodes the answers it gets. On a cut response it
// returns the complete answers read before the cut, and an error.
func (e *Engine) send(ctx context.Context, body []byte) ([]protocol.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.ServerURL+protocol.PathPush, bytes.NewReader(body))
	if err != nil {
		return nil, fieldsync.Errorf(fieldsync.EInvalidRequest, "server URL: %v", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Content-Encoding", "gzip")
	hreq.Header.Set(protocol.VersionHeader, strconv.Itoa(protocol.Version))
	e.authorize(hreq.Header)
	resp, err := e.http.Do(hreq)
	if err != nil {
		return nil, transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readError(resp)
	}
	return decodeResults(resp.Body)
}

// decodeResults reads {"results":[…]} item by item, keeping every complete
// item even when the stream breaks.
func decodeResults(r io.Reader) ([]protocol.Result, error) {
	dec := json.NewDecoder(r)
	var out []protocol.Result
	cut := func(err error) ([]protocol.Result, error) {
		return out, fieldsync.Errorf(fieldsync.EUnavailable, "answer cut after %d results: %v", len(out), err)
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return cut(fmt.Errorf("not an object"))
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return cut(err)
		}
		if t != "results" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return cut(err)
			}
			continue
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return cut(fmt.Errorf("results is not a list"))
		}
		for dec.More() {
			var r protocol.Result
			if err := dec.Decode(&r); err != nil {
				return cut(err)
			}
			out = append(out, r)
		}
		if _, err := dec.Token(); err != nil {
			return cut(err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return cut(err)
	}
	return out, nil
}

func transportError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	if terr := tlsError(err); terr != nil {
		return terr
	}
	return &netError{err}
}

// netError is a failure to reach the server or to get a whole answer:
// always worth a retry.
type netError struct{ err error }

func (e *netError) Error() string { return "cannot reach the server: " + e.err.Error() }
func (e *netError) Unwrap() []error {
	return []error{e.err, fieldsync.Errorf(fieldsync.EUnavailable, "cannot reach the server: %v", e.err)}
}

// readError reads a refusing answer: its code, its message and the wait
// it asks for (see answerError).
func readError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return answerError(resp.StatusCode, resp.Header, data, time.Now())
}

// pull fetches every change since the cursor, one page per transaction.
// The next page is fetched while one is stored, so the device's disk work
// overlaps the server's; pages are still stored in order, each with the
// cursor that follows it.
func (e *Engine) pull(ctx context.Context, rep *Report) error {
	cursor, err := e.meta(ctx, e.db, "cursor")
	if err != nil {
		return err
	}
	type fetched struct {
		page *protocol.ChangesResponse
		err  error
	}
	var ahead chan fetched // the next page, on its way
	for {
		var page *protocol.ChangesResponse
		if ahead != nil {
			f := <-ahead
			ahead = nil
			page, err = f.page, f.err
		} else {
			page, err = e.fetchChanges(ctx, cursor)
		}
		if fieldsync.ErrorCode(err) == fieldsync.ECursorInvalid && !rep.Resynced {
			e.log.Warn("server history changed: starting again from the beginning", "reason", fieldsync.ErrorMessage(err))
			if err := e.resync(ctx, fieldsync.ErrorMessage(err)); err != nil {
				return err
			}
			rep.Resynced = true
			// The server may have lost ops it had confirmed: send them again.
			if err := e.push(ctx, rep); err != nil {
				return err
			}
			cursor = ""
			continue
		}
		if err != nil {
			return err
		}
		if page.More {
			ahead = make(chan fetched, 1)
			go func(cursor string, out chan<- fetched) {
				p, err := e.fetchChanges(ctx, cursor)
				out <- fetched{p, err}
			}(page.Cursor, ahead)
		}
		if err := e.update(ctx, func(tx *sql.Tx) error { return e.storePage(ctx, tx, page) }); err != nil {
			if ahead != nil {
				<-ahead
			}
			return err
		}
		rep.Pulled += len(page.Changes)
		if e.cfg.Progress != nil {
			e.cfg.Progress(Progress{Stage: "pull", Done: rep.Pulled})
		}
		if !page.More {
			return nil
		}
		cursor = page.Cursor
	}
}

func (e *Engine) fetchChanges(ctx context.Context, cursor string) (*protocol.ChangesResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	defer cancel()
	q := url.Values{"limit": {strconv.Itoa(e.cfg.PullLimit)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, e.cfg.ServerURL+protocol.PathChanges+"?"+q.Encode(), nil)
	if err != nil {
		return nil, fieldsync.Errorf(fieldsync.EInvalidRequest, "server URL: %v", err)
	}
	hreq.Header.Set(protocol.VersionHeader, strconv.Itoa(protocol.Version))
	e.authorize(hreq.Header)
	resp, err := e.http.Do(hreq)
	if err != nil {
		return nil, transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readError(resp)
	}
	body, err := readPage(resp.Body)
	if err != nil {
		return nil, err
	}
	page, err := protocol.DecodeChangesResponse(body)
	if err != nil {
		return nil, transportError(fmt.Errorf("changes page: %w", err))
	}
	if _, err := protocol.ParseCursor(page.Cursor); err != nil {
		return nil, fieldsync.Errorf(fieldsync.EInternal, "server sent a bad cursor")
	}
	return page, nil
}

// maxPageBytes bounds a page of the change feed read into memory: far
// above a full page of the largest records the server keeps.
const maxPageBytes = 256 << 20

// readPage reads a page of the change feed whole.
func readPage(r io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, maxPageBytes+1))
	if err != nil {
		return nil, transportError(fmt.Errorf("changes page: %w", err))
	}
	if n > maxPageBytes {
		return nil, fieldsync.Errorf(fieldsync.EInternal, "the server sent a page of changes over %d MiB: ask for fewer records per page", maxPageBytes>>20)
	}
	return buf.Bytes(), nil
}

func (e *Engine) storePage(ctx context.Context, tx *sql.Tx, page *protocol.ChangesResponse) error {
	st, err := tx.PrepareContext(ctx, `INSERT INTO records (type, id, number, version, deleted, fields, review, conflicts, attachments, seq, updated)
		VALUES (?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (type, id) DO UPDATE SET number = excluded.number, version = excluded.version, deleted = excluded.deleted,
		fields = excluded.fields, review = excluded.review, conflicts = excluded.conflicts, attachments = excluded.attachments,
		seq = excluded.seq, updated = excluded.updated
		WHERE excluded.seq > records.seq`)
	if err != nil {
		return err
	}
	defer st.Close()
	var fieldsBuf []byte
	for i := range page.Changes {
		c := &page.Changes[i]
		if !protocol.ValidID(c.ID) || c.Type == "" {
			return fieldsync.Errorf(fieldsync.EInternal, "server sent a record with a bad id")
		}
		if c.Gone != "" {
			// Out of this device's reach now: its confirmed copy goes
			// (its own queued ops on the record stay in the outbox).
			if _, err := tx.ExecContext(ctx, `DELETE FROM records WHERE type = ? AND id = ? AND seq < ?`, c.Type, c.ID, c.Seq); err != nil {
				return err
			}
			continue
		}
		fields, err := protocol.AppendFields(fieldsBuf[:0], c.Fields)
		if err != nil {
			return fieldsync.Errorf(fieldsync.EInternal, "server sent record %s with bad fields: %v", c.ID, err)
		}
		fieldsBuf = fields
		review, conflicts, attachments := jsonList(c.Review), jsonList(c.Conflicts), jsonList(c.Attachments)
		if _, err := st.ExecContext(ctx, c.Type, c.ID, c.Number, c.Version, c.Deleted, string(fields), review, conflicts,
			attachments, c.Seq, c.Updated.UnixMilli()); err != nil {
			return err
		}
	}
	// Observe the server's clock: what this device does next is later
	// than everything it has seen.
	if page.HLC > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE counters SET value = max(value, ?) WHERE name = 'hlc'`, page.HLC); err != nil {
			return err
		}
	}
	return setMeta(ctx, tx, "cursor", page.Cursor)
}

// jsonList returns the JSON of a list for the device's database: "[]"
// for none.
func jsonList[T any](list []T) string {
	if len(list) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(list) // decoded from JSON, so it encodes
	return string(b)
}

// resync handles a server whose history is not the one the device synced
// with (restored from a backup, or replaced): the cursor starts again, the
// confirmed state is pulled anew, and ops the old server had confirmed are
// sent again; the server's op log makes that safe for those it still has.
func (e *Engine) resync(ctx context.Context, reason string) error {
	return e.update(ctx, func(tx *sql.Tx) error {
		now := time.Now().UnixMilli()
		if _, err := tx.ExecContext(ctx, `INSERT INTO attempts (op_seq, at, outcome, message)
			SELECT seq, ?, 'resend', ? FROM outbox WHERE status IN ('delivered', 'conflict', 'error')`, now, "sent again: "+reason); err != nil {
			return err
		}
		// Rejected ops too: later ops on their record wait for them.
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET status = 'queued' WHERE status IN ('delivered', 'conflict', 'error')`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM records`); err != nil {
			return err
		}
		// Nor may it hold the bytes it had confirmed: check each file
		// still here again (the uploader asks before it sends).
		if _, err := tx.ExecContext(ctx, `UPDATE blobs SET state = 'pending', upload_url = '', upload_offset = 0
			WHERE state = 'uploaded' AND reclaimed_at = 0`); err != nil {
			return err
		}
		if err := setMeta(ctx, tx, "cursor", ""); err != nil {
			return err
		}
		return setMeta(ctx, tx, "resynced", strconv.FormatInt(now, 10)+" "+reason)
	})
}

// Run syncs until ctx ends: at once, after every Save, at least every
// Interval, and after a failure with exponential backoff and full jitter.
// It returns ctx's error.
func (e *Engine) Run(ctx context.Context) error {
	failures, upFailures := 0, 0
	for {
		rep, err := e.Sync(ctx)
		var wait, floor time.Duration // floor: the least wait a Save cannot cut short
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case IsAuthRefusal(err):
			// Retrying fast cannot help: only a new enrolment can.
			failures++
			wait, floor = e.retryWait(err, failures)
			e.log.Warn("sync refused: the device must be enrolled again", "code", fieldsync.ErrorCode(err),
				"msg", fieldsync.ErrorMessage(err), "retry_in", wait.Round(time.Millisecond))
		case isUploadPhase(err):
			// Ops and changes went through; only attachment bytes did
			// not. Text must not wait behind them: the backoff of
			// uploads stops growing at the interval.
			failures = 0
			upFailures++
			wait = min(e.cfg.Interval, e.backoff(upFailures))
			if ra := RetryAfter(err); ra > wait {
				wait, floor = ra, ra
			}
			e.log.Info("attachments not uploaded; will retry", "err", err, "retry_in", wait.Round(time.Millisecond),
				"uploaded", rep.Uploaded, "uploads_left", rep.UploadsLeft)
		case err != nil:
			failures++
			wait, floor = e.retryWait(err, failures)
			e.log.Info("sync failed; will retry", "err", err, "retry_in", wait.Round(time.Millisecond), "failures", failures)
		default:
			failures, upFailures = 0, 0
			wait = e.cfg.Interval
			level := slog.LevelDebug // an idle sync is not news
			if rep.Sent > 0 || rep.Pulled > 0 || rep.Resynced {
				level = slog.LevelInfo
			}
			if rep.Uploaded > 0 || rep.BytesSent > 0 {
				level = slog.LevelInfo
			}
			e.log.Log(ctx, level, "synced", "sent", rep.Sent, "delivered", rep.Delivered, "conflicts", rep.Conflicts,
				"rejected", rep.Rejected, "retry", rep.Retry, "pulled", rep.Pulled,
				"uploaded", rep.Uploaded, "bytes_sent", rep.BytesSent, "uploads_left", rep.UploadsLeft)
			e.maybeReclaim(ctx)
			if rep.yielded {
				// Uploads stopped for ops saved meanwhile: send them,
				// then go on with the uploads.
				wait = 0
			}
			if rep.Retry > 0 {
				// Some ops were answered "not now" (an earlier op on their
				// record was not there yet): try again soon, not at the
				// next interval.
				wait = min(wait, e.backoff(1))
			}
		}
		start := time.Now()
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		case <-e.kick:
			timer.Stop()
			if e.reauth.Swap(false) {
				failures, upFailures = 0, 0 // enrolled again: sync now
			}
			if failures > 0 || floor > 0 { // honour the backoff after a failure, and a server's Retry-After
				d := floor - time.Since(start)
				if failures > 0 {
					d = max(d, e.backoff(failures))
				}
				t := time.NewTimer(max(d, 0))
				if err := e.waitUnlessEnrolled(ctx, t); err != nil {
					return err
				}
			}
		}
	}
}

// waitUnlessEnrolled waits for t, or less when Enroll runs meanwhile: a
// new token deserves a sync at once. Saves meanwhile are sent when it
// ends.
func (e *Engine) waitUnlessEnrolled(ctx context.Context, t *time.Timer) error {
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		case <-e.kick:
			if e.reauth.Swap(false) {
				return nil
			}
		}
	}
}

// retryWait is how long Run waits after failure number n in a row
// (1-based), and the part of that wait a Save cannot cut short: a
// refused token waits at least the interval (only a new enrolment
// helps), and a server that asked for a wait (Retry-After) gets at
// least that.
func (e *Engine) retryWait(err error, n int) (wait, floor time.Duration) {
	wait = e.backoff(n)
	if IsAuthRefusal(err) {
		wait = max(wait, e.cfg.Interval)
		floor = wait
	}
	if ra := RetryAfter(err); ra > 0 {
		wait, floor = max(wait, ra), max(floor, ra)
	}
	return wait, floor
}

// backoff is the delay before retry number n (1-based): full jitter over
// an exponentially growing window, capped at MaxBackoff.
func (e *Engine) backoff(n int) time.Duration {
	window := e.cfg.MinBackoff << min(n-1, 30)
	if window <= 0 || window > e.cfg.MaxBackoff {
		window = e.cfg.MaxBackoff
	}
	return e.cfg.MinBackoff/2 + time.Duration(rand.Int64N(int64(window)))
}
