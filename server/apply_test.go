package server

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/schema"
)

var (
	t0  = time.Date(2024, 7, 3, 9, 0, 0, 0, time.UTC)
	now = t0.Add(time.Hour)
)

func workOrderType(t *testing.T) *schema.EntityType {
	t.Helper()
	typ, ok := schema.Default().Type("work_order")
	if !ok {
		t.Fatal("no work_order type")
	}
	return typ
}

type fields = map[string]string

func rawFields(f fields) map[string]json.RawMessage {
	if f == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(f))
	for k, v := range f {
		out[k] = json.RawMessage(v)
	}
	return out
}

// change is one field's stored value and who set it at which version.
type change struct {
	value   string
	version int64
	by      string
	seq     int64
}

// stored builds a record at version v from per-field changes.
func stored(v int64, deleted bool, cs map[string]change) fieldsync.Record {
	rec := fieldsync.Record{
		Type: "work_order", ID: "wo-1", Number: "WO-1001", Version: v, Deleted: deleted, Seq: 9,
		Fields: map[string]json.RawMessage{}, Meta: map[string]fieldsync.FieldMeta{}, UpdatedAt: t0,
	}
	for name, c := range cs {
		if c.value != "" {
			rec.Fields[name] = json.RawMessage(c.value)
		}
		rec.Meta[name] = fieldsync.FieldMeta{Version: c.version, By: c.by, Seq: c.seq}
	}
	return rec
}

var opCounter atomic.Int64

// nextOpID returns a new op id; later ids sort higher, like UUIDv7s.
func nextOpID() string { return fmt.Sprintf("0190a6c4-1b2c-7d3e-8f40-%012x", opCounter.Add(1)) }

func mkOp(kind fieldsync.OpKind, device string, seq, base int64, f fields) *fieldsync.Op {
	return &fieldsync.Op{
		ID: nextOpID(), DeviceID: device, Seq: seq,
		EntityType: "work_order", EntityID: "wo-1", Kind: kind, BaseVersion: base, Fields: rawFields(f), LocalTime: t0,
	}
}

func clone(r fieldsync.Record) fieldsync.Record {
	data, _ := json.Marshal(r)
	var c fieldsync.Record
	json.Unmarshal(data, &c)
	return c
}

// created is a record device "a" made with its op 1: version 1.
func created() fieldsync.Record {
	return stored(1, false, map[string]change{
		"title":  {`"Boiler"`, 1, "a", 1},
		"status": {`"new"`, 1, "a", 1},
	})
}

// afterOther is created() after writer `by` (seq 7) changed status to
// "cancelled" at version 2.
func afterOther(by string) fieldsync.Record {
	return stored(2, false, map[string]change{
		"title":  {`"Boiler"`, 1, "a", 1},
		"status": {`"cancelled"`, 2, by, 7},
	})
}

func TestDecideCreate(t *testing.T) {
	typ := workOrderType(t)
	t.Run("new record", func(t *testing.T) {
		var rec fieldsync.Record
		var res fieldsync.Result
		op := mkOp(fieldsync.KindCreate, "a", 1, 0, fields{"title": `"Boiler"`, "status": `"new"`, "description": `null`})
		if !decide(&rec, false, typ, op, now, &res) {
			t.Fatal("a create reports no change")
		}
		if res.Status != fieldsync.StatusApplied || res.Version != 1 || res.Code != "" {
			t.Fatalf("result %+v", res)
		}
		if rec.Type != "work_order" || rec.ID != "wo-1" || rec.Version != 1 || rec.Deleted {
			t.Fatalf("record %+v", rec)
		}
		if len(rec.Fields) != 2 || string(rec.Fields["title"]) != `"Boiler"` {
			t.Fatalf("fields %s (a null field is not stored)", rec.Fields)
		}
		if _, ok := rec.Meta["description"]; ok {
			t.Error("a null field got meta")
		}
		want := fieldsync.FieldMeta{Version: 1, By: "a", Seq: 1, Role: RoleFieldWorker, HLC: fieldsync.HLCFromTime(t0), OpID: op.ID, At: now.UnixMilli()}
		if m := rec.Meta["status"]; m != want {
			t.Errorf("meta %+v, want %+v", m, want)
		}
	})
	t.Run("office create writes in the dispatcher role", func(t *testing.T) {
		var rec fieldsync.Record
		var res fieldsync.Result
		op := mkOp(fieldsync.KindCreate, OfficeDevice, 4, 0, fields{"title": `"Leak"`, "assignee": `"ana"`})
		op.LocalTime = now
		if !decide(&rec, false, typ, op, now, &res) || res.Status != fieldsync.StatusApplied {
			t.Fatalf("result %+v", res)
		}
		want := fieldsync.FieldMeta{Version: 1, By: OfficeDevice, Seq: 4, Role: RoleDispatcher, HLC: fieldsync.HLCFromTime(now), OpID: op.ID, At: now.UnixMilli()}
		if m := rec.Meta["assignee"]; m != want {
			t.Errorf("meta %+v, want %+v", m, want)
		}
	})
	t.Run("existing record", func(t *testing.T) {
		for _, deleted := range []bool{false, true} {
			rec := created()
			rec.Deleted = deleted
			before := clone(rec)
			var res fieldsync.Result
			if decide(&rec, true, typ, mkOp(fieldsync.KindCreate, "b", 1, 0, fields{"title": `"Other"`}), now, &res) {
				t.Fatal("a refused create reports a change")
			}
			if res.Status != fieldsync.StatusRejected || res.Code != fieldsync.EAlreadyExists || res.Message == "" {
				t.Fatalf("result %+v", res)
			}
			if !reflect.DeepEqual(clone(rec), before) {
				t.Fatalf("record changed: %+v", rec)
			}
		}
	})
}

