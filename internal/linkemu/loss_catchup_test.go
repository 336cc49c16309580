package linkemu

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// wholeEcho answers POST with the body it got, read whole first (Go's
// HTTP/1 server stops reading a body once the answer has started).
func wholeEcho(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestLossStallsButDelivers sends a body through a link that loses every
// segment: every byte still arrives, in order, and each segment counts a
// stall.
func TestLossStallsButDelivers(t *testing.T) {
	srv := wholeEcho(t)
	l := startLink(t, Config{Upstream: srv.Listener.Addr().String()})
	lc, err := l.AddLoss(Loss{Probability: 1, Segment: 16 << 10, RTO: time.Millisecond, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 100_000)
	rand.Read(body)
	resp, err := http.Post(l.URL(), "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("echo differs: %d bytes back, %d sent", len(got), len(body))
	}
	// At least one stall per 16 KiB segment each way.
	if n := lc.Stalls(); n < 2*int64(len(body)/(16<<10)) {
		t.Errorf("%d stalls for %d bytes each way in 16 KiB segments all lost", n, len(body))
	}
}

func TestNoLossNoStalls(t *testing.T) {
	srv := echoServer(t)
	l := startLink(t, Config{Upstream: srv.Listener.Addr().String()})
	lc, err := l.AddLoss(Loss{Probability: 0})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(l.URL(), "text/plain", bytes.NewReader([]byte("hello")))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n := lc.Stalls(); n != 0 {
		t.Errorf("%d stalls with no loss", n)
	}
}

func TestLossRefusesBadValues(t *testing.T) {
	srv := echoServer(t)
	l := startLink(t, Config{Upstream: srv.Listener.Addr().String()})
	for _, loss := range []Loss{{Probability: -0.1}, {Probability: 1.5}, {Probability: 0.1, RTO: -time.Second}, {Segment: -1}} {
		if _, err := l.AddLoss(loss); err == nil {
			t.Errorf("AddLoss(%+v): want an error", loss)
		}
	}
}

// TestRemoveLoss takes a total loss off the link: the next request
// crosses with no stall, and removing again is harmless.
func TestRemoveLoss(t *testing.T) {
	srv := wholeEcho(t)
	l := startLink(t, Config{Upstream: srv.Listener.Addr().String()})
	lc, err := l.AddLoss(Loss{Probability: 1, RTO: time.Millisecond, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	post := func() {
		t.Helper()
		resp, err := http.Post(l.URL(), "text/plain", bytes.NewReader([]byte("hello")))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != "hello" {
			t.Fatalf("echo %q, %v", got, err)
		}
	}
	post()
	before := lc.Stalls()
	if before == 0 {
		t.Fatal("no stall with every segment lost")
	}
	if err := l.RemoveLoss(); err != nil {
		t.Fatal(err)
	}
	post()
	if n := lc.Stalls(); n != before {
		t.Errorf("%d stalls after the loss was removed, %d before", n, before)
	}
	if err := l.RemoveLoss(); err != nil {
		t.Errorf("removing twice: %v", err)
	}
}
