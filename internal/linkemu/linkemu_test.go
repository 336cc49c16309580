package linkemu

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// echoServer answers POST with the body it got.
func echoServer(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the whole body before answering: the server stops reading
		// a request once its answer has begun.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func startLink(t *testing.T, cfg Config) *Link {
	t.Helper()
	l, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func TestRelaysAndCounts(t *testing.T) {
	srv := echoServer(t)
	l := startLink(t, Config{Upstream: srv.Listener.Addr().String(), Rate: 4_000_000, Latency: time.Millisecond})
	body := make([]byte, 300_000)
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
	st := l.Stats()
	if st.BytesUp < int64(len(body)) || st.BytesDown < int64(len(body)) {
		t.Fatalf("counted %d up and %d down, want at least %d each way", st.BytesUp, st.BytesDown, len(body))
	}
}

// TestCutBreaksOpenConnections holds a request open through the link,
// cuts the link, and expects that request to fail and the next to pass.
func TestCutBreaksOpenConnections(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	defer close(release)
	l := startLink(t, Config{Upstream: srv.Listener.Addr().String()})

	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get(l.URL() + "/hold")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("request did not arrive")
	}
	if err := l.Cut(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("the held request succeeded across a cut")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held request was not cut")
	}
	resp, err := http.Get(l.URL() + "/after")
	if err != nil {
		t.Fatalf("after a cut the link should accept again: %v", err)
	}
	resp.Body.Close()
	if st := l.Stats(); st.Cuts != 1 {
		t.Fatalf("cuts = %d, want 1", st.Cuts)
	}
}

func TestDownRefusesUntilUp(t *testing.T) {
	srv := echoServer(t)
	l := startLink(t, Config{Upstream: srv.Listener.Addr().String()})
	addr := l.Addr()
	l.Down()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded while the link is down")
	}
	if err := l.Up(); err != nil {
		t.Fatal(err)
	}
	if l.Addr() != addr {
		t.Fatalf("link moved from %s to %s", addr, l.Addr())
	}
	resp, err := http.Post(l.URL(), "text/plain", bytes.NewReader([]byte("hello")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" {
		t.Fatalf("got %q", b)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := Start(Config{}); err == nil {
		t.Fatal("no upstream accepted")
	}
	if _, err := Start(Config{Upstream: "127.0.0.1:1", Rate: -1}); err == nil {
		t.Fatal("negative rate accepted")
	}
}
