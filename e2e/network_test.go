package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/protocol"
)

// onlyPush applies f to the push requests numbered in ns and passes
// everything else.
func onlyPush(f Fault, ns ...int) func(*http.Request, int) Fault {
	return func(r *http.Request, n int) Fault {
		if r.URL.Path == protocol.PathPush && slices.Contains(ns, n) {
			return f
		}
		return Fault{}
	}
}

// recordsOf snapshots the server's records of the given ids.
func recordsOf(ctx context.Context, t *testing.T, ts *testServer, ids []string) map[string]fieldsync.Record {
	t.Helper()
	out := map[string]fieldsync.Record{}
	for _, id := range ids {
		rec, err := ts.Store.Record(ctx, workOrder, id)
		mustNoErr(t, err)
		out[id] = rec
	}
	return out
}

// TestResponseLostAfterCommit: the server commits a batch, the answer
// never reaches the device. The retry gets the recorded results as
// duplicates; nothing is applied twice; every op ends delivered and its
// trail shows the failed attempt, then the duplicate answer.
func TestResponseLostAfterCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := newTestServer(t)
	e := openEngine(t, engineConfig(t.TempDir(), ts.URL))
	w := newWorkload(rand.New(rand.NewPCG(2, 7)), 3, 0.5)
	saved, err := w.make(ctx, e, 10)
	mustNoErr(t, err)

	ts.Proxy.SetRule(onlyPush(Fault{Kind: DropResponse}, 1))
	if _, err := e.Sync(ctx); !fieldsync.ErrorCode(err).Retryable() {
		t.Fatalf("sync with the answer lost: err = %v, want a retryable error", err)
	}
	// The server committed the whole batch; the device knows nothing yet.
	if n := serverOpCount(ctx, t, ts.Store.DB(), e.DeviceID()); n != len(saved) {
		t.Fatalf("op log holds %d ops after the lost answer, want %d", n, len(saved))
	}
	before := recordsOf(ctx, t, ts, w.records)
	for _, s := range saved {
		op, _, err := e.Op(ctx, s.ID)
		mustNoErr(t, err)
		if op.Status != client.OpQueued {
			t.Errorf("op %s is %s after the lost answer, want queued", s.ID, op.Status)
		}
	}

	rep, err := e.Sync(ctx)
	mustNoErr(t, err)
	if rep.Delivered != len(saved) || rep.Retry != 0 {
		t.Errorf("retry report = %+v, want %d delivered", rep, len(saved))
	}
	// The retry changed nothing on the server.
	if n := serverOpCount(ctx, t, ts.Store.DB(), e.DeviceID()); n != len(saved) {
		t.Errorf("op log holds %d ops after the retry, want %d", n, len(saved))
	}
	after := recordsOf(ctx, t, ts, w.records)
	for id, b := range before {
		a := after[id]
		if a.Version != b.Version || a.Seq != b.Seq || !jsonEqual(a.Fields, b.Fields) {
			t.Errorf("record %s changed on retry: version %d→%d, seq %d→%d", id, b.Version, a.Version, b.Seq, a.Seq)
		}
	}
	// The answer to the retry is the recorded results, as duplicates.
	pushes := pushExchanges(ts.Proxy)
	if len(pushes) != 2 {
		t.Fatalf("%d pushes, want 2", len(pushes))
	}
	first := pushResultsOf(t, pushes[0])
	retry := pushResultsOf(t, pushes[1])
	if len(first) != len(saved) || len(retry) != len(saved) {
		t.Fatalf("results: %d then %d, want %d each", len(first), len(retry), len(saved))
	}
	for i := range retry {
		r := retry[i]
		if r.Status != string(fieldsync.StatusDuplicate) || r.Recorded == nil || r.Recorded.Status != first[i].Status ||
			r.Recorded.Version != first[i].Version || r.Recorded.Number != first[i].Number {
			t.Errorf("retry result %d = %+v, want a duplicate recording %+v", i, r, first[i])
		}
	}
	for _, s := range saved {
		op, _, err := e.Op(ctx, s.ID)
		mustNoErr(t, err)
		if op.Status != client.OpDelivered {
			t.Errorf("op %s is %s, want delivered", s.ID, op.Status)
		}
		got := trailOutcomes(ctx, t, e, s.ID)
		if want := []string{"created", "failed", "duplicate"}; !slices.Equal(got, want) {
			t.Errorf("trail of %s = %v, want %v", s.ID, got, want)
		}
	}
	checkExactlyOnce(ctx, t, ts.Store, e, saved, true)
}

