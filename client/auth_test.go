package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// cheapArgon keeps enrolment codes fast to hash in tests.
var cheapArgon = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// authFront is a sync server behind the real identity layer, as the
// multi-organisation front serves it: the identity store, the token
// middleware with its rate limits, /v1/enroll, and one organisation's
// server that requires a principal. It records the Authorization header
// of every request.
type authFront struct {
	URL string
	ids *authsqlite.Store
	hs  *httptest.Server

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	method, path, authorization string
}

// frontOptions tune newAuthFront.
type frontOptions struct {
	tls  bool
	rate auth.Rate        // per device; zero: the default
	now  func() time.Time // the limiter's clock; nil: time.Now
}

func newAuthFront(t *testing.T, o frontOptions) *authFront {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	ids, err := authsqlite.Open(ctx, filepath.Join(dir, "identity.db"), authsqlite.Config{PasswordParams: cheapArgon, CodeParams: cheapArgon})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ids.Close() })
	if _, err := ids.CreateOrg(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := ids.CreateUser(ctx, "acme", "ana", auth.RoleFieldWorker, ""); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "acme.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := server.New(server.Config{Store: st, BlobDir: filepath.Join(dir, "blobs"), Org: "acme", RequireAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	var lim *auth.Limiter
	if o.rate != (auth.Rate{}) {
		lim = auth.NewLimiter(o.rate, o.now)
	}
	f := &authFront{ids: ids}
	mux := http.NewServeMux()
	mux.Handle(protocol.PathEnroll, auth.EnrollHandler(ids, nil, nil))
	mux.Handle("/v1/", auth.Middleware(ids, lim, nil, func(p auth.Principal) http.Handler {
		if p.Org != "acme" {
			return nil
		}
		return srv
	}))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.seen = append(f.seen, seenRequest{r.Method, r.URL.Path, r.Header.Get("Authorization")})
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
	f.hs = httptest.NewUnstartedServer(h)
	f.hs.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected here
	if o.tls {
		f.hs.StartTLS()
	} else {
		f.hs.Start()
	}
	t.Cleanup(f.hs.Close)
	f.URL = f.hs.URL
	return f
}

// code issues a one-time enrolment code for ana.
func (f *authFront) code(t *testing.T) string {
	t.Helper()
	e, err := f.ids.IssueEnrolment(context.Background(), "acme", "ana", "dora")
	if err != nil {
		t.Fatal(err)
	}
	return e.Code
}

// requests returns the requests seen so far and forgets them.
func (f *authFront) requests() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.seen
	f.seen = nil
	return out
}

