package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/auth"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
	"github.com/fieldsync/fieldsync/selftest"
	"github.com/fieldsync/fieldsync/tenant"
)

const operatorEnv = "FIELDSYNC_E2E_OPERATOR"

// TestHelperSelftest is not a test: it is the selftest process of
// TestSelftestKilledLeavesNothing, started by it with
// helperEnv=selftest. It runs the selftest against $FIELDSYNC_E2E_URL
// with the operator token $FIELDSYNC_E2E_OPERATOR.
func TestHelperSelftest(t *testing.T) {
	if os.Getenv(helperEnv) != "selftest" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), helperLife)
	defer cancel()
	rep, err := selftest.Run(ctx, selftest.Config{ServerURL: os.Getenv(urlEnv), OperatorToken: os.Getenv(operatorEnv),
		Dir: os.Getenv(dirEnv), Trips: 3, PushOps: 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, "selftest helper:", err)
		os.Exit(3)
	}
	rep.WriteText(os.Stdout)
	os.Exit(0)
}

// TestSelftestKilledLeavesNothing: a selftest process killed (SIGKILL)
// in the middle of its checks cannot delete its test organisation; the
// organisation's tokens stop working when it expires, and the server
// removes it, files and identity rows, on its own.
func TestSelftestKilledLeavesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	dir := t.TempDir()
	front, err := tenant.Open(ctx, tenant.Config{Dir: dir, SweepEvery: -1,
		Identity:      authsqlite.Config{Now: now, PasswordParams: cheapArgon, CodeParams: cheapArgon},
		PrincipalRate: auth.Rate{PerSecond: 10000, Burst: 10000}, AddressRate: auth.Rate{PerSecond: 10000, Burst: 10000}})
	if err != nil {
		t.Fatal(err)
	}
	defer front.Close()
	op, _, err := front.Identity().CreateOperator(ctx, "selftest")
	if err != nil {
		t.Fatal(err)
	}
	// The office's first edit is held until the test ends: the selftest
	// is then midway, with its organisation in use, when it is killed.
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			once.Do(func() { close(held) })
			select {
			case <-release:
			case <-ctx.Done():
			}
			http.Error(w, "held", http.StatusServiceUnavailable)
			return
		}
		front.ServeHTTP(w, r)
	}))
	defer ts.Close()
	defer close(release) // before the server closes

	p := startProc(t, "Selftest", urlEnv+"="+ts.URL, operatorEnv+"="+op, dirEnv+"="+t.TempDir())
	select {
	case <-held:
	case <-p.done:
		t.Fatalf("the selftest ended before its office edit: %s", p.stderr.String())
	case <-ctx.Done():
		t.Fatal("the selftest never reached its office edit")
	}
	p.killAndWait()
	if ok, how := p.diedBySIGKILL(); !ok {
		t.Fatalf("the selftest did not die by SIGKILL: %s", how)
	}

	orgs, err := front.Identity().ListOrgs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(orgs) != 1 || !orgs[0].Test() {
		t.Fatalf("organisations after the kill: %+v, want the one test organisation left behind", orgs)
	}
	org := orgs[0].Name
	if _, err := os.Stat(tenant.OrgPath(dir, org)); err != nil {
		t.Fatalf("the test organisation's store: %v", err)
	}
	if n, err := front.SweepTestOrgs(ctx); n != 0 || err != nil {
		t.Fatalf("a sweep before the expiry: %d %v", n, err)
	}
	offset.Store(int64(orgs[0].TestExpires.Sub(time.Now()) + time.Second))
	if n, err := front.SweepTestOrgs(ctx); n != 1 || err != nil {
		t.Fatalf("the sweep after the expiry: %d %v, want 1 removed", n, err)
	}
	if orgs, _ := front.Identity().ListOrgs(ctx); len(orgs) != 0 {
		t.Errorf("organisations after the sweep: %+v", orgs)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "orgs", org+"*")); len(left) > 0 {
		t.Errorf("files left: %v", left)
	}
}
