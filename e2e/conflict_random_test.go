package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/schema"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// TestConflictsRandomized has three devices and a dispatcher edit shared
// records at random, round after round, with pushes duplicated, answers
// lost or cut, and one device's batches held back and delivered later in
// a shuffled order with duplicates. It then checks: no op applied twice,
// no appended item lost, no manual field overwritten without a conflict
// record, every device converging to the server's state, and — replaying
// one round's concurrent ops into two copies of the server in two other
// orders — the same outcome whatever the delivery order, where the
// policies say it must be.
func TestConflictsRandomized(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	ts := newTestServer(t)
	sch := schema.Default()

	var devs []*client.Engine
	for range 3 {
		devs = append(devs, openEngine(t, engineConfig(t.TempDir(), ts.URL)))
	}
	var ids []string
	for i := range 4 {
		res, id, err := ts.Server.Create(ctx, "work_order", map[string]json.RawMessage{
			"title": raw(fmt.Sprintf("Job %d", i)), "status": raw("assigned"), "address": raw("Street 1"),
		})
		mustNoErr(t, err)
		if res.Status != fieldsync.StatusApplied {
			t.Fatal(res)
		}
		ids = append(ids, id)
	}
	for _, d := range devs {
		syncUntilDone(ctx, t, d)
	}

	const rounds, snapRound = 6, 2
	var snapshot string
	var roundOps []fieldsync.Op // the snapshot round's ops, office ones included, as the server recorded them
	var held []protocol.Op      // pushes held back, delivered later out of order
	var heldDevice string

	for round := range rounds {
		versions := map[string]int64{}
		for _, id := range ids {
			rec, err := ts.Store.Record(ctx, "work_order", id)
			mustNoErr(t, err)
			versions[id] = rec.Version
		}
		if round == snapRound {
			snapshot = filepath.Join(t.TempDir(), "snapshot.db")
			_, err := ts.Store.DB().ExecContext(ctx, `VACUUM INTO ?`, snapshot)
			mustNoErr(t, err)
		}
		settles := round != snapRound // a settle names a conflict: not replayable in another order

		// Every device works offline on its copy.
		for _, d := range devs {
			for range 2 + rng.IntN(5) {
				id := ids[rng.IntN(len(ids))]
				if settles && rng.IntN(4) == 0 {
					if v, err := d.Get(ctx, "work_order", id); err == nil && len(v.Conflicts) > 0 {
						_, err := d.Settle(ctx, "work_order", id, v.Conflicts[0].Field, randomSettle(rng, v.Conflicts[0]))
						mustNoErr(t, err)
						continue
					}
				}
				randomDeviceEdit(ctx, t, rng, d, id, round)
			}
		}

		// Deliveries and office edits, interleaved at random.
		type action struct {
			dev    int // -1: an office edit
			holdIt bool
		}
		var plan []action
		for i := range devs {
			plan = append(plan, action{dev: i, holdIt: i == round%len(devs) && round != snapRound})
		}
		for range 1 + rng.IntN(3) {
			plan = append(plan, action{dev: -1})
		}
		rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
		for _, a := range plan {
			if a.dev < 0 {
				id := ids[rng.IntN(len(ids))]
				if settles && rng.IntN(3) == 0 {
					rec, err := ts.Store.Record(ctx, "work_order", id)
					mustNoErr(t, err)
					if len(rec.Review) > 0 {
						c, _ := rec.OpenConflict(rec.Review[0])
						_, err := ts.Server.Settle(ctx, "work_order", id, c.Field, randomSettle(rng, *c))
						mustNoErr(t, err)
						continue
					}
				}
				_, err := ts.Server.Edit(ctx, "work_order", id, versions[id], randomOfficeFields(rng, round))
				mustNoErr(t, err)
				continue
			}
			d := devs[a.dev]
			if a.holdIt {
				// The link swallows this device's pushes: they are delivered
				// later, shuffled and duplicated, by a slow relay.
				before := len(ts.Proxy.Exchanges())
				ts.Proxy.SetRule(func(r *http.Request, n int) Fault {
					if r.URL.Path == protocol.PathPush {
						return Fault{Kind: Drop}
					}
					return Fault{}
				})
				d.Sync(ctx) // fails: the pushes vanish
				for _, ex := range ts.Proxy.Exchanges()[before:] {
					if ex.Path == protocol.PathPush {
						req := pushRequestOf(t, ex)
						held = append(held, req.Ops...)
						heldDevice = req.Device
					}
				}
				ts.Proxy.SetRule(nil)
				continue
			}
			ts.Proxy.SetRule(func(r *http.Request, n int) Fault {
				if r.URL.Path != protocol.PathPush {
					return Fault{}
				}
				switch rng.IntN(6) {
				case 0:
					return Fault{Kind: Duplicate}
				case 1:
					return Fault{Kind: DuplicateConcurrent}
				case 2:
					return Fault{Kind: DropResponse}
				case 3:
					return Fault{Kind: CutResponse, Cut: func(n int) int { return n / 3 }}
				}
				return Fault{}
			})
			syncUntilDone(ctx, t, d)
			ts.Proxy.SetRule(nil)
		}
		// The held pushes arrive late, out of order, some twice.
		if len(held) > 0 {
			ops := make([]fieldsync.Op, len(held))
			for i := range held {
				ops[i] = protocol.ToOp(&held[i], heldDevice)
			}
			deliverShuffled(ctx, t, rng, ts.Server, ops)
			held = nil
		}
		if round == snapRound {
			roundOps = opsSince(ctx, t, ts.Store, ids, snapshot)
		}
	}
	for range 2 { // everyone pushes what is left, then pulls everything
		for _, d := range devs {
			syncUntilDone(ctx, t, d)
		}
	}

	checkAppendsOnce(ctx, t, ts.Store, ids)
	checkManualNeverOverwritten(ctx, t, ts.Store, ids, sch)
	for _, d := range devs {
		checkConverged(ctx, t, ts.Store, d, ids)
	}
	checkOrderIndependent(ctx, t, rng, snapshot, roundOps, ids, sch)
}

