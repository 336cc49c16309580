package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// knownCodes is every published error code.
var knownCodes = map[fieldsync.Code]bool{
	fieldsync.EInvalidJSON: true, fieldsync.EInvalidRequest: true, fieldsync.ETooLarge: true,
	fieldsync.EUnsupportedVersion: true, fieldsync.EUnsupportedMedia: true, fieldsync.ENotFound: true,
	fieldsync.EMethodNotAllowed: true, fieldsync.ECursorInvalid: true, fieldsync.EUnavailable: true,
	fieldsync.EInternal: true, fieldsync.EUnknownEntityType: true, fieldsync.EUnknownField: true,
	fieldsync.EInvalidField: true, fieldsync.ERequiredField: true, fieldsync.EServerOwned: true,
	fieldsync.EAlreadyExists: true, fieldsync.ERecordMissing: true, fieldsync.ERecordDeleted: true,
	fieldsync.ESeqReused: true, fieldsync.EWaitingForEarlier: true, fieldsync.EFieldConflict: true,
	fieldsync.EAlreadySettled: true, fieldsync.ENoConflict: true,
	fieldsync.ETokenMissing: true, fieldsync.ETokenInvalid: true, fieldsync.ETokenExpired: true,
	fieldsync.ETokenRevoked: true, fieldsync.ELoginFailed: true, fieldsync.EEnrolmentInvalid: true,
	fieldsync.EEnrolmentExpired: true, fieldsync.EForbidden: true, fieldsync.ERateLimited: true,
}

// env is a server on a real SQLite file, served over loopback.
type env struct {
	st  *sqlite.Store
	srv *server.Server
	hs  *httptest.Server
	hc  *http.Client
}

func newEnv(t *testing.T, cfg server.Config) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Store = st
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	// No transparent gunzip: the tests look at what the server sent.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(hc.CloseIdleConnections)
	return &env{st: st, srv: srv, hs: hs, hc: hc}
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// request sends one request. Headers with an empty value are left out.
func (e *env) request(t *testing.T, method, path string, header map[string]string, body []byte) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.hs.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	return response{resp.StatusCode, resp.Header, data}
}

// apiHeaders are the headers of a well-formed API request.
func apiHeaders() map[string]string {
	return map[string]string{"Content-Type": "application/json", protocol.VersionHeader: strconv.Itoa(protocol.Version)}
}

func (e *env) get(t *testing.T, path string) response {
	t.Helper()
	return e.request(t, http.MethodGet, path, apiHeaders(), nil)
}

// decodeJSON strictly decodes an answer body into v.
func decodeJSON(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, data)
	}
}

// checkError checks that r is an error answer with status and code: a
// JSON error body whose code is known and maps to that status.
func checkError(t *testing.T, r response, status int, code fieldsync.Code) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	var b protocol.ErrorBody
	decodeJSON(t, r.body, &b)
	got := fieldsync.Code(b.Error.Code)
	if got != code {
		t.Fatalf("code %q, want %q (%s)", got, code, b.Error.Message)
	}
	if !knownCodes[got] || server.HTTPStatus(got) != status {
		t.Fatalf("code %q is unknown or not mapped to %d", got, status)
	}
	if b.Error.Message == "" || b.Error.Retryable != got.Retryable() {
		t.Fatalf("error detail %+v", b.Error)
	}
	if e := protocol.DecodeErrorBody(r.status, r.body); e.Code != code || e.Message != b.Error.Message {
		t.Fatalf("DecodeErrorBody = %+v", e)
	}
}

// snapshot sums up a store's tables: a request that was refused must
// leave every figure as it was.
type snapshot struct {
	Records, Ops, Counters     int64
	MaxSeq, Versions, Counted  int64
	Deleted, ReviewLen, Fields int64
}

func takeSnapshot(t testing.TB, st *sqlite.Store) snapshot {
	t.Helper()
	var s snapshot
	err := st.DB().QueryRow(`SELECT
		(SELECT count(*) FROM records), (SELECT count(*) FROM ops), (SELECT count(*) FROM counters),
		(SELECT coalesce(max(seq), 0) FROM records), (SELECT coalesce(sum(version), 0) FROM records),
		(SELECT coalesce(sum(value), 0) FROM counters), (SELECT coalesce(sum(deleted), 0) FROM records),
		(SELECT coalesce(sum(length(review)), 0) FROM records), (SELECT coalesce(sum(length(fields)), 0) FROM records)`).
		Scan(&s.Records, &s.Ops, &s.Counters, &s.MaxSeq, &s.Versions, &s.Counted, &s.Deleted, &s.ReviewLen, &s.Fields)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return s
}