func jsonEqual(a, b map[string]json.RawMessage) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestBatchCutMidway: the answer to a batch is cut after n bytes, for
// several n, compressed or not. The results that arrived whole are stored
// as delivered, the rest are sent again and come back as duplicates. A
// request cut midway is refused by the server (4xx, nothing applied) and
// sent again whole.
func TestBatchCutMidway(t *testing.T) {
	const ops = 12
	cuts := []struct {
		name  string
		plain bool
		cut   func(size int) int
	}{
		{"gzip/headers only", false, func(int) int { return 0 }},
		{"gzip/inside gzip header", false, func(int) int { return 6 }},
		{"gzip/first deflate bytes", false, func(int) int { return 24 }},
		{"gzip/third", false, func(n int) int { return n / 3 }},
		{"gzip/two thirds", false, func(n int) int { return 2 * n / 3 }},
		{"gzip/inside trailer", false, func(n int) int { return n - 3 }},
		{"plain/one byte", true, func(int) int { return 1 }},
		{"plain/quarter", true, func(n int) int { return n / 4 }},
		{"plain/half", true, func(n int) int { return n / 2 }},
		{"plain/all but the end", true, func(n int) int { return n - 3 }},
	}
	for i, c := range cuts {
		t.Run("response/"+c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ts := newTestServer(t)
			cfg := engineConfig(t.TempDir(), ts.URL)
			cfg.BatchSize = ops
			e := openEngine(t, cfg)
			saved, err := newWorkload(rand.New(rand.NewPCG(3, uint64(i))), 3, 0.5).make(ctx, e, ops)
			mustNoErr(t, err)
			ts.Proxy.SetRule(onlyPush(Fault{Kind: CutResponse, Cut: c.cut, Plain: c.plain}, 1))

			_, syncErr := e.Sync(ctx)
			pushes := pushExchanges(ts.Proxy)
			if len(pushes) != 1 || pushes[0].Status != http.StatusOK {
				t.Fatalf("pushes: %+v", pushes)
			}
			cutEx := pushes[0]
			if c.plain == (cutEx.ResponseEnc == "gzip") {
				t.Fatalf("answer encoding %q, plain = %v", cutEx.ResponseEnc, c.plain)
			}
			k, total, err := completeResults(cutEx.ResponseBody, cutEx.ResponseEnc, cutEx.Relayed)
			mustNoErr(t, err)
			t.Logf("answer of %d bytes cut after %d: %d of %d results whole", len(cutEx.ResponseBody), cutEx.Relayed, k, total)
			if total != ops {
				t.Fatalf("answer holds %d results, want %d", total, ops)
			}
			if k < total && !fieldsync.ErrorCode(syncErr).Retryable() {
				t.Fatalf("sync with a cut answer: err = %v, want a retryable error", syncErr)
			}
			// Exactly the whole results are stored: a prefix of the batch.
			for j, s := range saved {
				op, _, err := e.Op(ctx, s.ID)
				mustNoErr(t, err)
				want := client.OpQueued
				if j < k {
					want = client.OpDelivered
				}
				if op.Status != want {
					t.Errorf("op %d of the batch is %s, want %s (%d whole results)", j, op.Status, want, k)
				}
			}

			ts.Proxy.SetRule(nil)
			syncUntilDone(ctx, t, e)
			pushes = pushExchanges(ts.Proxy)
			if k < total {
				if len(pushes) < 2 {
					t.Fatalf("%d pushes, want a second one", len(pushes))
				}
				resent := pushRequestOf(t, pushes[1])
				results := pushResultsOf(t, pushes[1])
				if len(resent.Ops) != ops-k {
					t.Errorf("sent again %d ops, want the %d without a whole answer", len(resent.Ops), ops-k)
				}
				for j, r := range results {
					if r.Status != string(fieldsync.StatusDuplicate) || r.Recorded == nil || r.Recorded.Status != string(fieldsync.StatusApplied) {
						t.Errorf("result %d of the resend = %s, want a duplicate of an applied op", j, r.Status)
					}
				}
			}
			for j, s := range saved {
				want := []string{"created", "applied"}
				if j >= k {
					want = []string{"created", "failed", "duplicate"}
				}
				if got := trailOutcomes(ctx, t, e, s.ID); !slices.Equal(got, want) {
					t.Errorf("trail of op %d = %v, want %v", j, got, want)
				}
			}
			checkExactlyOnce(ctx, t, ts.Store, e, saved, true)
		})
	}

	reqCuts := []struct {
		name string
		cut  func(size int) int
	}{
		{"nothing", func(int) int { return 0 }},
		{"inside gzip header", func(int) int { return 5 }},
		{"half", func(n int) int { return n / 2 }},
		{"all but the last byte", func(n int) int { return n - 1 }},
	}
	for i, c := range reqCuts {
		t.Run("request/"+c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ts := newTestServer(t)
			cfg := engineConfig(t.TempDir(), ts.URL)
			cfg.BatchSize = ops
			e := openEngine(t, cfg)
			saved, err := newWorkload(rand.New(rand.NewPCG(4, uint64(i))), 3, 0.5).make(ctx, e, ops)
			mustNoErr(t, err)
			ts.Proxy.SetRule(onlyPush(Fault{Kind: CutRequest, Cut: c.cut}, 1))

			if _, err := e.Sync(ctx); !fieldsync.ErrorCode(err).Retryable() {
				t.Fatalf("sync with the request cut: err = %v, want a retryable error", err)
			}
			pushes := pushExchanges(ts.Proxy)
			if len(pushes) != 1 {
				t.Fatalf("%d pushes, want 1", len(pushes))
			}
			ex := pushes[0]
			if ex.Status < 400 || ex.Status > 499 {
				t.Fatalf("server answered a cut request with HTTP %d (%v), want 4xx", ex.Status, ex.Err)
			}
			body := protocol.DecodeErrorBody(ex.Status, ex.ResponseBody)
			if body.Code != fieldsync.EInvalidJSON {
				t.Errorf("server's refusal: %v, want code %s", body, fieldsync.EInvalidJSON)
			}
			if n := serverOpCount(ctx, t, ts.Store.DB(), e.DeviceID()); n != 0 {
				t.Fatalf("a cut request applied %d ops", n)
			}

			ts.Proxy.SetRule(nil)
			syncUntilDone(ctx, t, e)
			pushes = pushExchanges(ts.Proxy)
			if len(pushes) != 2 {
				t.Fatalf("%d pushes, want 2", len(pushes))
			}
			for j, r := range pushResultsOf(t, pushes[1]) {
				if r.Status != string(fieldsync.StatusApplied) {
					t.Errorf("result %d of the resend = %s, want applied", j, r.Status)
				}
			}
			for j, s := range saved {
				if got, want := trailOutcomes(ctx, t, e, s.ID), []string{"created", "failed", "applied"}; !slices.Equal(got, want) {
					t.Errorf("trail of op %d = %v, want %v", j, got, want)
				}
			}
			checkExactlyOnce(ctx, t, ts.Store, e, saved, true)
		})
	}
}