func TestDecideUpdate(t *testing.T) {
	typ := workOrderType(t)
	type want struct {
		status    fieldsync.ResultStatus
		code      fieldsync.Code
		version   int64
		changed   bool
		fields    fields   // expected stored values after ("" = absent)
		conflicts []string // conflicting fields, in order
		review    []string
	}
	cases := []struct {
		name string
		rec  fieldsync.Record
		op   *fieldsync.Op
		want want
	}{
		{"fresh base", created(), mkOp(fieldsync.KindUpdate, "b", 3, 1, fields{"status": `"in progress"`}),
			want{fieldsync.StatusApplied, "", 2, true, fields{"status": `"in progress"`, "title": `"Boiler"`}, nil, nil}},
		{"stale base, untouched field merges (device)", afterOther("b"), mkOp(fieldsync.KindUpdate, "c", 3, 1, fields{"title": `"Boiler room"`}),
			want{fieldsync.StatusApplied, "", 3, true, fields{"status": `"cancelled"`, "title": `"Boiler room"`}, nil, nil}},
		{"stale base, untouched field merges (office)", afterOther("b"), mkOp(fieldsync.KindUpdate, OfficeDevice, 3, 1, fields{"title": `"Boiler room"`}),
			want{fieldsync.StatusApplied, "", 3, true, fields{"status": `"cancelled"`, "title": `"Boiler room"`}, nil, nil}},
		{"stale base, field changed by the office, device writes", afterOther(OfficeDevice), mkOp(fieldsync.KindUpdate, "a", 8, 1, fields{"status": `"in progress"`}),
			want{fieldsync.StatusConflict, fieldsync.EFieldConflict, 3, true, fields{"status": `"cancelled"`}, []string{"status"}, []string{"status"}}},
		{"stale base, field changed by a device, office writes", afterOther("b"), mkOp(fieldsync.KindUpdate, OfficeDevice, 3, 1, fields{"status": `"closed"`}),
			want{fieldsync.StatusConflict, fieldsync.EFieldConflict, 3, true, fields{"status": `"cancelled"`}, []string{"status"}, []string{"status"}}},
		{"stale base, field changed by another device", afterOther("b"), mkOp(fieldsync.KindUpdate, "a", 8, 1, fields{"status": `"in progress"`}),
			want{fieldsync.StatusConflict, fieldsync.EFieldConflict, 3, true, fields{"status": `"cancelled"`}, []string{"status"}, []string{"status"}}},
		{"stale base, earlier office edit, later office edit", afterOther(OfficeDevice), mkOp(fieldsync.KindUpdate, OfficeDevice, 9, 1, fields{"status": `"closed"`}),
			want{fieldsync.StatusConflict, fieldsync.EFieldConflict, 3, true, fields{"status": `"cancelled"`}, []string{"status"}, []string{"status"}}},
		{"conflict on one field, clean merge of another", afterOther("b"), mkOp(fieldsync.KindUpdate, "a", 8, 1, fields{"status": `"in progress"`, "title": `"Boiler 2"`}),
			want{fieldsync.StatusConflict, fieldsync.EFieldConflict, 3, true, fields{"status": `"cancelled"`, "title": `"Boiler 2"`}, []string{"status"}, []string{"status"}}},
		{"own earlier write is no conflict", afterOther("a"), mkOp(fieldsync.KindUpdate, "a", 8, 1, fields{"status": `"in progress"`}),
			want{fieldsync.StatusApplied, "", 3, true, fields{"status": `"in progress"`}, nil, nil}},
		{"own later write is a conflict", afterOther("a"), mkOp(fieldsync.KindUpdate, "a", 6, 1, fields{"status": `"in progress"`}),
			want{fieldsync.StatusConflict, fieldsync.EFieldConflict, 3, true, fields{"status": `"cancelled"`}, []string{"status"}, []string{"status"}}},
		// An equal value never clashes; it still counts as a write (its
		// writer is who the next clash on the field is with). One that
		// agreed with a value its writer had not seen records that
		// value's version (Since).
		{"equal value is no conflict", afterOther("b"), mkOp(fieldsync.KindUpdate, "a", 8, 1, fields{"status": `"cancelled"`}),
			want{fieldsync.StatusApplied, "", 3, true, fields{"status": `"cancelled"`}, nil, nil}},
		{"equal value from the latest version is a write", created(), mkOp(fieldsync.KindUpdate, "b", 3, 1, fields{"status": `"new"`}),
			want{fieldsync.StatusApplied, "", 2, true, fields{"status": `"new"`}, nil, nil}},
		{"equal object in another key order is no conflict",
			stored(2, false, map[string]change{"coordinates": {`{"lat":1,"lon":2}`, 2, "b", 7}}),
			mkOp(fieldsync.KindUpdate, "a", 8, 1, fields{"coordinates": `{ "lon": 2, "lat": 1 }`}),
			want{fieldsync.StatusApplied, "", 3, true, fields{"coordinates": `{"lat":1,"lon":2}`}, nil, nil}},
		{"null clears", created(), mkOp(fieldsync.KindUpdate, "a", 2, 1, fields{"status": `null`}),
			want{fieldsync.StatusApplied, "", 2, true, fields{"status": "", "title": `"Boiler"`}, nil, nil}},
		{"null on an absent field keeps it absent", created(), mkOp(fieldsync.KindUpdate, "b", 2, 1, fields{"description": `null`}),
			want{fieldsync.StatusApplied, "", 2, true, fields{"description": ""}, nil, nil}},
		{"null against a newer value is a conflict", afterOther("b"), mkOp(fieldsync.KindUpdate, "a", 8, 1, fields{"status": `null`}),
			want{fieldsync.StatusConflict, fieldsync.EFieldConflict, 3, true, fields{"status": `"cancelled"`}, []string{"status"}, []string{"status"}}},
		{"missing record", fieldsync.Record{}, mkOp(fieldsync.KindUpdate, "a", 2, 1, fields{"status": `"new"`}),
			want{fieldsync.StatusRejected, fieldsync.ERecordMissing, 0, false, nil, nil, nil}},
		{"deleted record", stored(4, true, nil), mkOp(fieldsync.KindUpdate, "a", 2, 3, fields{"status": `"new"`}),
			want{fieldsync.StatusRejected, fieldsync.ERecordDeleted, 0, false, nil, nil, nil}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := c.rec
			exists := rec.ID != ""
			before := clone(rec)
			oldReview := slices.Clone(rec.Review)
			var res fieldsync.Result
			changed := decide(&rec, exists, typ, c.op, now, &res)
			w := c.want
			if res.Status != w.status || res.Code != w.code || res.Version != w.version || changed != w.changed {
				t.Fatalf("got %s/%s version %d changed %v; want %s/%s version %d changed %v (%s)",
					res.Status, res.Code, res.Version, changed, w.status, w.code, w.version, w.changed, res.Message)
			}
			if res.OpID != "" && res.OpID != c.op.ID {
				t.Errorf("result names op %s", res.OpID)
			}
			if !changed {
				if !reflect.DeepEqual(clone(rec), before) {
					t.Fatalf("an unchanged record was modified:\n%+v\n%+v", rec, before)
				}
			} else if rec.Version != w.version {
				t.Errorf("record version %d, want %d", rec.Version, w.version)
			}
			if w.status == fieldsync.StatusRejected && res.Message == "" {
				t.Error("a rejection without a message")
			}
			for name, v := range w.fields {
				got, ok := rec.Fields[name]
				if v == "" && ok || v != "" && (!ok || !jsonEqual(got, json.RawMessage(v))) {
					t.Errorf("field %s = %s, want %q", name, got, v)
				}
			}
			var names []string
			for _, fc := range res.Conflicts {
				names = append(names, fc.Field)
				// Both values are kept: the server's in the record and in
				// the conflict, the device's in the conflict.
				if !jsonEqual(fc.DeviceValue, c.op.Fields[fc.Field]) && !(isNull(fc.DeviceValue) && isNull(c.op.Fields[fc.Field])) {
					t.Errorf("conflict %s: device value %s, op had %s", fc.Field, fc.DeviceValue, c.op.Fields[fc.Field])
				}
				srv := before.Fields[fc.Field]
				if !jsonEqual(fc.ServerValue, orNull(srv)) {
					t.Errorf("conflict %s: server value %s, record had %s", fc.Field, fc.ServerValue, srv)
				}
				if m := before.Meta[fc.Field]; fc.ServerVersion != m.Version || fc.ServerBy != m.By {
					t.Errorf("conflict %s: server version/by %d/%s, meta %+v", fc.Field, fc.ServerVersion, fc.ServerBy, m)
				}
				if !strings.Contains(res.Message, fc.Field) {
					t.Errorf("message %q does not name %s", res.Message, fc.Field)
				}
			}
			if !slices.Equal(names, w.conflicts) {
				t.Errorf("conflicting fields %v, want %v", names, w.conflicts)
			}
			if changed && !slices.Equal(rec.Review, append(oldReview, w.review...)) {
				t.Errorf("review %v, want %v", rec.Review, w.review)
			}
			// Fields written take the new version and the writer.
			if changed {
				for name := range c.op.Fields {
					if slices.Contains(names, name) {
						if rec.Meta[name] != before.Meta[name] {
							t.Errorf("a conflicting field's meta changed: %+v", rec.Meta[name])
						}
						continue
					}
					var since int64 // the unseen value this write agreed with
					if old := before.Meta[name]; old.Version > c.op.BaseVersion && jsonEqual(before.Fields[name], c.op.Fields[name]) {
						since = old.Version
					}
					if m := rec.Meta[name]; m.Version != w.version || m.By != c.op.DeviceID || m.Seq != c.op.Seq || m.OpID != c.op.ID || m.Since != since {
						t.Errorf("meta of %s = %+v, want since %d", name, m, since)
					}
				}
			}
		})
	}
}