func randomSettle(rng *rand.Rand, c fieldsync.Conflict) fieldsync.Settle {
	s := fieldsync.Settle{Conflict: c.ID, Note: "checked on site"}
	switch rng.IntN(3) {
	case 0:
		s.Choice = fieldsync.ChoiceKeepServer
	case 1:
		s.Choice = fieldsync.ChoiceTakeDevice
	default:
		s.Choice = fieldsync.ChoiceNewValue
		s.Value = raw(statuses[rng.IntN(len(statuses))])
		if c.Field != "status" {
			s.Value = raw("settled value")
		}
	}
	return s
}

func randomDeviceEdit(ctx context.Context, t *testing.T, rng *rand.Rand, d *client.Engine, id string, round int) {
	t.Helper()
	var err error
	switch rng.IntN(7) {
	case 0, 1:
		_, err = d.Update(ctx, "work_order", id, map[string]any{"status": statuses[rng.IntN(len(statuses))]})
	case 2:
		_, err = d.Update(ctx, "work_order", id, map[string]any{"title": fmt.Sprintf("title r%d %d", round, rng.IntN(1000))})
	case 3:
		_, err = d.Update(ctx, "work_order", id, map[string]any{"address": fmt.Sprintf("Device street %d", rng.IntN(100))})
	case 4:
		_, err = d.Update(ctx, "work_order", id, map[string]any{"visit_start": time.Date(2026, 11, 24, 8+rng.IntN(8), 0, 0, 0, time.UTC).Format(time.RFC3339)})
	case 5:
		_, err = d.Append(ctx, "work_order", id, "comments", fmt.Sprintf("note r%d %d", round, rng.IntN(1000)))
	default:
		_, err = d.Append(ctx, "work_order", id, "readings", map[string]any{"meter": "gas", "value": rng.IntN(9999)})
	}
	mustNoErr(t, err)
}

