package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/tenant"
)

// cheapArgon keeps password and code hashing fast in tests.
var cheapArgon = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// accessWorld is a real front (identity store, one store per
// organisation) served over loopback HTTP, with a movable clock.
type accessWorld struct {
	t      *testing.T
	url    string
	front  *tenant.Front
	offset atomic.Int64 // added to the wall clock, in nanoseconds
	seq    map[string]int64
}

func newAccessWorld(t *testing.T) *accessWorld {
	t.Helper()
	w := &accessWorld{t: t, seq: map[string]int64{}}
	now := func() time.Time { return time.Now().Add(time.Duration(w.offset.Load())) }
	front, err := tenant.Open(context.Background(), tenant.Config{
		Dir:           t.TempDir(),
		Identity:      authsqlite.Config{Now: now, PasswordParams: cheapArgon, CodeParams: cheapArgon},
		PrincipalRate: auth.Rate{PerSecond: 10000, Burst: 10000},
		AddressRate:   auth.Rate{PerSecond: 10000, Burst: 10000},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(front)
	t.Cleanup(func() {
		ts.Close()
		if err := front.Close(); err != nil {
			t.Error(err)
		}
	})
	w.url, w.front = ts.URL, front
	return w
}

// enrol makes a user's device and returns its token.
func (w *accessWorld) enrol(org, user, device string) string {
	w.t.Helper()
	ctx := context.Background()
	code, err := w.front.Identity().IssueEnrolment(ctx, org, user, "")
	if err != nil {
		w.t.Fatal(err)
	}
	var resp protocol.EnrollResponse
	w.call("", http.MethodPost, protocol.PathEnroll, protocol.EnrollRequest{Code: code.Code, DeviceName: user + "'s tablet", Device: device}, http.StatusOK, "", &resp)
	return resp.Token
}

// call sends one request and checks its status and error code; out, if
// given, receives a 200 body.
func (w *accessWorld) call(token, method, path string, body any, wantStatus int, wantCode string, out any) {
	w.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			w.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, w.url+path, rd)
	if err != nil {
		w.t.Fatal(err)
	}
	req.Header.Set(protocol.VersionHeader, strconv.Itoa(protocol.Version))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	if resp.StatusCode != wantStatus {
		w.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, data)
	}
	if wantCode != "" {
		var eb protocol.ErrorBody
		if err := json.Unmarshal(data, &eb); err != nil || eb.Error.Code != wantCode {
			w.t.Fatalf("%s %s: body %s, want code %s", method, path, data, wantCode)
		}
		return
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			w.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// push sends one op for device and returns its result.
func (w *accessWorld) push(token, device, typ, id, kind string, base int64, fields map[string]any) protocol.Result {
	w.t.Helper()
	w.seq[device]++
	op := protocol.Op{ID: uuid.Must(uuid.NewV7()).String(), Seq: w.seq[device], Type: typ, Entity: id, Kind: kind, Base: base,
		Fields: rawFields(w.t, fields), At: time.Now().UnixMilli()}
	var resp protocol.PushResponse
	w.call(token, http.MethodPost, protocol.PathPush, protocol.PushRequest{Device: device, Ops: []protocol.Op{op}}, http.StatusOK, "", &resp)
	if len(resp.Results) != 1 {
		w.t.Fatalf("push: %d results", len(resp.Results))
	}
	return resp.Results[0]
}

// pull reads the whole feed after cursor and returns it and the next
// cursor.
func (w *accessWorld) pull(token, cursor string) ([]protocol.Record, string) {
	w.t.Helper()
	var all []protocol.Record
	for {
		var resp protocol.ChangesResponse
		w.call(token, http.MethodGet, protocol.PathChanges+"?limit=2&cursor="+cursor, nil, http.StatusOK, "", &resp)
		all = append(all, resp.Changes...)
		cursor = resp.Cursor
		if !resp.More {
			return all, cursor
		}
	}
}

// state is a fingerprint of an organisation's records: any change to
// any record moves the feed's highest position.
func (w *accessWorld) state(org string) int64 {
	w.t.Helper()
	_, st, err := w.front.Org(org)
	if err != nil {
		w.t.Fatal(err)
	}
	_, max, err := st.Changes(context.Background(), 0, 1)
	if err != nil {
		w.t.Fatal(err)
	}
	return max
}

// unchanged runs fn and fails if it changed any record of org.
func (w *accessWorld) unchanged(org string, fn func()) {
	w.t.Helper()
	before := w.state(org)
	fn()
	if after := w.state(org); after != before {
		w.t.Fatalf("a refused request changed the store of %s (feed %d → %d)", org, before, after)
	}
}

func (w *accessWorld) record(org, typ, id string) (fieldsync.Record, bool) {
	w.t.Helper()
	_, st, err := w.front.Org(org)
	if err != nil {
		w.t.Fatal(err)
	}
	rec, err := st.Record(context.Background(), typ, id)
	if fieldsync.ErrorCode(err) == fieldsync.ENotFound {
		return rec, false
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return rec, true
}

func rawFields(t *testing.T, fields map[string]any) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range fields {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = b
	}
	return out
}

func feedIDs(recs []protocol.Record) map[string]protocol.Record {
	m := map[string]protocol.Record{}
	for _, r := range recs {
		m[r.ID] = r
	}
	return m
}

// TestAccessMatrix checks, over HTTP against the real front, that each
// principal reaches what the access rules allow and nothing else: every
// refusal has the documented status and code and changes nothing.
func TestAccessMatrix(t *testing.T) {
	w := newAccessWorld(t)
	ctx := context.Background()
	ids := w.front.Identity()
	for _, org := range []string{"acme", "other"} {
		if _, err := ids.CreateOrg(ctx, org); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []struct {
		org, name string
		role      auth.Role
		pw        string
	}{
		{"acme", "ana", auth.RoleFieldWorker, ""},
		{"acme", "bob", auth.RoleFieldWorker, ""},
		{"acme", "dora", auth.RoleDispatcher, "dora-password-1"},
		{"other", "olga", auth.RoleFieldWorker, ""},
	} {
		if _, err := ids.CreateUser(ctx, u.org, u.name, u.role, u.pw); err != nil {
			t.Fatal(err)
		}
	}
	ana := w.enrol("acme", "ana", "dev-ana")
	bob := w.enrol("acme", "bob", "dev-bob")
	olga := w.enrol("other", "olga", "dev-olga")
	var login protocol.LoginResponse
	w.call("", http.MethodPost, protocol.PathLogin, protocol.LoginRequest{Org: "acme", User: "dora", Password: "dora-password-1"}, http.StatusOK, "", &login)
	dora := login.Token

	t.Run("enrolment codes come from the office, for its own users", func(t *testing.T) {
		w.unchanged("acme", func() {
			w.call(ana, http.MethodPost, protocol.PathEnrolments, protocol.EnrolmentRequest{User: "ana"}, http.StatusForbidden, "forbidden", nil)
			w.call("", http.MethodPost, protocol.PathEnrolments, protocol.EnrolmentRequest{User: "ana"}, http.StatusUnauthorized, "token_missing", nil)
			w.call(dora, http.MethodPost, protocol.PathEnrolments, protocol.EnrolmentRequest{User: "olga"}, http.StatusNotFound, "not_found", nil)
		})
		var code protocol.EnrolmentResponse
		w.call(dora, http.MethodPost, protocol.PathEnrolments, protocol.EnrolmentRequest{User: "ana"}, http.StatusOK, "", &code)
		if code.Code == "" || code.User != "ana" || code.Org != "acme" || !code.Expires.After(time.Now()) {
			t.Fatalf("enrolment answer %+v", code)
		}
		var dev protocol.EnrollResponse
		w.call("", http.MethodPost, protocol.PathEnroll, protocol.EnrollRequest{Code: code.Code, DeviceName: "ana's phone"}, http.StatusOK, "", &dev)
		if dev.User != "ana" || dev.Org != "acme" || dev.Token == "" {
			t.Fatalf("enrolled with the office's code: %+v", dev)
		}
		w.call("", http.MethodPost, protocol.PathEnroll, protocol.EnrollRequest{Code: code.Code, DeviceName: "again"}, http.StatusUnauthorized, "enrolment_invalid", nil)
	})

	// The office makes one work order for each worker.
	create := func(assignee string) string {
		var c protocol.Created
		w.call(dora, http.MethodPost, protocol.PathRecords+"work_order",
			protocol.EditRequest{Fields: rawFields(t, map[string]any{"title": "for " + assignee, "assignee": assignee})}, http.StatusOK, "", &c)
		if c.Result.Status != string(fieldsync.StatusApplied) {
			t.Fatalf("office create: %+v", c.Result)
		}
		return c.ID
	}
	recA, recB := create("ana"), create("bob")
	// Olga, in another organisation, creates one by push: it is hers.
	olgaRec := uuid.Must(uuid.NewV7()).String()
	if res := w.push(olga, "dev-olga", "work_order", olgaRec, "create", 0, map[string]any{"title": "olga's"}); res.Status != "applied" {
		t.Fatalf("olga's create: %+v", res)
	}
	if rec, ok := w.record("other", "work_order", olgaRec); !ok || string(rec.Fields["assignee"]) != `"olga"` {
		t.Fatalf("a worker's own create is not assigned to them: %+v", rec.Fields)
	}
	anaCursor := ""

	t.Run("own record allowed", func(t *testing.T) {
		var h protocol.RecordHistory
		w.call(ana, http.MethodGet, protocol.PathRecords+"work_order/"+recA, nil, http.StatusOK, "", &h)
		if h.Record.ID != recA {
			t.Fatalf("got %s", h.Record.ID)
		}
		if res := w.push(ana, "dev-ana", "work_order", recA, "update", 1, map[string]any{"title": "seen"}); res.Status != "applied" {
			t.Fatalf("own update: %+v", res)
		}
	})
	t.Run("another worker's record: read", func(t *testing.T) {
		w.unchanged("acme", func() {
			w.call(ana, http.MethodGet, protocol.PathRecords+"work_order/"+recB, nil, http.StatusNotFound, "not_found", nil)
		})
	})
	t.Run("another worker's record: push update", func(t *testing.T) {
		w.unchanged("acme", func() {
			res := w.push(ana, "dev-ana", "work_order", recB, "update", 1, map[string]any{"title": "mine now"})
			if res.Status != "rejected" || res.Code != "not_found" {
				t.Fatalf("result %+v, want rejected not_found", res)
			}
		})
		if rec, _ := w.record("acme", "work_order", recB); string(rec.Fields["title"]) != `"for bob"` {
			t.Fatalf("bob's record changed: %s", rec.Fields["title"])
		}
	})
	t.Run("another worker's record: pull", func(t *testing.T) {
		var feed []protocol.Record
		feed, anaCursor = w.pull(ana, "")
		got := feedIDs(feed)
		if _, ok := got[recB]; ok {
			t.Fatal("bob's record is in ana's feed")
		}
		if r, ok := got[recA]; !ok || r.Gone != "" {
			t.Fatalf("ana's own record missing from her feed: %+v", got)
		}
	})
	t.Run("another worker's op", func(t *testing.T) {
		var h protocol.RecordHistory
		w.call(dora, http.MethodGet, protocol.PathRecords+"work_order/"+recB, nil, http.StatusOK, "", &h)
		if len(h.Ops) == 0 {
			t.Fatal("no ops on bob's record")
		}
		w.call(ana, http.MethodGet, protocol.PathOps+h.Ops[0].Op.ID, nil, http.StatusNotFound, "not_found", nil)
		w.call(dora, http.MethodGet, protocol.PathOps+h.Ops[0].Op.ID, nil, http.StatusOK, "", nil)
		// Ana's own op on bob's record was rejected, and is still hers to read.
		for _, e := range h.Ops {
			if e.Op.Device == "dev-ana" {
				w.call(ana, http.MethodGet, protocol.PathOps+e.Op.ID, nil, http.StatusOK, "", nil)
			}
		}
	})
	t.Run("another organisation's record", func(t *testing.T) {
		w.unchanged("other", func() {
			w.call(ana, http.MethodGet, protocol.PathRecords+"work_order/"+olgaRec, nil, http.StatusNotFound, "not_found", nil)
			res := w.push(ana, "dev-ana", "work_order", olgaRec, "update", 1, map[string]any{"title": "x"})
			if res.Status != "rejected" || res.Code != "record_missing" {
				t.Fatalf("result %+v, want rejected record_missing (ana's store has no such record)", res)
			}
		})
		feed, _ := w.pull(ana, "")
		if _, ok := feedIDs(feed)[olgaRec]; ok {
			t.Fatal("another organisation's record is in ana's feed")
		}
	})
	t.Run("server-owned field from a device", func(t *testing.T) {
		w.unchanged("acme", func() {
			res := w.push(ana, "dev-ana", "work_order", recA, "update", 2, map[string]any{"assignee": "ana2"})
			if res.Status != "rejected" || res.Code != "server_owned_field" {
				t.Fatalf("result %+v, want rejected server_owned_field", res)
			}
		})
	})
	t.Run("another device in the batch", func(t *testing.T) {
		w.unchanged("acme", func() {
			op := protocol.Op{ID: uuid.Must(uuid.NewV7()).String(), Seq: 1, Type: "work_order", Entity: recB, Kind: "update", Base: 1,
				Fields: rawFields(t, map[string]any{"title": "x"}), At: time.Now().UnixMilli()}
			w.call(ana, http.MethodPost, protocol.PathPush, protocol.PushRequest{Device: "dev-bob", Ops: []protocol.Op{op}}, http.StatusForbidden, "forbidden", nil)
		})
	})
	t.Run("dispatcher endpoint with a worker token", func(t *testing.T) {
		w.unchanged("acme", func() {
			w.call(ana, http.MethodPatch, protocol.PathRecords+"work_order/"+recA,
				protocol.EditRequest{Base: 2, Fields: rawFields(t, map[string]any{"status": "closed"})}, http.StatusForbidden, "forbidden", nil)
			w.call(ana, http.MethodPost, protocol.PathRecords+"work_order",
				protocol.EditRequest{Fields: rawFields(t, map[string]any{"title": "x"})}, http.StatusForbidden, "forbidden", nil)
		})
	})
	t.Run("no token", func(t *testing.T) {
		w.unchanged("acme", func() {
			w.call("", http.MethodGet, protocol.PathRecords+"work_order/"+recA, nil, http.StatusUnauthorized, "token_missing", nil)
		})
	})
	t.Run("forged token", func(t *testing.T) {
		var b [32]byte
		rand.Read(b[:])
		forged := "fsd_" + base64.RawURLEncoding.EncodeToString(b[:])
		w.unchanged("acme", func() {
			w.call(forged, http.MethodGet, protocol.PathRecords+"work_order/"+recA, nil, http.StatusUnauthorized, "token_invalid", nil)
			w.call(forged, http.MethodPost, protocol.PathPush, protocol.PushRequest{Device: "dev-ana"}, http.StatusUnauthorized, "token_invalid", nil)
		})
	})
	t.Run("revoked token", func(t *testing.T) {
		if err := ids.RevokeDevice(ctx, "acme", "dev-bob"); err != nil {
			t.Fatal(err)
		}
		w.unchanged("acme", func() {
			w.call(bob, http.MethodGet, protocol.PathRecords+"work_order/"+recB, nil, http.StatusUnauthorized, "token_revoked", nil)
			op := protocol.Op{ID: uuid.Must(uuid.NewV7()).String(), Seq: 1, Type: "work_order", Entity: recB, Kind: "update", Base: 1,
				Fields: rawFields(t, map[string]any{"title": "x"}), At: time.Now().UnixMilli()}
			w.call(bob, http.MethodPost, protocol.PathPush, protocol.PushRequest{Device: "dev-bob", Ops: []protocol.Op{op}}, http.StatusUnauthorized, "token_revoked", nil)
		})
	})
	t.Run("reassignment tells the old worker to drop it", func(t *testing.T) {
		rec, _ := w.record("acme", "work_order", recA)
		var res protocol.Result
		w.call(dora, http.MethodPatch, protocol.PathRecords+"work_order/"+recA,
			protocol.EditRequest{Base: rec.Version, Fields: rawFields(t, map[string]any{"assignee": "bob"})}, http.StatusOK, "", &res)
		if res.Status != "applied" {
			t.Fatalf("reassign: %+v", res)
		}
		feed, next := w.pull(ana, anaCursor)
		got, ok := feedIDs(feed)[recA]
		if !ok || got.Gone != protocol.GoneUnassigned || len(got.Fields) != 0 {
			t.Fatalf("ana's feed after reassignment: %+v, want %s gone (unassigned) with no fields", feed, recA)
		}
		anaCursor = next
		w.unchanged("acme", func() {
			w.call(ana, http.MethodGet, protocol.PathRecords+"work_order/"+recA, nil, http.StatusNotFound, "not_found", nil)
			res := w.push(ana, "dev-ana", "work_order", recA, "update", rec.Version+1, map[string]any{"title": "still mine?"})
			if res.Status != "rejected" || res.Code != "not_found" {
				t.Fatalf("result %+v, want rejected not_found", res)
			}
		})
		// From the beginning, the feed still says gone: a device that
		// never pulled in between learns it too.
		feed, _ = w.pull(ana, "")
		if got := feedIDs(feed)[recA]; got.Gone != protocol.GoneUnassigned {
			t.Fatalf("ana's full feed: %+v", got)
		}
		// Assigned back, she sees it whole again.
		rec, _ = w.record("acme", "work_order", recA)
		w.call(dora, http.MethodPatch, protocol.PathRecords+"work_order/"+recA,
			protocol.EditRequest{Base: rec.Version, Fields: rawFields(t, map[string]any{"assignee": "ana"})}, http.StatusOK, "", &res)
		feed, _ = w.pull(ana, anaCursor)
		if got := feedIDs(feed)[recA]; got.Gone != "" || string(got.Fields["assignee"]) != `"ana"` {
			t.Fatalf("ana's feed after assigning back: %+v", got)
		}
	})
	t.Run("expired session", func(t *testing.T) {
		w.call(dora, http.MethodGet, protocol.PathRecords+"work_order/"+recB, nil, http.StatusOK, "", nil)
		w.offset.Store(int64(13 * time.Hour))
		defer w.offset.Store(0)
		w.unchanged("acme", func() {
			w.call(dora, http.MethodGet, protocol.PathRecords+"work_order/"+recB, nil, http.StatusUnauthorized, "token_expired", nil)
			w.call(dora, http.MethodPatch, protocol.PathRecords+"work_order/"+recB,
				protocol.EditRequest{Base: 1, Fields: rawFields(t, map[string]any{"status": "closed"})}, http.StatusUnauthorized, "token_expired", nil)
		})
	})
}

// TestSelfSignedPinned serves the front over TLS with the self-signed
// pair and checks that a client pinning its fingerprint connects, and
// one pinning another does not.
func TestSelfSignedPinned(t *testing.T) {
	dir := t.TempDir()
	cert, err := tenant.SelfSigned(dir, []string{"fieldsync.test"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := tenant.SelfSigned(dir, []string{"fieldsync.test"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cert.Certificate[0], again.Certificate[0]) {
		t.Fatal("the self-signed certificate was made again instead of kept")
	}
	front, err := tenant.Open(context.Background(), tenant.Config{Dir: dir, Identity: authsqlite.Config{PasswordParams: cheapArgon, CodeParams: cheapArgon}})
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	ts := httptest.NewUnstartedServer(front)
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ts.StartTLS()
	defer ts.Close()

	get := func(pin string) error {
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, VerifyPeerCertificate: tenant.PinnedVerifier(pin), MinVersion: tls.VersionTLS12,
		}}}
		resp, err := c.Get(ts.URL + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("healthz: %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(tenant.Fingerprint(cert.Certificate[0])); err != nil {
		t.Fatalf("pinned client refused the server: %v", err)
	}
	other, err := tenant.SelfSigned(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(tenant.Fingerprint(other.Certificate[0])); err == nil {
		t.Fatal("a client pinning another certificate connected")
	}
	// Ordinary verification refuses the self-signed certificate.
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(ts.URL + "/healthz")
	if err == nil {
		resp.Body.Close()
		t.Fatal("a client without the pin accepted a self-signed certificate")
	}
}
