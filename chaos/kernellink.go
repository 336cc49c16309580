package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/fieldsync/fieldsync/internal/netns"
)

// Unavailable says why a scenario cannot run on this machine, or nil
// when it can. `fieldsync chaos --scenario all` leaves such a scenario
// out and says so.
func Unavailable(name string) error {
	if name == "kernel-link" {
		if err := netns.Available(); err != nil {
			return fmt.Errorf("kernel-link runs the device in a network namespace of its own: %w", err)
		}
	}
	return nil
}

// kernelLink: the device's connections cross a real kernel link (its own
// network namespace, joined to the server's by a veth pair that tc shapes
// to a slow uplink with a small queue, so bursts lose packets and TCP
// retransmits). A day's work is saved with the link down; a sync then
// fails with a network error; the link comes up for 2 minutes at a time
// and drops again while the backlog goes up and the worker keeps saving.
func kernelLink(ctx context.Context, r *run) error {
	if err := Unavailable("kernel-link"); err != nil {
		return err
	}
	link, err := netns.New(ctx, netns.Config{Up: 1_000_000, Down: 2_000_000, Queue: 12 << 10})
	if err != nil {
		return err
	}
	r.onClose(func() { link.Close() })
	srv, err := r.startServerOn(ctx, net.JoinHostPort(link.HostAddr, "0"))
	if err != nil {
		return err
	}
	cfg := engineConfig(filepath.Join(r.dir, "device"), "http://"+srv.addr)
	cfg.HTTPClient = &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: link.DialContext,
		MaxIdleConnsPerHost: 2, IdleConnTimeout: 5 * time.Second}}
	cfg.RequestTimeout = 3 * time.Second
	e, err := r.openDevice(ctx, cfg)
	if err != nil {
		return err
	}
	w := newWorker(r.rng, e, 15)
	r.ledger(w)

	if err := link.Down(ctx); err != nil {
		return err
	}
	r.fault("outage", 1)
	ops, photos := r.scale(100, 250), r.scale(3, 8)
	r.logf("offline on the kernel link: saving %d ops and %d photos", ops, photos)
	for i := range ops {
		if err := w.step(ctx); err != nil {
			return err
		}
		if i%(ops/photos) == ops/photos-1 {
			if err := w.photo(ctx, 24); err != nil {
				return err
			}
		}
	}
	rep, err := e.Sync(ctx)
	r.addSent(rep)
	if err == nil {
		return errors.New("a sync went through while the kernel link was down")
	}
	r.note("a sync with the link down: %v", err)

	if err := link.Up(ctx); err != nil {
		return err
	}
	stop := r.syncLoop(ctx, e)
	for range r.scale(3, 5) {
		pause(ctx, 2*r.minute())
		for range 5 {
			if err := w.step(ctx); err != nil {
				stop()
				return err
			}
		}
		if err := link.Down(ctx); err != nil {
			stop()
			return err
		}
		r.fault("outage", 1)
		pause(ctx, r.between(3*r.minute(), 10*r.minute()))
		if err := link.Up(ctx); err != nil {
			stop()
			return err
		}
	}
	stop()
	r.logf("link up: draining")
	if err := r.drain(ctx, e, 90*time.Second); err != nil {
		return err
	}
	st, err := link.Stats(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.res.BytesSent = st.Up
	r.mu.Unlock()
	r.note("kernel link: %d bytes up and %d down through tc's queues (1 Mbit/s up, 2 Mbit/s down, 12 KiB queues); %d packets dropped at a full queue",
		st.Up, st.Down, st.Dropped)
	return nil
}
