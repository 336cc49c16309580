package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/schema"
	"github.com/fieldsync/fieldsync/server"
)

// asHeader names, in a test request, the principal the test front puts
// in the request's context (one of testPrincipals).
const asHeader = "X-Test-As"

var testPrincipals = map[string]auth.Principal{
	"ana":  {Org: "acme", User: "ana", Role: auth.RoleFieldWorker, DeviceID: "dev-ana", TokenKind: auth.TokenDevice},
	"bob":  {Org: "acme", User: "bob", Role: auth.RoleFieldWorker, DeviceID: "dev-bob", TokenKind: auth.TokenDevice},
	"dora": {Org: "acme", User: "dora", Role: auth.RoleDispatcher, TokenKind: auth.TokenUser},
	"olga": {Org: "other", User: "olga", Role: auth.RoleAdmin, TokenKind: auth.TokenUser},
}

// asFront serves srv with the principal asHeader names (none without
// it), as the multi-organisation front would after authentication.
func asFront(t *testing.T, srv *server.Server) *httptest.Server {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := testPrincipals[r.Header.Get(asHeader)]; ok {
			r = r.WithContext(auth.NewContext(r.Context(), p))
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs
}

// TestBlobDownloadAccess checks who may download an attachment's bytes:
// the office, a worker who may read a record holding it, and the device
// that attached it; anyone else is answered as if the server held none.
func TestBlobDownloadAccess(t *testing.T) {
	b := newBlobEnv(t, server.Config{Org: "acme"})
	r := testRand(t)
	ctx := context.Background()
	assign := func(id, user string) {
		t.Helper()
		rec, err := b.st.Record(ctx, "work_order", id)
		if err != nil {
			t.Fatal(err)
		}
		res, err := b.srv.Edit(ctx, "work_order", id, rec.Version, map[string]json.RawMessage{"assignee": json.RawMessage(`"` + user + `"`)})
		if err != nil || res.Status != fieldsync.StatusApplied {
			t.Fatalf("assign %s to %s: %+v %v", id, user, res, err)
		}
	}
	// Work orders wo-a (ana's) and wo-b (bob's), each with a photo that
	// bob's device attached.
	shas := map[string]string{}
	for i, id := range []string{"wo-a", "wo-b"} {
		if res := b.push(t, "dev-bob", createOp(int64(2*i+1), id, map[string]string{"title": `"` + id + `"`})); res[0].Status != "applied" {
			t.Fatalf("create %s: %+v", id, res[0])
		}
		data, sha := testFile(r, 1000+i)
		b.mustUpload(t, data, sha)
		if res := b.push(t, "dev-bob", attachOp(int64(2*i+2), int64(2*i+1), id, attachmentJSON(sha, len(data)))); res[0].Status != "applied" {
			t.Fatalf("attach to %s: %+v", id, res[0])
		}
		shas[id] = sha
	}
	assign("wo-a", "ana")
	assign("wo-b", "bob")
	hs := asFront(t, b.srv)
	get := func(who, sha string) response {
		t.Helper()
		old := b.hs
		b.hs = hs
		defer func() { b.hs = old }()
		h := apiHeaders()
		h[asHeader] = who
		return b.request(t, http.MethodGet, protocol.PathBlobs+sha, h, nil)
	}
	for _, c := range []struct {
		who, rec string
		status   int
	}{
		{"ana", "wo-a", http.StatusOK},
		{"ana", "wo-b", http.StatusNotFound},
		{"dora", "wo-a", http.StatusOK},
		{"dora", "wo-b", http.StatusOK},
		{"olga", "wo-a", http.StatusNotFound}, // another organisation
		{"bob", "wo-a", http.StatusOK},        // bob's device attached it
		{"bob", "wo-b", http.StatusOK},
	} {
		resp := get(c.who, shas[c.rec])
		if resp.status != c.status {
			t.Errorf("%s downloads the photo of %s: status %d, want %d: %s", c.who, c.rec, resp.status, c.status, resp.body)
		}
		if c.status == http.StatusNotFound {
			checkError(t, resp, http.StatusNotFound, fieldsync.ENotFound)
		}
	}
}

// TestRequireAuth checks that a server requiring authentication refuses
// a request without a principal, whatever the endpoint, and serves one
// with a principal.
func TestRequireAuth(t *testing.T) {
	b := newBlobEnv(t, server.Config{Org: "acme", RequireAuth: true})
	hs := asFront(t, b.srv)
	b.hs = hs
	for _, p := range []struct{ method, path string }{
		{http.MethodGet, protocol.PathInfo},
		{http.MethodGet, protocol.PathChanges},
		{http.MethodGet, protocol.PathRecords + "work_order/x"},
		{http.MethodPost, protocol.PathPush},
		{http.MethodGet, protocol.PathBlobs + "0000000000000000000000000000000000000000000000000000000000000000"},
		{http.MethodPost, protocol.PathFiles},
	} {
		r := b.request(t, p.method, p.path, apiHeaders(), nil)
		checkError(t, r, http.StatusUnauthorized, fieldsync.ETokenMissing)
		if r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: no WWW-Authenticate challenge", p.method, p.path)
		}
	}
	h := apiHeaders()
	h[asHeader] = "ana"
	if r := b.request(t, http.MethodGet, protocol.PathInfo, h, nil); r.status != http.StatusOK {
		t.Fatalf("info with a principal: %d %s", r.status, r.body)
	}
	// Apply called in-process without a principal is refused too.
	if _, err := b.srv.Apply(context.Background(), nil); fieldsync.ErrorCode(err) != fieldsync.ETokenMissing {
		t.Fatalf("Apply without a principal: %v", err)
	}
}