// fingerprint is the SHA-256 of the TLS server's certificate, as the
// server prints it (colon-separated pairs).
func (f *authFront) fingerprint() string {
	sum := sha256.Sum256(f.hs.Certificate().Raw)
	h := hex.EncodeToString(sum[:])
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

func queuedAttempts(ctx context.Context, t *testing.T, e *client.Engine) (queued, attempts int) {
	t.Helper()
	ops, err := e.Ops(ctx, client.OpQueued, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		attempts += o.Attempts
	}
	return len(ops), attempts
}

// TestEnrollThenSyncCarriesToken: a device that is not enrolled is told
// so and keeps its queue; once enrolled, push, pull, the blob check and
// every tus request carry its token, and the token is never logged.
func TestEnrollThenSyncCarriesToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newAuthFront(t, frontOptions{})
	var logs bytes.Buffer
	var logMu sync.Mutex
	cfg := attachConfig(t.TempDir(), f.URL)
	cfg.Logger = newTestLogger(&lockedWriter{w: &logs, mu: &logMu})
	e := openWith(t, cfg)

	id := newRecord(ctx, t, e)
	attachPhoto(ctx, t, e, id, testJPEG(t, 640, 480, 1))
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Auth != client.AuthNotEnrolled {
		t.Fatalf("before enrolment: Auth = %q", st.Auth)
	}
	_, err = e.Sync(ctx)
	if fieldsync.ErrorCode(err) != fieldsync.ETokenMissing || !strings.Contains(fieldsync.ErrorMessage(err), "not enrolled") {
		t.Fatalf("sync before enrolment: %v", err)
	}
	if q, a := queuedAttempts(ctx, t, e); q != 2 || a != 0 {
		t.Fatalf("after the refusal: %d queued, %d attempts; want 2 untouched", q, a)
	}

	if err := e.Enroll(ctx, "not-a-code", "Ana's tablet"); fieldsync.ErrorCode(err) != fieldsync.EEnrolmentInvalid {
		t.Fatalf("enrol with a wrong code: %v", err)
	}
	f.requests()
	if err := e.Enroll(ctx, f.code(t), "Ana's tablet"); err != nil {
		t.Fatal(err)
	}
	rep, err := e.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Delivered != 2 || rep.Uploaded != 1 {
		t.Fatalf("report %+v", rep)
	}
	var token string
	kinds := map[string]bool{}
	for _, r := range f.requests() {
		if r.path == protocol.PathEnroll {
			continue
		}
		if !strings.HasPrefix(r.authorization, "Bearer fsd_") {
			t.Errorf("%s %s without the device token: %q", r.method, r.path, r.authorization)
		}
		token = strings.TrimPrefix(r.authorization, "Bearer ")
		kinds[r.method+" "+strings.SplitN(strings.TrimPrefix(r.path, "/v1/"), "/", 2)[0]] = true
	}
	for _, k := range []string{"POST push", "GET changes", "HEAD blobs", "POST files", "PATCH files"} {
		if !kinds[k] {
			t.Errorf("no %s request seen (saw %v)", k, kinds)
		}
	}
	st, err = e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Auth != client.AuthOK || st.Enrolment.User != "ana" || st.Enrolment.Org != "acme" || st.Enrolment.Server != f.URL ||
		st.Enrolment.DeviceName != "Ana's tablet" || st.Enrolment.Enrolled.IsZero() {
		t.Fatalf("status after enrolment: auth %q, %+v", st.Auth, st.Enrolment)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if token == "" || strings.Contains(logs.String(), token) || strings.Contains(logs.String(), token[4:]) {
		t.Fatalf("the token is in the log (or was never sent):\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestRevokedDeviceKeepsQueueAndEnrolsAgain: a revoked device is told so
// by Sync and Status, its queue stays as it was, Run waits at least the
// interval; enrolled again with a new code it keeps its id and delivers
// the queue. Another engine on the same directory uses the new token at
// its next sync.
func TestRevokedDeviceKeepsQueueAndEnrolsAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newAuthFront(t, frontOptions{})
	dir := t.TempDir()
	cfg := client.Config{Dir: dir, ServerURL: f.URL, Interval: 30 * time.Second}
	e := openWith(t, cfg)
	if err := e.Enroll(ctx, f.code(t), "tablet 7"); err != nil {
		t.Fatal(err)
	}
	newRecord(ctx, t, e)
	if _, err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	if err := f.ids.RevokeDevice(ctx, "acme", e.DeviceID()); err != nil {
		t.Fatal(err)
	}
	id := newRecord(ctx, t, e)
	if _, err := e.Update(ctx, "work_order", id, map[string]any{"status": "in progress"}); err != nil {
		t.Fatal(err)
	}
	_, syncErr := e.Sync(ctx)
	if err := syncErr; fieldsync.ErrorCode(err) != fieldsync.ETokenRevoked || !client.IsAuthRefusal(err) ||
		fieldsync.ErrorMessage(err) != "this device was revoked by the office; what is saved here is kept; enrol again with a new code to deliver it" {
		t.Fatalf("sync of a revoked device: %v", err)
	}
	if q, a := queuedAttempts(ctx, t, e); q != 2 || a != 0 {
		t.Fatalf("after the refusal: %d queued, %d attempts; want 2 untouched", q, a)
	}
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Auth != client.AuthRevoked || !strings.Contains(st.AuthMessage, "revoked by the office") || st.LastError != st.AuthMessage || st.Pending() != 2 {
		t.Fatalf("status of a revoked device: auth %q %q, last error %q, pending %d", st.Auth, st.AuthMessage, st.LastError, st.Pending())
	}
	if wait, floor := e.RetryWait(syncErr, 1); wait < cfg.Interval || floor < cfg.Interval {
		t.Fatalf("Run would retry a revoked device after %v (floor %v), before the interval", wait, floor)
	}

	other := openWith(t, client.Config{Dir: dir}) // the server URL comes from the enrolment
	if other.ServerURL() != f.URL {
		t.Fatalf("stored server URL: %q", other.ServerURL())
	}
	if err := e.Enroll(ctx, f.code(t), "tablet 7"); err != nil {
		t.Fatal(err)
	}
	st, err = e.Status(ctx)
	if err != nil || st.Auth != client.AuthOK || st.LastError != "" || st.DeviceID != e.DeviceID() {
		t.Fatalf("status after enrolling again: %+v, %v", st, err)
	}
	rep, err := other.Sync(ctx)
	if err != nil || rep.Delivered != 2 {
		t.Fatalf("the queue after enrolling again: %+v, %v", rep, err)
	}
	devs, err := f.ids.ListDevices(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].ID != e.DeviceID() || !devs[0].Revoked.IsZero() {
		t.Fatalf("devices on the server: %+v", devs)
	}
}

// TestPinnedCertificate: over TLS, the right pin (in the server's colon
// form) enrols and syncs, and is kept for the next opening; a wrong pin,
// or no pin with an untrusted certificate, fails with a clear message
// and sends nothing; trusting the authority works without a pin.
func TestPinnedCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newAuthFront(t, frontOptions{tls: true})
	dir := t.TempDir()
	e := openWith(t, client.Config{Dir: dir, ServerURL: f.URL, TLS: client.TLSConfig{PinSHA256: strings.ToUpper(f.fingerprint())}})
	if err := e.Enroll(ctx, f.code(t), "tablet"); err != nil {
		t.Fatal(err)
	}
	newRecord(ctx, t, e)
	if rep, err := e.Sync(ctx); err != nil || rep.Delivered != 1 {
		t.Fatalf("sync over pinned TLS: %+v, %v", rep, err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	again := openWith(t, client.Config{Dir: dir})
	newRecord(ctx, t, again)
	if rep, err := again.Sync(ctx); err != nil || rep.Delivered != 1 {
		t.Fatalf("sync with the stored server and pin: %+v, %v", rep, err)
	}
	again.Close()

	wrong := strings.Repeat("ab", 32)
	f.requests()
	bad := openWith(t, client.Config{Dir: dir, ServerURL: f.URL, TLS: client.TLSConfig{PinSHA256: wrong}})
	newRecord(ctx, t, bad)
	_, err := bad.Sync(ctx)
	if fieldsync.ErrorCode(err) != fieldsync.EUnavailable ||
		!strings.Contains(fieldsync.ErrorMessage(err), "certificate does not match the pinned fingerprint") ||
		!strings.Contains(fieldsync.ErrorMessage(err), f.fingerprint()) {
		t.Fatalf("sync with a wrong pin: %v", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("%d requests reached the server through a wrong pin", n)
	}
	if q, _ := queuedAttempts(ctx, t, bad); q != 1 {
		t.Fatalf("queued after the wrong pin: %d", q)
	}
	bad.Close()
	fresh := openWith(t, client.Config{Dir: t.TempDir(), ServerURL: f.URL, TLS: client.TLSConfig{PinSHA256: wrong}})
	if err := fresh.Enroll(ctx, f.code(t), "tablet"); !strings.Contains(fieldsync.ErrorMessage(err), "certificate does not match the pinned fingerprint") {
		t.Fatalf("enrol with a wrong pin: %v", err)
	}

	untrusted := openWith(t, client.Config{Dir: t.TempDir(), ServerURL: f.URL})
	if err := untrusted.Enroll(ctx, f.code(t), "tablet"); fieldsync.ErrorCode(err) != fieldsync.EUnavailable ||
		!strings.Contains(fieldsync.ErrorMessage(err), "not trusted") {
		t.Fatalf("enrol with an untrusted certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(f.hs.Certificate())
	trusted := openWith(t, client.Config{Dir: t.TempDir(), ServerURL: f.URL, TLS: client.TLSConfig{RootCAs: pool}})
	if err := trusted.Enroll(ctx, f.code(t), "tablet"); err != nil {
		t.Fatalf("enrol trusting the authority: %v", err)
	}
	if _, err := client.Open(ctx, client.Config{Dir: t.TempDir(), TLS: client.TLSConfig{PinSHA256: "abc"}}); err == nil ||
		!strings.Contains(err.Error(), "PinSHA256") {
		t.Fatalf("a malformed pin was accepted: %v", err)
	}
}

// TestRateLimitedHonoursRetryAfter: a 429 from the real limiter comes
// back as rate_limited with its Retry-After, and Run's next wait (even
// after a Save) is at least that; the queue is kept.
func TestRateLimitedHonoursRetryAfter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := newAuthFront(t, frontOptions{rate: auth.Rate{PerSecond: 0.1, Burst: 1}, now: func() time.Time { return clock }})
	e := openWith(t, client.Config{Dir: t.TempDir(), ServerURL: f.URL, MinBackoff: time.Millisecond, MaxBackoff: time.Second})
	if err := e.Enroll(ctx, f.code(t), "tablet"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Sync(ctx); err != nil { // the one request of the burst
		t.Fatal(err)
	}
	newRecord(ctx, t, e)
	_, err := e.Sync(ctx)
	if fieldsync.ErrorCode(err) != fieldsync.ERateLimited || client.RetryAfter(err) != 10*time.Second {
		t.Fatalf("sync over the rate: %v (retry after %v)", err, client.RetryAfter(err))
	}
	if wait, floor := e.RetryWait(err, 1); wait < 10*time.Second || floor < 10*time.Second {
		t.Fatalf("Run would wait %v (floor %v) after Retry-After: 10", wait, floor)
	}
	if q, _ := queuedAttempts(ctx, t, e); q != 1 {
		t.Fatalf("queued after the 429: %d", q)
	}
	st, err := e.Status(ctx)
	if err != nil || st.Auth != client.AuthOK {
		t.Fatalf("a rate limit is not a refusal of the device: %q, %v", st.Auth, err)
	}
}

// waitUntil polls cond until it holds, failing the test after a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunDeliversAfterEnrolling: Run, refused for want of a token, waits
// the (long) interval even when kicked by a Save; an enrolment made
// meanwhile wakes it at once and the queue is delivered.
func TestRunDeliversAfterEnrolling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newAuthFront(t, frontOptions{})
	e := openWith(t, client.Config{Dir: t.TempDir(), ServerURL: f.URL, Interval: time.Hour, MinBackoff: time.Millisecond})
	newRecord(ctx, t, e)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()
	status := func() client.Status {
		st, err := e.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	waitUntil(t, "Run's first sync refused", func() bool {
		st := status()
		return st.Auth == client.AuthNotEnrolled && !st.LastAttempt.IsZero()
	})
	newRecord(ctx, t, e) // a Save does not cut the wait short
	if err := e.Enroll(ctx, f.code(t), "tablet"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the queue delivered after enrolling", func() bool {
		st := status()
		return st.Pending() == 0 && st.Counts[client.OpDelivered] == 2 && st.Auth == client.AuthOK
	})
}
