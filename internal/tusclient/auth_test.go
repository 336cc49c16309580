package tusclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/tusclient"
)

// TestUploadHeaderOnEveryRequest: an upload's own headers (a bearer
// token) reach every request of it, creation, offset and chunks, beside
// the Client's; a request without them is refused by the server.
func TestUploadHeaderOnEveryRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := newTusServer(t)
	var seen, refused atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t1" || r.Header.Get("X-Version") != "3" {
			refused.Add(1)
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		seen.Add(1)
		http.StripPrefix("/files", ts).ServeHTTP(w, r)
	}))
	defer hs.Close()
	data := make([]byte, 300<<10)
	u := upload(data, shaOf(data))
	u.Endpoint = hs.URL + "/files/"
	u.Header = http.Header{"Authorization": {"Bearer t1"}}
	c := &tusclient.Client{Header: http.Header{"X-Version": {"3"}}, MinChunk: 64 << 10, FirstChunk: 64 << 10}
	res, err := c.Upload(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if refused.Load() != 0 || seen.Load() < 3 {
		t.Fatalf("%d requests with the header, %d without", seen.Load(), refused.Load())
	}
	// Resume from the URL: HEAD carries it too.
	u2 := *u
	u2.URL = res.URL
	if _, err := c.Upload(ctx, &u2); err != nil || refused.Load() != 0 {
		t.Fatalf("resume: %v, %d refused", err, refused.Load())
	}
	// Without it: refused at once, not ridden out.
	u3 := *u
	u3.Header = nil
	_, err = c.Upload(ctx, &u3)
	var se *tusclient.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || refused.Load() != 1 {
		t.Fatalf("without credentials: %v after %d refusals", err, refused.Load())
	}
}

// TestRetryAfterIsTheCallersWait: a 429 whose Retry-After is longer than
// the upload's own pause is returned at once with the wait; a short one
// is ridden out.
func TestRetryAfterIsTheCallersWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var calls atomic.Int64
	after := atomic.Value{}
	after.Store("30")
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", after.Load().(string))
		http.Error(w, `{"error":{"code":"rate_limited"}}`, http.StatusTooManyRequests)
	}))
	defer hs.Close()
	data := []byte("x")
	u := upload(data, shaOf(data))
	u.Endpoint = hs.URL + "/files/"
	_, err := (&tusclient.Client{RetryWait: time.Millisecond}).Upload(ctx, u)
	var se *tusclient.StatusError
	if !errors.As(err, &se) || se.Status != 429 || se.RetryAfter != 30*time.Second || calls.Load() != 1 {
		t.Fatalf("429 Retry-After 30: %v after %d calls", err, calls.Load())
	}
	if se.Header.Get("Retry-After") != "30" {
		t.Fatalf("headers not kept: %v", se.Header)
	}
	// Retry-After 0 is within the pause: ridden out up to Retries.
	calls.Store(0)
	after.Store("0")
	_, err = (&tusclient.Client{Retries: 2, RetryWait: time.Millisecond}).Upload(ctx, u)
	if !errors.As(err, &se) || calls.Load() != 3 {
		t.Fatalf("429 Retry-After 0: %v after %d calls", err, calls.Load())
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{" 12 ", 12 * time.Second, true},
		{"9999999999", tusclient.MaxRetryAfter, true},
		{"Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Sun, 01 Mar 2026 11:00:00 GMT", 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"12345678901", 0, false},
		{"soon", 0, false},
	} {
		got, ok := tusclient.ParseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseRetryAfter: any Retry-After value gives a wait between zero
// and the cap, or is refused.
func FuzzParseRetryAfter(f *testing.F) {
	f.Add("7")
	f.Add("Sun, 01 Mar 2026 12:00:30 GMT")
	f.Add("99999999999999999999")
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := tusclient.ParseRetryAfter(v, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		if d < 0 || d > tusclient.MaxRetryAfter || !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v", v, d, ok)
		}
	})
}

// TestUploadHeaderStaysWithItsOrigin: a creation answered with a Location
// on another origin gets the upload's bytes, but not its credentials.
func TestUploadHeaderStaysWithItsOrigin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := newTusServer(t)
	var leaked atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		http.StripPrefix("/files", ts).ServeHTTP(w, r)
	}))
	defer other.Close()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t1" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		rec := httptest.NewRecorder()
		http.StripPrefix("/files", ts).ServeHTTP(rec, r)
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		if loc := rec.Header().Get("Location"); loc != "" {
			w.Header().Set("Location", other.URL+"/files/"+loc[strings.LastIndex(loc, "/")+1:])
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	defer front.Close()
	data := []byte("hello, other origin")
	u := upload(data, shaOf(data))
	u.Endpoint = front.URL + "/files/"
	u.Header = http.Header{"Authorization": {"Bearer t1"}}
	res, err := (&tusclient.Client{}).Upload(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.URL, other.URL) || leaked.Load() != 0 {
		t.Fatalf("upload at %s; %d requests to the other origin carried the credentials", res.URL, leaked.Load())
	}
	if _, ok := ts.has(shaOf(data)); !ok {
		t.Fatal("the bytes did not arrive")
	}
}
