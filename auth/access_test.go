package auth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/schema"
)

// cheap are Argon2 parameters small enough for tests.
var cheap = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// clock is a test clock moved by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// record is what the stand-in organisation handler knows of a record.
type record struct {
	typ, assignee string
}

// orgHandler stands in for the sync server of one organisation: it
// answers each request by asking auth.Decide, with the facts a server
// has (the record's assignee, whether its type is shared reference data,
// the schema's server-owned fields), and serves only its own records.
type orgHandler struct {
	org     string
	records map[string]record // by id
	schema  *schema.Schema
}

// sharedType is the entity type the stand-in treats as shared reference
// data.
const sharedType = "site"

func (h *orgHandler) request(p auth.Principal, a auth.Action, id string) auth.Request {
	rec, ok := h.records[id]
	return auth.Request{Action: a, Org: h.org, RecordExists: ok, RecordAssignee: rec.assignee, Shared: ok && rec.typ == sharedType}
}

func (h *orgHandler) serverOwned(typ string) func(string) bool {
	return func(field string) bool {
		t, ok := h.schema.Type(typ)
		if !ok {
			return false
		}
		f, ok := t.Fields[field]
		return ok && f.Policy == schema.PolicyServerOwned
	}
}

func (h *orgHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		auth.WriteError(w, fieldsync.Errorf(fieldsync.EInternal, "no principal in the context"))
		return
	}
	action, err := auth.ActionOf(r.Method, r.URL.Path)
	if err != nil {
		auth.WriteError(w, err)
		return
	}
	answer := map[string]any{"org": h.org}
	var d auth.Decision
	switch action {
	case auth.ActionPush:
		body, _ := io.ReadAll(r.Body)
		req, err := protocol.DecodePush(body)
		if err != nil {
			auth.WriteError(w, err)
			return
		}
		for _, op := range req.Ops {
			q := h.request(p, action, op.Entity)
			q.DeviceID = req.Device
			q.ServerOwned = h.serverOwned(op.Type)
			for f := range op.Fields {
				q.Fields = append(q.Fields, f)
			}
			if d = auth.Decide(p, q); !d.Allow {
				break
			}
		}
	case auth.ActionPull:
		var ids []string
		for id := range h.records {
			if auth.Decide(p, h.request(p, action, id)).Allow {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		answer["ids"] = ids
		d = auth.DecideAction(p, action, h.org)
	case auth.ActionReadRecord, auth.ActionOfficeEdit, auth.ActionSettle:
		d = auth.Decide(p, h.request(p, action, r.PathValue("id")))
		if d.Allow && action != auth.ActionOfficeEdit && !h.request(p, action, r.PathValue("id")).RecordExists {
			d = auth.Decision{Status: 404, Code: fieldsync.ENotFound, Message: "no such record"}
		}
	default:
		d = auth.Decide(p, auth.Request{Action: action, Org: h.org})
	}
	if !d.Allow {
		auth.WriteError(w, d.Err())
		return
	}
	json.NewEncoder(w).Encode(answer)
}

// world is two organisations behind one front: the identity store, the
// Middleware, the enrol and login endpoints, and one handler per
// organisation, over loopback HTTP.
type world struct {
	t      *testing.T
	ctx    context.Context
	clock  *clock
	store  *authsqlite.Store
	srv    *httptest.Server
	tokens map[string]string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	c := &clock{now: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
	st, err := authsqlite.Open(ctx, filepath.Join(t.TempDir(), "identity.db"),
		authsqlite.Config{Now: c.Now, PasswordParams: cheap, CodeParams: cheap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sch := schema.Default()
	orgs := map[string]*orgHandler{
		"acme": {org: "acme", schema: sch, records: map[string]record{
			"wo-ana": {"work_order", "ana"}, "wo-ben": {"work_order", "ben"},
			"wo-none": {"work_order", ""}, "site-1": {sharedType, ""},
		}},
		"globex": {org: "globex", schema: sch, records: map[string]record{"wo-gus": {"work_order", "gus"}}},
	}
	mux := http.NewServeMux()
	lim := auth.NewLimiter(auth.Rate{PerSecond: 1000, Burst: 1000}, c.Now)
	log := slog.New(slog.DiscardHandler)
	mux.Handle(protocol.PathEnroll, auth.EnrollHandler(st, lim, log))
	mux.Handle(protocol.PathLogin, auth.LoginHandler(st, lim, log))
	inner := http.NewServeMux()
	for _, pattern := range []string{"/v1/records/{type}/{id}", "/v1/records/{type}/{id}/settle", "/"} {
		inner.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			p, _ := auth.FromContext(r.Context())
			orgs[p.Org].ServeHTTP(w, r)
		})
	}
	mux.Handle("/v1/", auth.Middleware(st, lim, log, func(p auth.Principal) http.Handler { return inner }))
	// The operator API's stand-in answers who asked.
	mux.Handle(protocol.PathOperator, auth.OperatorMiddleware(st, lim, log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		json.NewEncoder(w).Encode(map[string]string{"operator": p.User})
	})))
	w := &world{t: t, ctx: ctx, clock: c, store: st, srv: httptest.NewServer(mux), tokens: map[string]string{}}
	t.Cleanup(w.srv.Close)
	return w
}