// TestDecideConflictBothSides replays the same clash on a manual field
// with the roles of the two writers swapped: whoever wrote second from a
// stale base gets the conflict, the value first written stays, and both
// values are in the answer and in the record's conflict. While the
// conflict is open even a writer who has seen the latest version only
// adds a candidate; once it is settled, such a writer applies again.
func TestDecideConflictBothSides(t *testing.T) {
	typ := workOrderType(t)
	writers := []string{"a", "b", OfficeDevice}
	for _, first := range writers {
		for _, second := range writers {
			if first == second && first != OfficeDevice {
				continue // a device's own earlier write: covered above
			}
			t.Run(first+" then "+second, func(t *testing.T) {
				rec := created()
				var r1 fieldsync.Result
				op1 := mkOp(fieldsync.KindUpdate, first, 10, 1, fields{"status": `"assigned"`})
				if !decide(&rec, true, typ, op1, now, &r1) || r1.Status != fieldsync.StatusApplied {
					t.Fatalf("first write: %+v", r1)
				}
				var r2 fieldsync.Result
				op2 := mkOp(fieldsync.KindUpdate, second, 11, 1, fields{"status": `"closed"`})
				decide(&rec, true, typ, op2, now, &r2)
				if r2.Status != fieldsync.StatusConflict || len(r2.Conflicts) != 1 || len(r2.Overridden) != 0 {
					t.Fatalf("second write: %+v", r2)
				}
				fc := r2.Conflicts[0]
				if string(fc.ServerValue) != `"assigned"` || string(fc.DeviceValue) != `"closed"` || fc.ServerBy != first || fc.ServerVersion != 2 {
					t.Errorf("conflict %+v", fc)
				}
				if string(rec.Fields["status"]) != `"assigned"` || !slices.Equal(rec.Review, []string{"status"}) || rec.Version != 3 {
					t.Errorf("record %s review %v version %d", rec.Fields["status"], rec.Review, rec.Version)
				}
				if len(rec.Conflicts) != 1 || rec.Conflicts[0].ID != conflictID(op2.ID, "status") || rec.Conflicts[0].Server.OpID != op1.ID ||
					rec.Conflicts[0].Server.By != first || len(rec.Conflicts[0].Theirs) != 1 || rec.Conflicts[0].Theirs[0].By != second {
					t.Fatalf("conflicts %+v", rec.Conflicts)
				}
				// Under review, a writer who has seen the latest version
				// offers a candidate and overwrites nothing: a device's
				// later value replaces its earlier candidate, an office
				// edit joins the others.
				var r3 fieldsync.Result
				op3 := mkOp(fieldsync.KindUpdate, second, 12, 3, fields{"status": `"in progress"`})
				decide(&rec, true, typ, op3, now, &r3)
				if r3.Status != fieldsync.StatusConflict || string(rec.Fields["status"]) != `"assigned"` || rec.Meta["status"].OpID != op1.ID {
					t.Fatalf("update under review: %+v, status %s", r3, rec.Fields["status"])
				}
				wantTheirs := []string{op3.ID}
				if second == OfficeDevice {
					wantTheirs = []string{op2.ID, op3.ID}
				}
				var theirs []string
				for _, v := range rec.Conflicts[0].Theirs {
					theirs = append(theirs, v.OpID)
				}
				if len(rec.Conflicts) != 1 || !slices.Equal(theirs, wantTheirs) || string(rec.Conflicts[0].Theirs[len(theirs)-1].Value) != `"in progress"` {
					t.Fatalf("candidates %v, want %v: %+v", theirs, wantTheirs, rec.Conflicts)
				}
				// Settled, the field takes writes from the latest version again.
				var rs fieldsync.Result
				st := mkOp(fieldsync.KindSettle, OfficeDevice, 30, 0, fields{"status": fmt.Sprintf(`{"conflict":%q,"choice":"keep_server"}`, conflictID(op2.ID, "status"))})
				if !decide(&rec, true, typ, st, now, &rs) || rs.Status != fieldsync.StatusApplied || len(rec.Review) != 0 {
					t.Fatalf("settle: %+v review %v", rs, rec.Review)
				}
				var r4 fieldsync.Result
				decide(&rec, true, typ, mkOp(fieldsync.KindUpdate, second, 13, rec.Version, fields{"status": `"closed"`}), now, &r4)
				if r4.Status != fieldsync.StatusApplied || string(rec.Fields["status"]) != `"closed"` {
					t.Errorf("update from the latest version after the settlement: %+v, status %s", r4, rec.Fields["status"])
				}
			})
		}
	}
}

func TestDecideAppend(t *testing.T) {
	typ := workOrderType(t)
	t.Run("keeps items with their op id, even from a stale base", func(t *testing.T) {
		rec := afterOther("b")
		first := fieldsync.AppendItem{ID: "0190a6c4-1b2c-7d3e-8f40-0000000000aa", Value: json.RawMessage(`"first"`), By: "b", At: t0}
		list, _ := json.Marshal([]fieldsync.AppendItem{first})
		rec.Fields["comments"] = list
		rec.Meta["comments"] = fieldsync.FieldMeta{Version: 2, By: "b", Seq: 7}
		op := mkOp(fieldsync.KindAppend, "a", 8, 1, fields{"comments": `"second"`, "photos": `{"sha256":"ab"}`})
		var res fieldsync.Result
		if !decide(&rec, true, typ, op, now, &res) {
			t.Fatal("append reports no change")
		}
		if res.Status != fieldsync.StatusApplied || res.Version != 3 || len(res.Conflicts) != 0 {
			t.Fatalf("result %+v", res)
		}
		var items []fieldsync.AppendItem
		if err := json.Unmarshal(rec.Fields["comments"], &items); err != nil {
			t.Fatal(err)
		}
		if len(items) != 2 || items[0].ID != first.ID || string(items[0].Value) != `"first"` {
			t.Fatalf("items %+v", items)
		}
		if it := items[1]; it.ID != op.ID || string(it.Value) != `"second"` || it.By != "a" || !it.At.Equal(t0) {
			t.Errorf("new item %+v", it)
		}
		var photos []fieldsync.AppendItem
		if err := json.Unmarshal(rec.Fields["photos"], &photos); err != nil || len(photos) != 1 || photos[0].ID != op.ID {
			t.Errorf("photos %s: %v", rec.Fields["photos"], err)
		}
		want := fieldsync.FieldMeta{Version: 3, By: "a", Seq: 8, Role: RoleFieldWorker, HLC: fieldsync.HLCFromTime(t0), OpID: op.ID, At: now.UnixMilli()}
		if m := rec.Meta["comments"]; m != want {
			t.Errorf("meta %+v, want %+v", m, want)
		}
		if string(rec.Fields["status"]) != `"cancelled"` {
			t.Error("an append touched another field")
		}
	})
	t.Run("the office's item joins a device's", func(t *testing.T) {
		rec := created()
		var r1, r2 fieldsync.Result
		op1 := mkOp(fieldsync.KindAppend, "a", 2, 1, fields{"comments": `"pressure ok"`})
		op2 := mkOp(fieldsync.KindAppend, OfficeDevice, 3, 1, fields{"comments": `"call before visiting"`})
		decide(&rec, true, typ, op1, now, &r1)
		decide(&rec, true, typ, op2, now, &r2)
		if r1.Status != fieldsync.StatusApplied || r2.Status != fieldsync.StatusApplied || len(r2.Overridden) != 0 || len(r2.Conflicts) != 0 || r2.Version != 3 {
			t.Fatalf("results %+v %+v", r1, r2)
		}
		var items []fieldsync.AppendItem
		if err := json.Unmarshal(rec.Fields["comments"], &items); err != nil || len(items) != 2 || items[0].ID != op1.ID || items[1].ID != op2.ID || items[1].By != OfficeDevice {
			t.Fatalf("items %s: %v", rec.Fields["comments"], err)
		}
	})
	t.Run("missing record", func(t *testing.T) {
		var rec fieldsync.Record
		var res fieldsync.Result
		if decide(&rec, false, typ, mkOp(fieldsync.KindAppend, "a", 2, 1, fields{"comments": `"x"`}), now, &res) {
			t.Fatal("reports a change")
		}
		if res.Status != fieldsync.StatusRejected || res.Code != fieldsync.ERecordMissing || res.Message == "" {
			t.Fatalf("result %+v", res)
		}
		if !reflect.DeepEqual(rec, fieldsync.Record{}) {
			t.Fatal("record modified")
		}
	})
	t.Run("deleted record keeps the item", func(t *testing.T) {
		// Proof of work is never lost: a photo taken on site is kept on
		// the tombstone, and the record stays deleted.
		rec := stored(4, true, map[string]change{"title": {`"Boiler"`, 1, "a", 1}})
		op := mkOp(fieldsync.KindAppend, "a", 5, 3, fields{"photos": `{"sha256":"ab"}`})
		var res fieldsync.Result
		if !decide(&rec, true, typ, op, now, &res) {
			t.Fatal("the item was not kept")
		}
		if res.Status != fieldsync.StatusApplied || res.Version != 5 || res.Code != "" || !strings.Contains(res.Message, "deleted") {
			t.Fatalf("result %+v", res)
		}
		if !rec.Deleted || rec.Version != 5 || string(rec.Fields["title"]) != `"Boiler"` {
			t.Fatalf("record %+v", rec)
		}
		var photos []fieldsync.AppendItem
		if err := json.Unmarshal(rec.Fields["photos"], &photos); err != nil || len(photos) != 1 || photos[0].ID != op.ID || string(photos[0].Value) != `{"sha256":"ab"}` {
			t.Fatalf("photos %s: %v", rec.Fields["photos"], err)
		}
	})
}