func randomOfficeFields(rng *rand.Rand, round int) map[string]json.RawMessage {
	f := map[string]json.RawMessage{}
	for len(f) == 0 {
		if rng.IntN(2) == 0 {
			f["status"] = raw(statuses[rng.IntN(len(statuses))])
		}
		if rng.IntN(3) == 0 {
			f["address"] = raw(fmt.Sprintf("Office street %d", rng.IntN(100)))
		}
		if rng.IntN(3) == 0 {
			f["title"] = raw(fmt.Sprintf("office title r%d", round))
		}
		if rng.IntN(4) == 0 {
			f["visit_start"] = raw(time.Date(2026, 11, 25, 8+rng.IntN(8), 0, 0, 0, time.UTC).Format(time.RFC3339))
		}
	}
	return f
}

// deliverShuffled delivers ops in a random order, in batches of 1-3 ops
// sent sometimes twice, until every op is decided: an op whose earlier op
// on the record has not arrived is answered "retry" and goes back in the
// pile.
func deliverShuffled(ctx context.Context, t *testing.T, rng *rand.Rand, srv *server.Server, ops []fieldsync.Op) {
	t.Helper()
	pile := slices.Clone(ops)
	for rounds := 0; len(pile) > 0; rounds++ {
		if rounds > 10*len(ops)+10 {
			t.Fatalf("%d ops never decided", len(pile))
		}
		rng.Shuffle(len(pile), func(i, j int) { pile[i], pile[j] = pile[j], pile[i] })
		n := min(len(pile), 1+rng.IntN(3))
		batch := slices.Clone(pile[:n])
		results, err := srv.Apply(ctx, batch)
		mustNoErr(t, err)
		if rng.IntN(3) == 0 { // the same batch again: nothing may change
			again, err := srv.Apply(ctx, batch)
			mustNoErr(t, err)
			for i, r := range again {
				if results[i].Status != fieldsync.StatusRetry && r.Status != fieldsync.StatusDuplicate {
					t.Fatalf("op %s delivered twice: second answer %s", batch[i].ID, r.Status)
				}
			}
		}
		var rest []fieldsync.Op
		for i, r := range results {
			if r.Status == fieldsync.StatusRetry {
				rest = append(rest, batch[i])
			}
		}
		pile = append(rest, pile[n:]...)
	}
}

// opsSince returns the ops the server decided on ids after the snapshot
// was taken, in the order it decided them.
func opsSince(ctx context.Context, t *testing.T, st *sqlite.Store, ids []string, snapshot string) []fieldsync.Op {
	t.Helper()
	old, err := sqlite.Open(ctx, snapshot)
	mustNoErr(t, err)
	defer old.Close()
	var out []fieldsync.Op
	for _, id := range ids {
		before, err := old.RecordOps(ctx, "work_order", id)
		mustNoErr(t, err)
		all, err := st.RecordOps(ctx, "work_order", id)
		mustNoErr(t, err)
		for _, e := range all[len(before):] {
			out = append(out, e.Op)
		}
	}
	return out
}

// checkAppendsOnce: every applied append op left exactly one item, and no
// item exists without its op.
func checkAppendsOnce(ctx context.Context, t *testing.T, st *sqlite.Store, ids []string) {
	t.Helper()
	for _, id := range ids {
		rec, err := st.Record(ctx, "work_order", id)
		mustNoErr(t, err)
		ops, err := st.RecordOps(ctx, "work_order", id)
		mustNoErr(t, err)
		want := map[string]int{}
		for _, e := range ops {
			if e.Op.Kind == fieldsync.KindAppend && e.Result.Status == fieldsync.StatusApplied {
				for f := range e.Op.Fields {
					want[f+"/"+e.Op.ID]++
				}
			}
		}
		got := map[string]int{}
		for _, f := range []string{"comments", "readings"} {
			var items []fieldsync.AppendItem
			if raw, ok := rec.Fields[f]; ok {
				mustNoErr(t, json.Unmarshal(raw, &items))
			}
			for _, it := range items {
				got[f+"/"+it.ID]++
			}
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("%s: item %s appears %d times, want %d", rec.Number, k, got[k], n)
			}
		}
		for k := range got {
			if want[k] == 0 {
				t.Errorf("%s: item %s has no applied op", rec.Number, k)
			}
		}
	}
}

