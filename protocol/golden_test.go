package protocol_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func raw(s string) json.RawMessage { return json.RawMessage(s) }

var goldenAt = time.Date(2024, 7, 3, 9, 30, 0, 0, time.UTC)

// goldenOps are the domain ops of testdata/golden/push_request.json: one
// of each kind, on one record, in device order.
func goldenOps() []fieldsync.Op {
	base := fieldsync.Op{DeviceID: "tablet-7", EntityType: "work_order", EntityID: "0190a6c4-0000-7000-8000-00000000a001"}
	ops := []fieldsync.Op{
		{ID: "0190a6c4-1b2c-7d3e-8f40-000000000001", Seq: 41, Kind: fieldsync.KindCreate,
			Fields: map[string]json.RawMessage{"title": raw(`"Boiler makes noise"`), "status": raw(`"new"`), "address": raw(`"12 Quay St"`)}},
		{ID: "0190a6c4-1b2c-7d3e-8f40-000000000002", Seq: 42, PrevSeq: 41, Kind: fieldsync.KindUpdate, BaseVersion: 1,
			Fields: map[string]json.RawMessage{"status": raw(`"in progress"`), "visit_start": raw(`"2024-07-03T09:30:00Z"`)}},
		{ID: "0190a6c4-1b2c-7d3e-8f40-000000000003", Seq: 43, PrevSeq: 42, Kind: fieldsync.KindAppend, BaseVersion: 2,
			Fields: map[string]json.RawMessage{"comments": raw(`"pressure ok"`)}},
		{ID: "0190a6c4-1b2c-7d3e-8f40-000000000004", Seq: 44, PrevSeq: 43, Kind: fieldsync.KindDelete, BaseVersion: 3},
		{ID: "0190a6c4-1b2c-7d3e-8f40-000000000007", Seq: 45, PrevSeq: 44, Kind: fieldsync.KindSettle, BaseVersion: 4,
			Fields: map[string]json.RawMessage{"status": raw(`{"conflict":"0190a6c4-1b2c-7d3e-8f40-000000000002","choice":"new_value","value":"waiting for parts","note":"completed, but parts required"}`)}},
	}
	for i := range ops {
		ops[i].DeviceID, ops[i].EntityType, ops[i].EntityID = base.DeviceID, base.EntityType, base.EntityID
		ops[i].LocalTime = goldenAt.Add(time.Duration(i) * time.Minute)
		// The clock reading: the wall clock, or one past a reading seen.
		ops[i].HLC = fieldsync.HLCFromTime(ops[i].LocalTime) + fieldsync.HLC(i%2)
	}
	return ops
}

// goldenResults are the domain results of push_response.json: one per
// status.
func goldenResults() []fieldsync.Result {
	applied := fieldsync.Result{OpID: "0190a6c4-1b2c-7d3e-8f40-000000000001", Status: fieldsync.StatusApplied, Version: 1, Number: "WO-1042"}
	return []fieldsync.Result{
		applied,
		{OpID: applied.OpID, Status: fieldsync.StatusDuplicate, Recorded: &applied},
		{OpID: "0190a6c4-1b2c-7d3e-8f40-000000000005", Status: fieldsync.StatusRejected, Code: fieldsync.EServerOwned,
			Message: `field "amount" is set by the server only`},
		{OpID: "0190a6c4-1b2c-7d3e-8f40-000000000002", Status: fieldsync.StatusConflict, Version: 3, Number: "WO-1042",
			Code: fieldsync.EFieldConflict, Message: `status was changed on the server (kept "cancelled", yours "in progress"): needs review`,
			Conflicts: []fieldsync.FieldConflict{{Field: "status", ServerValue: raw(`"cancelled"`), DeviceValue: raw(`"in progress"`), ServerVersion: 2, ServerBy: "office"}}},
		{OpID: "0190a6c4-1b2c-7d3e-8f40-000000000006", Status: fieldsync.StatusRetry, Code: fieldsync.EWaitingForEarlier,
			Message: "waiting for this device's op number 45 on the same record"},
		{OpID: "0190a6c4-1b2c-7d3e-8f40-000000000008", Status: fieldsync.StatusApplied, Version: 4, Number: "WO-1042",
			Message:    `address: your "3 Dock Rd" lost (server-wins)`,
			Overridden: []fieldsync.Overridden{{Field: "address", Value: raw(`"3 Dock Rd"`), By: "tablet-7", Policy: "server-wins"}}},
		{OpID: "0190a6c4-1b2c-7d3e-8f40-000000000009", Status: fieldsync.StatusRejected, Code: fieldsync.EAlreadySettled,
			Message: "this conflict on status was already settled by office (keep_server) at version 5"},
	}
}