func TestDecideDelete(t *testing.T) {
	typ := workOrderType(t)
	cases := []struct {
		name    string
		rec     fieldsync.Record
		exists  bool
		op      *fieldsync.Op
		status  fieldsync.ResultStatus
		code    fieldsync.Code
		version int64
		changed bool
		deleted bool
	}{
		{"clean", created(), true, mkOp(fieldsync.KindDelete, "b", 2, 1, nil), fieldsync.StatusApplied, "", 2, true, true},
		{"stale base, another device changed a field", afterOther("b"), true, mkOp(fieldsync.KindDelete, "a", 8, 1, nil), fieldsync.StatusConflict, fieldsync.EFieldConflict, 2, false, false},
		{"stale base, the office changed a field", afterOther(OfficeDevice), true, mkOp(fieldsync.KindDelete, "a", 8, 1, nil), fieldsync.StatusConflict, fieldsync.EFieldConflict, 2, false, false},
		{"office deletes from a stale base", afterOther("b"), true, mkOp(fieldsync.KindDelete, OfficeDevice, 8, 1, nil), fieldsync.StatusConflict, fieldsync.EFieldConflict, 2, false, false},
		{"stale base, only own earlier changes", afterOther("a"), true, mkOp(fieldsync.KindDelete, "a", 8, 1, nil), fieldsync.StatusApplied, "", 3, true, true},
		{"already deleted is idempotent", stored(4, true, nil), true, mkOp(fieldsync.KindDelete, "b", 2, 1, nil), fieldsync.StatusApplied, "", 4, false, true},
		{"missing", fieldsync.Record{}, false, mkOp(fieldsync.KindDelete, "b", 2, 1, nil), fieldsync.StatusRejected, fieldsync.ERecordMissing, 0, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := c.rec
			before := clone(rec)
			var res fieldsync.Result
			changed := decide(&rec, c.exists, typ, c.op, now, &res)
			if res.Status != c.status || res.Code != c.code || res.Version != c.version || changed != c.changed {
				t.Fatalf("got %s/%s version %d changed %v; want %s/%s version %d changed %v (%s)",
					res.Status, res.Code, res.Version, changed, c.status, c.code, c.version, c.changed, res.Message)
			}
			if rec.Deleted != c.deleted {
				t.Errorf("deleted = %v", rec.Deleted)
			}
			if !changed && !reflect.DeepEqual(clone(rec), before) {
				t.Errorf("record modified")
			}
			if c.status == fieldsync.StatusConflict && !strings.Contains(res.Message, "status") {
				t.Errorf("message %q does not name the changed field", res.Message)
			}
			if changed && !reflect.DeepEqual(rec.Fields, before.Fields) {
				t.Error("a delete changed the fields: they are kept for history")
			}
		})
	}
}

func TestDecideUnknownKind(t *testing.T) {
	rec := created()
	var res fieldsync.Result
	if decide(&rec, true, workOrderType(t), mkOp("merge", "a", 2, 1, nil), now, &res) {
		t.Fatal("reports a change")
	}
	if res.Status != fieldsync.StatusRejected || res.Code != fieldsync.EInvalidRequest {
		t.Fatalf("result %+v", res)
	}
}

func TestClash(t *testing.T) {
	op := &fieldsync.Op{DeviceID: "a", Seq: 10, BaseVersion: 5}
	office := &fieldsync.Op{DeviceID: OfficeDevice, Seq: 10, BaseVersion: 5}
	cases := []struct {
		name string
		m    fieldsync.FieldMeta
		op   *fieldsync.Op
		want bool
	}{
		{"never written", fieldsync.FieldMeta{}, op, false},
		{"written before the base", fieldsync.FieldMeta{Version: 4, By: "b", Seq: 3}, op, false},
		{"written at the base", fieldsync.FieldMeta{Version: 5, By: "b", Seq: 3}, op, false},
		{"written after the base by another device", fieldsync.FieldMeta{Version: 6, By: "b", Seq: 3}, op, true},
		{"written after the base by the office", fieldsync.FieldMeta{Version: 6, By: OfficeDevice, Seq: 3}, op, true},
		{"written after the base by a device, office writes", fieldsync.FieldMeta{Version: 6, By: "a", Seq: 3}, office, true},
		{"written after the base by the office, office writes", fieldsync.FieldMeta{Version: 6, By: OfficeDevice, Seq: 3}, office, true},
		{"written after the base by the same device, earlier op", fieldsync.FieldMeta{Version: 6, By: "a", Seq: 9}, op, false},
		{"written after the base by the same device, later op", fieldsync.FieldMeta{Version: 6, By: "a", Seq: 11}, op, true},
		{"written after the base by the same op number", fieldsync.FieldMeta{Version: 6, By: "a", Seq: 10}, op, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := clash(c.m, c.op); got != c.want {
				t.Fatalf("clash(%+v, %+v) = %v, want %v", c.m, *c.op, got, c.want)
			}
		})
	}
}

func TestConflictMessageIsValidText(t *testing.T) {
	long := json.RawMessage(`"` + strings.Repeat("é", 80) + `"`)
	msg := conflictMessage([]fieldsync.FieldConflict{
		{Field: "description", ServerValue: long, DeviceValue: json.RawMessage(`"x` + strings.Repeat("日", 40) + `"`)},
		{Field: "status", ServerValue: json.RawMessage(`"new"`), DeviceValue: json.RawMessage(`null`)},
	})
	if !utf8.ValidString(msg) {
		t.Fatalf("message is not valid UTF-8: %q", msg)
	}
	if !strings.Contains(msg, "description") || !strings.Contains(msg, "status") || !strings.HasSuffix(msg, "needs review") {
		t.Errorf("message %q", msg)
	}
	if len(msg) > 400 {
		t.Errorf("long values are not shortened: %d bytes", len(msg))
	}
}

