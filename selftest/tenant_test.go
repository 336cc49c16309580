package selftest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/auth"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/selftest"
	"github.com/fieldsync/fieldsync/tenant"
)

var cheap = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// authServer is a real multi-organisation front with authentication
// (identity store, one store per organisation) over loopback HTTP, with
// a real organisation acme, and an operator token made on the "host".
type authServer struct {
	dir, url, operator string
	front              *tenant.Front

	mu      sync.Mutex
	created []protocol.TestOrgResponse // what the operator API answered
	onReq   func(*http.Request)        // called before each request is served
}

func startAuthServer(t *testing.T) *authServer {
	t.Helper()
	ctx := context.Background()
	s := &authServer{dir: t.TempDir()}
	f, err := tenant.Open(ctx, tenant.Config{Dir: s.dir, SweepEvery: -1,
		Identity:      authsqlite.Config{PasswordParams: cheap, CodeParams: cheap},
		PrincipalRate: auth.Rate{PerSecond: 10000, Burst: 10000}, AddressRate: auth.Rate{PerSecond: 10000, Burst: 10000}})
	if err != nil {
		t.Fatal(err)
	}
	s.front = f
	if _, err := f.Identity().CreateOrg(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if s.operator, _, err = f.Identity().CreateOperator(ctx, "selftest"); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		on := s.onReq
		s.mu.Unlock()
		if on != nil {
			on(r)
		}
		if r.Method == http.MethodPost && r.URL.Path == protocol.PathTestOrgs {
			rec := httptest.NewRecorder()
			f.ServeHTTP(rec, r)
			var to protocol.TestOrgResponse
			if rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &to) == nil {
				s.mu.Lock()
				s.created = append(s.created, to)
				s.mu.Unlock()
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		f.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		hs.Close()
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	s.url = hs.URL
	return s
}

// checkGone checks that no test organisation is left: only acme in the
// identity store, no test organisation's file, and the tokens the
// operator API handed out refused.
func (s *authServer) checkGone(t *testing.T) {
	t.Helper()
	orgs, err := s.front.Identity().ListOrgs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(orgs) != 1 || orgs[0].Name != "acme" {
		t.Errorf("organisations left: %+v, want acme only", orgs)
	}
	if left, _ := filepath.Glob(filepath.Join(s.dir, "orgs", protocol.TestOrgPrefix+"*")); len(left) > 0 {
		t.Errorf("files of a test organisation left: %v", left)
	}
	s.mu.Lock()
	created := s.created
	s.mu.Unlock()
	if len(created) != 1 {
		t.Fatalf("%d test organisations made, want 1", len(created))
	}
	req, _ := http.NewRequest(http.MethodGet, s.url+protocol.PathInfo, nil)
	req.Header.Set("Authorization", "Bearer "+created[0].OfficeToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the test organisation's dispatcher token answered %d after the run, want 401", resp.StatusCode)
	}
}

// TestOperatorRun: with the operator token, the selftest makes a test
// organisation, passes every check in it as a device and the office
// would, and leaves nothing behind.
func TestOperatorRun(t *testing.T) {
	s := startAuthServer(t)
	rep := run(t, selftest.Config{ServerURL: s.url, OperatorToken: s.operator})
	for _, c := range rep.Checks {
		if c.Outcome != selftest.Pass {
			t.Errorf("check %s: %s %s, want pass", c.Name, c.Outcome, c.Detail)
		}
	}
	if len(rep.Checks) != 16 {
		t.Errorf("%d checks, want 16", len(rep.Checks))
	}
	if c, _ := rep.Check(selftest.CheckCleanup); !strings.Contains(c.Detail, protocol.TestOrgPrefix) {
		t.Errorf("the cleanup does not name the test organisation: %q", c.Detail)
	}
	s.checkGone(t)
}

// TestOperatorRunCancelled: a run cancelled midway (at the office's
// first edit) still deletes its test organisation.
func TestOperatorRunCancelled(t *testing.T) {
	s := startAuthServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var once sync.Once
	s.mu.Lock()
	s.onReq = func(r *http.Request) {
		// The office's edit in the conflict check (the auth check's
		// PATCH aims at a record that does not exist).
		if r.Method == http.MethodPatch && !strings.Contains(r.URL.Path, "selftest-none") {
			once.Do(cancel)
		}
	}
	s.mu.Unlock()
	rep, err := selftest.Run(ctx, selftest.Config{ServerURL: s.url, OperatorToken: s.operator, Dir: t.TempDir(), Trips: 3, PushOps: 20})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	t.Logf("selftest:\n%s", text.String())
	if rep.OK() {
		t.Fatal("a cancelled run passed")
	}
	if c, _ := rep.Check(selftest.CheckThroughput); c.Outcome != selftest.Fail || !strings.Contains(c.Detail, "stopped") {
		t.Errorf("throughput after the cancel: %s %q, want stopped", c.Outcome, c.Detail)
	}
	if c, _ := rep.Check(selftest.CheckCleanup); c.Outcome != selftest.Pass {
		t.Errorf("cleanup: %s %q, want pass", c.Outcome, c.Detail)
	}
	s.checkGone(t)
}

// TestOfficeRun: with an office token and a worker of an existing test
// organisation, every check passes and the records made are deleted.
func TestOfficeRun(t *testing.T) {
	s := startAuthServer(t)
	to, err := s.front.Identity().CreateTestOrg(context.Background(), "selftest-staging", time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	rep := run(t, selftest.Config{ServerURL: s.url, OfficeToken: to.OfficeToken, Worker: to.Worker})
	for _, c := range rep.Checks {
		if c.Outcome != selftest.Pass {
			t.Errorf("check %s: %s %s, want pass", c.Name, c.Outcome, c.Detail)
		}
	}
	if c, _ := rep.Check(selftest.CheckCleanup); !strings.Contains(c.Detail, "deleted") {
		t.Errorf("cleanup: %q", c.Detail)
	}
}

// TestAuthRequired: against a server that requires a token, a run with
// none does not start, and says so.
func TestAuthRequired(t *testing.T) {
	s := startAuthServer(t)
	_, err := selftest.Run(context.Background(), selftest.Config{ServerURL: s.url, Dir: t.TempDir()})
	if !errors.Is(err, selftest.ErrAuthRequired) {
		t.Fatalf("error %v, want ErrAuthRequired", err)
	}
	// A wrong operator token: the setup fails with the server's reason,
	// the rest is skipped or fails, and nothing is left.
	rep := run(t, selftest.Config{ServerURL: s.url, OperatorToken: auth.NewToken(auth.TokenOperator)})
	c, _ := rep.Check(selftest.CheckSetup)
	if c.Outcome != selftest.Fail || !strings.Contains(c.Detail, "token_invalid") {
		t.Errorf("setup with an unknown operator token: %s %q", c.Outcome, c.Detail)
	}
	if c, _ := rep.Check(selftest.CheckCleanup); c.Outcome != selftest.Pass {
		t.Errorf("cleanup: %s %q", c.Outcome, c.Detail)
	}
	for _, bad := range []selftest.Config{
		{ServerURL: s.url, OperatorToken: s.operator, OfficeToken: "x", Worker: "w"},
		{ServerURL: s.url, OfficeToken: "x"},
		{ServerURL: s.url, Worker: "w"},
		{ServerURL: s.url, OfficeToken: "x", Worker: "w", Token: "y"},
	} {
		if _, err := selftest.Run(context.Background(), bad); err == nil {
			t.Errorf("config %+v: want an error", bad)
		}
	}
}
