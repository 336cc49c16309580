package selftest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/selftest"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// startServer runs a real server on a SQLite file over loopback HTTP.
// blobs says whether it has a place for attachments. wrap, when set,
// wraps its handler.
func startServer(t *testing.T, blobs bool, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := server.Config{Store: st}
	if blobs {
		cfg.BlobDir = filepath.Join(dir, "blobs")
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = srv
	if wrap != nil {
		h = wrap(srv)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs
}

func run(t *testing.T, cfg selftest.Config) *selftest.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	cfg.Trips, cfg.PushOps = 3, 20
	rep, err := selftest.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	t.Logf("selftest:\n%s", text.String())
	return rep
}

// TestHealthyServer: every check passes against a complete server, the
// figures are measured, and the records it made are deleted.
func TestHealthyServer(t *testing.T) {
	hs := startServer(t, true, nil)
	rep := run(t, selftest.Config{ServerURL: hs.URL})
	if !rep.OK() {
		t.Fatalf("a healthy server failed the selftest")
	}
	for _, c := range rep.Checks {
		want := selftest.Pass
		if c.Name == selftest.CheckAuth {
			want = selftest.Skip // no authentication here
		}
		if c.Outcome != want {
			t.Errorf("check %s: %s %s, want %s", c.Name, c.Outcome, c.Detail, want)
		}
	}
	if len(rep.Checks) != 16 {
		t.Errorf("%d checks ran, want 16", len(rep.Checks))
	}
	if !(rep.RoundTripMS > 0) || !(rep.PushOpsPerS > 0) {
		t.Errorf("round trip %v ms, push %v ops/s: want both measured", rep.RoundTripMS, rep.PushOpsPerS)
	}

	// Every record whose title starts "selftest " is deleted on the server.
	req, _ := http.NewRequest(http.MethodGet, hs.URL+"/v1/changes?limit=1000", nil)
	req.Header.Set("Fieldsync-Protocol", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Changes []struct {
			ID      string                     `json:"id"`
			Deleted bool                       `json:"deleted"`
			Fields  map[string]json.RawMessage `json:"fields"`
		} `json:"changes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	if len(page.Changes) == 0 {
		t.Fatal("the server holds no record of the selftest at all")
	}
	for _, r := range page.Changes {
		if !r.Deleted {
			t.Errorf("record %s (title %s) left behind", r.ID, r.Fields["title"])
		}
	}
}

// TestNoBlobDir: a server without a place for attachments fails exactly
// the two upload checks, and the text says so.
func TestNoBlobDir(t *testing.T) {
	hs := startServer(t, false, nil)
	rep := run(t, selftest.Config{ServerURL: hs.URL})
	if rep.OK() {
		t.Fatal("a server without attachments passed the selftest")
	}
	for _, c := range rep.Checks {
		want := selftest.Pass
		switch c.Name {
		case selftest.CheckAttachment, selftest.CheckBigUpload:
			want = selftest.Fail
		case selftest.CheckAuth:
			want = selftest.Skip
		}
		if c.Outcome != want {
			t.Errorf("check %s: %s (%s), want %s", c.Name, c.Outcome, c.Detail, want)
		}
	}
	c, _ := rep.Check(selftest.CheckAttachment)
	if !strings.Contains(c.Detail, "not configured") {
		t.Errorf("attachment detail %q does not say attachments are not configured", c.Detail)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	if !strings.Contains(text.String(), "✗ attachment") || !strings.Contains(text.String(), "2 of 16 checks failed") {
		t.Errorf("text report does not single out the attachment check:\n%s", text.String())
	}
}

// TestStaleCursorServed: a server that serves a cursor of another
// history fails the stale-cursor check, and only that one.
func TestStaleCursorServed(t *testing.T) {
	// A proxy in front of a real server that drops the cursor of every
	// pull, as a server that ignored it would: the stale cursor is served.
	hs := startServer(t, true, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/changes" {
				q := r.URL.Query()
				// The selftest's stale cursor flips every digit of the
				// epoch to f or 0; a real epoch is never made only of those.
				if c := q.Get("cursor"); c != "" && strings.Trim(strings.Split(c, ".")[1], "f0-") == "" {
					q.Del("cursor")
					r.URL.RawQuery = q.Encode()
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	rep := run(t, selftest.Config{ServerURL: hs.URL})
	for _, c := range rep.Checks {
		want := selftest.Pass
		switch c.Name {
		case selftest.CheckStaleCursor:
			want = selftest.Fail
		case selftest.CheckAuth:
			want = selftest.Skip
		}
		if c.Outcome != want {
			t.Errorf("check %s: %s (%s), want %s", c.Name, c.Outcome, c.Detail, want)
		}
	}
}

// TestToken: with a token, every request carries it, the device
// engine's included, but for the auth check's request without one.
func TestToken(t *testing.T) {
	var mu sync.Mutex
	seen, without := 0, []string{}
	hs := startServer(t, true, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen++
			if r.Header.Get("Authorization") != "Bearer s3cret" {
				without = append(without, r.Method+" "+r.URL.Path)
			}
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	})
	rep := run(t, selftest.Config{ServerURL: hs.URL, Token: "s3cret"})
	if !rep.OK() {
		t.Fatal("selftest with a token failed")
	}
	mu.Lock()
	defer mu.Unlock()
	// One request goes without it on purpose: the auth check's.
	if seen == 0 || len(without) != 1 || without[0] != "GET /v1/info" {
		t.Errorf("%d requests, these without the token: %v (want only the auth check's GET /v1/info)", seen, without)
	}
}

func TestUnreachable(t *testing.T) {
	hs := startServer(t, true, nil)
	url := hs.URL
	hs.Close()
	rep := run(t, selftest.Config{ServerURL: url})
	if rep.OK() {
		t.Fatal("a server that is not there passed")
	}
	if c, _ := rep.Check(selftest.CheckHealth); c.Outcome != selftest.Fail {
		t.Errorf("health: %s, want fail", c.Outcome)
	}
}

func TestBadConfig(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "localhost:8080"} {
		if _, err := selftest.Run(context.Background(), selftest.Config{ServerURL: u}); err == nil {
			t.Errorf("server URL %q: want an error", u)
		}
	}
}