// TestSharedTypeReach checks that records of a shared type reach every
// field worker (read, feed, push) while other records reach only their
// assignee.
func TestSharedTypeReach(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(schema.Default().JSON(), &doc); err != nil {
		t.Fatal(err)
	}
	doc["types"].(map[string]any)["site"] = map[string]any{
		"shared": true, "fields": map[string]any{"name": map[string]any{"type": "string", "policy": "last-writer-wins"}},
	}
	data, _ := json.Marshal(doc)
	sch, err := schema.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, server.Config{Org: "acme", Schema: sch})
	ctx := context.Background()
	if _, _, err := e.srv.Create(ctx, "site", map[string]json.RawMessage{"name": json.RawMessage(`"depot"`)}); err != nil {
		t.Fatal(err)
	}
	_, wo, err := e.srv.Create(ctx, "work_order", map[string]json.RawMessage{"title": json.RawMessage(`"nobody's"`)})
	if err != nil {
		t.Fatal(err)
	}
	e.hs = asFront(t, e.srv)
	h := apiHeaders()
	h[asHeader] = "ana"
	r := e.request(t, http.MethodGet, protocol.PathChanges, h, nil)
	var page protocol.ChangesResponse
	decodeJSON(t, r.body, &page)
	if len(page.Changes) != 1 || page.Changes[0].Type != "site" || page.Changes[0].Gone != "" {
		t.Fatalf("ana's feed: %+v, want the shared site only", page.Changes)
	}
	site := page.Changes[0].ID
	if r := e.request(t, http.MethodGet, protocol.PathRecords+"site/"+site, h, nil); r.status != http.StatusOK {
		t.Fatalf("read a shared record: %d %s", r.status, r.body)
	}
	checkError(t, e.request(t, http.MethodGet, protocol.PathRecords+"work_order/"+wo, h, nil), http.StatusNotFound, fieldsync.ENotFound)
	op := wop{ID: newOpID(), Seq: 1, Type: "site", Entity: site, Kind: "update", Base: 1,
		Fields: map[string]json.RawMessage{"name": json.RawMessage(`"main depot"`)}, At: 1720000000000}
	r = e.request(t, http.MethodPost, protocol.PathPush, h, pushBody(t, "dev-ana", op))
	var res protocol.PushResponse
	decodeJSON(t, r.body, &res)
	if len(res.Results) != 1 || res.Results[0].Status != "applied" {
		t.Fatalf("push to a shared record: %s", r.body)
	}
}
