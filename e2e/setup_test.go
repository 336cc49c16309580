package e2e

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// seedEnv replays a randomised test: FIELDSYNC_SEED=<seed>.
const seedEnv = "FIELDSYNC_SEED"

// testSeed returns the seed of a randomised test and logs how to replay it.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := rand.Uint64() >> 1
	if v := os.Getenv(seedEnv); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", seedEnv, v, err)
		}
		seed = n
	}
	t.Logf("seed %d (replay: %s=%d go test ./e2e -run '^%s$')", seed, seedEnv, seed, t.Name())
	return seed
}

// testServer is an in-process sync server on a real SQLite file, served
// on loopback behind a fault proxy. The handler behind the listener can
// be swapped, e.g. for a server restored from a backup.
type testServer struct {
	Path    string // the store's database file
	Store   *sqlite.Store
	Server  *server.Server
	Proxy   *Proxy
	URL     string // the proxy's URL: what devices use
	handler atomic.Pointer[http.Handler]
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	ts := &testServer{Path: filepath.Join(t.TempDir(), "server.db")}
	ts.open(t)
	direct := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*ts.handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(direct.Close)
	ts.Proxy = NewProxy(direct.URL)
	t.Cleanup(ts.Proxy.Close)
	front := httptest.NewServer(ts.Proxy)
	t.Cleanup(front.Close)
	ts.URL = front.URL
	t.Cleanup(func() { ts.Store.Close() })
	return ts
}

// open opens the store at ts.Path and serves it.
func (ts *testServer) open(t *testing.T) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), ts.Path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ts.Store, ts.Server = st, srv
	var h http.Handler = srv
	ts.handler.Store(&h)
}

// engineConfig is the client configuration of the tests: small batches
// and quick retries.
func engineConfig(dir, url string) client.Config {
	return client.Config{
		Dir: dir, ServerURL: url, BatchSize: 10,
		RequestTimeout: 10 * time.Second, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Interval: 50 * time.Millisecond,
	}
}

func openEngine(t *testing.T, cfg client.Config) *client.Engine {
	t.Helper()
	e, err := client.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// syncUntilDone syncs until a sync succeeds with nothing left to send,
// retrying what is retryable, and fails the test when ctx ends first.
func syncUntilDone(ctx context.Context, t *testing.T, e *client.Engine) {
	t.Helper()
	if err := syncUntilDoneErr(ctx, e); err != nil {
		t.Fatal(err)
	}
}

// isRefused reports whether err is a whole request refused by the server
// (a 4xx on the request, not a verdict on an op): the ops stay queued and
// a later sync sends them again.
func isRefused(err error) bool {
	var fe *fieldsync.Error
	return errors.As(err, &fe) && fe.Code == fieldsync.EInvalidJSON
}

// mustNoErr fails the test on err.
func mustNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
