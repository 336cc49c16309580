package tenant_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/tenant"
)

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

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// opWorld is a front over loopback HTTP with a real organisation (acme,
// its admin adam logged in) and an operator token.
type opWorld struct {
	t        *testing.T
	ctx      context.Context
	dir, url string
	clock    *clock
	front    *tenant.Front
	operator string // the operator token
	adam     string // acme's admin session
}

func newOpWorld(t *testing.T) *opWorld {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	w := &opWorld{t: t, ctx: ctx, dir: t.TempDir(), clock: &clock{now: time.Now()}}
	f, err := tenant.Open(ctx, tenant.Config{Dir: w.dir, SweepEvery: -1,
		Identity: authsqlite.Config{Now: w.clock.Now, PasswordParams: cheap, CodeParams: cheap}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(f)
	t.Cleanup(func() {
		ts.Close()
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	w.front, w.url = f, ts.URL
	ids := f.Identity()
	_, err = ids.CreateOrg(ctx, "acme")
	w.must(err)
	_, err = ids.CreateUser(ctx, "acme", "adam", auth.RoleAdmin, "adam's password")
	w.must(err)
	iss, err := ids.Login(ctx, "acme", "adam", "adam's password")
	w.must(err)
	w.adam = iss.Token
	w.operator, _, err = ids.CreateOperator(ctx, "ops")
	w.must(err)
	return w
}

func (w *opWorld) must(err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

// call sends a request with a raw body and returns the status, the
// error code of a refusal and the body.
func (w *opWorld) call(method, path, token, body string) (int, fieldsync.Code, []byte) {
	w.t.Helper()
	req, err := http.NewRequestWithContext(w.ctx, method, w.url+path, strings.NewReader(body))
	w.must(err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(protocol.VersionHeader, "1")
	resp, err := http.DefaultClient.Do(req)
	w.must(err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	code := fieldsync.Code("")
	if resp.StatusCode != http.StatusOK {
		code = protocol.DecodeErrorBody(resp.StatusCode, data).Code
	}
	return resp.StatusCode, code, data
}

// create makes a test organisation through the API.
func (w *opWorld) create(body string) protocol.TestOrgResponse {
	w.t.Helper()
	st, code, data := w.call(http.MethodPost, protocol.PathTestOrgs, w.operator, body)
	if st != http.StatusOK {
		w.t.Fatalf("create: %d %s %s", st, code, data)
	}
	var t protocol.TestOrgResponse
	w.must(json.Unmarshal(data, &t))
	return t
}

// use opens the test organisation's store through a request of its
// dispatcher, and puts a file in its attachments folder.
func (w *opWorld) use(t protocol.TestOrgResponse) {
	w.t.Helper()
	if st, code, data := w.call(http.MethodGet, protocol.PathInfo, t.OfficeToken, ""); st != http.StatusOK {
		w.t.Fatalf("info as the test office: %d %s %s", st, code, data)
	}
	blobs := filepath.Join(w.dir, "orgs", t.Org+".blobs")
	w.must(os.MkdirAll(blobs, 0o700))
	w.must(os.WriteFile(filepath.Join(blobs, "x"), []byte("x"), 0o600))
}

// gone checks that nothing of a test organisation is left: no file, no
// identity row, no working token.
func (w *opWorld) gone(t protocol.TestOrgResponse) {
	w.t.Helper()
	left, _ := filepath.Glob(filepath.Join(w.dir, "orgs", t.Org+"*"))
	if len(left) > 0 {
		w.t.Errorf("files left of %s: %v", t.Org, left)
	}
	orgs, err := w.front.Identity().ListOrgs(w.ctx)
	w.must(err)
	for _, o := range orgs {
		if o.Name == t.Org {
			w.t.Errorf("%s still in the identity store", t.Org)
		}
	}
	if st, _, _ := w.call(http.MethodGet, protocol.PathInfo, t.OfficeToken, ""); st != http.StatusUnauthorized {
		w.t.Errorf("the deleted organisation's token answered %d, want 401", st)
	}
}

func TestTestOrgCreateDelete(t *testing.T) {
	w := newOpWorld(t)
	to := w.create(`{"ttl_seconds":600}`)
	if !strings.HasPrefix(to.Org, protocol.TestOrgPrefix) || to.OfficeUser == "" || to.Worker == "" || to.EnrolmentCode == "" {
		t.Fatalf("answer %+v", to)
	}
	w.use(to)
	// Its device enrols through the real path.
	req, _ := json.Marshal(protocol.EnrollRequest{Code: to.EnrolmentCode, DeviceName: "selftest", Device: "dev-1"})
	st, code, data := w.call(http.MethodPost, protocol.PathEnroll, "", string(req))
	if st != http.StatusOK {
		t.Fatalf("enrol: %d %s %s", st, code, data)
	}
	var en protocol.EnrollResponse
	w.must(json.Unmarshal(data, &en))
	if st, _, _ := w.call(http.MethodGet, protocol.PathInfo, en.Token, ""); st != http.StatusOK {
		t.Fatalf("the device's info: %d", st)
	}

	st, code, data = w.call(http.MethodDelete, protocol.PathTestOrgs+"/"+to.Org, w.operator, "")
	if st != http.StatusOK {
		t.Fatalf("delete: %d %s %s", st, code, data)
	}
	w.gone(to)
	if st, _, _ := w.call(http.MethodGet, protocol.PathInfo, en.Token, ""); st != http.StatusUnauthorized {
		t.Errorf("the deleted organisation's device token answered %d, want 401", st)
	}
	if st, code, _ := w.call(http.MethodDelete, protocol.PathTestOrgs+"/"+to.Org, w.operator, ""); st != http.StatusNotFound {
		t.Errorf("a second delete: %d %s, want 404", st, code)
	}
	// A name may be given, with the prefix.
	if got := w.create(`{"name":"selftest-mine"}`); got.Org != "selftest-mine" || time.Until(got.Expires) < 50*time.Minute {
		t.Errorf("named: %+v, want selftest-mine for an hour", got)
	}
}

// TestOperatorRefusals: the operator API refuses what it must and then
// changes nothing.
func TestOperatorRefusals(t *testing.T) {
	w := newOpWorld(t)
	to := w.create("")
	w.use(to)
	// acme has a store on disk too.
	if st, _, _ := w.call(http.MethodGet, protocol.PathInfo, w.adam, ""); st != http.StatusOK {
		t.Fatalf("acme's info: %d", st)
	}
	rows := []struct {
		name, method, path, token, body string
		status                          int
		code                            fieldsync.Code
	}{
		{"no token", "POST", protocol.PathTestOrgs, "", "{}", 401, fieldsync.ETokenMissing},
		{"unknown operator token", "POST", protocol.PathTestOrgs, auth.NewToken(auth.TokenOperator), "{}", 401, fieldsync.ETokenInvalid},
		{"an admin's token", "POST", protocol.PathTestOrgs, w.adam, "{}", 403, fieldsync.EForbidden},
		{"an admin deletes", "DELETE", protocol.PathTestOrgs + "/" + to.Org, w.adam, "", 403, fieldsync.EForbidden},
		{"the test office's token", "DELETE", protocol.PathTestOrgs + "/" + to.Org, to.OfficeToken, "", 403, fieldsync.EForbidden},
		{"operator on an organisation's data", "GET", protocol.PathInfo, w.operator, "", 403, fieldsync.EForbidden},
		{"bad JSON", "POST", protocol.PathTestOrgs, w.operator, `{"ttl_seconds":`, 400, fieldsync.EInvalidJSON},
		{"unknown field", "POST", protocol.PathTestOrgs, w.operator, `{"org":"x"}`, 400, fieldsync.EInvalidJSON},
		{"a real organisation's name", "POST", protocol.PathTestOrgs, w.operator, `{"name":"acme"}`, 400, fieldsync.EInvalidRequest},
		{"too long a life", "POST", protocol.PathTestOrgs, w.operator, `{"ttl_seconds":86400}`, 400, fieldsync.EInvalidRequest},
		{"a name taken", "POST", protocol.PathTestOrgs, w.operator, `{"name":"` + to.Org + `"}`, 422, fieldsync.EAlreadyExists},
		{"delete a real organisation", "DELETE", protocol.PathTestOrgs + "/acme", w.operator, "", 403, fieldsync.EForbidden},
		{"delete no organisation", "DELETE", protocol.PathTestOrgs + "/selftest-none", w.operator, "", 404, fieldsync.ENotFound},
		{"list", "GET", protocol.PathTestOrgs, w.operator, "", 405, fieldsync.EMethodNotAllowed},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			st, code, data := w.call(r.method, r.path, r.token, r.body)
			if st != r.status || code != r.code {
				t.Fatalf("%d %s (%s), want %d %s", st, code, data, r.status, r.code)
			}
		})
	}
	// Nothing changed: acme and the test organisation are whole.
	orgs, err := w.front.Identity().ListOrgs(w.ctx)
	w.must(err)
	if len(orgs) != 2 {
		t.Fatalf("organisations after the refusals: %+v", orgs)
	}
	for _, org := range []string{"acme", to.Org} {
		if _, err := os.Stat(tenant.OrgPath(w.dir, org)); err != nil {
			t.Errorf("%s's store: %v", org, err)
		}
	}
	for _, tok := range []string{w.adam, to.OfficeToken} {
		if st, _, _ := w.call(http.MethodGet, protocol.PathInfo, tok, ""); st != http.StatusOK {
			t.Errorf("a token stopped working after the refusals: %d", st)
		}
	}
	if err := w.front.DeleteTestOrg(w.ctx, "acme"); fieldsync.ErrorCode(err) != fieldsync.EForbidden {
		t.Errorf("DeleteTestOrg(acme): %v", err)
	}
}

// TestSweepExpired: the sweeper removes an expired test organisation
// (by the identity store's clock), and nothing else.
func TestSweepExpired(t *testing.T) {
	w := newOpWorld(t)
	old := w.create(`{"ttl_seconds":60}`)
	w.use(old)
	young := w.create(`{"ttl_seconds":3600}`)
	w.use(young)
	if n, err := w.front.SweepTestOrgs(w.ctx); n != 0 || err != nil {
		t.Fatalf("sweep before any expiry: %d %v", n, err)
	}
	w.clock.Advance(2 * time.Minute)
	// Expired, its tokens stop at once, before the sweep.
	if st, _, _ := w.call(http.MethodGet, protocol.PathInfo, old.OfficeToken, ""); st != http.StatusUnauthorized {
		t.Errorf("an expired test organisation's token answered %d", st)
	}
	n, err := w.front.SweepTestOrgs(w.ctx)
	if n != 1 || err != nil {
		t.Fatalf("sweep: %d %v, want 1 removed", n, err)
	}
	w.gone(old)
	if st, _, _ := w.call(http.MethodGet, protocol.PathInfo, young.OfficeToken, ""); st != http.StatusOK {
		t.Errorf("the younger test organisation was touched: %d", st)
	}
}

// TestSweepAtOpen: a front opened on a directory holding an expired
// test organisation removes it by itself.
func TestSweepAtOpen(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := &clock{now: time.Now()}
	idc := authsqlite.Config{Now: c.Now, PasswordParams: cheap, CodeParams: cheap}
	f, err := tenant.Open(ctx, tenant.Config{Dir: dir, Identity: idc, SweepEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	to, err := f.Identity().CreateTestOrg(ctx, "", time.Minute, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Org(to.Org); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	f, err = tenant.Open(ctx, tenant.Config{Dir: dir, Identity: idc, SweepEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		orgs, err := f.Identity().ListOrgs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		left, _ := filepath.Glob(filepath.Join(dir, "orgs", to.Org+"*"))
		if len(orgs) == 0 && len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an expired test organisation is still there: %+v %v", orgs, left)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
}
