package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// TestKillClientSIGKILL kills a client process with SIGKILL at random
// points, again and again: while it saves ops, while it syncs, before its
// push reaches the server, while the server applies it, and after the
// server committed it but before the answer arrived. After each kill the
// process starts again on the same device directory. At the end the
// device syncs everything; then every op the user was told was saved is
// on the server exactly once, in device order, and the server has no op
// the device does not know.
func TestKillClientSIGKILL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	runs := 30
	if raceEnabled {
		runs = 20
	}
	ts := newTestServer(t)
	dir := t.TempDir()

	// A kill armed for the current run's n-th push.
	type pushKill struct {
		p     *proc
		n     int64
		phase int
	}
	phases := []string{"push never reached the server", "push on its way to the server", "server committed, answer lost"}
	var armed atomic.Pointer[pushKill]
	var pushes atomic.Int64
	ts.Proxy.SetRule(func(r *http.Request, _ int) Fault {
		a := armed.Load()
		if r.URL.Path != protocol.PathPush || a == nil || pushes.Add(1) != a.n {
			return Fault{}
		}
		switch a.phase {
		case 0:
			return Fault{Kind: Drop, Before: a.p.killAndWait}
		case 1:
			return Fault{Kind: Pass, Before: a.p.killAndWait}
		default:
			return Fault{Kind: DropResponse, After: a.p.killAndWait}
		}
	})

	var saved []savedOp
	kills, midPush := 0, 0
	for run := range runs {
		p := startProc(t, "Client", dirEnv+"="+dir, urlEnv+"="+ts.URL, runEnv+"="+strconv.FormatUint(rng.Uint64()>>1, 10))
		// Kill after some saves, or during a push (then the saves only
		// bound the run, in case the push does not come).
		after := 1 + rng.IntN(40)
		pushes.Store(0)
		var a *pushKill
		if rng.IntN(2) == 0 {
			a = &pushKill{p: p, n: 1 + rng.Int64N(3), phase: rng.IntN(3)}
			after += 500
		}
		armed.Store(a)

		n := 0
	wait:
		for {
			select {
			case l, ok := <-p.lines:
				if !ok {
					break wait // ended: killed by the push kill, or failed
				}
				if s, ok := parseSaved(l); ok {
					saved = append(saved, s)
					n++
				}
				if n >= after {
					p.kill()
					break wait
				}
			case <-ctx.Done():
				t.Fatalf("run %d: time is up", run)
			}
		}
		rest, err := p.drain(ctx)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		armed.Store(nil)
		for _, l := range rest {
			if s, ok := parseSaved(l); ok {
				saved = append(saved, s)
				n++
			}
		}
		if ok, how := p.diedBySIGKILL(); !ok {
			t.Fatalf("run %d: the client process was not killed by the test: %s", run, how)
		}
		kills++
		point := fmt.Sprintf("after %d+ saves", after)
		if a != nil && pushes.Load() >= a.n {
			point = fmt.Sprintf("push %d: %s", a.n, phases[a.phase])
			midPush++
		}
		t.Logf("run %d: killed (%s); %d ops saved", run, point, n)
	}
	if kills < 20 {
		t.Fatalf("only %d kill points", kills)
	}
	t.Logf("%d kill points, %d of them mid-push; %d ops saved", kills, midPush, len(saved))

	// The device, once more, in this process: sync everything, then check.
	e := openEngine(t, engineConfig(dir, ts.URL))
	syncUntilDone(ctx, t, e)
	interrupted := 0
	ops, err := e.Ops(ctx, "", 1<<30)
	mustNoErr(t, err)
	for _, op := range ops {
		if slices.Contains(trailOutcomes(ctx, t, e, op.ID), "interrupted") {
			interrupted++
		}
	}
	t.Logf("%d ops in the outbox, %d of them with an interrupted send in their trail", len(ops), interrupted)
	checkExactlyOnce(ctx, t, ts.Store, e, saved, true)
}

