package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

// TestRejectionsDoNotBlock: ops the server refuses (unknown entity type,
// unknown field, malformed fields, a server-owned field) end in status
// error with a stable code and a message naming what is wrong, while
// good ops around them, in the same and later batches, are delivered. An
// op on a record whose create was refused gets record_missing. Only a
// refused op can be discarded; Status().Attention lists what needs a
// person until it is discarded.
func TestRejectionsDoNotBlock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := newTestServer(t)
	cfg := engineConfig(t.TempDir(), ts.URL)
	cfg.BatchSize = 3 // rejections in early batches, good ops in later ones
	e := openEngine(t, cfg)

	type step struct {
		name     string
		change   client.Change
		code     fieldsync.Code // "" for a good op
		mentions string         // what the message must name
	}
	raw := func(kv ...string) map[string]json.RawMessage {
		m := map[string]json.RawMessage{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = json.RawMessage(kv[i+1])
		}
		return m
	}
	const good, bad = "good-order", "bad-order"
	long := `"` + strings.Repeat("x", 201) + `"`
	steps := []step{
		{"create good", client.Change{Kind: fieldsync.KindCreate, Type: workOrder, EntityID: good,
			Fields: raw("title", `"Pump"`, "status", `"new"`)}, "", ""},
		{"unknown entity type", client.Change{Kind: fieldsync.KindCreate, Type: "spaceship",
			Fields: raw("title", `"x"`)}, fieldsync.EUnknownEntityType, "spaceship"},
		{"create with status banana", client.Change{Kind: fieldsync.KindCreate, Type: workOrder, EntityID: bad,
			Fields: raw("title", `"Valve"`, "status", `"banana"`)}, fieldsync.EInvalidField, "status"},
		{"title too long", client.Change{Kind: fieldsync.KindUpdate, Type: workOrder, EntityID: good,
			Fields: raw("title", long)}, fieldsync.EInvalidField, "title"},
		{"server-owned amount", client.Change{Kind: fieldsync.KindUpdate, Type: workOrder, EntityID: good,
			Fields: raw("amount", `12.5`)}, fieldsync.EServerOwned, "amount"},
		{"unknown field", client.Change{Kind: fieldsync.KindUpdate, Type: workOrder, EntityID: good,
			Fields: raw("colour", `"red"`)}, fieldsync.EUnknownField, "colour"},
		{"status after the refusals", client.Change{Kind: fieldsync.KindUpdate, Type: workOrder, EntityID: good,
			Fields: raw("status", `"in progress"`)}, "", ""},
		{"update of the refused create", client.Change{Kind: fieldsync.KindUpdate, Type: workOrder, EntityID: bad,
			Fields: raw("status", `"assigned"`)}, fieldsync.ERecordMissing, bad},
		{"comment", client.Change{Kind: fieldsync.KindAppend, Type: workOrder, EntityID: good,
			Fields: raw("comments", `"seal replaced"`)}, "", ""},
		{"another record", client.Change{Kind: fieldsync.KindCreate, Type: workOrder, EntityID: "later-order",
			Fields: raw("title", `"Boiler"`)}, "", ""},
		{"title fixed", client.Change{Kind: fieldsync.KindUpdate, Type: workOrder, EntityID: good,
			Fields: raw("title", `"Pump, north wing"`)}, "", ""},
	}
	ids := make([]string, len(steps))
	var saved []savedOp
	for i, s := range steps {
		op, err := e.Save(ctx, s.change)
		if err != nil {
			t.Fatalf("save %s: %v", s.name, err)
		}
		ids[i] = op.ID
		saved = append(saved, savedOp{ID: op.ID, Seq: op.Seq, Entity: op.EntityID, Kind: string(op.Kind)})
	}

	rep, err := e.Sync(ctx)
	mustNoErr(t, err)
	wantRejected := 0
	for _, s := range steps {
		if s.code != "" {
			wantRejected++
		}
	}
	if rep.Rejected != wantRejected || rep.Delivered != len(steps)-wantRejected || rep.Retry != 0 {
		t.Errorf("report = %+v, want %d rejected and %d delivered", rep, wantRejected, len(steps)-wantRejected)
	}
	var attention []string
	for i, s := range steps {
		op, trail, err := e.Op(ctx, ids[i])
		mustNoErr(t, err)
		if s.code == "" {
			if op.Status != client.OpDelivered {
				t.Errorf("%s: status %s (%s: %s), want delivered", s.name, op.Status, op.Code, op.Message)
			}
			continue
		}
		attention = append(attention, ids[i])
		if op.Status != client.OpError || fieldsync.Code(op.Code) != s.code {
			t.Errorf("%s: status %s code %q, want error %q", s.name, op.Status, op.Code, s.code)
		}
		if !strings.Contains(op.Message, s.mentions) {
			t.Errorf("%s: message %q does not name %q", s.name, op.Message, s.mentions)
		}
		last := trail[len(trail)-1]
		if last.Outcome != string(fieldsync.StatusRejected) || last.Code != op.Code || last.Message != op.Message {
			t.Errorf("%s: trail ends with %+v, want the rejection", s.name, last)
		}
	}

	// The good record has every good change and none of the bad ones.
	rec, err := ts.Store.Record(ctx, workOrder, good)
	mustNoErr(t, err)
	if got := string(rec.Fields["title"]); got != `"Pump, north wing"` {
		t.Errorf("title = %s", got)
	}
	if got := string(rec.Fields["status"]); got != `"in progress"` {
		t.Errorf("status = %s", got)
	}
	if _, ok := rec.Fields["amount"]; ok {
		t.Errorf("the server-owned amount was written: %s", rec.Fields["amount"])
	}
	if _, err := ts.Store.Record(ctx, workOrder, bad); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Errorf("the refused create made a record: %v", err)
	}
	v, err := e.Get(ctx, workOrder, good)
	mustNoErr(t, err)
	if v.State != client.RecordError {
		t.Errorf("view of the record with refused ops: state %q, want %q", v.State, client.RecordError)
	}

	st, err := e.Status(ctx)
	mustNoErr(t, err)
	if got := opIDs(st.Attention); !slices.Equal(got, attention) {
		t.Errorf("Status().Attention = %v, want the refused ops %v", got, attention)
	}
	if st.Counts[client.OpError] != len(attention) {
		t.Errorf("Status().Counts = %v, want %d errors", st.Counts, len(attention))
	}

	// Discard: refused ops only.
	if err := e.Discard(ctx, ids[0]); fieldsync.ErrorCode(err) != fieldsync.EInvalidRequest {
		t.Errorf("discard of a delivered op: %v, want %s", err, fieldsync.EInvalidRequest)
	}
	if err := e.Discard(ctx, "0190a0a0-0000-7000-8000-000000000000"); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Errorf("discard of an unknown op: %v, want %s", err, fieldsync.ENotFound)
	}
	if err := e.Discard(ctx, attention[0]); err != nil {
		t.Fatalf("discard of a refused op: %v", err)
	}
	if err := e.Discard(ctx, attention[0]); fieldsync.ErrorCode(err) != fieldsync.EInvalidRequest {
		t.Errorf("second discard: %v, want %s", err, fieldsync.EInvalidRequest)
	}
	op, _, err := e.Op(ctx, ids[0])
	mustNoErr(t, err)
	if op.Status != client.OpDelivered {
		t.Errorf("a refused discard changed a delivered op to %s", op.Status)
	}
	if got := trailOutcomes(ctx, t, e, attention[0]); got[len(got)-1] != "discarded" {
		t.Errorf("trail of the discarded op = %v", got)
	}
	st, err = e.Status(ctx)
	mustNoErr(t, err)
	if got := opIDs(st.Attention); !slices.Equal(got, attention[1:]) {
		t.Errorf("Status().Attention after a discard = %v, want %v", got, attention[1:])
	}
	if st.Counts[client.OpDiscarded] != 1 || st.Counts[client.OpError] != len(attention)-1 {
		t.Errorf("Status().Counts after a discard = %v", st.Counts)
	}

	// Nothing refused or discarded is sent again.
	before := serverOpCount(ctx, t, ts.Store.DB(), e.DeviceID())
	rep, err = e.Sync(ctx)
	mustNoErr(t, err)
	if rep.Sent != 0 {
		t.Errorf("a later sync sent %d ops", rep.Sent)
	}
	if after := serverOpCount(ctx, t, ts.Store.DB(), e.DeviceID()); after != before {
		t.Errorf("op log grew from %d to %d", before, after)
	}
	checkExactlyOnce(ctx, t, ts.Store, e, saved, true)
}

func opIDs(ops []client.OpInfo) []string {
	out := make([]string, len(ops))
	for i, o := range ops {
		out[i] = o.ID
	}
	return out
}
