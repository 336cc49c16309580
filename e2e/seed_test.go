package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/protocol"
)

// TestSeedScenario is the story the product exists for. A technician,
// offline in a basement, ticks checklist items, attaches three photos and a
// signature, comments and sets the status "completed on site"; meanwhile
// the dispatcher changes the address and sets "waiting for parts". After
// the sync nothing is lost: the address is the dispatcher's, every item of
// proof is on the record, and the status needs review with both values.
// Settling it with a note works from either side, and re-sending the
// technician's old ops afterwards changes nothing.
func TestSeedScenario(t *testing.T) {
	for _, side := range []string{"device", "office"} {
		t.Run("settled from the "+side, func(t *testing.T) { seedScenario(t, side) })
	}
}

func raw(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func seedScenario(t *testing.T, settleFrom string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ts := newTestServer(t)
	tech := openEngine(t, engineConfig(t.TempDir(), ts.URL))

	// The office creates and assigns the work order; the technician's
	// device pulls it before going into the basement.
	res, id, err := ts.Server.Create(ctx, "work_order", map[string]json.RawMessage{
		"title": raw("Boiler service"), "status": raw("assigned"),
		"address": raw("14 Rue des Tanneurs"), "assignee": raw("Alex"),
	})
	mustNoErr(t, err)
	if res.Status != fieldsync.StatusApplied {
		t.Fatalf("office create: %+v", res)
	}
	syncUntilDone(ctx, t, tech)

	// Offline: the link is down, every action is saved on the device.
	ts.Proxy.SetRule(func(*http.Request, int) Fault { return Fault{Kind: Drop} })
	var techOps []fieldsync.Op
	save := func(op fieldsync.Op, err error) {
		t.Helper()
		mustNoErr(t, err)
		techOps = append(techOps, op)
	}
	save(tech.Append(ctx, "work_order", id, "checklist", map[string]any{"item": "gas valve", "done": true}))
	save(tech.Append(ctx, "work_order", id, "checklist", map[string]any{"item": "flue", "done": true}))
	for i, name := range []string{"boiler.jpg", "flue.jpg", "meter.jpg"} {
		save(tech.Append(ctx, "work_order", id, "photos", map[string]any{"name": name, "sha256": strings.Repeat("a", 63) + string(rune('0'+i))}))
	}
	save(tech.Append(ctx, "work_order", id, "signature", map[string]any{"name": "signature.png", "signer": "C. Martin"}))
	save(tech.Append(ctx, "work_order", id, "comments", "Replaced the gasket; pressure 1.4 bar"))
	save(tech.Update(ctx, "work_order", id, map[string]any{"status": "completed on site"}))
	if _, err := tech.Sync(ctx); err == nil {
		t.Fatal("sync through a dead link succeeded")
	}

	// Meanwhile the dispatcher, from the version both saw.
	for _, edit := range []map[string]json.RawMessage{
		{"address": raw("3 Quai Saint-Vincent")},
		{"status": raw("waiting for parts")},
	} {
		rec, err := ts.Store.Record(ctx, "work_order", id)
		mustNoErr(t, err)
		r, err := ts.Server.Edit(ctx, "work_order", id, rec.Version, edit)
		mustNoErr(t, err)
		if r.Status != fieldsync.StatusApplied {
			t.Fatalf("office edit %v: %+v", edit, r)
		}
	}

	// The link comes back.
	ts.Proxy.SetRule(nil)
	syncUntilDone(ctx, t, tech)

	rec, err := ts.Store.Record(ctx, "work_order", id)
	mustNoErr(t, err)
	if got := string(rec.Fields["address"]); got != `"3 Quai Saint-Vincent"` {
		t.Errorf("address = %s, want the dispatcher's", got)
	}
	for field, want := range map[string]int{"checklist": 2, "photos": 3, "signature": 1, "comments": 1} {
		var items []fieldsync.AppendItem
		mustNoErr(t, json.Unmarshal(rec.Fields[field], &items))
		if len(items) != want {
			t.Errorf("%s: %d items, want %d", field, len(items), want)
		}
	}
	if got := string(rec.Fields["status"]); got != `"waiting for parts"` {
		t.Errorf("status = %s: the server must keep its value while it needs review", got)
	}
	if len(rec.Review) != 1 || rec.Review[0] != "status" {
		t.Fatalf("review = %v, want [status]", rec.Review)
	}
	c, open := rec.OpenConflict("status")
	if !open {
		t.Fatalf("no open conflict on status: %+v", rec.Conflicts)
	}
	statusOp := techOps[len(techOps)-1]
	if string(c.Server.Value) != `"waiting for parts"` || c.Server.By != "office" ||
		len(c.Theirs) != 1 || string(c.Theirs[0].Value) != `"completed on site"` ||
		c.Theirs[0].By != tech.DeviceID() || c.Theirs[0].OpID != statusOp.ID {
		t.Fatalf("conflict does not hold both values with their writers: %+v", c)
	}

	// The device sees it too.
	v, err := tech.Get(ctx, "work_order", id)
	mustNoErr(t, err)
	if v.State != client.RecordReview || len(v.Conflicts) != 1 || string(v.Fields["status"]) != `"waiting for parts"` {
		t.Fatalf("device view: state %q, conflicts %v, status %s", v.State, v.Conflicts, v.Fields["status"])
	}
	st, err := tech.Status(ctx)
	mustNoErr(t, err)
	if st.NeedsReview() != 1 || st.Reviews[0].Conflict.ID != c.ID {
		t.Fatalf("device status: needs review %d (%+v)", st.NeedsReview(), st.Reviews)
	}
	op, _, err := tech.Op(ctx, statusOp.ID)
	mustNoErr(t, err)
	if op.Status != client.OpConflict {
		t.Fatalf("the status op is %q on the device, want %q", op.Status, client.OpConflict)
	}

	// Settled once, with a note, from one side.
	settle := fieldsync.Settle{Conflict: c.ID, Choice: fieldsync.ChoiceNewValue,
		Value: raw("waiting for parts"), Note: "completed, but parts required"}
	var settler string
	switch settleFrom {
	case "device":
		// Offline too: the settlement waits in the outbox like any op.
		ts.Proxy.SetRule(func(*http.Request, int) Fault { return Fault{Kind: Drop} })
		_, err := tech.Settle(ctx, "work_order", id, "status", settle)
		mustNoErr(t, err)
		v, err := tech.Get(ctx, "work_order", id)
		mustNoErr(t, err)
		if len(v.Conflicts) != 0 || len(v.Review) != 0 {
			t.Fatalf("the device still shows the conflict after settling it: %+v", v)
		}
		ts.Proxy.SetRule(nil)
		syncUntilDone(ctx, t, tech)
		settler = tech.DeviceID()
	case "office":
		r, err := ts.Server.Settle(ctx, "work_order", id, "status", settle)
		mustNoErr(t, err)
		if r.Status != fieldsync.StatusApplied {
			t.Fatalf("office settle: %+v", r)
		}
		syncUntilDone(ctx, t, tech)
		settler = "office"
	}
	rec, err = ts.Store.Record(ctx, "work_order", id)
	mustNoErr(t, err)
	if len(rec.Review) != 0 || len(rec.Conflicts) != 1 || rec.Conflicts[0].Settled == nil {
		t.Fatalf("after settling: review %v, conflicts %+v", rec.Review, rec.Conflicts)
	}
	s := rec.Conflicts[0].Settled
	if s.By != settler || s.Note != "completed, but parts required" || s.Version != rec.Version || string(s.Value) != `"waiting for parts"` {
		t.Fatalf("settlement recorded as %+v (record version %d)", s, rec.Version)
	}
	v, err = tech.Get(ctx, "work_order", id)
	mustNoErr(t, err)
	if v.State != client.RecordSent || len(v.Conflicts) != 0 {
		t.Fatalf("device after settlement: state %q, conflicts %+v", v.State, v.Conflicts)
	}

	// A second settlement is refused, naming who settled.
	again, err := ts.Server.Settle(ctx, "work_order", id, "status", fieldsync.Settle{Conflict: c.ID, Choice: fieldsync.ChoiceTakeDevice})
	mustNoErr(t, err)
	if again.Status != fieldsync.StatusRejected || again.Code != fieldsync.EAlreadySettled || !strings.Contains(again.Message, settler) {
		t.Fatalf("second settlement: %+v", again)
	}

	// Re-sending the technician's old ops changes nothing.
	before, err := ts.Store.Record(ctx, "work_order", id)
	mustNoErr(t, err)
	req := protocol.PushRequest{Device: tech.DeviceID()}
	for i := range techOps {
		req.Ops = append(req.Ops, protocol.FromOp(&techOps[i]))
	}
	ops := make([]fieldsync.Op, len(req.Ops))
	for i := range req.Ops {
		ops[i] = protocol.ToOp(&req.Ops[i], req.Device)
	}
	results, err := ts.Server.Apply(ctx, ops)
	mustNoErr(t, err)
	for i, r := range results {
		if r.Status != fieldsync.StatusDuplicate {
			t.Errorf("resent op %d: %s, want duplicate", i, r.Status)
		}
	}
	after, err := ts.Store.Record(ctx, "work_order", id)
	mustNoErr(t, err)
	if after.Version != before.Version || after.Seq != before.Seq || string(after.Fields["status"]) != `"waiting for parts"` {
		t.Fatalf("resending old ops changed the record: v%d→v%d, status %s", before.Version, after.Version, after.Fields["status"])
	}
}
