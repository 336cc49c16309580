// Package server is the sync service as an http.Handler: batched push with
// a result per op, pull of changes since a cursor, record and op lookups,
// and office edits. It applies ops through a fieldsync.Store and never
// imports a database driver.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/internal/gzpool"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/schema"
)

// Config configures a Server. Store is required; the zero value of every
// other field is the documented default.
type Config struct {
	Store  fieldsync.Store
	Schema *schema.Schema // default: the bundled work-order schema
	Logger *slog.Logger   // default: discard
	Now    func() time.Time
	// MaxBodyBytes caps a decompressed request body (default protocol.MaxBodyBytes).
	MaxBodyBytes int64
	// BlobDir is where attachment uploads and verified blobs are kept
	// (docs/attachments-server.md). Empty: the upload and blob endpoints
	// answer 503.
	BlobDir string
	// MaxAttachmentBytes caps one upload (default protocol.MaxAttachmentBytes).
	MaxAttachmentBytes int64
	// UploadExpiry is how long an unfinished upload may rest untouched
	// before it is removed (default DefaultUploadExpiry; negative: kept
	// for good).
	UploadExpiry time.Duration
	// Org is the organisation whose data Store holds; a request's
	// principal (auth.FromContext) must belong to it.
	Org string
	// RequireAuth refuses a request without a principal in its context
	// (token_missing). The multi-organisation front (package tenant)
	// always sets it. Left false, a request without a principal acts as
	// the system, with every right: only for a handler that is not
	// reachable from the network unauthenticated (package tests, the
	// explicit no-auth development mode).
	RequireAuth bool
}

