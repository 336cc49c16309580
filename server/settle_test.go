package server_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
)

// clash is a server where work order wo-1 has an open conflict on its
// status: the office set "waiting for parts" (and a new address) at
// version 2 while dev-a, offline since version 1, set "completed on
// site" (and a description); dev-b, having pulled version 3, then
// offered "in progress".
type clash struct {
	*env
	office     string // the office edit's op id
	devA, devB wop    // the clashing updates: devA opened the conflict
	conflict   string // the id of the conflict devA opened on status
}

func newClash(t *testing.T) *clash {
	t.Helper()
	c := &clash{env: newEnv(t, server.Config{})}
	create := createOp(1, "wo-1", map[string]string{"title": `"Boiler"`, "status": `"new"`, "address": `"12 Quay St"`})
	create.HLC = 1720000000000 << 16
	if r := c.push(t, "dev-a", create)[0]; r.Status != "applied" || r.Number != "WO-1001" {
		t.Fatalf("create: %+v", r)
	}
	ed := c.edit(t, "work_order", "wo-1", 1, map[string]string{"status": `"waiting for parts"`, "address": `"14 Quay St"`})
	if ed.Status != "applied" || ed.Version != 2 {
		t.Fatalf("office edit: %+v", ed)
	}
	c.office = ed.Op
	c.devA = updateOp(2, 1, 1, "wo-1", map[string]string{"status": `"completed on site"`, "description": `"replaced valve"`})
	c.devA.HLC = 1720000060000 << 16
	c.conflict = server.ConflictID(c.devA.ID, "status")
	r := c.push(t, "dev-a", c.devA)[0]
	wantC := []protocol.Conflict{{Field: "status", ServerValue: json.RawMessage(`"waiting for parts"`), DeviceValue: json.RawMessage(`"completed on site"`), ServerVersion: 2, ServerBy: server.OfficeDevice}}
	if r.Status != "conflict" || r.Code != string(fieldsync.EFieldConflict) || r.Version != 3 || !reflect.DeepEqual(r.Conflicts, wantC) {
		t.Fatalf("dev-a's update: %+v", r)
	}
	c.devB = updateOp(1, 0, 3, "wo-1", map[string]string{"status": `"in progress"`})
	if r := c.push(t, "dev-b", c.devB)[0]; r.Status != "conflict" || r.Version != 4 {
		t.Fatalf("dev-b's update: %+v", r)
	}
	rec := c.record(t)
	if rec.Version != 4 || string(rec.Fields["status"]) != `"waiting for parts"` || string(rec.Fields["description"]) != `"replaced valve"` ||
		!equalStrings(rec.Review, "status") || len(rec.Conflicts) != 1 {
		t.Fatalf("record after the clash: %+v", rec)
	}
	k := rec.Conflicts[0]
	if k.ID != c.conflict || k.ID == c.devA.ID || k.Field != "status" || !k.Open() ||
		string(k.Server.Value) != `"waiting for parts"` || k.Server.By != server.OfficeDevice || k.Server.Role != server.RoleDispatcher ||
		k.Server.OpID != c.office || k.Server.Version != 2 || len(k.Theirs) != 2 ||
		k.Theirs[0].OpID != c.devA.ID || k.Theirs[0].By != "dev-a" || k.Theirs[0].Role != server.RoleFieldWorker || string(k.Theirs[0].Value) != `"completed on site"` ||
		k.Theirs[1].OpID != c.devB.ID || k.Theirs[1].By != "dev-b" || string(k.Theirs[1].Value) != `"in progress"` {
		t.Fatalf("conflict %+v", k)
	}
	return c
}

func (c *clash) record(t *testing.T) protocol.Record {
	t.Helper()
	return c.history(t, "work_order", "wo-1").Record
}

func equalStrings(got []string, want ...string) bool {
	return len(got) == len(want) && (len(got) == 0 || reflect.DeepEqual(got, want))
}

