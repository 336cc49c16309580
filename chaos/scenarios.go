package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/internal/linkemu"
)

// minute is one "minute" of field time in compressed time.
func (r *run) minute() time.Duration {
	if r.opts.Short {
		return 50 * time.Millisecond
	}
	return 100 * time.Millisecond
}

// pause waits d, or less if ctx ends. Scenarios pause to let faults and
// syncs overlap in time; nothing is synchronised by it.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// between is a random duration in [lo, hi) from the scenario's source.
func (r *run) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.rng.Int64N(int64(hi-lo)))
}

// basement: the record is on the device; in the basement the worker
// changes its status and takes 3 photos; the link holds for 2 minutes,
// then is gone for an hour; back outside everything delivers.
func basement(ctx context.Context, r *run) error {
	_, link, err := r.startServerLink(ctx, linkemu.Config{Rate: 48_000, Latency: 60 * time.Millisecond, Jitter: 30 * time.Millisecond})
	if err != nil {
		return err
	}
	e, err := r.openDevice(ctx, engineConfig(filepath.Join(r.dir, "device"), link.URL()))
	if err != nil {
		return err
	}
	w := newWorker(r.rng, e, 1)
	r.ledger(w)
	if err := w.create(ctx); err != nil {
		return err
	}
	if err := r.drain(ctx, e, 20*time.Second); err != nil {
		return err
	}
	r.logf("in the basement: a status change and 3 photos")
	if err := w.saved(e.Update(ctx, workOrder, w.records[0], map[string]any{"status": "in progress"})); err != nil {
		return err
	}
	for range 3 {
		if err := w.photo(ctx, r.scale(40, 80)); err != nil {
			return err
		}
	}
	stop := r.syncLoop(ctx, e)
	pause(ctx, 2*r.minute())
	r.logf("link down for an hour (%v)", 60*r.minute())
	link.Down()
	r.fault("outage", 1)
	pause(ctx, 60*r.minute())
	if err := link.Up(); err != nil {
		stop()
		return err
	}
	stop()
	r.logf("link back: draining")
	return r.drain(ctx, e, 40*time.Second)
}