// policiesSchema is testdata/policies.json: a "job" type with
// role-priority fields in both role orders and one listing neither of
// the roles writers have.
func policiesSchema(t *testing.T) *schema.Schema {
	t.Helper()
	data, err := os.ReadFile("testdata/policies.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.Parse(data)
	if err != nil {
		t.Fatalf("testdata/policies.json: %v", err)
	}
	return s
}

func jobType(t *testing.T) *schema.EntityType {
	t.Helper()
	typ, ok := policiesSchema(t).Type("job")
	if !ok {
		t.Fatal("no job type")
	}
	return typ
}

// Server clock readings of the policy cases: every write is made before
// nowA, so no clock reading is capped unless a case means it to be.
var (
	nowA = t0.Add(2 * time.Hour) // the first write arrives
	nowB = t0.Add(3 * time.Hour) // the second write arrives
)

// side is one writer of a clash: who, the clock reading (t0 + at) at
// which the write was made, and the op's id and sequence number.
type side struct {
	by  string
	at  time.Duration
	id  string
	seq int64
}

func office(at time.Duration) side            { return side{by: OfficeDevice, at: at} }
func device(id string, at time.Duration) side { return side{by: id, at: at} }

func (s side) role() string {
	if s.by == OfficeDevice {
		return RoleDispatcher
	}
	return RoleFieldWorker
}

// hlc is the clock reading the server must record for the write.
func (s side) hlc() fieldsync.HLC { return fieldsync.HLCFromTime(t0.Add(s.at)) }

// op is the side's update of one field from base version base. An
// office edit carries no clock reading, only its time, as the server
// makes it; a device's op carries its hybrid logical clock and a wall
// clock two days fast, which must not matter.
func (s side) op(typ string, base int64, field, value string) *fieldsync.Op {
	op := &fieldsync.Op{
		ID: s.id, DeviceID: s.by, Seq: s.seq, EntityType: typ, EntityID: "rec-1", Kind: fieldsync.KindUpdate,
		BaseVersion: base, Fields: rawFields(fields{field: value}),
	}
	if s.by == OfficeDevice {
		op.LocalTime = t0.Add(s.at)
	} else {
		op.HLC = s.hlc()
		op.LocalTime = t0.Add(48 * time.Hour)
	}
	return op
}

// outcome is who wins a clash.
type outcome int

const (
	firstWins outcome = iota
	secondWins
	review // a person decides
)

// baseRecord is a record of type typ that device "tab-0" created at
// version 1, with field set to v0 (and a title).
func baseRecord(t *testing.T, typ *schema.EntityType, typName, field, v0 string) fieldsync.Record {
	t.Helper()
	f := fields{"title": `"Boiler"`}
	f[field] = v0
	op := &fieldsync.Op{ID: nextOpID(), DeviceID: "tab-0", Seq: 1, EntityType: typName, EntityID: "rec-1", Kind: fieldsync.KindCreate,
		Fields: rawFields(f), HLC: fieldsync.HLCFromTime(t0)}
	var rec fieldsync.Record
	var res fieldsync.Result
	if !decide(&rec, false, typ, op, t0, &res) || res.Status != fieldsync.StatusApplied {
		t.Fatalf("create: %+v", res)
	}
	return rec
}

// clashCase is one clash on one field: the record starts at version 1
// with v0, `first` writes v1 from version 1, then `second` writes v2
// from version 1 too, not having seen the first write.
type clashCase struct {
	name          string
	field         string
	v0, v1, v2    string
	first, second side
	want          outcome
}

// TestPolicies settles each policy's clashes through decide, on the
// bundled work-order schema and on a schema with role-priority fields,
// device against office, device against device and office against
// office, and checks every trace the verdict leaves. Each case runs in
// both arrival orders: the winner must be the same write either way,
// so the side that loses in one order wins in the other.
func TestPolicies(t *testing.T) {
	wo, job := workOrderType(t), jobType(t)
	const m = time.Minute
	title := func(name string, first, second side, want outcome) clashCase {
		return clashCase{name, "title", `"Boiler"`, `"Boiler room 2"`, `"Boiler, basement"`, first, second, want}
	}
	address := func(name, field string, first, second side, want outcome) clashCase {
		return clashCase{name, field, `"12 Quay St"`, `"14 Quay St"`, `"3 Dock Rd"`, first, second, want}
	}
	visit := func(name string, first, second side, want outcome) clashCase {
		return clashCase{name, "visit_start", `"2024-07-03T08:00:00Z"`, `"2024-07-03T09:15:00Z"`, `"2024-07-03T10:30:00Z"`, first, second, want}
	}
	status := func(name string, first, second side) clashCase {
		return clashCase{name, "status", `"assigned"`, `"waiting for parts"`, `"completed on site"`, first, second, review}
	}
	bundled := []clashCase{
		title("last-writer-wins: device later than office", office(10*m), device("tab-a", 20*m), secondWins),
		title("last-writer-wins: office later than device", device("tab-a", 10*m), office(20*m), secondWins),
		title("last-writer-wins: two devices", device("tab-a", 10*m), device("tab-b", 20*m), secondWins),
		title("last-writer-wins: two office edits", office(10*m), office(20*m), secondWins),
		title("last-writer-wins: same clock, higher device id", device("tab-b", 15*m), device("tab-a", 15*m), firstWins),
		title("last-writer-wins: same clock, office edits, higher op id", office(15*m), office(15*m), secondWins),
		{"last-writer-wins: coordinates, two devices", "coordinates", `{"lat":1,"lon":2}`, `{"lat":1.5,"lon":2}`, `{"lat":1,"lon":2.5}`,
			device("tab-a", 30*m), device("tab-b", 20*m), firstWins},
		address("server-wins: office over a later device", "address", office(10*m), device("tab-a", 50*m), firstWins),
		address("server-wins: office over an earlier device", "address", device("tab-a", 50*m), office(10*m), secondWins),
		address("server-wins: contact", "contact", device("tab-a", 5*m), office(1*m), secondWins),
		address("server-wins: two devices, later clock", "address", device("tab-a", 10*m), device("tab-b", 20*m), secondWins),
		address("server-wins: two office edits, later clock", "address", office(20*m), office(10*m), firstWins),
		visit("device-wins: device over a later office edit", office(10*m), device("tab-a", 5*m), secondWins),
		visit("device-wins: device over an earlier office edit", device("tab-a", 5*m), office(50*m), firstWins),
		visit("device-wins: two devices, later clock", device("tab-a", 30*m), device("tab-b", 20*m), firstWins),
		visit("device-wins: two office edits, later clock", office(10*m), office(20*m), secondWins),
		status("manual: office then device", office(10*m), device("tab-a", 20*m)),
		status("manual: device then office", device("tab-a", 10*m), office(20*m)),
		status("manual: two devices", device("tab-a", 10*m), device("tab-b", 20*m)),
		status("manual: two office edits", office(10*m), office(20*m)),
		{"manual: description, earlier clock second", "description", `"noisy"`, `"replaced valve"`, `"needs a new pump"`,
			device("tab-a", 30*m), device("tab-b", 10*m), review},
		{"server-owned: two office edits, later clock", "amount", `12.5`, `80`, `95`, office(10 * m), office(20 * m), secondWins},
	}
	roles := []clashCase{
		{"role-priority: dispatcher before worker", "priority", `"normal"`, `"urgent"`, `"low"`, office(10 * m), device("tab-a", 50*m), firstWins},
		{"role-priority: dispatcher before worker, second", "priority", `"normal"`, `"urgent"`, `"low"`, device("tab-a", 50*m), office(10 * m), secondWins},
		{"role-priority: same role, later clock", "priority", `"normal"`, `"urgent"`, `"low"`, device("tab-a", 20*m), device("tab-b", 10*m), firstWins},
		{"role-priority: office edits, later clock", "priority", `"normal"`, `"urgent"`, `"low"`, office(10 * m), office(20 * m), secondWins},
		{"role-priority: worker before dispatcher", "crew", `"none"`, `"Ana, Bo"`, `"Cy"`, office(50 * m), device("tab-a", 10*m), secondWins},
		{"role-priority: unlisted role after listed", "lead", `"none"`, `"Ana"`, `"Bo"`, office(10 * m), device("tab-a", 50*m), firstWins},
	}
	run := func(t *testing.T, typ *schema.EntityType, typName string, cases []clashCase) {
		for i, c := range cases {
			// Each side keeps its op id and sequence number in both
			// arrival orders: the same two writes, delivered both ways.
			c.first.id, c.first.seq = fmt.Sprintf("0190a6c4-1b2c-7d3e-8f40-%06x000001", i), 10
			c.second.id, c.second.seq = fmt.Sprintf("0190a6c4-1b2c-7d3e-8f40-%06x000002", i), 20
			t.Run(c.name, func(t *testing.T) {
				checkClash(t, typ, typName, c.field, c.v0, c.first, c.v1, c.second, c.v2, c.want)
			})
			t.Run(c.name+" (arriving the other way round)", func(t *testing.T) {
				swapped := map[outcome]outcome{firstWins: secondWins, secondWins: firstWins, review: review}[c.want]
				checkClash(t, typ, typName, c.field, c.v0, c.second, c.v2, c.first, c.v1, swapped)
			})
		}
	}
	t.Run("work_order", func(t *testing.T) { run(t, wo, "work_order", bundled) })
	t.Run("job", func(t *testing.T) { run(t, job, "job", roles) })
}

// checkClash applies a's write of va and then b's write of vb, both from
// version 1, and checks the verdict want (firstWins: a's value stays).
func checkClash(t *testing.T, typ *schema.EntityType, typName, field, v0 string, a side, va string, b side, vb string, want outcome) {
	t.Helper()
	policy := typ.Fields[field].Policy
	rec := baseRecord(t, typ, typName, field, v0)
	opA := a.op(typName, 1, field, va)
	var ra fieldsync.Result
	if !decide(&rec, true, typ, opA, nowA, &ra) || ra.Status != fieldsync.StatusApplied || ra.Version != 2 || len(ra.Overridden) != 0 {
		t.Fatalf("first write: %+v", ra)
	}
	metaA := fieldsync.FieldMeta{Version: 2, By: a.by, Seq: a.seq, Role: a.role(), HLC: a.hlc(), OpID: a.id, At: nowA.UnixMilli()}
	if rec.Meta[field] != metaA {
		t.Fatalf("meta after the first write %+v, want %+v", rec.Meta[field], metaA)
	}
	afterA := clone(rec)

	opB := b.op(typName, 1, field, vb)
	var rb fieldsync.Result
	changed := decide(&rec, true, typ, opB, nowB, &rb)
	if rb.Code != "" && want != review {
		t.Fatalf("second write: %+v", rb)
	}
	switch want {
	case firstWins:
		// The value on the server stays; the incoming one is recorded
		// as the loser, with who wrote it.
		if changed || rb.Status != fieldsync.StatusApplied || rb.Version != 2 || len(rb.Conflicts) != 0 {
			t.Fatalf("changed %v, result %+v; want applied at version 2, nothing changed", changed, rb)
		}
		wantO := []fieldsync.Overridden{{Field: field, Value: json.RawMessage(vb), By: b.by, Policy: policy}}
		if !reflect.DeepEqual(rb.Overridden, wantO) {
			t.Fatalf("overridden %+v, want %+v", rb.Overridden, wantO)
		}
		if !strings.Contains(rb.Message, field) || !strings.Contains(rb.Message, "lost") {
			t.Errorf("message %q does not say the write of %s lost", rb.Message, field)
		}
		if !reflect.DeepEqual(clone(rec), afterA) {
			t.Fatalf("the losing write changed the record:\n%+v\n%+v", rec, afterA)
		}
	case secondWins:
		// The incoming value replaces the server's, whose value is
		// recorded as the loser, with who had written it.
		if !changed || rb.Status != fieldsync.StatusApplied || rb.Version != 3 || len(rb.Conflicts) != 0 {
			t.Fatalf("changed %v, result %+v; want applied at version 3", changed, rb)
		}
		wantO := []fieldsync.Overridden{{Field: field, Value: json.RawMessage(va), By: a.by, Policy: policy}}
		if !reflect.DeepEqual(rb.Overridden, wantO) {
			t.Fatalf("overridden %+v, want %+v", rb.Overridden, wantO)
		}
		if !strings.Contains(rb.Message, field) || !strings.Contains(rb.Message, "replaced") {
			t.Errorf("message %q does not say the value of %s was replaced", rb.Message, field)
		}
		if rec.Version != 3 || string(rec.Fields[field]) != vb {
			t.Fatalf("record version %d, %s = %s; want 3, %s", rec.Version, field, rec.Fields[field], vb)
		}
		metaB := fieldsync.FieldMeta{Version: 3, By: b.by, Seq: b.seq, Role: b.role(), HLC: b.hlc(), OpID: b.id, At: nowB.UnixMilli()}
		if rec.Meta[field] != metaB {
			t.Fatalf("meta %+v, want %+v", rec.Meta[field], metaB)
		}
		if len(rec.Review) != 0 || len(rec.Conflicts) != 0 {
			t.Fatalf("review %v conflicts %+v", rec.Review, rec.Conflicts)
		}
	case review:
		// Nothing is overwritten: a conflict record keeps both values,
		// who wrote each, when and through which op.
		if !changed || rb.Status != fieldsync.StatusConflict || rb.Code != fieldsync.EFieldConflict || rb.Version != 3 || len(rb.Overridden) != 0 {
			t.Fatalf("changed %v, result %+v; want a conflict at version 3", changed, rb)
		}
		wantFC := []fieldsync.FieldConflict{{Field: field, ServerValue: json.RawMessage(va), DeviceValue: json.RawMessage(vb), ServerVersion: 2, ServerBy: a.by}}
		if !reflect.DeepEqual(rb.Conflicts, wantFC) {
			t.Fatalf("result conflicts %+v, want %+v", rb.Conflicts, wantFC)
		}
		if rec.Version != 3 || string(rec.Fields[field]) != va || rec.Meta[field] != metaA || !slices.Equal(rec.Review, []string{field}) {
			t.Fatalf("record version %d, %s = %s, meta %+v, review %v", rec.Version, field, rec.Fields[field], rec.Meta[field], rec.Review)
		}
		wantC := []fieldsync.Conflict{{
			ID: conflictID(b.id, field), Field: field, OpenedAt: nowB,
			Server: fieldsync.ConflictValue{Value: json.RawMessage(va), By: a.by, Role: a.role(), OpID: a.id, Version: 2, At: nowA},
			Theirs: []fieldsync.ConflictValue{{Value: json.RawMessage(vb), By: b.by, Role: b.role(), OpID: b.id, At: nowB}},
		}}
		if !reflect.DeepEqual(rec.Conflicts, wantC) {
			t.Fatalf("record conflicts\n%+v\nwant\n%+v", rec.Conflicts, wantC)
		}
	}
	for name, v := range afterA.Fields {
		if name != field && !jsonEqual(rec.Fields[name], v) {
			t.Errorf("field %s changed to %s", name, rec.Fields[name])
		}
	}
}

// TestDecideClockCap: a device whose clock runs hours ahead does not win
// last-writer-wins against an office edit made after its op arrived,
// because the server caps a device's reading at its own clock; a wall
// clock alone (an op without a reading) is capped the same way.
func TestDecideClockCap(t *testing.T) {
	typ := workOrderType(t)
	capAt := func(now time.Time) fieldsync.HLC { return fieldsync.HLCFromTime(now) + 0xffff }
	for _, c := range []struct {
		name string
		hlc  fieldsync.HLC
		wall time.Time
	}{
		{"clock reading hours ahead", fieldsync.HLCFromTime(nowA.Add(5 * time.Hour)), nowA},
		{"no reading, wall clock hours ahead", 0, nowA.Add(5 * time.Hour)},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := created()
			dev := mkOp(fieldsync.KindUpdate, "tab-fast", 3, 1, fields{"title": `"Boiler (fast clock)"`})
			dev.HLC, dev.LocalTime = c.hlc, c.wall
			var rd fieldsync.Result
			if !decide(&rec, true, typ, dev, nowA, &rd) || rd.Status != fieldsync.StatusApplied {
				t.Fatalf("device write: %+v", rd)
			}
			if got := rec.Meta["title"].HLC; got != capAt(nowA) {
				t.Fatalf("recorded reading %d, want it capped at the server's clock %d", got, capAt(nowA))
			}

			// An office edit in the same millisecond is not later than
			// the capped reading: the device's value stays.
			same := clone(rec)
			o1 := mkOp(fieldsync.KindUpdate, OfficeDevice, 8, 1, fields{"title": `"Boiler (office, same moment)"`})
			o1.LocalTime = nowA
			var r1 fieldsync.Result
			if decide(&same, true, typ, o1, nowA, &r1) || len(r1.Overridden) != 1 || r1.Overridden[0].By != OfficeDevice {
				t.Fatalf("office edit in the same millisecond: %+v", r1)
			}

			// A minute later, the office edit is the last write.
			later := nowA.Add(time.Minute)
			o2 := mkOp(fieldsync.KindUpdate, OfficeDevice, 9, 1, fields{"title": `"Boiler (office)"`})
			o2.LocalTime = later
			var r2 fieldsync.Result
			if !decide(&rec, true, typ, o2, later, &r2) || r2.Status != fieldsync.StatusApplied || r2.Version != 3 {
				t.Fatalf("later office edit: %+v", r2)
			}
			wantO := []fieldsync.Overridden{{Field: "title", Value: json.RawMessage(`"Boiler (fast clock)"`), By: "tab-fast", Policy: schema.PolicyLastWriter}}
			if !reflect.DeepEqual(r2.Overridden, wantO) || string(rec.Fields["title"]) != `"Boiler (office)"` {
				t.Fatalf("overridden %+v, title %s", r2.Overridden, rec.Fields["title"])
			}
			if m := rec.Meta["title"]; m.By != OfficeDevice || m.HLC != fieldsync.HLCFromTime(later) || m.Role != RoleDispatcher || m.OpID != o2.ID {
				t.Fatalf("meta %+v", m)
			}
		})
	}
}