// wop is an op to push, in wire form.
type wop = protocol.Op

func newOpID() string { return uuid.Must(uuid.NewV7()).String() }

func raw(f map[string]string) map[string]json.RawMessage {
	if f == nil {
		return nil
	}
	out := map[string]json.RawMessage{}
	for k, v := range f {
		out[k] = json.RawMessage(v)
	}
	return out
}

func createOp(seq int64, entity string, f map[string]string) wop {
	return wop{ID: newOpID(), Seq: seq, Type: "work_order", Entity: entity, Kind: "create", Fields: raw(f), At: 1720000000000}
}

func updateOp(seq, prev, base int64, entity string, f map[string]string) wop {
	return wop{ID: newOpID(), Seq: seq, Prev: prev, Type: "work_order", Entity: entity, Kind: "update", Base: base, Fields: raw(f), At: 1720000000000}
}

func pushBody(t testing.TB, device string, ops ...wop) []byte {
	t.Helper()
	data, err := json.Marshal(protocol.PushRequest{Device: device, Ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func gzipped(data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

// push sends ops as device and returns the results; the answer must be 200.
func (e *env) push(t *testing.T, device string, ops ...wop) []protocol.Result {
	t.Helper()
	r := e.request(t, http.MethodPost, protocol.PathPush, apiHeaders(), pushBody(t, device, ops...))
	if r.status != http.StatusOK {
		t.Fatalf("push: status %d: %s", r.status, r.body)
	}
	var resp protocol.PushResponse
	decodeJSON(t, r.body, &resp)
	if len(resp.Results) != len(ops) {
		t.Fatalf("%d results for %d ops", len(resp.Results), len(ops))
	}
	for i := range ops {
		if resp.Results[i].Op != ops[i].ID {
			t.Fatalf("result %d is for op %s, want %s", i, resp.Results[i].Op, ops[i].ID)
		}
	}
	return resp.Results
}

func (e *env) changes(t *testing.T, cursor string, limit int) protocol.ChangesResponse {
	t.Helper()
	path := protocol.PathChanges + "?cursor=" + cursor
	if limit > 0 {
		path += fmt.Sprintf("&limit=%d", limit)
	}
	r := e.get(t, path)
	if r.status != http.StatusOK {
		t.Fatalf("changes: status %d: %s", r.status, r.body)
	}
	var resp protocol.ChangesResponse
	decodeJSON(t, r.body, &resp)
	return resp
}

// edit sends an office edit and returns its result; the answer must be 200.
func (e *env) edit(t *testing.T, typ, id string, base int64, fields map[string]string) protocol.Result {
	t.Helper()
	body, err := json.Marshal(protocol.EditRequest{Base: base, Fields: raw(fields)})
	if err != nil {
		t.Fatal(err)
	}
	r := e.request(t, http.MethodPatch, protocol.PathRecords+typ+"/"+id, apiHeaders(), body)
	if r.status != http.StatusOK {
		t.Fatalf("edit: status %d: %s", r.status, r.body)
	}
	var res protocol.Result
	decodeJSON(t, r.body, &res)
	return res
}

// settlePath is the office settle endpoint of a record.
func settlePath(typ, id string) string { return protocol.PathRecords + typ + "/" + id + "/settle" }

// settle sends an office settlement and returns its result; the answer
// must be 200.
func (e *env) settle(t *testing.T, typ, id string, req protocol.SettleRequest) protocol.Result {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	r := e.request(t, http.MethodPost, settlePath(typ, id), apiHeaders(), body)
	if r.status != http.StatusOK {
		t.Fatalf("settle: status %d: %s", r.status, r.body)
	}
	var res protocol.Result
	decodeJSON(t, r.body, &res)
	return res
}

// settleOp is a device's settle op on one field of a work order.
func settleOp(seq, prev, base int64, entity, field string, st fieldsync.Settle) wop {
	v, err := json.Marshal(st)
	if err != nil {
		panic(err)
	}
	return wop{ID: newOpID(), Seq: seq, Prev: prev, Type: "work_order", Entity: entity, Kind: "settle", Base: base,
		Fields: map[string]json.RawMessage{field: v}, At: 1720000000000}
}

func (e *env) history(t *testing.T, typ, id string) protocol.RecordHistory {
	t.Helper()
	r := e.get(t, protocol.PathRecords+typ+"/"+id)
	if r.status != http.StatusOK {
		t.Fatalf("record: status %d: %s", r.status, r.body)
	}
	var h protocol.RecordHistory
	decodeJSON(t, r.body, &h)
	return h
}