// TestSlowLinkAndDuplicateDelivery: a link that holds answers past the
// client's request timeout (after the server committed), delivers some
// pushes twice, in turn or at once, and cuts some pages of changes, for
// two devices syncing at the same time. Every op takes effect exactly
// once, and each device ends up with the server's records.
func TestSlowLinkAndDuplicateDelivery(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	seed := testSeed(t)
	rounds, perRound := 4, 15
	if raceEnabled {
		rounds = 3
	}
	ts := newTestServer(t)
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 6))
	ts.Proxy.SetRule(func(r *http.Request, n int) Fault {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != protocol.PathPush {
			switch rng.IntN(10) {
			case 0:
				return Fault{Kind: Stall}
			case 1:
				cut := rng.Float64()
				return Fault{Kind: CutResponse, Cut: func(n int) int { return int(cut * float64(n)) }}
			}
			return Fault{}
		}
		// Every kind at least once, then at random.
		switch n {
		case 1:
			return Fault{Kind: Stall}
		case 2:
			return Fault{Kind: Duplicate}
		case 3:
			return Fault{Kind: DuplicateConcurrent}
		}
		switch x := rng.IntN(100); {
		case x < 20:
			return Fault{Kind: Stall}
		case x < 40:
			return Fault{Kind: Duplicate}
		case x < 55:
			return Fault{Kind: DuplicateConcurrent}
		}
		return Fault{}
	})

	type device struct {
		e     *client.Engine
		w     *workload
		saved []savedOp
	}
	devs := make([]*device, 2)
	for i := range devs {
		cfg := engineConfig(t.TempDir(), ts.URL)
		cfg.RequestTimeout = 400 * time.Millisecond
		cfg.PullLimit = 7 // pages, each of which may be cut
		devs[i] = &device{e: openEngine(t, cfg), w: newWorkload(rand.New(rand.NewPCG(seed, uint64(i))), 4, 0.5)}
	}
	for round := range rounds {
		var wg sync.WaitGroup
		errs := make([]error, len(devs))
		for i, d := range devs {
			wg.Go(func() {
				s, err := d.w.make(ctx, d.e, perRound)
				d.saved = append(d.saved, s...)
				if err != nil {
					errs[i] = err
					return
				}
				errs[i] = syncUntilDoneErr(ctx, d.e)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, device %d: %v", round, i, err)
			}
		}
	}

	kinds := map[FaultKind]int{}
	twice := 0 // pushes delivered twice whose first delivery applied something
	for _, ex := range pushExchanges(ts.Proxy) {
		kinds[ex.Fault]++
		if ex.Fault == Duplicate && ex.Status == http.StatusOK && ex.FirstBody != nil {
			// What the first delivery decided, the second only repeats.
			first := pushResultsOf(t, Exchange{N: ex.N, Status: ex.Status, ResponseBody: ex.FirstBody, ResponseEnc: ex.ResponseEnc})
			second := pushResultsOf(t, ex)
			if len(first) != len(second) {
				t.Fatalf("push %d: %d results, then %d", ex.N, len(first), len(second))
			}
			for j := range second {
				if fieldsync.ResultStatus(first[j].Status).Final() && second[j].Status != string(fieldsync.StatusDuplicate) {
					t.Errorf("push %d delivered twice: op %s was %s, then %s", ex.N, second[j].Op, first[j].Status, second[j].Status)
				}
			}
			if !slices.ContainsFunc(first, func(r protocol.Result) bool { return r.Status == string(fieldsync.StatusApplied) }) {
				continue
			}
			twice++
		}
	}
	pulls := map[FaultKind]int{}
	for _, ex := range ts.Proxy.Exchanges() {
		if ex.Path == protocol.PathChanges {
			pulls[ex.Fault]++
		}
	}
	t.Logf("pushes by fault: %v; %d pushes that applied ops were delivered again in turn; pulls by fault: %v", kinds, twice, pulls)
	for _, k := range []FaultKind{Stall, Duplicate, DuplicateConcurrent} {
		if kinds[k] == 0 {
			t.Errorf("no push met fault %s", k)
		}
	}
	for _, d := range devs {
		checkExactlyOnce(ctx, t, ts.Store, d.e, d.saved, true)
	}
	// Over a clean link, each device ends up showing every record.
	ts.Proxy.SetRule(nil)
	for _, d := range devs {
		syncUntilDone(ctx, t, d.e)
		checkViews(ctx, t, ts.Store, d.e)
	}
}

// syncUntilDoneErr is syncUntilDone for goroutines: it returns an error
// instead of failing the test.
func syncUntilDoneErr(ctx context.Context, e *client.Engine) error {
	var last error
	idle := 0
	for ctx.Err() == nil {
		rep, err := e.Sync(ctx)
		if err != nil {
			last = err
			if !fieldsync.ErrorCode(err).Retryable() && !isRefused(err) {
				return fmt.Errorf("sync: %w", err)
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
		// A sync that succeeds decides every op it sends, unless one
		// waits for an earlier op that was not sent: that must not last.
		if rep.Delivered+rep.Rejected+rep.Conflicts == 0 {
			idle++
			if idle == 3 {
				return fmt.Errorf("%d syncs in a row succeeded but decided nothing, yet ops are pending: %v (last report %+v)", idle, st.Counts, rep)
			}
		} else {
			idle = 0
		}
	}
	return fmt.Errorf("still pending when the time was up; last error: %v", last)
}