// TestDecideEqualValues: a write of the value already there never
// clashes, is never overridden and opens no conflict. Whoever the
// field's policy would let win becomes the field's last writer, so the
// next clash is with the same writer whichever of the two came first.
// The new last writer had not seen the value it agreed with: its meta
// says since which version, and its next write from an older base still
// meets that value.
func TestDecideEqualValues(t *testing.T) {
	typ := workOrderType(t)
	const m = time.Minute
	for _, c := range []struct {
		name          string
		field, value  string
		first, second side
		lastBy        string // the field's last writer after both writes
	}{
		{"server-wins: device then office", "address", `"14 Quay St"`, device("tab-a", 10*m), office(5 * m), OfficeDevice},
		{"server-wins: office then device", "address", `"14 Quay St"`, office(5 * m), device("tab-a", 10*m), OfficeDevice},
		{"device-wins: office then device", "visit_start", `"2024-07-03T09:15:00Z"`, office(20 * m), device("tab-a", 10*m), "tab-a"},
		{"device-wins: device then office", "visit_start", `"2024-07-03T09:15:00Z"`, device("tab-a", 10*m), office(20 * m), "tab-a"},
		{"last-writer-wins: later second", "title", `"Boiler room"`, device("tab-a", 10*m), device("tab-b", 20*m), "tab-b"},
		{"last-writer-wins: later first", "title", `"Boiler room"`, device("tab-b", 20*m), device("tab-a", 10*m), "tab-b"},
		{"manual: office then device", "status", `"waiting for parts"`, office(10 * m), device("tab-a", 20*m), "tab-a"},
		{"manual: device then office", "status", `"waiting for parts"`, device("tab-a", 10*m), office(20 * m), OfficeDevice},
		{"manual: two devices", "description", `"replaced valve"`, device("tab-b", 20*m), device("tab-a", 10*m), "tab-a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.first.id, c.first.seq = nextOpID(), 10
			c.second.id, c.second.seq = nextOpID(), 20
			rec := baseRecord(t, typ, "work_order", "status", `"assigned"`)
			var r1, r2 fieldsync.Result
			decide(&rec, true, typ, c.first.op("work_order", 1, c.field, c.value), nowA, &r1)
			before := clone(rec)
			changed := decide(&rec, true, typ, c.second.op("work_order", 1, c.field, c.value), nowB, &r2)
			if r2.Status != fieldsync.StatusApplied || r2.Code != "" || len(r2.Conflicts) != 0 || len(r2.Overridden) != 0 || r2.Message != "" {
				t.Fatalf("equal write: %+v", r2)
			}
			if string(rec.Fields[c.field]) != c.value || len(rec.Review) != 0 || len(rec.Conflicts) != 0 {
				t.Fatalf("record %s = %s, review %v, conflicts %+v", c.field, rec.Fields[c.field], rec.Review, rec.Conflicts)
			}
			if got := rec.Meta[c.field].By; got != c.lastBy {
				t.Fatalf("last writer %s, want %s", got, c.lastBy)
			}
			if c.lastBy == c.first.by {
				if changed || r2.Version != 2 || !reflect.DeepEqual(clone(rec), before) {
					t.Fatalf("the first writer stays, yet the record changed: changed %v, version %d", changed, r2.Version)
				}
				return
			}
			want := fieldsync.FieldMeta{Version: 3, By: c.second.by, Seq: 20, Role: c.second.role(), HLC: c.second.hlc(), OpID: c.second.id, At: nowB.UnixMilli(), Since: 2}
			if !changed || r2.Version != 3 || rec.Version != 3 || rec.Meta[c.field] != want {
				t.Fatalf("changed %v, version %d/%d, meta %+v, want %+v", changed, r2.Version, rec.Version, rec.Meta[c.field], want)
			}
		})
	}
}