// checkManualNeverOverwritten replays each record's op log: every op that
// changed a manual field must have seen the value it replaced (its base
// is at least the version that wrote it, or it is the same device's later
// op), or be a person's settlement; every clash must be in a conflict
// record.
func checkManualNeverOverwritten(ctx context.Context, t *testing.T, st *sqlite.Store, ids []string, sch *schema.Schema) {
	t.Helper()
	wt, _ := sch.Type("work_order")
	for _, id := range ids {
		rec, err := st.Record(ctx, "work_order", id)
		mustNoErr(t, err)
		ops, err := st.RecordOps(ctx, "work_order", id)
		mustNoErr(t, err)
		type last struct {
			version int64
			by      string
			seq     int64
			value   string
		}
		written := map[string]last{}
		// A clashing value is held by a conflict record: by its own op, or
		// — for a device, whose later value on a field under review
		// replaces its earlier one — by the same device.
		inConflict := map[string]bool{}
		settledTo := map[string]string{} // settle op id → the value it set
		for _, c := range rec.Conflicts {
			for _, v := range append([]fieldsync.ConflictValue{c.Server}, c.Theirs...) {
				inConflict[c.Field+"/"+v.OpID] = true
				if v.By != server.OfficeDevice {
					inConflict[c.Field+"/"+v.By] = true
				}
			}
			if c.Settled != nil {
				settledTo[c.Settled.OpID] = string(c.Settled.Value)
			}
		}
		for _, e := range ops {
			r := e.Result
			if r.Status == fieldsync.StatusDuplicate || r.Status == fieldsync.StatusRejected {
				continue
			}
			for _, c := range r.Conflicts {
				if !inConflict[c.Field+"/"+e.Op.ID] && !(e.Op.DeviceID != server.OfficeDevice && inConflict[c.Field+"/"+e.Op.DeviceID]) {
					t.Errorf("%s: op %s clashed on %s but no conflict record holds its value", rec.Number, e.Op.ID, c.Field)
				}
			}
			for f := range e.Op.Fields {
				if wt.Fields[f].Policy != schema.PolicyManual {
					continue
				}
				clashed := slices.ContainsFunc(r.Conflicts, func(c fieldsync.FieldConflict) bool { return c.Field == f })
				if clashed {
					continue
				}
				if e.Op.Kind == fieldsync.KindSettle {
					if r.Status == fieldsync.StatusApplied {
						written[f] = last{r.Version, e.Op.DeviceID, e.Op.Seq, settledTo[e.Op.ID]}
					}
					continue
				}
				prev, ok := written[f]
				if ok && prev.value == string(e.Op.Fields[f]) {
					continue // the value was already so: nothing overwritten
				}
				own := prev.by == e.Op.DeviceID && prev.by != server.OfficeDevice && prev.seq < e.Op.Seq
				if ok && e.Op.BaseVersion < prev.version && !own {
					t.Errorf("%s: op %s (base v%d) overwrote %s written at v%d by %s without a conflict\n%s", rec.Number, e.Op.ID, e.Op.BaseVersion, f, prev.version, prev.by, opLog(ops))
				}
				written[f] = last{r.Version, e.Op.DeviceID, e.Op.Seq, string(e.Op.Fields[f])}
			}
		}
	}
}

// checkConverged: after a final pull a device shows what the server has.
func checkConverged(ctx context.Context, t *testing.T, st *sqlite.Store, d *client.Engine, ids []string) {
	t.Helper()
	for _, id := range ids {
		rec, err := st.Record(ctx, "work_order", id)
		mustNoErr(t, err)
		v, err := d.Get(ctx, "work_order", id)
		mustNoErr(t, err)
		if v.Pending != 0 || v.Version != rec.Version || !jsonEqual(v.Fields, rec.Fields) {
			t.Errorf("device %s did not converge on %s: v%d vs server v%d, pending %d", d.DeviceID()[:8], rec.Number, v.Version, rec.Version, v.Pending)
		}
		var open []string
		for _, c := range rec.Conflicts {
			if c.Open() {
				open = append(open, c.ID)
			}
		}
		var shown []string
		for _, c := range v.Conflicts {
			shown = append(shown, c.ID)
		}
		if !slices.Equal(open, shown) {
			t.Errorf("device %s shows conflicts %v on %s, server has %v open", d.DeviceID()[:8], shown, rec.Number, open)
		}
	}
}