// Server serves the /v1 sync API. It is safe for concurrent use.
type Server struct {
	store    fieldsync.Store
	schema   atomic.Pointer[schema.Schema]
	schemaMu sync.Mutex // serialises schema changes
	log      *slog.Logger
	now      func() time.Time
	max      int64
	mux      *http.ServeMux
	blobs    *blobStore // nil without Config.BlobDir
	org      string
	// requireAuth: see Config.RequireAuth.
	requireAuth bool

	prefetchMu sync.Mutex
	prefetched []*prefetchedPage // next pages of pulls under way, oldest first
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: Config.Store is required")
	}
	s := &Server{store: cfg.Store, log: cfg.Logger, now: cfg.Now, max: cfg.MaxBodyBytes, org: cfg.Org, requireAuth: cfg.RequireAuth}
	sch, err := s.initialSchema(cfg.Schema)
	if err != nil {
		return nil, err
	}
	s.schema.Store(sch)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.max <= 0 {
		s.max = protocol.MaxBodyBytes
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST "+protocol.PathPush, s.handlePush)
	s.mux.HandleFunc("GET "+protocol.PathChanges, s.handleChanges)
	s.mux.HandleFunc("GET "+protocol.PathRecords+"{type}/{id}", s.handleRecord)
	s.mux.HandleFunc("PATCH "+protocol.PathRecords+"{type}/{id}", s.handleEdit)
	s.mux.HandleFunc("POST "+protocol.PathRecords+"{type}", s.handleOfficeCreate)
	s.mux.HandleFunc("POST "+protocol.PathRecords+"{type}/{id}/settle", s.handleSettle)
	s.mux.HandleFunc("GET "+protocol.PathOps+"{id}", s.handleOp)
	s.mux.HandleFunc("GET "+protocol.PathInfo, s.handleInfo)
	s.mux.HandleFunc("GET "+protocol.PathSchema, s.handleGetSchema)
	s.mux.HandleFunc("PUT "+protocol.PathSchema, s.handlePutSchema)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	if err := s.initBlobs(cfg); err != nil {
		return nil, err
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := s.allowed(r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			s.writeError(w, r, fieldsync.Errorf(fieldsync.EMethodNotAllowed, "%s is not allowed on %s: use %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
			return
		}
		s.writeError(w, r, fieldsync.Errorf(fieldsync.ENotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return s, nil
}

// allowed returns the methods served on r's path, other than r's own: a
// request that only the catch-all route matched but another method would
// have is refused with 405 rather than 404.
func (s *Server) allowed(r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch} {
		if m == r.Method {
			continue
		}
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if v := r.Header.Get(protocol.VersionHeader); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < protocol.MinVersion || n > protocol.Version {
			s.writeError(w, r, fieldsync.Errorf(fieldsync.EUnsupportedVersion,
				"protocol version %q is not served here: this server speaks %d to %d", v, protocol.MinVersion, protocol.Version))
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// HTTPStatus returns the HTTP status for an error code (protocol.HTTPStatus).
func HTTPStatus(code fieldsync.Code) int { return protocol.HTTPStatus(code) }

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := fieldsync.ErrorCode(err)
	msg := fieldsync.ErrorMessage(err)
	status := HTTPStatus(code)
	if status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.log.Info("request refused", "method", r.Method, "path", r.URL.Path, "code", code, "msg", msg)
	}
	body := protocol.ErrorBody{Error: protocol.ErrorDetail{Code: string(code), Message: msg, Retryable: code.Retryable()}}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "2")
	case status == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "":
		w.Header().Set("Retry-After", "1")
	case code == fieldsync.ETokenMissing:
		w.Header().Set("WWW-Authenticate", `Bearer realm="fieldsync"`)
	case code == fieldsync.ETokenInvalid || code == fieldsync.ETokenExpired || code == fieldsync.ETokenRevoked:
		w.Header().Set("WWW-Authenticate", `Bearer realm="fieldsync", error="invalid_token"`)
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(&body)
}

// writeJSON answers v as JSON, compressed when the client accepts gzip.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.writeError(w, r, fieldsync.Errorf(fieldsync.EInternal, "encode the answer: %v", err))
		return
	}
	s.writeBody(w, r, append(body, '\n'))
}

// writeBody writes a JSON body already encoded, compressed when the
// client accepts gzip.
func (s *Server) writeBody(w http.ResponseWriter, r *http.Request, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Vary", "Accept-Encoding")
		zw := gzpool.Get(w)
		if _, err := zw.Write(body); err != nil {
			s.log.Warn("write response", "err", err)
		}
		zw.Close()
		gzpool.Put(zw)
		return
	}
	if _, err := w.Write(body); err != nil {
		s.log.Warn("write response", "err", err)
	}
}

func (s *Server) readBody(r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, fieldsync.Errorf(fieldsync.EUnsupportedMedia, "content type %q is not accepted: send application/json", ct)
		}
	}
	return protocol.ReadBody(r.Body, r.Header.Get("Content-Encoding"), s.max)
}

// readDecoded reads a request body and decodes it; on failure it answers
// with the error and reports false.
func readDecoded[T any](s *Server, w http.ResponseWriter, r *http.Request, decode func([]byte) (*T, error)) (*T, bool) {
	data, err := s.readBody(r)
	if err == nil {
		var v *T
		if v, err = decode(data); err == nil {
			return v, true
		}
	}
	s.writeError(w, r, err)
	return nil, false
}

func (s *Server) requireVersion(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get(protocol.VersionHeader) == "" {
		s.writeError(w, r, fieldsync.Errorf(fieldsync.EUnsupportedVersion, "name the protocol version in the %s header", protocol.VersionHeader))
		return false
	}
	return true
}

func (s *Server) handlePush(w http.ResponseWriter, r *http.Request) {
	if !s.requireVersion(w, r) {
		return
	}
	c, ok := s.guard(w, r, auth.ActionPush)
	if !ok {
		return
	}
	req, ok := readDecoded(s, w, r, protocol.DecodePush)
	if !ok {
		return
	}
	if req.Device == OfficeDevice {
		s.writeError(w, r, fieldsync.Errorf(fieldsync.EInvalidRequest, "device id %q is reserved", OfficeDevice))
		return
	}
	if err := s.decide(c, auth.Request{Action: auth.ActionPush, DeviceID: req.Device}); err != nil {
		s.writeError(w, r, err)
		return
	}
	ops := make([]fieldsync.Op, len(req.Ops))
	for i := range req.Ops {
		ops[i] = protocol.ToOp(&req.Ops[i], req.Device)
	}
	results, err := s.Apply(r.Context(), ops)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := protocol.PushResponse{Results: make([]protocol.Result, len(results))}
	counts := map[fieldsync.ResultStatus]int{}
	for i := range results {
		resp.Results[i] = protocol.FromResult(&results[i])
		counts[results[i].Status]++
	}
	s.log.Info("push", "device", req.Device, "ops", len(ops), "applied", counts[fieldsync.StatusApplied],
		"duplicate", counts[fieldsync.StatusDuplicate], "rejected", counts[fieldsync.StatusRejected],
		"conflict", counts[fieldsync.StatusConflict], "retry", counts[fieldsync.StatusRetry])
	s.writeJSON(w, r, &resp)
}

