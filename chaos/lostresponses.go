package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/internal/linkemu"
)

// lostRates are the door's fault rates in lost-responses: a quarter of
// the requests each are cut before the server, cut after it committed,
// and delivered twice (a third of those both copies at once); a quarter
// pass.
var lostRates = faultRates{CutBefore: 0.25, CutAfter: 0.25, Duplicate: 0.25, Together: 1.0 / 3}

// lostResponses: a backlog of creates, updates, appends and photos goes
// through a fault proxy at the server's door that cuts requests before
// the server sees them, drops answers after the server committed, and
// delivers requests twice; meanwhile the link comes up for two minutes
// and drops again, and the worker goes on saving. Everything must arrive
// once, in order, every photo whole.
func lostResponses(ctx context.Context, r *run) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	door, err := startFaultProxy(srv.addr, r.rng.Uint64(), lostRates)
	if err != nil {
		return err
	}
	r.onClose(door.Close)
	link, err := r.startLink(linkemu.Config{Upstream: door.Addr(), Rate: 500_000, Latency: 20 * time.Millisecond, Jitter: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	link.Down()
	cfg := engineConfig(filepath.Join(r.dir, "device"), link.URL())
	cfg.BatchSize = 15
	e, err := r.openDevice(ctx, cfg)
	if err != nil {
		return err
	}
	w := newWorker(r.rng, e, 10)
	r.ledger(w)
	ops, photos := r.scale(100, 240), r.scale(3, 5)
	r.logf("offline: saving %d ops and %d photos", ops, photos)
	for i := range ops {
		if err := w.step(ctx); err != nil {
			return err
		}
		if i%(ops/photos) == ops/photos-1 {
			if err := w.photo(ctx, r.scale(100, 150)); err != nil {
				return err
			}
		}
	}
	if err := link.Up(); err != nil {
		return err
	}
	stop := r.syncLoop(ctx, e)
	// The link holds for two minutes and drops again; while it is down
	// the worker saves more.
	flaps := r.scale(3, 5)
	for range flaps {
		pause(ctx, 2*r.minute())
		link.Down()
		r.fault("outage", 1)
		for range r.scale(5, 12) {
			if err := w.step(ctx); err != nil {
				stop()
				return err
			}
		}
		pause(ctx, r.between(3*r.minute(), 10*r.minute()))
		if err := link.Up(); err != nil {
			stop()
			return err
		}
	}
	stop()
	r.logf("link steady, the door still faulty: draining")
	if err := r.drain(ctx, e, 60*time.Second); err != nil {
		return err
	}
	c := door.Counts()
	r.fault(faultCutBefore, c.CutBefore)
	r.fault(faultCutAfter, c.CutAfterCommit)
	r.fault(faultDuplicate, c.Duplicated)
	r.res.Findings = append(r.res.Findings, door.Findings()...)
	r.note("the link came up for 2 minutes and dropped %d times", flaps)
	r.note("at the server's door, of %d requests: %d cut before the server, %d cut after it answered (%d partway through the answer), %d delivered twice (%d both at once)",
		c.Requests, c.CutBefore, c.CutAfterCommit, c.MidResponse, c.Duplicated, c.Concurrent)
	r.note("by request: %s", byRoute(c))
	r.note("the server answered %d ops of pushes delivered twice as duplicate", c.DuplicateAnswers)
	if len(c.PatchReplays) > 0 {
		r.note("the second copy of a PATCH delivered twice was answered %s", statusList(c.PatchReplays))
	}
	if c.Unanswered > 0 {
		r.note("%d requests the server did not answer", c.Unanswered)
	}
	// A drill that injected none of a kind tested nothing of it.
	for _, k := range []struct {
		kind string
		n    int
	}{{faultCutBefore, c.CutBefore}, {faultCutAfter, c.CutAfterCommit}, {faultDuplicate, c.Duplicated}} {
		if k.n == 0 {
			return fmt.Errorf("the door injected no %s fault in %d requests: the drill tested nothing of it", k.kind, c.Requests)
		}
	}
	return nil
}

// byRoute lists the faults per kind of request, e.g. "push: 4 cut_before, …".
func byRoute(c faultCounts) string {
	var parts []string
	for _, route := range []string{routePush, routePull, routeUpload, routeOther} {
		m := c.ByRoute[route]
		if len(m) == 0 {
			continue
		}
		var kinds []string
		for _, k := range []string{faultCutBefore, faultCutAfter, faultDuplicate, faultPass} {
			if m[k] > 0 {
				kinds = append(kinds, fmt.Sprintf("%d %s", m[k], k))
			}
		}
		parts = append(parts, route+": "+strings.Join(kinds, ", "))
	}
	return strings.Join(parts, "; ")
}

// statusList writes HTTP status counts, e.g. "409 ×3, 423 ×1".
func statusList(m map[int]int) string {
	var codes []int
	for k := range m {
		codes = append(codes, k)
	}
	slices.Sort(codes)
	var parts []string
	for _, k := range codes {
		parts = append(parts, fmt.Sprintf("%d ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
