package server

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
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

func mkOp(kind fieldsync.OpKind, device string, seq, base int64, f fields) *fieldsync.Op {
	return &fieldsync.Op{
		ID: "0190a6c4-1b2c-7d3e-8f40-000000000001", DeviceID: device, Seq: seq,
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
		if m := rec.Meta["status"]; m != (fieldsync.FieldMeta{Version: 1, By: "a", Seq: 1}) {
			t.Errorf("meta %+v", m)
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
		{"equal value is no conflict", afterOther("b"), mkOp(fieldsync.KindUpdate, "a", 8, 1, fields{"status": `"cancelled"`}),
			want{fieldsync.StatusApplied, "", 2, false, fields{"status": `"cancelled"`}, nil, nil}},
		{"equal object in another key order is no conflict",
			stored(2, false, map[string]change{"coordinates": {`{"lat":1,"lon":2}`, 2, "b", 7}}),
			mkOp(fieldsync.KindUpdate, "a", 8, 1, fields{"coordinates": `{ "lon": 2, "lat": 1 }`}),
			want{fieldsync.StatusApplied, "", 2, false, fields{"coordinates": `{"lat":1,"lon":2}`}, nil, nil}},
		{"null clears", created(), mkOp(fieldsync.KindUpdate, "a", 2, 1, fields{"status": `null`}),
			want{fieldsync.StatusApplied, "", 2, true, fields{"status": "", "title": `"Boiler"`}, nil, nil}},
		{"null on an absent field changes nothing", created(), mkOp(fieldsync.KindUpdate, "b", 2, 1, fields{"description": `null`}),
			want{fieldsync.StatusApplied, "", 1, false, fields{"description": ""}, nil, nil}},
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
					if _, was := before.Fields[name]; !was && isNull(c.op.Fields[name]) {
						continue
					}
					if m := rec.Meta[name]; jsonEqual(before.Fields[name], c.op.Fields[name]) {
						continue
					} else if m.Version != w.version || m.By != c.op.DeviceID || m.Seq != c.op.Seq {
						t.Errorf("meta of %s = %+v", name, m)
					}
				}
			}
		})
	}
}

// TestDecideConflictBothSides replays the same clash with the roles of
// the two writers swapped: whoever wrote second from a stale base gets
// the conflict, the value first written stays, and both values are in
// the answer.
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
				if !decide(&rec, true, typ, mkOp(fieldsync.KindUpdate, first, 10, 1, fields{"status": `"assigned"`}), now, &r1) || r1.Status != fieldsync.StatusApplied {
					t.Fatalf("first write: %+v", r1)
				}
				var r2 fieldsync.Result
				decide(&rec, true, typ, mkOp(fieldsync.KindUpdate, second, 11, 1, fields{"status": `"closed"`}), now, &r2)
				if r2.Status != fieldsync.StatusConflict || len(r2.Conflicts) != 1 {
					t.Fatalf("second write: %+v", r2)
				}
				fc := r2.Conflicts[0]
				if string(fc.ServerValue) != `"assigned"` || string(fc.DeviceValue) != `"closed"` || fc.ServerBy != first || fc.ServerVersion != 2 {
					t.Errorf("conflict %+v", fc)
				}
				if string(rec.Fields["status"]) != `"assigned"` || !slices.Equal(rec.Review, []string{"status"}) || rec.Version != 3 {
					t.Errorf("record %s review %v version %d", rec.Fields["status"], rec.Review, rec.Version)
				}
				// A writer who has seen the latest version is not in conflict.
				var r3 fieldsync.Result
				decide(&rec, true, typ, mkOp(fieldsync.KindUpdate, second, 12, 3, fields{"status": `"closed"`}), now, &r3)
				if r3.Status != fieldsync.StatusApplied || string(rec.Fields["status"]) != `"closed"` {
					t.Errorf("update from the latest version: %+v, status %s", r3, rec.Fields["status"])
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
		if m := rec.Meta["comments"]; m != (fieldsync.FieldMeta{Version: 3, By: "a", Seq: 8}) {
			t.Errorf("meta %+v", m)
		}
		if string(rec.Fields["status"]) != `"cancelled"` {
			t.Error("an append touched another field")
		}
	})
	for _, c := range []struct {
		name   string
		rec    fieldsync.Record
		exists bool
		code   fieldsync.Code
	}{
		{"missing record", fieldsync.Record{}, false, fieldsync.ERecordMissing},
		{"deleted record", stored(4, true, nil), true, fieldsync.ERecordDeleted},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := c.rec
			before := clone(rec)
			var res fieldsync.Result
			if decide(&rec, c.exists, typ, mkOp(fieldsync.KindAppend, "a", 2, 1, fields{"comments": `"x"`}), now, &res) {
				t.Fatal("reports a change")
			}
			if res.Status != fieldsync.StatusRejected || res.Code != c.code || res.Message == "" {
				t.Fatalf("result %+v", res)
			}
			if !reflect.DeepEqual(clone(rec), before) {
				t.Fatal("record modified")
			}
		})
	}
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