// Apply decides a batch of ops in order, in one transaction, and returns
// one result per op. A storage failure returns an error and nothing of
// the batch is kept.
//
// The sender is the principal in ctx (auth.NewContext): each op is
// decided by auth.Decide against the record as stored, inside the
// transaction, and a refusal is that op's rejected result (nothing of it
// applied; later ops go on); a field worker's new records are assigned
// to them. Without a principal, Apply acts as the system unless
// Config.RequireAuth is set (then it answers token_missing).
func (s *Server) Apply(ctx context.Context, ops []fieldsync.Op) ([]fieldsync.Result, error) {
	c, ok := auth.FromContext(ctx)
	who := caller{p: c, system: !ok}
	if !ok && s.requireAuth {
		return nil, fieldsync.Errorf(fieldsync.ETokenMissing, "this request needs a token: send Authorization: Bearer <token>")
	}
	by := opAuthor{check: s.pushCheckFor(who), creator: creatorOf(who)}
	results := make([]fieldsync.Result, len(ops))
	now := s.now().UTC()
	sch := s.schema.Load()
	err := s.store.Update(ctx, func(tx fieldsync.StoreTx) error {
		for i := range ops {
			res, err := applyOp(tx, sch, &ops[i], now, false, by)
			if err != nil {
				return err
			}
			results[i] = res
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

func (s *Server) handleChanges(w http.ResponseWriter, r *http.Request) {
	if !s.requireVersion(w, r) {
		return
	}
	c, ok := s.guard(w, r, auth.ActionPull)
	if !ok {
		return
	}
	q := r.URL.Query()
	cur, err := protocol.ParseCursor(q.Get("cursor"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	limit := 1000
	if v := q.Get("limit"); v != "" {
		limit, err = strconv.Atoi(v)
		if err != nil || limit < 1 || limit > protocol.MaxPullLimit {
			s.writeError(w, r, fieldsync.Errorf(fieldsync.EInvalidRequest, "limit: want 1 to %d", protocol.MaxPullLimit))
			return
		}
	}
	if cur.Epoch != "" && cur.Epoch != s.store.Epoch() {
		s.writeError(w, r, fieldsync.Errorf(fieldsync.ECursorInvalid,
			"this cursor is from another server history (epoch %s, server %s): start again from the beginning", cur.Epoch, s.store.Epoch()))
		return
	}
	if cur.Tag != "" {
		tag, ok, err := s.store.ChangeTag(r.Context(), cur.Seq)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if ok && tag != cur.Tag {
			s.writeError(w, r, fieldsync.Errorf(fieldsync.ECursorInvalid,
				"the server's change %d is not the one you saw: it was restored from a backup or replaced; start again from the beginning", cur.Seq))
			return
		}
	}
	recs, maxSeq, err := s.changes(r.Context(), cur.Seq, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if cur.Seq > maxSeq {
		s.writeError(w, r, fieldsync.Errorf(fieldsync.ECursorInvalid,
			"the server is behind your cursor (%d > %d): it was restored from a backup; start again from the beginning", cur.Seq, maxSeq))
		return
	}
	// The page is read whole and filtered for the caller: the cursor
	// moves past every record read, seen or not.
	resp := protocol.ChangesResponse{Changes: make([]protocol.Record, 0, len(recs))}
	next := protocol.Cursor{Epoch: s.store.Epoch(), Seq: cur.Seq}
	sch := s.schema.Load()
	for i := range recs {
		if e, ok := feedEntry(c, sch, &recs[i]); ok {
			resp.Changes = append(resp.Changes, e)
		}
		next.Seq = recs[i].Seq
	}
	if len(recs) > 0 {
		next.Tag, _, err = s.store.ChangeTag(r.Context(), next.Seq)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
	} else {
		next.Tag = cur.Tag
	}
	resp.Cursor = next.String()
	resp.More = next.Seq < maxSeq
	resp.HLC = int64(fieldsync.HLCFromTime(s.now()))
	if resp.More {
		s.prefetch(next.Seq, limit)
	}
	body, err := protocol.AppendChangesResponse(make([]byte, 0, 256*len(resp.Changes)+128), &resp)
	if err != nil {
		s.writeError(w, r, fieldsync.Errorf(fieldsync.EInternal, "encode changes: %v", err))
		return
	}
	s.writeBody(w, r, body)
}

// A pull of many pages asks for the next page only once it has this one.
// The server reads that next page meanwhile, while this one is encoded,
// sent and decoded: it is used if asked for (same position and limit)
// and still current, and read again otherwise.
type prefetchedPage struct {
	after int64
	limit int
	done  chan struct{} // closed once read
	recs  []fieldsync.Record
	max   int64
	err   error
}

// maxPrefetched bounds the pages read ahead (one per pull under way).
const maxPrefetched = 4

// prefetch starts reading the page after `after` in the background.
func (s *Server) prefetch(after int64, limit int) {
	p := &prefetchedPage{after: after, limit: limit, done: make(chan struct{})}
	s.prefetchMu.Lock()
	if len(s.prefetched) >= maxPrefetched {
		s.prefetched = s.prefetched[1:]
	}
	s.prefetched = append(s.prefetched, p)
	s.prefetchMu.Unlock()
	go func() {
		defer close(p.done)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p.recs, p.max, p.err = s.store.Changes(ctx, after, limit)
	}()
}

// changes returns the page after `after`: the one read ahead when there
// is one and nothing changed since it was read, else a fresh read. Every
// change moves a record to a feed position above all others, so "no
// record past the page's highest position" means the page is current.
func (s *Server) changes(ctx context.Context, after int64, limit int) ([]fieldsync.Record, int64, error) {
	var p *prefetchedPage
	s.prefetchMu.Lock()
	for i, q := range s.prefetched {
		if q.after == after && q.limit == limit {
			p = q
			s.prefetched = append(s.prefetched[:i:i], s.prefetched[i+1:]...)
			break
		}
	}
	s.prefetchMu.Unlock()
	if p != nil {
		select {
		case <-p.done:
			if p.err == nil {
				newer, max, err := s.store.Changes(ctx, p.max, 1)
				if err == nil && len(newer) == 0 && max == p.max {
					return p.recs, p.max, nil
				}
			}
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	return s.store.Changes(ctx, after, limit)
}

func (s *Server) handleRecord(w http.ResponseWriter, r *http.Request) {
	c, ok := s.guard(w, r, auth.ActionReadRecord)
	if !ok {
		return
	}
	typ, id := r.PathValue("type"), r.PathValue("id")
	rec, err := s.store.Record(r.Context(), typ, id)
	if err == nil {
		err = s.decide(c, recordRequest(s.schema.Load(), auth.ActionReadRecord, typ, &rec, true))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ops, err := s.store.RecordOps(r.Context(), typ, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := protocol.RecordHistory{Record: protocol.FromRecord(&rec)}
	for i := range ops {
		resp.Ops = append(resp.Ops, entryWire(&ops[i]))
	}
	s.writeJSON(w, r, &resp)
}

func entryWire(e *fieldsync.OpEntry) protocol.OpEntry {
	op := protocol.FromOp(&e.Op)
	op.Device = e.Op.DeviceID
	return protocol.OpEntry{Op: op, Result: protocol.FromResult(&e.Result), Received: e.ReceivedAt}
}

func (s *Server) handleOp(w http.ResponseWriter, r *http.Request) {
	c, ok := s.guard(w, r, auth.ActionReadOp)
	if !ok {
		return
	}
	e, err := s.store.OpEntry(r.Context(), r.PathValue("id"))
	if err == nil && !c.system && !(c.p.DeviceID != "" && c.p.DeviceID == e.Op.DeviceID) {
		// A device may read its own ops; any other op is decided on its
		// record (a record that does not exist reaches only the office).
		rec, rerr := s.store.Record(r.Context(), e.Op.EntityType, e.Op.EntityID)
		exists := rerr == nil
		if rerr != nil && fieldsync.ErrorCode(rerr) != fieldsync.ENotFound {
			err = rerr
		} else {
			err = s.decide(c, recordRequest(s.schema.Load(), auth.ActionReadOp, e.Op.EntityType, &rec, exists))
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wire := entryWire(&e)
	s.writeJSON(w, r, &wire)
}

// Edit applies an office edit of a record's fields at base version base,
// through the same rules as a device's op.
func (s *Server) Edit(ctx context.Context, typ, id string, base int64, fields map[string]json.RawMessage) (fieldsync.Result, error) {
	return s.office(ctx, fieldsync.KindUpdate, typ, id, base, fields)
}

// Create makes a record from the office (a dispatcher), with a new id,
// and returns the result and the id.
func (s *Server) Create(ctx context.Context, typ string, fields map[string]json.RawMessage) (fieldsync.Result, string, error) {
	id := uuid.Must(uuid.NewV7()).String()
	res, err := s.office(ctx, fieldsync.KindCreate, typ, id, 0, fields)
	return res, id, err
}

// Settle settles a conflict on one field from the office, through the same
// rules as a device's settle op: once, recorded with who and why.
func (s *Server) Settle(ctx context.Context, typ, id, field string, st fieldsync.Settle) (fieldsync.Result, error) {
	raw, err := json.Marshal(st)
	if err != nil {
		return fieldsync.Result{}, err
	}
	return s.office(ctx, fieldsync.KindSettle, typ, id, 0, map[string]json.RawMessage{field: raw})
}

func (s *Server) handleSettle(w http.ResponseWriter, r *http.Request) {
	c, ok := s.guard(w, r, auth.ActionSettle)
	if !ok {
		return
	}
	req, ok := readDecoded(s, w, r, protocol.DecodeSettle)
	if !ok {
		return
	}
	res, err := s.Settle(r.Context(), r.PathValue("type"), r.PathValue("id"), req.Field,
		fieldsync.Settle{Conflict: req.Conflict, Choice: req.Choice, Value: req.Value, Op: req.Op, Note: req.Note})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.logOffice(c, "office settle", r, &res)
	wire := protocol.FromResult(&res)
	s.writeJSON(w, r, &wire)
}

func (s *Server) office(ctx context.Context, kind fieldsync.OpKind, typ, id string, base int64, fields map[string]json.RawMessage) (fieldsync.Result, error) {
	var res fieldsync.Result
	now := s.now().UTC()
	err := s.store.Update(ctx, func(tx fieldsync.StoreTx) error {
		seq, err := tx.NextNumber("seq:"+OfficeDevice, 1)
		if err != nil {
			return err
		}
		op := fieldsync.Op{
			ID: uuid.Must(uuid.NewV7()).String(), DeviceID: OfficeDevice, Seq: seq, EntityType: typ, EntityID: id,
			Kind: kind, BaseVersion: base, Fields: fields, LocalTime: now,
		}
		res, err = applyOp(tx, s.schema.Load(), &op, now, true, opAuthor{})
		return err
	})
	return res, err
}

func (s *Server) handleOfficeCreate(w http.ResponseWriter, r *http.Request) {
	c, ok := s.guard(w, r, auth.ActionOfficeCreate)
	if !ok {
		return
	}
	req, ok := readDecoded(s, w, r, protocol.DecodeEdit)
	if !ok {
		return
	}
	if req.Base != 0 {
		s.writeError(w, r, fieldsync.Errorf(fieldsync.EInvalidRequest, "base: a create has no base version"))
		return
	}
	res, id, err := s.Create(r.Context(), r.PathValue("type"), req.Fields)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.logOffice(c, "office create", r, &res, "id", id)
	s.writeJSON(w, r, &protocol.Created{ID: id, Result: protocol.FromResult(&res)})
}

func (s *Server) handleEdit(w http.ResponseWriter, r *http.Request) {
	c, ok := s.guard(w, r, auth.ActionOfficeEdit)
	if !ok {
		return
	}
	req, ok := readDecoded(s, w, r, protocol.DecodeEdit)
	if !ok {
		return
	}
	res, err := s.Edit(r.Context(), r.PathValue("type"), r.PathValue("id"), req.Base, req.Fields)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.logOffice(c, "office edit", r, &res)
	wire := protocol.FromResult(&res)
	s.writeJSON(w, r, &wire)
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.guard(w, r, auth.ActionInfo); !ok {
		return
	}
	s.writeJSON(w, r, &protocol.Info{
		Protocol: protocol.Version, MinProtocol: protocol.MinVersion,
		Epoch: s.store.Epoch(), Types: s.schema.Load().TypeNames(),
	})
}

// schemaStore is an optional Store capability: keeping the schema in use,
// so a restart or another instance applies the same rules and a breaking
// change is noticed.
type schemaStore interface {
	LoadSchema(ctx context.Context) ([]byte, bool, error)
	SaveSchema(ctx context.Context, doc []byte) error
}

// initialSchema picks the schema at start: the configured one (refused if
// it breaks the stored one), else the stored one, else the bundled default.
func (s *Server) initialSchema(configured *schema.Schema) (*schema.Schema, error) {
	ss, ok := s.store.(schemaStore)
	if !ok {
		if configured == nil {
			return schema.Default(), nil
		}
		return configured, nil
	}
	ctx := context.Background()
	doc, found, err := ss.LoadSchema(ctx)
	if err != nil {
		return nil, fmt.Errorf("load schema: %w", err)
	}
	var stored *schema.Schema
	if found {
		if stored, err = schema.Parse(doc); err != nil {
			return nil, fmt.Errorf("stored schema: %w", err)
		}
	}
	next := configured
	switch {
	case next == nil && stored != nil:
		return stored, nil
	case next == nil:
		next = schema.Default()
	case stored != nil:
		if err := schema.Compatible(stored, next); err != nil {
			return nil, err
		}
	}
	if err := ss.SaveSchema(ctx, next.JSON()); err != nil {
		return nil, fmt.Errorf("save schema: %w", err)
	}
	return next, nil
}

// Schema returns the schema in use.
func (s *Server) Schema() *schema.Schema { return s.schema.Load() }

// SetSchema replaces the schema on the running server when the change is
// compatible (new types, new optional fields, new enum values, wider
// limits); a breaking change is refused with every reason.
func (s *Server) SetSchema(ctx context.Context, next *schema.Schema) error {
	s.schemaMu.Lock()
	defer s.schemaMu.Unlock()
	if err := schema.Compatible(s.schema.Load(), next); err != nil {
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "%v", err)
	}
	if ss, ok := s.store.(schemaStore); ok {
		if err := ss.SaveSchema(ctx, next.JSON()); err != nil {
			return err
		}
	}
	s.schema.Store(next)
	s.log.Info("schema changed", "types", next.TypeNames())
	return nil
}

func (s *Server) handleGetSchema(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.guard(w, r, auth.ActionReadSchema); !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.schema.Load().JSON())
}

func (s *Server) handlePutSchema(w http.ResponseWriter, r *http.Request) {
	c, ok := s.guard(w, r, auth.ActionWriteSchema)
	if !ok {
		return
	}
	data, err := s.readBody(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	next, err := schema.Parse(data)
	if err != nil {
		s.writeError(w, r, fieldsync.Errorf(fieldsync.EInvalidRequest, "%v", err))
		return
	}
	if err := s.SetSchema(r.Context(), next); err != nil {
		s.writeError(w, r, err)
		return
	}
	if !c.system {
		s.log.Info("schema changed by", "user", c.p.User)
	}
	s.handleGetSchema(w, r)
}