// checkOrderIndependent replays the snapshot round's ops into two copies of
// the snapshot in two random orders (duplicates and out-of-order arrivals
// included) and compares the outcomes the policies make order-free: the
// value of every field settled by a rule (last-writer-wins, server-wins,
// device-wins, role-priority) and the append items as sets.
func checkOrderIndependent(ctx context.Context, t *testing.T, rng *rand.Rand, snapshot string, ops []fieldsync.Op, ids []string, sch *schema.Schema) {
	t.Helper()
	if len(ops) == 0 {
		t.Fatal("the snapshot round made no ops")
	}
	wt, _ := sch.Type("work_order")
	outcome := func(name string) map[string]map[string]string {
		path := filepath.Join(t.TempDir(), name+".db")
		mustNoErr(t, copyFile(snapshot, path))
		st, err := sqlite.Open(ctx, path)
		mustNoErr(t, err)
		defer st.Close()
		srv, err := server.New(server.Config{Store: st})
		mustNoErr(t, err)
		// Office edits carry the ids, sequence numbers and clocks the
		// server gave them; they arrive as ops of device "office".
		deliverShuffled(ctx, t, rng, srv, ops)
		out := map[string]map[string]string{}
		for _, id := range ids {
			rec, err := st.Record(ctx, "work_order", id)
			mustNoErr(t, err)
			if os.Getenv("FIELDSYNC_DEBUG") != "" {
				all, _ := st.RecordOps(ctx, "work_order", id)
				t.Logf("%s %s meta %+v\n%s", name, id[:8], rec.Meta["status"], opLog(all[len(all)-min(len(all), 8):]))
			}
			fields := map[string]string{}
			for name, f := range wt.Fields {
				switch f.Policy {
				case schema.PolicyAppend:
					var items []fieldsync.AppendItem
					if raw, ok := rec.Fields[name]; ok {
						mustNoErr(t, json.Unmarshal(raw, &items))
					}
					var ids []string
					for _, it := range items {
						ids = append(ids, it.ID)
					}
					slices.Sort(ids)
					fields[name] = fmt.Sprint(ids)
				case schema.PolicyManual:
					// A person decides these. Which values reach that person
					// depends on which writer had seen which value — an
					// informed write may knowingly replace one an uninformed
					// write would have clashed with — so the order of arrival
					// may matter here; what may not is a value overwritten
					// without a conflict record, which
					// checkManualNeverOverwritten checks on the real run.
				default:
					fields[name] = string(rec.Fields[name])
				}
			}
			out[id] = fields
		}
		return out
	}
	a, b := outcome("order-a"), outcome("order-b")
	for _, id := range ids {
		for f, va := range a[id] {
			if vb := b[id][f]; va != vb {
				var mine []fieldsync.OpEntry
				for _, op := range ops {
					if op.EntityID == id {
						mine = append(mine, fieldsync.OpEntry{Op: op})
					}
				}
				t.Errorf("record %s field %s depends on delivery order: %s vs %s; the round's ops:\n%s", id[:8], f, va, vb, opLog(mine))
			}
		}
	}
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o600)
}

// opLog renders a record's op log for a failure message.
func opLog(ops []fieldsync.OpEntry) string {
	var b strings.Builder
	for _, e := range ops {
		dev := e.Op.DeviceID
		if len(dev) > 8 {
			dev = dev[len(dev)-8:]
		}
		fields, _ := json.Marshal(e.Op.Fields)
		fmt.Fprintf(&b, "  %s %-8s #%-3d prev %-3d base v%-3d %-7s %s -> %s v%d %s\n", e.Op.ID[len(e.Op.ID)-8:], dev, e.Op.Seq, e.Op.PrevSeq,
			e.Op.BaseVersion, e.Op.Kind, fields, e.Result.Status, e.Result.Version, e.Result.Message)
	}
	return b.String()
}