// TestDecideAgreedThenOwnWrite: a device whose write agreed with a value
// on a manual field that it had not seen becomes the field's last writer,
// yet its next write from a base before that value is no write over its
// own: it still meets the value, and opens a conflict. From a base that
// includes the value, the next write is its own again.
func TestDecideAgreedThenOwnWrite(t *testing.T) {
	typ := workOrderType(t)
	for _, c := range []struct {
		base int64
		want fieldsync.ResultStatus
	}{{1, fieldsync.StatusConflict}, {2, fieldsync.StatusApplied}, {3, fieldsync.StatusApplied}} {
		t.Run(fmt.Sprintf("from version %d", c.base), func(t *testing.T) {
			rec := created()
			off := mkOp(fieldsync.KindUpdate, OfficeDevice, 3, 1, fields{"status": `"waiting for parts"`})
			agree := mkOp(fieldsync.KindUpdate, "tab-a", 20, 1, fields{"status": `"waiting for parts"`})
			var r1, r2 fieldsync.Result
			decide(&rec, true, typ, off, now, &r1)
			decide(&rec, true, typ, agree, now, &r2)
			if r2.Status != fieldsync.StatusApplied || rec.Version != 3 || rec.Meta["status"].OpID != agree.ID || rec.Meta["status"].Since != 2 {
				t.Fatalf("agreeing write: %+v, meta %+v", r2, rec.Meta["status"])
			}
			next := mkOp(fieldsync.KindUpdate, "tab-a", 21, c.base, fields{"status": `"completed on site"`})
			var res fieldsync.Result
			decide(&rec, true, typ, next, now, &res)
			if res.Status != c.want || res.Version != 4 {
				t.Fatalf("next write: %+v, want %s at version 4", res, c.want)
			}
			if c.want == fieldsync.StatusApplied {
				if string(rec.Fields["status"]) != `"completed on site"` || rec.Meta["status"].OpID != next.ID || len(rec.Conflicts) != 0 {
					t.Fatalf("status %s meta %+v conflicts %+v", rec.Fields["status"], rec.Meta["status"], rec.Conflicts)
				}
				return
			}
			if string(rec.Fields["status"]) != `"waiting for parts"` || len(rec.Conflicts) != 1 ||
				rec.Conflicts[0].ID != conflictID(next.ID, "status") || rec.Conflicts[0].Server.OpID != agree.ID || rec.Conflicts[0].Theirs[0].OpID != next.ID {
				t.Fatalf("status %s conflicts %+v", rec.Fields["status"], rec.Conflicts)
			}
		})
	}
}

// TestDecideOwnWrites: a device's own earlier write is never a clash,
// even from an old base and on a manual field; the office is many
// people, so two office edits from the same base do clash.
func TestDecideOwnWrites(t *testing.T) {
	typ := workOrderType(t)
	for _, c := range []struct {
		by   string
		want fieldsync.ResultStatus
	}{{"tab-a", fieldsync.StatusApplied}, {OfficeDevice, fieldsync.StatusConflict}} {
		t.Run(c.by, func(t *testing.T) {
			rec := created()
			op1 := mkOp(fieldsync.KindUpdate, c.by, 5, 1, fields{"status": `"in progress"`})
			op2 := mkOp(fieldsync.KindUpdate, c.by, 6, 1, fields{"status": `"completed on site"`})
			var r1, r2 fieldsync.Result
			decide(&rec, true, typ, op1, now, &r1)
			decide(&rec, true, typ, op2, now, &r2)
			if r1.Status != fieldsync.StatusApplied || r2.Status != c.want || r2.Version != 3 {
				t.Fatalf("results %+v, %+v", r1, r2)
			}
			if c.want == fieldsync.StatusApplied {
				if string(rec.Fields["status"]) != `"completed on site"` || rec.Meta["status"].OpID != op2.ID || len(rec.Conflicts) != 0 || len(r2.Overridden) != 0 {
					t.Fatalf("record %s meta %+v conflicts %+v", rec.Fields["status"], rec.Meta["status"], rec.Conflicts)
				}
				return
			}
			if string(rec.Fields["status"]) != `"in progress"` || len(rec.Conflicts) != 1 || rec.Conflicts[0].Server.OpID != op1.ID {
				t.Fatalf("record %s conflicts %+v", rec.Fields["status"], rec.Conflicts)
			}
		})
	}
}