// TestSettle settles the conflict each way, from the office endpoint and
// as a device's settle op, and checks that the settlement is a new
// version recorded with who, what and why; that it happens once; and
// that nothing sent again can undo it.
func TestSettle(t *testing.T) {
	type settler struct {
		by   string
		seq  int64 // a device's settle op: its seq and prev on wo-1
		prev int64
	}
	officeS := settler{by: server.OfficeDevice}
	cases := []struct {
		name   string
		who    settler
		st     func(c *clash) fieldsync.Settle
		choice string
		value  string // the status after
	}{
		{"office keeps the server's value", officeS,
			func(c *clash) fieldsync.Settle {
				return fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceKeepServer, Note: "parts are on order"}
			}, fieldsync.ChoiceKeepServer, `"waiting for parts"`},
		{"office takes the latest device value", officeS,
			func(c *clash) fieldsync.Settle {
				return fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceTakeDevice}
			}, fieldsync.ChoiceTakeDevice, `"in progress"`},
		{"office takes the value of a named op", officeS,
			func(c *clash) fieldsync.Settle {
				return fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceTakeDevice, Op: c.devA.ID, Note: "the technician was there"}
			}, fieldsync.ChoiceTakeDevice, `"completed on site"`},
		{"office writes a new value with a note", officeS,
			func(c *clash) fieldsync.Settle {
				return fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceNewValue, Value: json.RawMessage(`"assigned"`), Note: "completed, but parts required"}
			}, fieldsync.ChoiceNewValue, `"assigned"`},
		{"device takes its own value", settler{by: "dev-a", seq: 3, prev: 2},
			func(c *clash) fieldsync.Settle {
				return fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceTakeDevice, Op: c.devA.ID, Note: "done on site"}
			}, fieldsync.ChoiceTakeDevice, `"completed on site"`},
		{"device keeps the server's value", settler{by: "dev-b", seq: 2, prev: 1},
			func(c *clash) fieldsync.Settle {
				return fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceKeepServer}
			}, fieldsync.ChoiceKeepServer, `"waiting for parts"`},
		{"device writes a new value with a note", settler{by: "dev-b", seq: 2, prev: 1},
			func(c *clash) fieldsync.Settle {
				return fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceNewValue, Value: json.RawMessage(`"waiting for parts"`), Note: "completed, but parts required"}
			}, fieldsync.ChoiceNewValue, `"waiting for parts"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClash(t)
			before := c.record(t)
			st := tc.st(c)
			var res protocol.Result
			var sop wop
			role := server.RoleDispatcher
			if tc.who.by == server.OfficeDevice {
				res = c.settle(t, "work_order", "wo-1", protocol.SettleRequest{Field: "status", Conflict: st.Conflict, Choice: st.Choice, Value: st.Value, Op: st.Op, Note: st.Note})
			} else {
				role = server.RoleFieldWorker
				sop = settleOp(tc.who.seq, tc.who.prev, 4, "wo-1", "status", st)
				res = c.push(t, tc.who.by, sop)[0]
				if res.Op != sop.ID {
					t.Fatalf("result for op %s, sent %s", res.Op, sop.ID)
				}
			}
			if res.Status != "applied" || res.Version != 5 || res.Code != "" || res.Number != "WO-1001" || !protocol.ValidOpID(res.Op) {
				t.Fatalf("settle: %+v", res)
			}

			// The settlement is version 5: the chosen value, the review
			// cleared, the conflict kept with its settlement.
			rec := c.record(t)
			if rec.Version != 5 || string(rec.Fields["status"]) != tc.value || len(rec.Review) != 0 || len(rec.Conflicts) != 1 {
				t.Fatalf("record after the settlement: %+v", rec)
			}
			k := rec.Conflicts[0]
			if k.Settled == nil || k.Open() {
				t.Fatalf("conflict not settled: %+v", k)
			}
			s := *k.Settled
			if s.Choice != tc.choice || string(s.Value) != tc.value || s.Note != st.Note || s.By != tc.who.by || s.Role != role ||
				s.OpID != res.Op || s.Version != 5 || s.At.IsZero() {
				t.Fatalf("settled %+v", s)
			}
			k.Settled = nil
			if !reflect.DeepEqual(k, before.Conflicts[0]) {
				t.Fatalf("the conflict's values changed:\n%+v\n%+v", k, before.Conflicts[0])
			}
			for name, v := range before.Fields {
				if name != "status" && string(rec.Fields[name]) != string(v) {
					t.Errorf("field %s changed: %s -> %s", name, v, rec.Fields[name])
				}
			}
			// Devices see it on their next pull.
			feed := c.changes(t, "", 0)
			if len(feed.Changes) != 1 || feed.Changes[0].Version != 5 || feed.Changes[0].Conflicts[0].Settled == nil || len(feed.Changes[0].Review) != 0 {
				t.Fatalf("changes %+v", feed.Changes)
			}
			// The settle op is in the op log and the record's history.
			var entry protocol.OpEntry
			decodeJSON(t, c.get(t, protocol.PathOps+res.Op).body, &entry)
			if entry.Op.Kind != "settle" || entry.Op.Device != tc.who.by || entry.Result.Status != "applied" || entry.Result.Version != 5 {
				t.Fatalf("op log entry %+v", entry)
			}
			var got fieldsync.Settle
			if err := json.Unmarshal(entry.Op.Fields["status"], &got); err != nil || got.Conflict != c.conflict || got.Choice != tc.choice || got.Note != st.Note {
				t.Fatalf("recorded settlement %s: %v", entry.Op.Fields["status"], err)
			}
			h := c.history(t, "work_order", "wo-1")
			if last := h.Ops[len(h.Ops)-1]; last.Op.ID != res.Op {
				t.Fatalf("history ends with %s, want the settle op %s", last.Op.ID, res.Op)
			}

			// Settled once: a second settlement, from either side, is
			// rejected naming who settled, and changes nothing.
			settled := c.record(t)
			snap := takeSnapshot(t, c.st)
			again := c.settle(t, "work_order", "wo-1", protocol.SettleRequest{Field: "status", Conflict: c.conflict, Choice: fieldsync.ChoiceNewValue, Value: json.RawMessage(`"closed"`)})
			if again.Status != "rejected" || again.Code != string(fieldsync.EAlreadySettled) || !strings.Contains(again.Message, tc.who.by) || !strings.Contains(again.Message, tc.choice) {
				t.Fatalf("second settlement from the office: %+v", again)
			}
			dev := c.push(t, "dev-c", settleOp(1, 0, 5, "wo-1", "status", fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceTakeDevice}))[0]
			if dev.Status != "rejected" || dev.Code != string(fieldsync.EAlreadySettled) || !strings.Contains(dev.Message, tc.who.by) {
				t.Fatalf("second settlement from a device: %+v", dev)
			}
			unknown := c.settle(t, "work_order", "wo-1", protocol.SettleRequest{Field: "status", Conflict: newOpID(), Choice: fieldsync.ChoiceKeepServer})
			if unknown.Status != "rejected" || unknown.Code != string(fieldsync.ENoConflict) {
				t.Fatalf("unknown conflict: %+v", unknown)
			}
			if rec := c.record(t); !reflect.DeepEqual(rec, settled) {
				t.Fatalf("a refused settlement changed the record:\n%+v\n%+v", rec, settled)
			}
			if after := takeSnapshot(t, c.st); after.MaxSeq != snap.MaxSeq || after.Versions != snap.Versions || after.Fields != snap.Fields || after.Ops != snap.Ops+3 {
				t.Fatalf("store %+v -> %+v (three rejections recorded, nothing else)", snap, after)
			}

			// The original ops sent again: their recorded results, and
			// nothing changes.
			snap = takeSnapshot(t, c.st)
			for _, resend := range []struct {
				device string
				op     wop
				status string
			}{{"dev-a", c.devA, "conflict"}, {"dev-b", c.devB, "conflict"}, {tc.who.by, sop, "applied"}} {
				if resend.op.ID == "" {
					continue // an office settlement is not resent by a device
				}
				r := c.push(t, resend.device, resend.op)[0]
				if r.Status != "duplicate" || r.Recorded == nil || r.Recorded.Status != resend.status {
					t.Fatalf("%s's op %s again: %+v", resend.device, resend.op.Kind, r)
				}
			}
			if after := takeSnapshot(t, c.st); after != snap {
				t.Fatalf("resent ops changed the store: %+v -> %+v", snap, after)
			}
			if rec := c.record(t); !reflect.DeepEqual(rec, settled) {
				t.Fatalf("resent ops changed the record")
			}

			// A new write made before the settlement was seen clashes
			// with the settlement: a new conflict, nothing overwritten.
			late := c.push(t, "dev-d", updateOp(1, 0, 4, "wo-1", map[string]string{"status": `"cancelled"`}))[0]
			if late.Status != "conflict" || len(late.Conflicts) != 1 || string(late.Conflicts[0].ServerValue) != tc.value || late.Conflicts[0].ServerBy != tc.who.by || late.Conflicts[0].ServerVersion != 5 {
				t.Fatalf("a late write: %+v", late)
			}
			rec = c.record(t)
			if string(rec.Fields["status"]) != tc.value || len(rec.Conflicts) != 2 || rec.Conflicts[0].Settled == nil || !rec.Conflicts[1].Open() || rec.Conflicts[1].Server.OpID != res.Op {
				t.Fatalf("record after a late write: %+v", rec)
			}
		})
	}
}

// TestSettleRefusals: settlements that are malformed, or that the
// schema or the record refuse, get a 4xx or a rejected result with a
// stable code, and the record and the change feed stay as they were.
func TestSettleRefusals(t *testing.T) {
	c := newClash(t)
	before := c.record(t)
	h := apiHeaders()
	path := settlePath("work_order", "wo-1")
	body := func(m map[string]any) []byte {
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	ok := map[string]any{"field": "status", "conflict": c.conflict, "choice": "keep_server"}
	amend := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range ok {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	t.Run("bad requests", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			path   string
			header map[string]string
			body   []byte
			status int
			code   fieldsync.Code
		}{
			{"malformed", path, h, []byte(`{"field":"status",`), 400, fieldsync.EInvalidJSON},
			{"empty", path, h, nil, 400, fieldsync.EInvalidJSON},
			{"unknown member", path, h, body(amend("by", "me")), 400, fieldsync.EInvalidJSON},
			{"two fields", path, h, body(amend("field", []string{"status", "title"})), 400, fieldsync.EInvalidJSON},
			{"fields instead of field", path, h, body(amend("field", nil, "fields", map[string]string{"status": "keep_server"})), 400, fieldsync.EInvalidJSON},
			{"trailing data", path, h, append(body(ok), body(ok)...), 400, fieldsync.EInvalidJSON},
			{"bad field name", path, h, body(amend("field", "Status")), 400, fieldsync.EInvalidRequest},
			{"no field", path, h, body(amend("field", nil)), 400, fieldsync.EInvalidRequest},
			{"no conflict named", path, h, body(amend("conflict", nil)), 400, fieldsync.EInvalidRequest},
			{"value too large", path, h, body(amend("choice", "new_value", "value", strings.Repeat("x", protocol.MaxFieldBytes))), 413, fieldsync.ETooLarge},
			{"wrong content type", path, with(h, "Content-Type", "text/plain"), body(ok), 415, fieldsync.EUnsupportedMedia},
			{"GET", path, h, nil, 405, fieldsync.EMethodNotAllowed},
		} {
			t.Run(tc.name, func(t *testing.T) {
				snap := takeSnapshot(t, c.st)
				method := http.MethodPost
				if tc.name == "GET" {
					method = http.MethodGet
				}
				checkError(t, c.request(t, method, tc.path, tc.header, tc.body), tc.status, tc.code)
				if after := takeSnapshot(t, c.st); after != snap {
					t.Fatalf("the store changed: %+v -> %+v", snap, after)
				}
			})
		}
	})
	t.Run("rejected settlements", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			path string
			req  map[string]any
			code fieldsync.Code
			says string // in the message
		}{
			{"unknown choice", path, amend("choice", "mine"), fieldsync.EInvalidField, "mine"},
			{"value with keep_server", path, amend("value", "closed"), fieldsync.EInvalidField, "new_value"},
			{"value with take_device", path, amend("choice", "take_device", "value", "closed"), fieldsync.EInvalidField, "new_value"},
			{"new_value without a value", path, amend("choice", "new_value"), fieldsync.EInvalidField, "value"},
			{"new_value outside the enum", path, amend("choice", "new_value", "value", "done"), fieldsync.EInvalidField, "done"},
			{"new_value of the wrong type", path, amend("choice", "new_value", "value", 7), fieldsync.EInvalidField, "string"},
			{"note too long", path, amend("note", strings.Repeat("n", 2001)), fieldsync.EInvalidField, "note"},
			{"conflict id too long", path, amend("conflict", strings.Repeat("c", 81)), fieldsync.EInvalidField, "conflict"},
			{"take_device of an op not in the conflict", path, amend("choice", "take_device", "op", c.office), fieldsync.EInvalidField, c.office},
			{"a list field", path, amend("field", "comments"), fieldsync.EInvalidField, "comments"},
			{"a field without a conflict", path, amend("field", "title"), fieldsync.ENoConflict, "title"},
			{"an unknown field", path, amend("field", "colour"), fieldsync.EUnknownField, "colour"},
			{"an unknown conflict", path, amend("conflict", "0190a6c4-1b2c-7d3e-8f40-00000000dead"), fieldsync.ENoConflict, "status"},
			{"the office's op as conflict", path, amend("conflict", c.office), fieldsync.ENoConflict, "status"},
			{"a missing record", settlePath("work_order", "wo-none"), ok, fieldsync.ERecordMissing, "wo-none"},
			{"an unknown type", settlePath("invoice", "wo-1"), ok, fieldsync.EUnknownEntityType, "invoice"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				snap := takeSnapshot(t, c.st)
				r := c.request(t, http.MethodPost, tc.path, h, body(tc.req))
				if r.status != http.StatusOK {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				var res protocol.Result
				decodeJSON(t, r.body, &res)
				if res.Status != "rejected" || res.Code != string(tc.code) || !strings.Contains(res.Message, tc.says) || res.Version != 0 {
					t.Fatalf("result %+v, want rejected %s naming %q", res, tc.code, tc.says)
				}
				// Recorded as a rejection; nothing else changed.
				var entry protocol.OpEntry
				decodeJSON(t, c.get(t, protocol.PathOps+res.Op).body, &entry)
				if entry.Result.Status != "rejected" || entry.Result.Code != string(tc.code) {
					t.Fatalf("op log %+v", entry.Result)
				}
				after := takeSnapshot(t, c.st)
				if after.MaxSeq != snap.MaxSeq || after.Versions != snap.Versions || after.Fields != snap.Fields || after.ReviewLen != snap.ReviewLen || after.Ops != snap.Ops+1 {
					t.Fatalf("store %+v -> %+v", snap, after)
				}
				if rec := c.record(t); !reflect.DeepEqual(rec, before) {
					t.Fatalf("the record changed:\n%+v\n%+v", rec, before)
				}
			})
		}
	})
	t.Run("device settle ops", func(t *testing.T) {
		good := settleOp(3, 2, 4, "wo-1", "status", fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceKeepServer})
		two := good
		two.Fields = map[string]json.RawMessage{"status": good.Fields["status"], "description": good.Fields["status"]}
		none := good
		none.Fields = nil
		for _, tc := range []struct {
			name string
			op   wop
		}{{"two fields", two}, {"no field", none}} {
			t.Run(tc.name, func(t *testing.T) {
				snap := takeSnapshot(t, c.st)
				checkError(t, c.request(t, http.MethodPost, protocol.PathPush, h, pushBody(t, "dev-a", tc.op)), 400, fieldsync.EInvalidRequest)
				if after := takeSnapshot(t, c.st); after != snap {
					t.Fatalf("the store changed: %+v -> %+v", snap, after)
				}
			})
		}
		snap := takeSnapshot(t, c.st)
		rs := c.push(t, "dev-c",
			settleOp(1, 0, 4, "wo-1", "status", fieldsync.Settle{Conflict: c.conflict, Choice: "mine"}),
			settleOp(2, 0, 4, "wo-1", "amount", fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceKeepServer}),
			settleOp(3, 0, 4, "wo-1", "photos", fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceKeepServer}),
			settleOp(4, 0, 4, "wo-1", "title", fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceKeepServer}),
			settleOp(5, 0, 4, "wo-1", "status", fieldsync.Settle{Conflict: c.conflict, Choice: fieldsync.ChoiceNewValue, Value: json.RawMessage(`"done"`)}),
		)
		for i, code := range []fieldsync.Code{fieldsync.EInvalidField, fieldsync.EServerOwned, fieldsync.EInvalidField, fieldsync.ENoConflict, fieldsync.EInvalidField} {
			if rs[i].Status != "rejected" || rs[i].Code != string(code) || rs[i].Message == "" {
				t.Errorf("op %d: %+v, want rejected %s", i, rs[i], code)
			}
		}
		if after := takeSnapshot(t, c.st); after.MaxSeq != snap.MaxSeq || after.Versions != snap.Versions || after.Ops != snap.Ops+5 {
			t.Fatalf("store %+v -> %+v", snap, after)
		}
		if rec := c.record(t); !reflect.DeepEqual(rec, before) {
			t.Fatalf("the record changed")
		}
		// After every refusal, the good settlement still applies.
		if r := c.push(t, "dev-a", good)[0]; r.Status != "applied" || r.Version != 5 {
			t.Fatalf("good settlement: %+v", r)
		}
	})
}

// TestSettleTwoFieldsOfOneOp: one op that clashed on two manual fields
// opens a conflict on each, with its own id derived from the op and the
// field; the op's own id names neither. Each is settled on its own; a
// second settlement of one names who settled that one; a field that
// never had the conflict has nothing to settle.
func TestSettleTwoFieldsOfOneOp(t *testing.T) {
	e := newEnv(t, server.Config{})
	e.push(t, "dev-a", createOp(1, "wo-1", map[string]string{"title": `"Boiler"`, "status": `"new"`, "description": `"noisy"`}))
	if r := e.edit(t, "work_order", "wo-1", 1, map[string]string{"status": `"cancelled"`, "description": `"duplicate order"`}); r.Status != "applied" {
		t.Fatalf("office edit: %+v", r)
	}
	op := updateOp(2, 1, 1, "wo-1", map[string]string{"status": `"completed on site"`, "description": `"replaced valve"`})
	if r := e.push(t, "dev-a", op)[0]; r.Status != "conflict" || len(r.Conflicts) != 2 {
		t.Fatalf("clash: %+v", r)
	}
	ids := map[string]string{"description": server.ConflictID(op.ID, "description"), "status": server.ConflictID(op.ID, "status")}
	if ids["description"] == ids["status"] {
		t.Fatalf("one id for both conflicts: %s", ids["status"])
	}
	rec := e.history(t, "work_order", "wo-1").Record
	if len(rec.Conflicts) != 2 || !equalStrings(rec.Review, "description", "status") {
		t.Fatalf("record %+v", rec)
	}
	for _, k := range rec.Conflicts {
		if k.ID != ids[k.Field] || len(k.Theirs) != 1 || k.Theirs[0].OpID != op.ID {
			t.Fatalf("conflict on %s: %+v, want id %s opened by op %s", k.Field, k, ids[k.Field], op.ID)
		}
	}
	for _, wrong := range []string{op.ID, ids["status"]} {
		if r := e.settle(t, "work_order", "wo-1", protocol.SettleRequest{Field: "description", Conflict: wrong, Choice: fieldsync.ChoiceTakeDevice}); r.Status != "rejected" || r.Code != string(fieldsync.ENoConflict) {
			t.Fatalf("settle description naming %s: %+v", wrong, r)
		}
	}
	if r := e.settle(t, "work_order", "wo-1", protocol.SettleRequest{Field: "description", Conflict: ids["description"], Choice: fieldsync.ChoiceTakeDevice}); r.Status != "applied" {
		t.Fatalf("settle description: %+v", r)
	}
	if r := e.push(t, "dev-b", settleOp(1, 0, 4, "wo-1", "status", fieldsync.Settle{Conflict: ids["status"], Choice: fieldsync.ChoiceKeepServer}))[0]; r.Status != "applied" {
		t.Fatalf("settle status: %+v", r)
	}
	rec = e.history(t, "work_order", "wo-1").Record
	if string(rec.Fields["description"]) != `"replaced valve"` || string(rec.Fields["status"]) != `"cancelled"` || len(rec.Review) != 0 {
		t.Fatalf("record %+v", rec)
	}
	for field, by := range map[string]string{"status": "dev-b", "description": server.OfficeDevice} {
		r := e.settle(t, "work_order", "wo-1", protocol.SettleRequest{Field: field, Conflict: ids[field], Choice: fieldsync.ChoiceKeepServer})
		if r.Status != "rejected" || r.Code != string(fieldsync.EAlreadySettled) || !strings.Contains(r.Message, field) || !strings.Contains(r.Message, "by "+by) {
			t.Errorf("second settlement of %s: %+v, want it settled by %s", field, r, by)
		}
	}
	r := e.settle(t, "work_order", "wo-1", protocol.SettleRequest{Field: "title", Conflict: ids["status"], Choice: fieldsync.ChoiceKeepServer})
	if r.Status != "rejected" || r.Code != string(fieldsync.ENoConflict) {
		t.Errorf("settlement of a field that had no conflict: %+v", r)
	}
}