// goldenConflicts are the conflicts of the first golden record: one
// settled, one open.
func goldenConflicts() []fieldsync.Conflict {
	return []fieldsync.Conflict{
		{ID: "0190a6c4-1b2c-7d3e-8f40-000000000002", Field: "status", OpenedAt: goldenAt.Add(3 * time.Minute),
			Server: fieldsync.ConflictValue{Value: raw(`"cancelled"`), By: "office", Role: "dispatcher", OpID: "0190a6c4-1b2c-7d3e-8f40-0000000000f1", Version: 2, At: goldenAt.Add(2 * time.Minute)},
			Theirs: []fieldsync.ConflictValue{{Value: raw(`"in progress"`), By: "tablet-7", Role: "field_worker", OpID: "0190a6c4-1b2c-7d3e-8f40-000000000002", At: goldenAt.Add(3 * time.Minute)}},
			Settled: &fieldsync.ConflictSettled{Choice: "new_value", Value: raw(`"waiting for parts"`), Note: "completed, but parts required",
				By: "office", Role: "dispatcher", OpID: "0190a6c4-1b2c-7d3e-8f40-0000000000f2", Version: 3, At: goldenAt.Add(4 * time.Minute)}},
		{ID: "0190a6c4-1b2c-7d3e-8f40-0000000000f3", Field: "description", OpenedAt: goldenAt.Add(5 * time.Minute),
			Server: fieldsync.ConflictValue{Value: raw(`"noisy"`), By: "tablet-7", Role: "field_worker", OpID: "0190a6c4-1b2c-7d3e-8f40-000000000001", Version: 1, At: goldenAt},
			Theirs: []fieldsync.ConflictValue{{Value: raw(`"replaced valve"`), By: "tablet-9", Role: "field_worker", OpID: "0190a6c4-1b2c-7d3e-8f40-0000000000f3", At: goldenAt.Add(5 * time.Minute)}}},
	}
}

func goldenRecords() []fieldsync.Record {
	return []fieldsync.Record{
		{Type: "work_order", ID: "0190a6c4-0000-7000-8000-00000000a001", Number: "WO-1042", Version: 3,
			Fields: map[string]json.RawMessage{"title": raw(`"Boiler makes noise"`), "status": raw(`"cancelled"`),
				"comments": raw(`[{"id":"0190a6c4-1b2c-7d3e-8f40-000000000003","value":"pressure ok","by":"tablet-7","at":"2024-07-03T09:32:00Z"}]`)},
			Review: []string{"description"}, Conflicts: goldenConflicts(), Seq: 17, UpdatedAt: goldenAt.Add(5 * time.Minute)},
		{Type: "work_order", ID: "wo-old", Number: "WO-1001", Version: 6, Deleted: true,
			Fields: map[string]json.RawMessage{"title": raw(`"Old"`)}, Seq: 18, UpdatedAt: goldenAt.Add(6 * time.Minute)},
	}
}

func goldenError() (int, fieldsync.Error) {
	return 409, fieldsync.Error{Code: fieldsync.ECursorInvalid, Message: "this cursor is from another server history: start again from the beginning"}
}

// golden compares the indented encoding of v with testdata/golden/name,
// rewriting the file under -update, and returns the file's bytes.
func golden(t *testing.T, name string, v any) []byte {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: the encoding differs from the golden file (run with -update if the change is meant)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
	return want
}

// compact re-encodes raw JSON values in their compact form, so values
// that went through an indenting encoder compare with the originals.
func compact(t *testing.T, m map[string]json.RawMessage) map[string]json.RawMessage {
	t.Helper()
	if m == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		var b bytes.Buffer
		if err := json.Compact(&b, v); err != nil {
			t.Fatalf("field %s: %v", k, err)
		}
		out[k] = b.Bytes()
	}
	return out
}

func compactValue(t *testing.T, v json.RawMessage) json.RawMessage {
	t.Helper()
	return compact(t, map[string]json.RawMessage{"v": v})["v"]
}

// compactConflicts compacts the values of conflicts in place.
func compactConflicts(t *testing.T, cs []fieldsync.Conflict) {
	t.Helper()
	for i := range cs {
		c := &cs[i]
		c.Server.Value = compactValue(t, c.Server.Value)
		for j := range c.Theirs {
			c.Theirs[j].Value = compactValue(t, c.Theirs[j].Value)
		}
		if c.Settled != nil {
			c.Settled.Value = compactValue(t, c.Settled.Value)
		}
	}
}

func TestGoldenPushRequest(t *testing.T) {
	ops := goldenOps()
	req := protocol.PushRequest{Device: "tablet-7"}
	for i := range ops {
		req.Ops = append(req.Ops, protocol.FromOp(&ops[i]))
	}
	data := golden(t, "push_request.json", &req)

	back, err := protocol.DecodePush(data)
	if err != nil {
		t.Fatalf("the golden push request is refused: %v", err)
	}
	if len(back.Ops) != len(ops) {
		t.Fatalf("%d ops back, want %d", len(back.Ops), len(ops))
	}
	for i := range ops {
		got := protocol.ToOp(&back.Ops[i], back.Device)
		got.Fields = compact(t, got.Fields)
		if !reflect.DeepEqual(got, ops[i]) {
			t.Errorf("op %d decodes as\n%+v\nwant\n%+v", i, got, ops[i])
		}
	}
}