// TestDecideUnderReview: while a conflict is open on a field, writes to
// it from anyone are offered to the person who settles it and overwrite
// nothing; a device's later value replaces its earlier candidate; the
// writer of the server's side may still correct its own value. Other
// fields of the same ops merge as usual.
func TestDecideUnderReview(t *testing.T) {
	typ := workOrderType(t)
	theirs := func(c fieldsync.Conflict) (ids []string) {
		for _, v := range c.Theirs {
			ids = append(ids, v.OpID)
		}
		return ids
	}
	t.Run("candidates", func(t *testing.T) {
		rec := created()
		op1 := mkOp(fieldsync.KindUpdate, OfficeDevice, 3, 1, fields{"status": `"waiting for parts"`})
		op2 := mkOp(fieldsync.KindUpdate, "tab-a", 8, 1, fields{"status": `"completed on site"`})
		for _, op := range []*fieldsync.Op{op1, op2} {
			decide(&rec, true, typ, op, now, new(fieldsync.Result))
		}
		if !slices.Equal(rec.Review, []string{"status"}) || rec.Version != 3 {
			t.Fatalf("setup: review %v version %d", rec.Review, rec.Version)
		}
		serverMeta := rec.Meta["status"]
		steps := []struct {
			op     *fieldsync.Op
			theirs []string
		}{
			// Another device that has seen everything: a new candidate.
			{mkOp(fieldsync.KindUpdate, "tab-b", 1, 3, fields{"status": `"in progress"`, "description": `"pump replaced"`}), nil},
			// The clashing device again: its candidate is replaced.
			{mkOp(fieldsync.KindUpdate, "tab-a", 9, 3, fields{"status": `"closed"`}), nil},
			// The office, even with the server's value: a candidate.
			{mkOp(fieldsync.KindUpdate, OfficeDevice, 4, 5, fields{"status": `"waiting for parts"`}), nil},
		}
		steps[0].theirs = []string{op2.ID, steps[0].op.ID}
		steps[1].theirs = []string{steps[1].op.ID, steps[0].op.ID}
		steps[2].theirs = []string{steps[1].op.ID, steps[0].op.ID, steps[2].op.ID}
		for i, s := range steps {
			var res fieldsync.Result
			if !decide(&rec, true, typ, s.op, now, &res) {
				t.Fatalf("step %d: nothing recorded", i)
			}
			wantFC := []fieldsync.FieldConflict{{Field: "status", ServerValue: json.RawMessage(`"waiting for parts"`), DeviceValue: s.op.Fields["status"], ServerVersion: 2, ServerBy: OfficeDevice}}
			if res.Status != fieldsync.StatusConflict || res.Code != fieldsync.EFieldConflict || res.Version != int64(4+i) || !reflect.DeepEqual(res.Conflicts, wantFC) {
				t.Fatalf("step %d: %+v", i, res)
			}
			if string(rec.Fields["status"]) != `"waiting for parts"` || rec.Meta["status"] != serverMeta || !slices.Equal(rec.Review, []string{"status"}) {
				t.Fatalf("step %d: status %s meta %+v review %v", i, rec.Fields["status"], rec.Meta["status"], rec.Review)
			}
			if len(rec.Conflicts) != 1 || rec.Conflicts[0].ID != conflictID(op2.ID, "status") || !slices.Equal(theirs(rec.Conflicts[0]), s.theirs) {
				t.Fatalf("step %d: candidates %v, want %v", i, theirs(rec.Conflicts[0]), s.theirs)
			}
			last := rec.Conflicts[0].Theirs[slices.Index(s.theirs, s.op.ID)]
			if !jsonEqual(last.Value, s.op.Fields["status"]) || last.By != s.op.DeviceID || !last.At.Equal(now) {
				t.Fatalf("step %d: candidate %+v", i, last)
			}
		}
		// The merged field of the first step.
		if string(rec.Fields["description"]) != `"pump replaced"` || rec.Meta["description"].OpID != steps[0].op.ID || rec.Meta["description"].Version != 4 {
			t.Fatalf("description %s meta %+v", rec.Fields["description"], rec.Meta["description"])
		}
	})
	t.Run("the server side corrects its own value", func(t *testing.T) {
		rec := created()
		op1 := mkOp(fieldsync.KindUpdate, "tab-a", 8, 1, fields{"status": `"in progress"`})
		op2 := mkOp(fieldsync.KindUpdate, OfficeDevice, 3, 1, fields{"status": `"cancelled"`})
		op3 := mkOp(fieldsync.KindUpdate, "tab-a", 9, 2, fields{"status": `"completed on site"`})
		for _, op := range []*fieldsync.Op{op1, op2} {
			decide(&rec, true, typ, op, now, new(fieldsync.Result))
		}
		var res fieldsync.Result
		decide(&rec, true, typ, op3, now, &res)
		if res.Status != fieldsync.StatusConflict || res.Version != 4 {
			t.Fatalf("result %+v", res)
		}
		c := rec.Conflicts[0]
		if string(rec.Fields["status"]) != `"completed on site"` || rec.Meta["status"].OpID != op3.ID ||
			c.Server.OpID != op3.ID || c.Server.Version != 4 || !slices.Equal(theirs(c), []string{op2.ID}) || !c.Open() {
			t.Fatalf("status %s, meta %+v, conflict %+v", rec.Fields["status"], rec.Meta["status"], c)
		}
	})
}

// TestDecideMergeInOneOp: one op from an old base touching fields with
// different fates: a manual clash opens a conflict, a server-wins clash
// loses to the office, fields nobody changed merge, an equal value is
// nothing to report. The op's answer carries all of it.
func TestDecideMergeInOneOp(t *testing.T) {
	typ := workOrderType(t)
	rec := stored(1, false, map[string]change{
		"title":       {`"Boiler"`, 1, "tab-a", 1},
		"status":      {`"assigned"`, 1, "tab-a", 1},
		"address":     {`"12 Quay St"`, 1, "tab-a", 1},
		"description": {`"noisy"`, 1, "tab-a", 1},
	})
	office := mkOp(fieldsync.KindUpdate, OfficeDevice, 3, 1, fields{"status": `"waiting for parts"`, "address": `"14 Quay St"`})
	office.LocalTime = nowA
	var ro fieldsync.Result
	if !decide(&rec, true, typ, office, nowA, &ro) || ro.Status != fieldsync.StatusApplied {
		t.Fatalf("office edit: %+v", ro)
	}
	dev := mkOp(fieldsync.KindUpdate, "tab-b", 4, 1, fields{
		"status": `"completed on site"`, "address": `"3 Dock Rd"`, "description": `"replaced valve"`,
		"title": `"Boiler"`, "visit_start": `"2024-07-03T09:15:00Z"`,
	})
	dev.HLC = fieldsync.HLCFromTime(nowA.Add(time.Minute))
	var res fieldsync.Result
	if !decide(&rec, true, typ, dev, nowB, &res) {
		t.Fatal("nothing changed")
	}
	if res.Status != fieldsync.StatusConflict || res.Code != fieldsync.EFieldConflict || res.Version != 3 {
		t.Fatalf("result %+v", res)
	}
	if len(res.Conflicts) != 1 || res.Conflicts[0].Field != "status" || res.Conflicts[0].ServerBy != OfficeDevice {
		t.Fatalf("conflicts %+v", res.Conflicts)
	}
	wantO := []fieldsync.Overridden{{Field: "address", Value: json.RawMessage(`"3 Dock Rd"`), By: "tab-b", Policy: schema.PolicyServerWins}}
	if !reflect.DeepEqual(res.Overridden, wantO) {
		t.Fatalf("overridden %+v, want %+v", res.Overridden, wantO)
	}
	for name, want := range map[string]string{
		"status": `"waiting for parts"`, "address": `"14 Quay St"`, "description": `"replaced valve"`,
		"title": `"Boiler"`, "visit_start": `"2024-07-03T09:15:00Z"`,
	} {
		if got := string(rec.Fields[name]); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	for name, by := range map[string]string{"status": OfficeDevice, "address": OfficeDevice, "description": "tab-b", "visit_start": "tab-b", "title": "tab-b"} {
		if m := rec.Meta[name]; m.By != by {
			t.Errorf("%s last written by %s, want %s", name, m.By, by)
		}
	}
	if m := rec.Meta["description"]; m.Version != 3 || m.OpID != dev.ID || m.HLC != dev.HLC {
		t.Errorf("description meta %+v", m)
	}
	if !slices.Equal(rec.Review, []string{"status"}) || len(rec.Conflicts) != 1 || rec.Conflicts[0].ID != conflictID(dev.ID, "status") || rec.Conflicts[0].Theirs[0].OpID != dev.ID {
		t.Errorf("review %v conflicts %+v", rec.Review, rec.Conflicts)
	}
}
