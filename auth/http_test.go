package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
	storesqlite "github.com/fieldsync/fieldsync/store/sqlite"
)

func wantError(t *testing.T, resp *http.Response, body []byte, status int, code fieldsync.Code) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, status)
	}
	var b protocol.ErrorBody
	if err := json.Unmarshal(body, &b); err != nil || fieldsync.Code(b.Error.Code) != code || b.Error.Message == "" {
		t.Fatalf("body %s: want code %s with a message", body, code)
	}
	if b.Error.Retryable != code.Retryable() {
		t.Fatalf("retryable %v for %s", b.Error.Retryable, code)
	}
}

func rawPost(t *testing.T, w *world, path, contentType, body string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(w.ctx, "POST", w.srv.URL+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := w.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, data
}

func TestEnrollEndpoint(t *testing.T) {
	w := newWorld(t)
	w.setUp()
	e, err := w.store.IssueEnrolment(w.ctx, "acme", "ben", "dora")
	w.must(err)
	cases := []struct {
		name, ct, body string
		status         int
		code           fieldsync.Code
	}{
		{"not JSON", "application/json", `{"code":`, 400, fieldsync.EInvalidJSON},
		{"unknown field", "application/json", `{"code":"` + e.Code + `","device_name":"t","admin":true}`, 400, fieldsync.EInvalidJSON},
		{"two values", "application/json", `{"code":"` + e.Code + `","device_name":"t"}{}`, 400, fieldsync.EInvalidJSON},
		{"no device name", "application/json", `{"code":"` + e.Code + `"}`, 400, fieldsync.EInvalidRequest},
		{"bad device id", "application/json", `{"code":"` + e.Code + `","device_name":"t","device":"../x"}`, 400, fieldsync.EInvalidRequest},
		{"form", "application/x-www-form-urlencoded", `code=` + e.Code, 415, fieldsync.EUnsupportedMedia},
		{"too large", "application/json", `{"code":"` + strings.Repeat("A", 5000) + `"}`, 413, fieldsync.ETooLarge},
		{"wrong code", "application/json", `{"code":"ABCDE-FGHJK","device_name":"t"}`, 401, fieldsync.EEnrolmentInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := rawPost(t, w, protocol.PathEnroll, c.ct, c.body)
			wantError(t, resp, body, c.status, c.code)
		})
	}
	// None of the refusals used the code up.
	resp, body := rawPost(t, w, protocol.PathEnroll, "", `{"code":"`+strings.ToLower(e.Code)+`","device_name":"Ben's tablet"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("enrol: %d %s", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q on a token answer", cc)
	}
	var out protocol.EnrollResponse
	w.must(json.Unmarshal(body, &out))
	if out.Org != "acme" || out.User != "ben" || out.Role != "field_worker" || out.Device == "" || !strings.HasPrefix(out.Token, "fsd_") {
		t.Fatalf("answer %+v", out)
	}
	resp, body = rawPost(t, w, protocol.PathEnroll, "application/json", `{"code":"`+e.Code+`","device_name":"again"}`)
	wantError(t, resp, body, 401, fieldsync.EEnrolmentInvalid)

	req, _ := http.NewRequest("GET", w.srv.URL+protocol.PathEnroll, nil)
	resp, err = w.srv.Client().Do(req)
	w.must(err)
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET %s: %d", protocol.PathEnroll, resp.StatusCode)
	}
}

func TestEnrollExpiredOverHTTP(t *testing.T) {
	w := newWorld(t)
	w.setUp()
	e, err := w.store.IssueEnrolment(w.ctx, "acme", "ben", "dora")
	w.must(err)
	w.clock.Set(w.clock.Now().Add(25 * time.Hour))
	resp, body := rawPost(t, w, protocol.PathEnroll, "application/json", `{"code":"`+e.Code+`","device_name":"t"}`)
	wantError(t, resp, body, 401, fieldsync.EEnrolmentExpired)
}

func TestLoginEndpoint(t *testing.T) {
	w := newWorld(t)
	w.setUp()
	resp, body := rawPost(t, w, protocol.PathLogin, "application/json", `{"org":"acme","user":"dora","password":"dora's password"}`)
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("login: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	var out protocol.LoginResponse
	w.must(json.Unmarshal(body, &out))
	if out.Role != "dispatcher" || !out.Expires.Equal(w.clock.Now().Add(12*time.Hour)) || !strings.HasPrefix(out.Token, "fsu_") {
		t.Fatalf("answer %+v", out)
	}
	for _, b := range []string{
		`{"org":"acme","user":"dora","password":"not it"}`,
		`{"org":"acme","user":"nobody","password":"dora's password"}`,
		`{"org":"globex","user":"dora","password":"dora's password"}`,
	} {
		resp, body := rawPost(t, w, protocol.PathLogin, "application/json", b)
		wantError(t, resp, body, 401, fieldsync.ELoginFailed)
	}
	resp, body = rawPost(t, w, protocol.PathLogin, "application/json", `{"org":"ACME","user":"dora","password":"x"}`)
	wantError(t, resp, body, 400, fieldsync.EInvalidRequest)
}

// TestRateLimitOverHTTP: a device's burst is refused with 429,
// rate_limited (retryable) and Retry-After, and passes again once the
// clock has moved; another device is not held back meanwhile. Login is
// limited per client address the same way.
func TestRateLimitOverHTTP(t *testing.T) {
	c := &clock{now: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
	ctx := context.Background()
	st, err := authsqlite.Open(ctx, filepath.Join(t.TempDir(), "identity.db"), authsqlite.Config{Now: c.Now, PasswordParams: cheap, CodeParams: cheap})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.CreateOrg(ctx, "acme")
	st.CreateUser(ctx, "acme", "ana", auth.RoleFieldWorker, "ana's password")
	var tokens []string
	for i := 0; i < 2; i++ {
		e, _ := st.IssueEnrolment(ctx, "acme", "ana", "t")
		iss, err := st.Enroll(ctx, e.Code, "tablet", "")
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, iss.Token)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	mux := http.NewServeMux()
	mux.Handle(protocol.PathLogin, auth.LoginHandler(st, auth.NewLimiter(auth.Rate{PerSecond: 0.5, Burst: 2}, c.Now), nil))
	mux.Handle("/v1/", auth.Middleware(st, auth.NewLimiter(auth.Rate{PerSecond: 20, Burst: 40}, c.Now), nil,
		func(auth.Principal) http.Handler { return ok }))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(token string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/info", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for i := 0; i < 40; i++ {
		if resp, body := get(tokens[0]); resp.StatusCode != 200 {
			t.Fatalf("request %d of the burst: %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := get(tokens[0])
	wantError(t, resp, body, 429, fieldsync.ERateLimited)
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Fatalf("Retry-After %q, want 1", ra)
	}
	if resp, _ := get(tokens[1]); resp.StatusCode != 200 {
		t.Fatalf("the other device was held back: %d", resp.StatusCode)
	}
	c.Set(c.Now().Add(time.Second))
	for i := 0; i < 20; i++ {
		if resp, body := get(tokens[0]); resp.StatusCode != 200 {
			t.Fatalf("after a second, request %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	if resp, _ := get(tokens[0]); resp.StatusCode != 429 {
		t.Fatalf("request 21 after a second: %d, want 429", resp.StatusCode)
	}

	login := func() *http.Response {
		resp, err := srv.Client().Post(srv.URL+protocol.PathLogin, "application/json",
			strings.NewReader(`{"org":"acme","user":"ana","password":"wrong password"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := 0; i < 2; i++ {
		if resp := login(); resp.StatusCode != 401 {
			t.Fatalf("login %d: %d", i+1, resp.StatusCode)
		}
	}
	resp = login()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("third login at once: %d, Retry-After %q; want 429 and 2", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	c.Set(c.Now().Add(2 * time.Second))
	if resp := login(); resp.StatusCode != 401 {
		t.Fatalf("login after the wait: %d", resp.StatusCode)
	}
}

// TestErrorShapeMatchesServer: a refusal of this package and one of the
// sync server have the same JSON shape and headers, so a client reads
// both the same way.
func TestErrorShapeMatchesServer(t *testing.T) {
	ctx := context.Background()
	st, err := storesqlite.Open(ctx, filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := server.New(server.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	shape := func(h http.Handler, r *http.Request) (map[string]map[string]string, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var raw map[string]map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
			t.Fatalf("%s: %v", rec.Body, err)
		}
		out := map[string]map[string]string{}
		for k, v := range raw {
			out[k] = map[string]string{}
			for kk, vv := range v {
				out[k][kk] = reflect.TypeOf(vv).Kind().String()
			}
		}
		return out, rec.Header().Get("Content-Type")
	}
	want, wantCT := shape(srv, httptest.NewRequest("GET", "/v1/nothing", nil))
	mw := auth.Middleware(nil, nil, slog.New(slog.DiscardHandler), nil)
	got, gotCT := shape(mw, httptest.NewRequest("GET", "/v1/info", nil))
	if !reflect.DeepEqual(got, want) || gotCT != wantCT {
		t.Fatalf("auth error shape %v (%s), server's %v (%s)", got, gotCT, want, wantCT)
	}
	rec := httptest.NewRecorder()
	auth.WriteError(rec, fieldsync.Errorf(fieldsync.ETokenRevoked, "revoked"))
	if e := protocol.DecodeErrorBody(rec.Code, rec.Body.Bytes()); e.Code != fieldsync.ETokenRevoked || rec.Code != 401 {
		t.Fatalf("decoded %v from %d", e, rec.Code)
	}
}

// fuzzFront is one identity store and the two public handlers, shared by
// the iterations of a fuzz target.
func fuzzFront(f *testing.F) (enroll, login http.Handler) {
	c := &clock{now: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
	ctx := context.Background()
	st, err := authsqlite.Open(ctx, filepath.Join(f.TempDir(), "identity.db"), authsqlite.Config{Now: c.Now, PasswordParams: cheap, CodeParams: cheap})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	st.CreateOrg(ctx, "acme")
	st.CreateUser(ctx, "acme", "dora", auth.RoleDispatcher, "dora's password")
	lim := auth.NewLimiter(auth.Rate{PerSecond: 1e6, Burst: 1 << 30}, c.Now)
	return auth.EnrollHandler(st, lim, nil), auth.LoginHandler(st, lim, nil)
}

// checkAnswer fails unless the answer is a success with a token, or a
// refusal in the error shape whose status matches its code.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, codes map[fieldsync.Code]bool) {
	t.Helper()
	if rec.Code == 200 {
		var ok struct{ Token string }
		if json.Unmarshal(rec.Body.Bytes(), &ok) != nil || ok.Token == "" {
			t.Fatalf("200 without a token: %s", rec.Body)
		}
		return
	}
	var b protocol.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("answer %d is not an error body: %s", rec.Code, rec.Body)
	}
	code := fieldsync.Code(b.Error.Code)
	if !codes[code] || auth.HTTPStatus(code) != rec.Code || b.Error.Message == "" {
		t.Fatalf("answer %d %s %q", rec.Code, code, b.Error.Message)
	}
}

var bodyCodes = map[fieldsync.Code]bool{
	fieldsync.EInvalidJSON: true, fieldsync.EInvalidRequest: true, fieldsync.ETooLarge: true,
}

func withCodes(extra ...fieldsync.Code) map[fieldsync.Code]bool {
	m := map[fieldsync.Code]bool{}
	for c := range bodyCodes {
		m[c] = true
	}
	for _, c := range extra {
		m[c] = true
	}
	return m
}

// FuzzEnrollBody sends any body to POST /v1/enroll: it is refused with a
// request code or an enrolment code, never more.
func FuzzEnrollBody(f *testing.F) {
	enroll, _ := fuzzFront(f)
	codes := withCodes(fieldsync.EEnrolmentInvalid, fieldsync.EEnrolmentExpired, fieldsync.EForbidden)
	f.Add([]byte(`{"code":"ABCDE-FGHJK","device_name":"tablet"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		enroll.ServeHTTP(rec, httptest.NewRequest("POST", protocol.PathEnroll, bytes.NewReader(body)))
		checkAnswer(t, rec, codes)
	})
}

// FuzzLoginBody sends any body to POST /v1/login.
func FuzzLoginBody(f *testing.F) {
	_, login := fuzzFront(f)
	codes := withCodes(fieldsync.ELoginFailed)
	f.Add([]byte(`{"org":"acme","user":"dora","password":"dora's password"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		login.ServeHTTP(rec, httptest.NewRequest("POST", protocol.PathLogin, bytes.NewReader(body)))
		checkAnswer(t, rec, codes)
	})
}

// TestBadTokensLimitedPerAddress: a flood of refused tokens from one
// address is cut to the burst, then answered 429 without a lookup.
func TestBadTokensLimitedPerAddress(t *testing.T) {
	c := &clock{now: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
	calls := 0
	a := authFunc(func(context.Context, string) (auth.Principal, error) {
		calls++
		return auth.Principal{}, fieldsync.Errorf(fieldsync.ETokenInvalid, "unknown")
	})
	mw := auth.Middleware(a, auth.NewLimiter(auth.Rate{PerSecond: 1, Burst: 3}, c.Now), nil, nil)
	codes := []int{}
	for i := 0; i < 5; i++ {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/v1/info", nil)
		r.Header.Set("Authorization", "Bearer "+auth.NewToken(auth.TokenDevice))
		mw.ServeHTTP(rec, r)
		codes = append(codes, rec.Code)
	}
	if !reflect.DeepEqual(codes, []int{401, 401, 401, 429, 429}) || calls != 3 {
		t.Fatalf("answers %v after %d lookups; want 401×3 then 429 without a lookup", codes, calls)
	}
	c.Set(c.Now().Add(time.Second))
	rec := httptest.NewRecorder()
	mw.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/info", nil))
	if rec.Code != 401 || calls != 3 {
		t.Fatalf("after a second: %d", rec.Code)
	}
}

// authFunc adapts a function to auth.Authenticator: a refusing
// authenticator, to count lookups.
type authFunc func(context.Context, string) (auth.Principal, error)

func (f authFunc) Authenticate(ctx context.Context, tok string) (auth.Principal, error) {
	return f(ctx, tok)
}