func TestGoldenPushResponse(t *testing.T) {
	results := goldenResults()
	resp := protocol.PushResponse{HLC: int64(fieldsync.HLCFromTime(goldenAt.Add(10*time.Minute))) + 3}
	seen := map[fieldsync.ResultStatus]bool{}
	for i := range results {
		resp.Results = append(resp.Results, protocol.FromResult(&results[i]))
		seen[results[i].Status] = true
	}
	for _, st := range []fieldsync.ResultStatus{fieldsync.StatusApplied, fieldsync.StatusDuplicate, fieldsync.StatusRejected, fieldsync.StatusConflict, fieldsync.StatusRetry} {
		if !seen[st] {
			t.Errorf("the golden response has no %s result", st)
		}
	}
	data := golden(t, "push_response.json", &resp)

	var back protocol.PushResponse
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != len(results) || back.HLC != resp.HLC {
		t.Fatalf("%d results and clock %d back, want %d and %d", len(back.Results), back.HLC, len(results), resp.HLC)
	}
	for i := range results {
		got := protocol.ToResult(&back.Results[i])
		for j := range got.Conflicts {
			c := &got.Conflicts[j]
			c.ServerValue = compactValue(t, c.ServerValue)
			c.DeviceValue = compactValue(t, c.DeviceValue)
		}
		for j := range got.Overridden {
			got.Overridden[j].Value = compactValue(t, got.Overridden[j].Value)
		}
		if !reflect.DeepEqual(got, results[i]) {
			t.Errorf("result %d decodes as\n%+v\nwant\n%+v", i, got, results[i])
		}
	}
}

func TestGoldenChangesResponse(t *testing.T) {
	recs := goldenRecords()
	resp := protocol.ChangesResponse{
		Cursor: protocol.Cursor{Epoch: "5f3c9a0e7b214d68", Seq: 18, Tag: "00000004"}.String(),
		More:   true,
		HLC:    int64(fieldsync.HLCFromTime(goldenAt.Add(10 * time.Minute))),
	}
	for i := range recs {
		resp.Changes = append(resp.Changes, protocol.FromRecord(&recs[i]))
	}
	data := golden(t, "changes_response.json", &resp)

	var back protocol.ChangesResponse
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	if back.Cursor != resp.Cursor || !back.More || back.HLC != resp.HLC || len(back.Changes) != len(recs) {
		t.Fatalf("decoded %+v", back)
	}
	if c, err := protocol.ParseCursor(back.Cursor); err != nil || c.Seq != 18 {
		t.Errorf("golden cursor: %+v, %v", c, err)
	}
	for i := range recs {
		got := protocol.ToRecord(&back.Changes[i])
		got.Fields = compact(t, got.Fields)
		compactConflicts(t, got.Conflicts)
		if !reflect.DeepEqual(got, recs[i]) {
			t.Errorf("record %d decodes as\n%+v\nwant\n%+v", i, got, recs[i])
		}
	}
}

// TestGoldenSettleRequest: the office's settle body, and the settle op
// a device sends for the same decision, carry the same settlement.
func TestGoldenSettleRequest(t *testing.T) {
	req := protocol.SettleRequest{
		Field: "status", Conflict: "0190a6c4-1b2c-7d3e-8f40-000000000002", Choice: fieldsync.ChoiceNewValue,
		Value: raw(`"waiting for parts"`), Note: "completed, but parts required",
	}
	data := golden(t, "settle_request.json", &req)
	back, err := protocol.DecodeSettle(data)
	if err != nil {
		t.Fatalf("the golden settle request is refused: %v", err)
	}
	back.Value = compactValue(t, back.Value)
	if !reflect.DeepEqual(*back, req) {
		t.Fatalf("decodes as %+v, want %+v", *back, req)
	}
	op := goldenOps()[4]
	var st fieldsync.Settle
	if err := json.Unmarshal(op.Fields[req.Field], &st); err != nil {
		t.Fatal(err)
	}
	if st.Conflict != req.Conflict || st.Choice != req.Choice || string(st.Value) != string(req.Value) || st.Note != req.Note || st.Op != req.Op {
		t.Fatalf("the settle op carries %+v, the request %+v", st, req)
	}
}

func TestGoldenErrorBody(t *testing.T) {
	status, e := goldenError()
	body := protocol.ErrorBody{Error: protocol.ErrorDetail{Code: string(e.Code), Message: e.Message, Retryable: e.Code.Retryable()}}
	data := golden(t, "error_body.json", &body)
	back := protocol.DecodeErrorBody(status, data)
	if *back != e {
		t.Errorf("error body decodes as %+v, want %+v", back, e)
	}
}