// TestServerKilledMidBatch sends batches of 1000 ops to a server process
// and kills it with SIGKILL during the push at random moments: while it
// receives the batch, while it applies and commits it, and after it
// committed but before its answer reached the device. After each kill the
// op log holds each batch whole or not at all; at the end the device
// syncs everything and every op is on the server exactly once.
func TestServerKilledMidBatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 4))
	const batch = 1000
	rounds := 6
	if raceEnabled {
		rounds = 4
	}
	dbPath := filepath.Join(t.TempDir(), "server.db")
	proxy := NewProxy("http://127.0.0.1:1")
	defer proxy.Close()
	front := httptest.NewServer(proxy)
	defer front.Close()
	cfg := engineConfig(t.TempDir(), front.URL)
	cfg.BatchSize = batch
	cfg.RequestTimeout = 60 * time.Second
	e := openEngine(t, cfg)
	w := newWorkload(rand.New(rand.NewPCG(seed, 5)), 20, 0.3)
	device := e.DeviceID()

	// opLog reads the device's ops from the server's file while no server
	// runs: what survived the kill.
	opLog := func() map[string]bool {
		st, err := sqlite.Open(ctx, dbPath)
		mustNoErr(t, err)
		defer st.Close()
		ids := map[string]bool{}
		for _, so := range readServerOps(ctx, t, st.DB(), device) {
			ids[so.ID] = true
		}
		return ids
	}

	var saved []savedOp
	prev := map[string]bool{}    // the device's ops in the op log after the last round
	var serverTime time.Duration // the longest a batch took the server, measured as we go
	outcomes := map[string]int{}
	for round := 0; round <= rounds; round++ {
		s, err := w.make(ctx, e, batch)
		mustNoErr(t, err)
		saved = append(saved, s...)
		srv, url := serveProc(ctx, t, dbPath)
		proxy.SetUpstream(url)
		mark := len(proxy.Exchanges())

		final := round == rounds
		// Modes 0-3: at a random moment of the server's work on the push;
		// 4: as the push starts; 5: once the server answered, the answer
		// then lost. The first round measures how long a batch takes.
		modes := []string{"timed", "timed", "timed", "timed", "as the push starts", "once answered"}
		mode := rng.IntN(len(modes))
		if round == 0 {
			mode = 5
		}
		delay := time.Duration(float64(serverTime) * (0.3 + 1.3*rng.Float64()))
		var once sync.Once
		var timer *time.Timer
		var timerMu sync.Mutex
		proxy.SetRule(func(r *http.Request, _ int) Fault {
			var f Fault
			if final || r.URL.Path != protocol.PathPush {
				return f
			}
			once.Do(func() {
				switch mode {
				case 4:
					f.Before = srv.killAndWait
				case 5:
					f.Kind, f.After = DropResponse, srv.killAndWait
				default:
					f.Sent = func() {
						timerMu.Lock()
						timer = time.AfterFunc(delay, srv.kill)
						timerMu.Unlock()
					}
				}
			})
			return f
		})

		if final {
			syncUntilDone(ctx, t, e)
			srv.killAndWait()
			break
		}
		_, syncErr := e.Sync(ctx)
		timerMu.Lock()
		if timer != nil && timer.Stop() {
			delay = -1 // the push ended before the kill: kill now
		}
		timerMu.Unlock()
		srv.killAndWait()
		if ok, how := srv.diedBySIGKILL(); !ok {
			t.Fatalf("round %d: the server process was not killed by the test: %s", round, how)
		}

		// Whole batches only: every answered push is in the op log, and of
		// the push the kill interrupted, either all that was new or none.
		now := opLog()
		base := maps.Clone(prev)
		var interrupted []Exchange
		for _, ex := range proxy.Exchanges()[mark:] {
			if ex.Path != protocol.PathPush {
				continue
			}
			if ex.Status == http.StatusOK && ex.Err == nil {
				if len(pushRequestOf(t, ex).Ops) == batch && ex.ServerTime > serverTime {
					serverTime = ex.ServerTime
				}
				for _, r := range pushResultsOf(t, ex) {
					recorded := fieldsync.ResultStatus(r.Status).Final()
					if now[r.Op] != recorded {
						t.Errorf("round %d: op %s was answered %s; in the op log: %v", round, r.Op, r.Status, now[r.Op])
					}
					base[r.Op] = base[r.Op] || recorded
				}
				continue
			}
			interrupted = append(interrupted, ex)
		}
		if len(interrupted) > 1 {
			t.Fatalf("round %d: %d pushes were interrupted, want at most one", round, len(interrupted))
		}
		outcome := "kill after the push"
		if mode == 5 {
			outcome = "batch applied, answer lost"
		}
		if len(interrupted) == 1 {
			var fresh, kept int
			for _, op := range pushRequestOf(t, interrupted[0]).Ops {
				if base[op.ID] {
					continue
				}
				fresh++
				if now[op.ID] {
					kept++
				}
				base[op.ID] = now[op.ID]
			}
			switch {
			case kept == 0:
				outcome = "batch not applied"
			case kept == fresh:
				outcome = "batch applied"
			default:
				outcome = "batch half applied"
				t.Errorf("round %d: the op log holds %d of the %d new ops of the interrupted batch: half applied", round, kept, fresh)
			}
		}
		for id := range now {
			if !base[id] {
				t.Errorf("round %d: op %s is in the op log but in no push that could have put it there", round, id)
			}
		}
		outcomes[outcome]++
		kill := modes[mode]
		if mode < 4 {
			kill = fmt.Sprintf("%v after the push was sent (a batch took the server %v)", delay.Round(time.Millisecond), serverTime.Round(time.Millisecond))
			if delay < 0 {
				kill = "timed, but the sync ended first"
			}
		}
		t.Logf("round %d: kill %s: %s; sync: %v; %d ops of the device in the op log", round, kill, outcome, syncErr, len(now))
		prev = now
	}
	t.Logf("outcomes: %v", outcomes)

	st, err := sqlite.Open(ctx, dbPath)
	mustNoErr(t, err)
	defer st.Close()
	checkExactlyOnce(ctx, t, st, e, saved, true)
}
