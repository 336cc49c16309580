//go:build linux

package netns

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Required names the environment variable that makes these tests fail,
// rather than skip, on a machine that cannot make namespaces (CI sets it).
const Required = "FIELDSYNC_NETNS"

func need(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv(Required) != "" {
			t.Fatalf("%s is set but: %v", Required, err)
		}
		t.Skipf("no network namespaces here (%v); set %s=1 to require them", err, Required)
	}
}

// TestOrphansSwept: a namespace left by a process that is gone (killed
// before it could Close its link) is removed by the next New; one of a
// process still running is left alone.
func TestOrphansSwept(t *testing.T) {
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A process that has ended: its id is free (until reused).
	cmd := exec.CommandContext(ctx, "true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	orphan := fmt.Sprintf("%s%d-abcdef", nsPrefix, cmd.Process.Pid)
	alive := fmt.Sprintf("%s%d-fedcba", nsPrefix, os.Getppid())
	for _, ns := range []string{orphan, alive} {
		if _, err := run(ctx, "ip", "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
	}
	defer run(ctx, "ip", "netns", "del", alive)
	defer run(ctx, "ip", "netns", "del", orphan)
	l, err := New(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := os.Stat(filepath.Join("/var/run/netns", orphan)); !os.IsNotExist(err) {
		t.Errorf("the orphan namespace %s is still there (%v)", orphan, err)
	}
	if _, err := os.Stat(filepath.Join("/var/run/netns", alive)); err != nil {
		t.Errorf("the namespace of a running process was removed: %v", err)
	}
}

// TestLinkCarriesCutsAndCloses makes a shaped link, serves HTTP on the
// host's end and fetches it from the device's namespace; with the link
// down a new connection fails, up again it works; Close leaves nothing.
func TestLinkCarriesCutsAndCloses(t *testing.T) {
	need(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := New(ctx, Config{Up: 2_000_000, Down: 2_000_000, Queue: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ln, err := net.Listen("tcp", net.JoinHostPort(l.HostAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("field data ", 20000) // 220 kB
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s|%s", r.RemoteAddr, payload)
	})}
	go srv.Serve(ln)
	defer srv.Close()

	get := func() (string, error) {
		tr := &http.Transport{DialContext: l.DialContext, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	body, err := get()
	if err != nil {
		t.Fatal(err)
	}
	from, rest, _ := strings.Cut(body, "|")
	if host, _, _ := net.SplitHostPort(from); host != l.DeviceAddr || rest != payload {
		t.Fatalf("the request came from %s (want the device's %s), %d bytes of %d", from, l.DeviceAddr, len(rest), len(payload))
	}
	st, err := l.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Down < int64(len(payload)) || st.Up == 0 {
		t.Fatalf("the shaped queues carried %d bytes down (%d sent) and %d up", st.Down, len(payload), st.Up)
	}
	t.Logf("shaped: %d bytes down, %d up, %d packets dropped", st.Down, st.Up, st.Dropped)

	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := get(); err == nil {
		t.Fatal("a request went through a link that is down")
	}
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := get(); err != nil {
		t.Fatalf("after the link came back: %v", err)
	}

	ns, hostIf := l.ns, l.hostIf
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/var/run/netns", ns)); !os.IsNotExist(err) {
		t.Fatalf("namespace %s still there after Close (%v)", ns, err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", hostIf)); !os.IsNotExist(err) {
		t.Fatalf("interface %s still there after Close (%v)", hostIf, err)
	}
}