// cutter cuts the link's connections at random moments until stopped: a
// lossy radio link.
func (r *run) cutter(ctx context.Context, link *linkemu.Link, lo, hi time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			d := lo + time.Duration(r.jitter(int(hi-lo)))
			pause(ctx, d)
			if ctx.Err() != nil {
				return
			}
			if link.Cut() == nil {
				r.fault("cut", 1)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// dayOffline: a day's work saved with no link at all, then a short spell
// of a lossy link that drops connections at random.
func dayOffline(ctx context.Context, r *run) error {
	_, link, err := r.startServerLink(ctx, linkemu.Config{Rate: 400_000, Latency: 30 * time.Millisecond, Jitter: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	link.Down()
	e, err := r.openDevice(ctx, engineConfig(filepath.Join(r.dir, "device"), link.URL()))
	if err != nil {
		return err
	}
	w := newWorker(r.rng, e, 12)
	r.ledger(w)
	ops, photos := r.scale(120, 300), r.scale(10, 30)
	r.logf("offline: saving %d ops and %d photos", ops, photos)
	for i := range ops {
		if err := w.step(ctx); err != nil {
			return err
		}
		if photos > 0 && i%(ops/photos) == ops/photos-1 {
			if err := w.photo(ctx, 16); err != nil {
				return err
			}
		}
	}
	// The lossy link loses 2% of its segments, each a stall of TCP's
	// shortest retransmission timeout, and drops connections at random.
	loss, err := link.AddLoss(linkemu.Loss{Probability: 0.02, RTO: 200 * time.Millisecond, Seed: r.rng.Uint64()})
	if err != nil {
		return err
	}
	if err := link.Up(); err != nil {
		return err
	}
	r.logf("lossy link")
	stopCuts := r.cutter(ctx, link, 100*time.Millisecond, 500*time.Millisecond)
	stop := r.syncLoop(ctx, e)
	pause(ctx, time.Duration(r.scale(3, 8))*time.Second)
	stop()
	stopCuts()
	if err := link.RemoveLoss(); err != nil {
		return err
	}
	stalls := int(loss.Stalls())
	r.fault("loss_stall", stalls)
	r.note("lossy link: 2%% of segments lost, each a 200 ms stall: %d stalls; %d connections cut", stalls, link.Stats().Cuts)
	r.logf("clean link: draining")
	return r.drain(ctx, e, 40*time.Second)
}

// flapping: a long backlog sent over a link that goes down every few
// seconds (compressed) and comes back.
func flapping(ctx context.Context, r *run) error {
	_, link, err := r.startServerLink(ctx, linkemu.Config{Rate: 150_000, Latency: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	cfg := engineConfig(filepath.Join(r.dir, "device"), link.URL())
	cfg.BatchSize = 40
	e, err := r.openDevice(ctx, cfg)
	if err != nil {
		return err
	}
	w := newWorker(r.rng, e, 20)
	r.ledger(w)
	ops, photos := r.scale(400, 1500), r.scale(4, 10)
	r.logf("backlog: %d ops and %d photos", ops, photos)
	for i := range ops {
		if err := w.step(ctx); err != nil {
			return err
		}
		if i%(ops/photos) == 0 {
			if err := w.photo(ctx, 32); err != nil {
				return err
			}
		}
	}
	stop := r.syncLoop(ctx, e)
	for range r.scale(6, 14) {
		pause(ctx, r.between(200*time.Millisecond, 700*time.Millisecond))
		link.Down()
		r.fault("outage", 1)
		pause(ctx, r.between(100*time.Millisecond, 400*time.Millisecond))
		if err := link.Up(); err != nil {
			stop()
			return err
		}
	}
	stop()
	return r.drain(ctx, e, 40*time.Second)
}

// killClient: the device process is killed with SIGKILL at random moments
// while it saves ops and photos and syncs, then started again.
func killClient(ctx context.Context, r *run) error {
	_, link, err := r.startServerLink(ctx, linkemu.Config{})
	if err != nil {
		return err
	}
	dir := filepath.Join(r.dir, "device")
	budget := r.scale(300, 700)
	for i := range r.scale(4, 8) {
		p, err := r.startWorker("--role", "device", "--dir", dir, "--url", link.URL(),
			"--seed", fmt.Sprint(r.opts.Seed), "--ops", fmt.Sprint(budget), "--photo-every", "15")
		if err != nil {
			return err
		}
		if _, err := r.readUntil(ctx, p, 30*time.Second, "DEVICE"); err != nil {
			return err
		}
		line, err := r.readUntil(ctx, p, r.between(40*time.Millisecond, time.Duration(r.scale(300, 800))*time.Millisecond), "DONE", "FAILED")
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "FAILED") {
			return fmt.Errorf("device worker: %s", line)
		}
		p.kill()
		r.drainLines(p)
		r.fault("kill_client", 1)
		r.logf("kill %d: %d ops saved so far", i+1, len(r.hist.Saved))
	}
	e, err := r.openDevice(ctx, engineConfig(dir, link.URL()))
	if err != nil {
		return err
	}
	return r.drain(ctx, e, 40*time.Second)
}

// killServer: the server process is killed with SIGKILL while it applies
// the device's batches, and started again on the same files and port.
func killServer(ctx context.Context, r *run) error {
	db, blobs := filepath.Join(r.dir, "server.db"), filepath.Join(r.dir, "blobs")
	start := func(listen string) (*proc, string, error) {
		p, err := r.startWorker("--role", "server", "--db", db, "--blobs", blobs, "--listen", listen)
		if err != nil {
			return nil, "", err
		}
		line, err := r.readUntil(ctx, p, 30*time.Second, "ADDR")
		if err == nil && line == "" {
			err = fmt.Errorf("the server worker did not start")
		}
		if err != nil {
			return nil, "", err
		}
		return p, strings.TrimPrefix(line, "ADDR "), nil
	}
	p, addr, err := start("127.0.0.1:0")
	if err != nil {
		return err
	}
	link, err := r.startLink(linkemu.Config{Upstream: addr})
	if err != nil {
		return err
	}
	cfg := engineConfig(filepath.Join(r.dir, "device"), link.URL())
	cfg.BatchSize = 25
	e, err := r.openDevice(ctx, cfg)
	if err != nil {
		return err
	}
	w := newWorker(r.rng, e, 10)
	r.ledger(w)
	ops := r.scale(300, 800)
	for i := range ops {
		if err := w.step(ctx); err != nil {
			return err
		}
		if i%60 == 59 {
			if err := w.photo(ctx, 24); err != nil {
				return err
			}
		}
	}
	stop := r.syncLoop(ctx, e)
	kills, midway := r.scale(4, 8), 0
	for i := range kills {
		pause(ctx, r.between(10*time.Millisecond, 150*time.Millisecond))
		if st, err := e.Status(ctx); err == nil && st.Pending() > 0 {
			midway++
		}
		p.killWait()
		r.fault("kill_server", 1)
		r.logf("server killed (%d)", i+1)
		pause(ctx, r.between(20*time.Millisecond, 200*time.Millisecond))
		if p, _, err = start(addr); err != nil {
			stop()
			return err
		}
	}
	stop()
	r.note("%d of %d kills came while the device still had ops to push", midway, kills)
	return r.drain(ctx, e, 40*time.Second)
}

// clockSkew: two devices whose clocks are wrong by hours, one ahead and
// one behind, and the office, all editing the same records.
func clockSkew(ctx context.Context, r *run) error {
	srv, link, err := r.startServerLink(ctx, linkemu.Config{})
	if err != nil {
		return err
	}
	url := link.URL()
	skews := []time.Duration{5 * time.Hour, -7 * time.Hour}
	var devs []*client.Engine
	var workers []*worker
	for i, skew := range skews {
		cfg := engineConfig(filepath.Join(r.dir, fmt.Sprintf("device%d", i)), url)
		cfg.Now = func() time.Time { return time.Now().Add(skew) }
		e, err := r.openDevice(ctx, cfg)
		if err != nil {
			return err
		}
		w := newWorker(r.rng, e, 6)
		r.ledger(w)
		devs, workers = append(devs, e), append(workers, w)
	}
	r.note("device clocks off by %v and %v", skews[0], skews[1])
	for range 4 {
		if err := workers[0].create(ctx); err != nil {
			return err
		}
	}
	if err := r.drainAll(ctx, devs); err != nil {
		return err
	}
	shared := workers[0].records
	workers[1].records = append([]string(nil), shared...)
	for round := range r.scale(3, 6) {
		for _, w := range workers {
			for range r.scale(15, 40) {
				if err := w.step(ctx); err != nil {
					return err
				}
			}
		}
		if err := r.officeEdits(ctx, shared, round); err != nil {
			return err
		}
		if err := r.drainAll(ctx, devs); err != nil {
			return err
		}
	}
	if err := r.drainAll(ctx, devs); err != nil {
		return err
	}
	skewOf := map[string]time.Duration{}
	for i, e := range devs {
		skewOf[e.DeviceID()] = skews[i]
	}
	// The server caps a device's clock reading at its own clock: no field
	// may carry a reading ahead of the server's time of the change. And
	// the ops do carry the devices' wrong clocks, or nothing was tested.
	for _, id := range shared {
		rec, err := srv.st.Record(ctx, workOrder, id)
		if err != nil {
			return err
		}
		ops, err := srv.st.RecordOps(ctx, workOrder, id)
		if err != nil {
			return err
		}
		for _, e := range ops {
			skew, ok := skewOf[e.Op.DeviceID]
			if off := e.Op.LocalTime.Sub(e.ReceivedAt) - skew; ok && (off > 10*time.Minute || off < -10*time.Minute) {
				r.res.Findings = append(r.res.Findings, Finding{Check: "clock", Detail: fmt.Sprintf(
					"op %s carries local time %v, received %v: the device's clock (off by %v) was not used",
					e.Op.ID, e.Op.LocalTime, e.ReceivedAt, skew)})
			}
		}
		for f, m := range rec.Meta {
			if m.At > 0 && m.HLC > fieldsync.HLCFromTime(time.UnixMilli(m.At))+0xffff {
				r.res.Findings = append(r.res.Findings, Finding{Check: "clock", Detail: fmt.Sprintf(
					"%s: field %q carries a clock reading %v ahead of the server's time of the change %v",
					id, f, m.HLC.Time(), time.UnixMilli(m.At).UTC())})
			}
		}
	}
	return nil
}

// drainAll drains each device, then the first again so it pulls what the
// others sent.
func (r *run) drainAll(ctx context.Context, devs []*client.Engine) error {
	for _, e := range append(devs, devs[0]) {
		if err := r.drain(ctx, e, 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// officeEdits makes the dispatcher change status, description and
// address of some records, from the server's current version.
func (r *run) officeEdits(ctx context.Context, ids []string, round int) error {
	for _, id := range ids {
		if r.rng.IntN(3) == 0 {
			continue
		}
		rec, err := r.srv.st.Record(ctx, workOrder, id)
		if err != nil {
			return err
		}
		fields := map[string]json.RawMessage{}
		switch r.rng.IntN(3) {
		case 0:
			fields["status"] = json.RawMessage(`"waiting for parts"`)
		case 1:
			fields["description"] = json.RawMessage(fmt.Sprintf(`"office note %d-%d"`, round, r.rng.IntN(1000)))
		default:
			fields["address"] = json.RawMessage(fmt.Sprintf(`"%d Dock Road"`, r.rng.IntN(900)+1))
			fields["status"] = json.RawMessage(`"assigned"`)
		}
		if _, err := r.srv.srv.Edit(ctx, workOrder, id, rec.Version, fields); err != nil {
			return fmt.Errorf("office edit of %s: %w", id, err)
		}
	}
	return nil
}

// twoSides: a device and the dispatcher change the same records between
// syncs; clashes on manual fields must become conflicts.
func twoSides(ctx context.Context, r *run) error {
	_, link, err := r.startServerLink(ctx, linkemu.Config{})
	if err != nil {
		return err
	}
	e, err := r.openDevice(ctx, engineConfig(filepath.Join(r.dir, "device"), link.URL()))
	if err != nil {
		return err
	}
	w := newWorker(r.rng, e, 5)
	r.ledger(w)
	for range 5 {
		if err := w.create(ctx); err != nil {
			return err
		}
	}
	if err := r.drain(ctx, e, 30*time.Second); err != nil {
		return err
	}
	for round := range r.scale(4, 8) {
		for range r.scale(10, 30) {
			if err := w.step(ctx); err != nil {
				return err
			}
		}
		if err := r.officeEdits(ctx, w.records, round); err != nil {
			return err
		}
		if err := r.drain(ctx, e, 30*time.Second); err != nil {
			return err
		}
	}
	if err := r.drain(ctx, e, 30*time.Second); err != nil {
		return err
	}
	st, err := e.Status(ctx)
	if err != nil {
		return err
	}
	r.note("%d conflicts for a person to settle", st.NeedsReview())
	return nil
}
