package selftest_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/selftest"
)

// onlyFails checks that exactly the named checks failed (auth skips: the
// test servers ask for no token), and that the failed one's detail says
// what to do.
func onlyFails(t *testing.T, rep *selftest.Report, name, says string) {
	t.Helper()
	for _, c := range rep.Checks {
		want := selftest.Pass
		switch c.Name {
		case name:
			want = selftest.Fail
		case selftest.CheckAuth:
			want = selftest.Skip
		}
		if c.Outcome != want {
			t.Errorf("check %s: %s (%s), want %s", c.Name, c.Outcome, c.Detail, want)
		}
	}
	if c, _ := rep.Check(name); !strings.Contains(c.Detail, says) {
		t.Errorf("%s detail %q does not say %q", name, c.Detail, says)
	}
}

// TestServerClockWrong: a server whose clock is an hour ahead fails the
// clock check, which says to set it right.
func TestServerClockWrong(t *testing.T) {
	hs := startServer(t, true, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Date", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
			h.ServeHTTP(w, r)
		})
	})
	rep := run(t, selftest.Config{ServerURL: hs.URL})
	onlyFails(t, rep, selftest.CheckClock, "NTP")
	if c, _ := rep.Check(selftest.CheckClock); !strings.Contains(c.Detail, "1h0m0s ahead") {
		t.Errorf("clock detail %q does not give the offset", c.Detail)
	}
}

// TestProxyBodyLimit: something in front of the server refuses request
// bodies over 1 MiB, as nginx does by default: small photos go through,
// the large-chunk check fails and names the setting.
func TestProxyBodyLimit(t *testing.T) {
	hs := startServer(t, true, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > 1<<20 {
				http.Error(w, "413 Request Entity Too Large", http.StatusRequestEntityTooLarge)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	rep := run(t, selftest.Config{ServerURL: hs.URL})
	onlyFails(t, rep, selftest.CheckBigUpload, "client_max_body_size")
}

// dropOffset is a ResponseWriter that loses the Upload-Offset header.
type dropOffset struct{ http.ResponseWriter }

func (d dropOffset) WriteHeader(code int) {
	d.Header().Del("Upload-Offset")
	d.ResponseWriter.WriteHeader(code)
}

// TestProxyDropsUploadOffset: something in front of the server drops the
// Upload-Offset header of HEAD answers: a device could not resume, and
// the large-upload check says so.
func TestProxyDropsUploadOffset(t *testing.T) {
	hs := startServer(t, true, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodHead {
				w = dropOffset{w}
			}
			h.ServeHTTP(w, r)
		})
	})
	rep := run(t, selftest.Config{ServerURL: hs.URL})
	onlyFails(t, rep, selftest.CheckBigUpload, "resume")
}