func (w *world) must(err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

// user creates a user; a password lets them log in.
func (w *world) user(org, name string, role auth.Role, password string) {
	w.t.Helper()
	_, err := w.store.CreateUser(w.ctx, org, name, role, password)
	w.must(err)
}

// enrol enrols a device for org/user through POST /v1/enroll.
func (w *world) enrol(org, user, deviceID string) protocol.EnrollResponse {
	w.t.Helper()
	e, err := w.store.IssueEnrolment(w.ctx, org, user, "test")
	w.must(err)
	var out protocol.EnrollResponse
	status, body := w.post(protocol.PathEnroll, protocol.EnrollRequest{Code: e.Code, DeviceName: user + "'s tablet", Device: deviceID}, &out)
	if status != http.StatusOK {
		w.t.Fatalf("enrol %s/%s: %d %s", org, user, status, body)
	}
	return out
}

// login logs in through POST /v1/login.
func (w *world) login(org, user, password string) protocol.LoginResponse {
	w.t.Helper()
	var out protocol.LoginResponse
	status, body := w.post(protocol.PathLogin, protocol.LoginRequest{Org: org, User: user, Password: password}, &out)
	if status != http.StatusOK {
		w.t.Fatalf("login %s/%s: %d %s", org, user, status, body)
	}
	return out
}

func (w *world) post(path string, v, out any) (int, []byte) {
	w.t.Helper()
	data, _ := json.Marshal(v)
	resp, err := w.srv.Client().Post(w.srv.URL+path, "application/json", bytes.NewReader(data))
	w.must(err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		w.must(json.Unmarshal(body, out))
	}
	return resp.StatusCode, body
}

// do sends one API request with the named token ("" for none; a value
// that is not a name is sent as the header itself).
func (w *world) do(token, method, path, body string) (*http.Response, []byte) {
	w.t.Helper()
	req, err := http.NewRequestWithContext(w.ctx, method, w.srv.URL+path, strings.NewReader(body))
	w.must(err)
	if tok, ok := w.tokens[token]; ok {
		req.Header.Set("Authorization", "Bearer "+tok)
	} else if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := w.srv.Client().Do(req)
	w.must(err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

// setUp makes the people and tokens of the matrix:
//
//	acme:   ana, ben (field workers, a device each), dora (dispatcher),
//	        adam (admin); ana has a second device, revoked; carl was a
//	        dispatcher, revoked; dora also has a session that expired.
//	globex: gil (dispatcher), gus (field worker).
func (w *world) setUp() {
	_, err := w.store.CreateOrg(w.ctx, "acme")
	w.must(err)
	_, err = w.store.CreateOrg(w.ctx, "globex")
	w.must(err)
	w.user("acme", "ana", auth.RoleFieldWorker, "")
	w.user("acme", "ben", auth.RoleFieldWorker, "")
	w.user("acme", "dora", auth.RoleDispatcher, "dora's password")
	w.user("acme", "adam", auth.RoleAdmin, "adam's password")
	w.user("acme", "carl", auth.RoleDispatcher, "carl's password")
	w.user("globex", "gil", auth.RoleDispatcher, "gil's password")
	w.user("globex", "gus", auth.RoleFieldWorker, "")

	w.tokens["ana"] = w.enrol("acme", "ana", "ana-tablet").Token
	w.tokens["ben"] = w.enrol("acme", "ben", "ben-tablet").Token
	w.tokens["gus"] = w.enrol("globex", "gus", "gus-tablet").Token
	w.tokens["dora"] = w.login("acme", "dora", "dora's password").Token
	w.tokens["adam"] = w.login("acme", "adam", "adam's password").Token
	w.tokens["gil"] = w.login("globex", "gil", "gil's password").Token

	w.tokens["ana-revoked"] = w.enrol("acme", "ana", "ana-phone").Token
	w.must(w.store.RevokeDevice(w.ctx, "acme", "ana-phone"))
	w.tokens["carl-revoked"] = w.login("acme", "carl", "carl's password").Token
	w.must(w.store.RevokeUser(w.ctx, "acme", "carl"))

	now := w.clock.Now()
	w.clock.Set(now.Add(-13 * time.Hour))
	w.tokens["dora-expired"] = w.login("acme", "dora", "dora's password").Token
	w.clock.Set(now)

	op, _, err := w.store.CreateOperator(w.ctx, "ops")
	w.must(err)
	w.tokens["operator"] = op
	op, _, err = w.store.CreateOperator(w.ctx, "old")
	w.must(err)
	w.tokens["operator-revoked"] = op
	w.must(w.store.RevokeOperator(w.ctx, "old"))
	w.tokens["operator-forged"] = "fso_" + w.tokens["operator"][4:46] + flip(w.tokens["operator"][46])

	w.tokens["forged"] = "fsd_" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	w.tokens["forged-session"] = "fsu_" + w.tokens["dora"][4:46] + flip(w.tokens["dora"][46])
}

// flip changes the last character of a token to another valid one.
func flip(c byte) string {
	if c == 'A' {
		return "Q"
	}
	return "A"
}

func push(device, entity, kind string, fields string) string {
	return `{"device":"` + device + `","ops":[{"id":"0190c0de-0000-7000-8000-000000000001","seq":1,"type":"work_order","entity":"` +
		entity + `","kind":"` + kind + `","fields":` + fields + `,"at":1}]}`
}

// TestAccessMatrix runs every combination the access rules name —
// another worker's record, another organisation, a server-owned field, a
// revoked token, an expired token, a forged token, an office endpoint
// with a worker's token, and the allowed cases — through the real chain:
// tokens issued by the identity store, sent over HTTP, checked by the
// Middleware and decided by auth.Decide.
func TestAccessMatrix(t *testing.T) {
	w := newWorld(t)
	w.setUp()
	const anaPush = "ana-tablet"
	rows := []struct {
		name         string
		token        string
		method, path string
		body         string
		status       int
		code         fieldsync.Code
	}{
		// Allowed.
		{"worker reads an assigned record", "ana", "GET", "/v1/records/work_order/wo-ana", "", 200, ""},
		{"worker reads shared reference data", "ana", "GET", "/v1/records/site/site-1", "", 200, ""},
		{"worker pushes to an assigned record", "ana", "POST", "/v1/push", push(anaPush, "wo-ana", "update", `{"title":"x"}`), 200, ""},
		{"worker pushes a new record", "ana", "POST", "/v1/push", push(anaPush, "wo-new", "create", `{"title":"x"}`), 200, ""},
		{"worker pulls", "ana", "GET", "/v1/changes", "", 200, ""},
		{"worker reads the info", "ana", "GET", "/v1/info", "", 200, ""},
		{"worker reads the schema", "ana", "GET", "/v1/schema", "", 200, ""},
		{"worker uploads", "ana", "POST", "/v1/files/", "", 200, ""},
		{"dispatcher reads another's record", "dora", "GET", "/v1/records/work_order/wo-ben", "", 200, ""},
		{"dispatcher reads an unassigned record", "dora", "GET", "/v1/records/work_order/wo-none", "", 200, ""},
		{"dispatcher edits, assignee included", "dora", "PATCH", "/v1/records/work_order/wo-ben", `{"fields":{"assignee":"ana"}}`, 200, ""},
		{"dispatcher creates", "dora", "POST", "/v1/records/work_order", `{}`, 200, ""},
		{"dispatcher settles", "dora", "POST", "/v1/records/work_order/wo-ben/settle", `{}`, 200, ""},
		{"admin writes the schema", "adam", "PUT", "/v1/schema", `{}`, 200, ""},
		{"admin edits like a dispatcher", "adam", "PATCH", "/v1/records/work_order/wo-ana", `{}`, 200, ""},
		{"other organisation's dispatcher reads its own", "gil", "GET", "/v1/records/work_order/wo-gus", "", 200, ""},

		// Another worker's record: as if it did not exist.
		{"worker reads another worker's record", "ana", "GET", "/v1/records/work_order/wo-ben", "", 404, fieldsync.ENotFound},
		{"worker reads an unassigned record", "ana", "GET", "/v1/records/work_order/wo-none", "", 404, fieldsync.ENotFound},
		{"worker pushes to another worker's record", "ana", "POST", "/v1/push", push(anaPush, "wo-ben", "update", `{"title":"x"}`), 404, fieldsync.ENotFound},

		// Another organisation: unreachable.
		{"dispatcher reads another organisation's record", "dora", "GET", "/v1/records/work_order/wo-gus", "", 404, fieldsync.ENotFound},
		{"worker reads another organisation's record", "ana", "GET", "/v1/records/work_order/wo-gus", "", 404, fieldsync.ENotFound},
		{"other organisation reads acme's record", "gil", "GET", "/v1/records/work_order/wo-ana", "", 404, fieldsync.ENotFound},

		// Server-owned fields.
		{"worker writes the assignee", "ana", "POST", "/v1/push", push(anaPush, "wo-ana", "update", `{"assignee":"ana"}`), 422, fieldsync.EServerOwned},
		{"worker writes the amount", "ana", "POST", "/v1/push", push(anaPush, "wo-ana", "update", `{"amount":1}`), 422, fieldsync.EServerOwned},
		{"worker creates with an assignee", "ana", "POST", "/v1/push", push(anaPush, "wo-new", "create", `{"title":"x","assignee":"ana"}`), 422, fieldsync.EServerOwned},

		// Tokens.
		{"revoked device", "ana-revoked", "GET", "/v1/changes", "", 401, fieldsync.ETokenRevoked},
		{"revoked user's session", "carl-revoked", "GET", "/v1/info", "", 401, fieldsync.ETokenRevoked},
		{"expired session", "dora-expired", "GET", "/v1/info", "", 401, fieldsync.ETokenExpired},
		{"forged device token", "forged", "GET", "/v1/changes", "", 401, fieldsync.ETokenInvalid},
		{"forged session token", "forged-session", "GET", "/v1/info", "", 401, fieldsync.ETokenInvalid},
		{"no token", "", "GET", "/v1/changes", "", 401, fieldsync.ETokenMissing},
		{"basic credentials", "Basic YW5hOnB3", "GET", "/v1/changes", "", 401, fieldsync.ETokenInvalid},

		// Roles.
		{"worker edits as the office", "ana", "PATCH", "/v1/records/work_order/wo-ana", `{}`, 403, fieldsync.EForbidden},
		{"worker creates as the office", "ana", "POST", "/v1/records/work_order", `{}`, 403, fieldsync.EForbidden},
		{"worker settles as the office", "ana", "POST", "/v1/records/work_order/wo-ana/settle", `{}`, 403, fieldsync.EForbidden},
		{"worker writes the schema", "ana", "PUT", "/v1/schema", `{}`, 403, fieldsync.EForbidden},
		{"dispatcher writes the schema", "dora", "PUT", "/v1/schema", `{}`, 403, fieldsync.EForbidden},
		{"dispatcher session pushes", "dora", "POST", "/v1/push", push("dora-laptop", "wo-ana", "update", `{"title":"x"}`), 403, fieldsync.EForbidden},
		{"worker pushes for another device", "ana", "POST", "/v1/push", push("ben-tablet", "wo-ana", "update", `{"title":"x"}`), 403, fieldsync.EForbidden},

		// The operator: the operator API only; nobody else there.
		{"operator makes a test organisation", "operator", "POST", "/v1/operator/test-orgs", `{}`, 200, ""},
		{"operator deletes a test organisation", "operator", "DELETE", "/v1/operator/test-orgs/selftest-x", "", 200, ""},
		{"operator reads a record", "operator", "GET", "/v1/records/work_order/wo-ana", "", 403, fieldsync.EForbidden},
		{"operator pulls", "operator", "GET", "/v1/changes", "", 403, fieldsync.EForbidden},
		{"operator reads the info", "operator", "GET", "/v1/info", "", 403, fieldsync.EForbidden},
		{"operator pushes", "operator", "POST", "/v1/push", push("ops", "wo-new", "create", `{"title":"x"}`), 403, fieldsync.EForbidden},
		{"operator writes the schema", "operator", "PUT", "/v1/schema", `{}`, 403, fieldsync.EForbidden},
		{"admin makes a test organisation", "adam", "POST", "/v1/operator/test-orgs", `{}`, 403, fieldsync.EForbidden},
		{"dispatcher deletes an organisation", "dora", "DELETE", "/v1/operator/test-orgs/acme", "", 403, fieldsync.EForbidden},
		{"device makes a test organisation", "ana", "POST", "/v1/operator/test-orgs", `{}`, 403, fieldsync.EForbidden},
		{"other organisation's dispatcher on the operator API", "gil", "POST", "/v1/operator/test-orgs", `{}`, 403, fieldsync.EForbidden},
		{"operator API without a token", "", "POST", "/v1/operator/test-orgs", `{}`, 401, fieldsync.ETokenMissing},
		{"revoked operator token", "operator-revoked", "POST", "/v1/operator/test-orgs", `{}`, 401, fieldsync.ETokenRevoked},
		{"forged operator token", "operator-forged", "POST", "/v1/operator/test-orgs", `{}`, 401, fieldsync.ETokenInvalid},
		{"expired session on the operator API", "dora-expired", "POST", "/v1/operator/test-orgs", `{}`, 401, fieldsync.ETokenExpired},
		{"operator lists organisations", "operator", "GET", "/v1/operator/test-orgs", "", 405, fieldsync.EMethodNotAllowed},

		// Not an endpoint.
		{"unknown endpoint", "dora", "GET", "/v1/secrets", "", 404, fieldsync.ENotFound},
		{"method not served", "dora", "DELETE", "/v1/push", "", 405, fieldsync.EMethodNotAllowed},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			resp, body := w.do(r.token, r.method, r.path, r.body)
			if resp.StatusCode != r.status {
				t.Fatalf("%s %s: status %d (%s), want %d", r.method, r.path, resp.StatusCode, body, r.status)
			}
			if r.code == "" {
				return
			}
			e := protocol.DecodeErrorBody(resp.StatusCode, body)
			if e.Code != r.code || e.Message == "" {
				t.Fatalf("%s %s: code %s (%q), want %s", r.method, r.path, e.Code, e.Message, r.code)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
			if r.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
				t.Fatalf("401 without a Bearer challenge")
			}
		})
	}

	// The same rules, decided directly, where the HTTP front cannot
	// reach: a target of another organisation handed to Decide (defence
	// in depth: the stores are apart anyway), and actions with no
	// endpoint yet.
	principal := func(name string) auth.Principal {
		p, err := w.store.Authenticate(w.ctx, w.tokens[name])
		w.must(err)
		return p
	}
	direct := []struct {
		name   string
		who    string
		req    auth.Request
		status int
		code   fieldsync.Code
	}{
		{"target of another organisation", "dora", auth.Request{Action: auth.ActionReadRecord, Org: "globex", RecordExists: true, RecordAssignee: "gus"}, 404, fieldsync.ENotFound},
		{"admin of another organisation", "adam", auth.Request{Action: auth.ActionAdminUsers, Org: "globex"}, 404, fieldsync.ENotFound},
		{"worker issues an enrolment code", "ana", auth.Request{Action: auth.ActionIssueEnrolment, Org: "acme"}, 403, fieldsync.EForbidden},
		{"dispatcher issues an enrolment code", "dora", auth.Request{Action: auth.ActionIssueEnrolment, Org: "acme"}, 200, ""},
		{"dispatcher manages users", "dora", auth.Request{Action: auth.ActionAdminUsers, Org: "acme"}, 403, fieldsync.EForbidden},
		{"admin manages devices", "adam", auth.Request{Action: auth.ActionAdminDevices, Org: "acme"}, 200, ""},
		{"worker downloads from an assigned record", "ana", auth.Request{Action: auth.ActionDownload, Org: "acme", RecordExists: true, RecordAssignee: "ana"}, 200, ""},
		{"worker downloads from another's record", "ana", auth.Request{Action: auth.ActionDownload, Org: "acme", RecordExists: true, RecordAssignee: "ben"}, 404, fieldsync.ENotFound},
		{"worker reads an op on another's record", "ana", auth.Request{Action: auth.ActionReadOp, Org: "acme", RecordExists: true, RecordAssignee: "ben"}, 404, fieldsync.ENotFound},
	}
	for _, r := range direct {
		t.Run("decide/"+r.name, func(t *testing.T) {
			d := auth.Decide(principal(r.who), r.req)
			if d.Status != r.status || d.Code != r.code || d.Allow != (r.status == 200) {
				t.Fatalf("decision %+v, want %d %s", d, r.status, r.code)
			}
		})
	}

	// A worker's pull holds what is assigned to them and shared data,
	// nothing else.
	_, body := w.do("ana", "GET", "/v1/changes", "")
	var pulled struct{ IDs []string }
	w.must(json.Unmarshal(body, &pulled))
	if !slices.Equal(pulled.IDs, []string{"site-1", "wo-ana"}) {
		t.Fatalf("ana pulled %v, want [site-1 wo-ana]", pulled.IDs)
	}
	_, body = w.do("dora", "GET", "/v1/changes", "")
	w.must(json.Unmarshal(body, &pulled))
	if len(pulled.IDs) != 4 {
		t.Fatalf("dora pulled %v, want every acme record", pulled.IDs)
	}
}
