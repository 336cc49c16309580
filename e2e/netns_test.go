//go:build linux

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/internal/netns"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// netnsRequired names the environment variable that makes the kernel
// link tests fail, rather than skip, where namespaces cannot be made
// (CI sets it: it runs as root).
const netnsRequired = "FIELDSYNC_NETNS"

// TestRealKernelLink runs a day's backlog, photos included, over a real
// kernel link: the device engine's connections are made inside its own
// network namespace and cross a veth pair shaped by tc (a slow uplink
// with a small queue, so bursts lose packets and TCP retransmits), and
// the link is taken down at random moments, the first time once the
// server has begun to receive ops. Offline, a sync fails with a network
// error and nothing reaches the server. In the end every op saved is on
// the server exactly once in device order, the device shows what the
// server has, and every photo is held whole.
func TestRealKernelLink(t *testing.T) {
	if err := netns.Available(); err != nil {
		if os.Getenv(netnsRequired) != "" {
			t.Fatalf("%s is set but: %v", netnsRequired, err)
		}
		t.Skipf("no network namespaces here (%v); set %s=1 to require them", err, netnsRequired)
	}
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 11))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	link, err := netns.New(ctx, netns.Config{Up: 1_000_000, Down: 2_000_000, Queue: 12 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()

	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := server.New(server.Config{Store: st, BlobDir: filepath.Join(dir, "blobs")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(link.HostAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	url := "http://" + ln.Addr().String()
	as := &attachServer{Store: st, Direct: url}

	cfg := attachEngineConfig(filepath.Join(dir, "device"), url)
	cfg.RequestTimeout = 4 * time.Second
	cfg.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: link.DialContext, MaxIdleConnsPerHost: 4}}
	e := openEngine(t, cfg)

	// Offline all day: the link is down while the work is saved.
	if err := link.Down(ctx); err != nil {
		t.Fatal(err)
	}
	var saved []savedOp
	w := newWorkload(rng, 25, 0.3)
	for range 300 {
		s, err := w.next(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		saved = append(saved, s)
	}
	var atts []fieldsync.Attachment
	for i := range 3 {
		a, op, err := e.Attach(ctx, workOrderType, w.records[i], client.AttachInput{Role: fieldsync.RolePhoto,
			Name: fmt.Sprintf("meter-%d.jpg", i+1), Data: bytes.NewReader(testPhoto(t, 640, 480, uint32(seed)+uint32(i)))})
		if err != nil {
			t.Fatal(err)
		}
		atts = append(atts, a)
		saved = append(saved, savedOp{ID: op.ID, Seq: op.Seq, Entity: op.EntityID, Kind: string(op.Kind)})
	}
	if _, err := e.Sync(ctx); err == nil || !fieldsync.ErrorCode(err).Retryable() {
		t.Fatalf("a sync with the link down: %v, want a network error to retry", err)
	}
	if n := serverOpCount(ctx, t, st.DB(), e.DeviceID()); n != 0 {
		t.Fatalf("%d ops reached the server through a link that is down", n)
	}

	// The link comes back and drops again at random while the backlog
	// goes up.
	if err := link.Up(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- syncWithPauses(ctx, e) }()
	const maxFlaps = 6
	flaps, finished := 0, false
	started := false
	var syncErr error
flapping:
	for flaps < maxFlaps {
		if !started {
			// The first cut comes once the server is receiving.
			select {
			case syncErr = <-done:
				finished = true
				break flapping
			case <-time.After(20 * time.Millisecond):
			}
			started = serverOpCount(ctx, t, st.DB(), e.DeviceID()) > 0
			if !started {
				continue
			}
		} else {
			select {
			case syncErr = <-done:
				finished = true
				break flapping
			case <-time.After(time.Duration(200+rng.IntN(900)) * time.Millisecond):
			}
		}
		if err := link.Down(ctx); err != nil {
			t.Fatal(err)
		}
		flaps++
		select {
		case syncErr = <-done:
			finished = true
			if err := link.Up(ctx); err != nil {
				t.Fatal(err)
			}
			break flapping
		case <-time.After(time.Duration(300+rng.IntN(1200)) * time.Millisecond):
		}
		if err := link.Up(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !finished {
		syncErr = <-done
	}
	if syncErr != nil {
		t.Fatal(syncErr)
	}
	stats, err := link.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("link: %d cuts, %d bytes up and %d down through the shaped queues, %d packets dropped by the kernel", flaps, stats.Up, stats.Down, stats.Dropped)
	if flaps == 0 {
		t.Fatal("the link was never cut while the backlog went up")
	}

	// One more sync pulls what the last uploads changed on the server
	// (a photo marked ready).
	if _, err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(ctx, t, st, e, saved, true)
	checkViews(ctx, t, st, e)
	as.checkBlobs(ctx, t, e, atts)
}

// syncWithPauses syncs until nothing is pending, pausing a little after a
// failed sync as the engine's own loop does, so a link that is down is
// not hammered.
func syncWithPauses(ctx context.Context, e *client.Engine) error {
	var last error
	for ctx.Err() == nil {
		_, err := e.Sync(ctx)
		if err != nil {
			if !fieldsync.ErrorCode(err).Retryable() {
				return fmt.Errorf("sync: %w", err)
			}
			last = err
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		st, err := e.Status(ctx)
		if err != nil {
			return err
		}
		if st.Pending() == 0 {
			return nil
		}
	}
	return errors.Join(errors.New("still pending when the time was up"), last)
}
