// Package storetest is the conformance suite every fieldsync.Store
// implementation must pass: atomic updates, the op log's uniqueness
// rules, feed positions, counters, paging and lookups. A store package
// runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) fieldsync.Store { ... a new, empty store ... })
//	}
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

// Opener returns a new, empty store that lives until t ends (the opener
// registers its own cleanup).
type Opener func(t *testing.T) fieldsync.Store

// Reopener closes st and opens the same storage again, as a restarted
// server would.
type Reopener func(t *testing.T, st fieldsync.Store) fieldsync.Store

// Option adjusts Run.
type Option func(*suite)

// WithReopen lets the suite check what must survive a restart: the
// epoch, records, ops and counters.
func WithReopen(reopen Reopener) Option {
	return func(s *suite) { s.reopen = reopen }
}

type suite struct {
	open   Opener
	reopen Reopener
}

// Run runs the conformance suite against stores made by open.
func Run(t *testing.T, open func(t *testing.T) fieldsync.Store, opts ...Option) {
	s := &suite{open: open}
	for _, o := range opts {
		o(s)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"Epoch", testEpoch},
		{"Reopen", testReopen},
		{"RecordRoundTrip", testRecordRoundTrip},
		{"OpRoundTrip", testOpRoundTrip},
		{"UpdateRollsBack", testUpdateRollsBack},
		{"UpdateCancelled", testUpdateCancelled},
		{"UpdateIsolated", testUpdateIsolated},
		{"OpLookups", testOpLookups},
		{"OpUniqueness", testOpUniqueness},
		{"FeedPositions", testFeedPositions},
		{"NextNumber", testNextNumber},
		{"Changes", testChanges},
		{"ChangeTag", testChangeTag},
		{"NotFound", testNotFound},
		{"RecordOps", testRecordOps},
		{"RecordHistory", testRecordHistory},
		{"ConcurrentUpdates", testConcurrentUpdates},
	}
	tests = append(tests, blobTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
	}
}

// ctx returns a context that ends with the test, bounded in time.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

var epochT = time.Date(2024, 7, 3, 9, 0, 0, 0, time.UTC)

// opID returns a lowercase UUIDv7-shaped id; n makes it unique and is
// its last 8 hex digits, so its change tag is fmt.Sprintf("%08x", n).
func opID(n int) string {
	return fmt.Sprintf("0190a6c4-1b2c-7d3e-8f40-0000%08x", n)
}

func record(typ, id string, version int64, fields map[string]string) fieldsync.Record {
	r := fieldsync.Record{
		Type: typ, ID: id, Version: version, UpdatedAt: epochT.Add(time.Duration(version) * time.Second),
		Fields: map[string]json.RawMessage{}, Meta: map[string]fieldsync.FieldMeta{},
	}
	for k, v := range fields {
		r.Fields[k] = json.RawMessage(v)
		r.Meta[k] = fieldsync.FieldMeta{Version: version, By: "dev-1", Seq: version}
	}
	return r
}

func entry(n int, device string, seq int64, typ, id string, changeSeq int64) fieldsync.OpEntry {
	return fieldsync.OpEntry{
		Op: fieldsync.Op{
			ID: opID(n), DeviceID: device, Seq: seq, EntityType: typ, EntityID: id,
			Kind: fieldsync.KindUpdate, BaseVersion: 1, Fields: map[string]json.RawMessage{"status": json.RawMessage(`"new"`)},
			LocalTime: epochT.Add(time.Duration(n) * time.Millisecond),
		},
		Result:     fieldsync.Result{OpID: opID(n), Status: fieldsync.StatusApplied, Version: 2},
		ReceivedAt: epochT.Add(time.Minute),
		ChangeSeq:  changeSeq,
	}
}

// put writes recs in one transaction and returns their feed positions.
func put(t *testing.T, st fieldsync.Store, recs ...fieldsync.Record) []int64 {
	t.Helper()
	var seqs []int64
	err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		seqs = seqs[:0]
		for i := range recs {
			seq, err := tx.PutRecord(&recs[i])
			if err != nil {
				return err
			}
			if recs[i].Seq != seq {
				return fmt.Errorf("PutRecord returned %d but set rec.Seq to %d", seq, recs[i].Seq)
			}
			seqs = append(seqs, seq)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	return seqs
}

func recordOps(t *testing.T, st fieldsync.Store, es ...fieldsync.OpEntry) {
	t.Helper()
	err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		for _, e := range es {
			if err := tx.RecordOp(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("record ops: %v", err)
	}
}

func sameJSON(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func sameFields(a, b map[string]json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !sameJSON(v, w) {
			return false
		}
	}
	return true
}

// checkRecord compares a stored record with the one written; times are
// kept to the millisecond.
func checkRecord(t *testing.T, got, want fieldsync.Record) {
	t.Helper()
	if got.Type != want.Type || got.ID != want.ID || got.Number != want.Number || got.Version != want.Version ||
		got.Deleted != want.Deleted || got.Seq != want.Seq {
		t.Errorf("record %s/%s: got %+v\nwant %+v", want.Type, want.ID, got, want)
	}
	if !sameFields(got.Fields, want.Fields) {
		t.Errorf("record %s/%s fields: got %s, want %s", want.Type, want.ID, got.Fields, want.Fields)
	}
	if len(got.Meta) != len(want.Meta) || len(want.Meta) > 0 && !reflect.DeepEqual(got.Meta, want.Meta) {
		t.Errorf("record %s/%s meta: got %+v, want %+v", want.Type, want.ID, got.Meta, want.Meta)
	}
	if len(got.Review) != len(want.Review) || len(want.Review) > 0 && !slices.Equal(got.Review, want.Review) {
		t.Errorf("record %s/%s review: got %v, want %v", want.Type, want.ID, got.Review, want.Review)
	}
	if !got.UpdatedAt.Equal(want.UpdatedAt.Truncate(time.Millisecond)) {
		t.Errorf("record %s/%s updated: got %v, want %v", want.Type, want.ID, got.UpdatedAt, want.UpdatedAt)
	}
}

func checkEntry(t *testing.T, got, want fieldsync.OpEntry) {
	t.Helper()
	g, w := got, want
	if !sameFields(g.Op.Fields, w.Op.Fields) {
		t.Errorf("op %s fields: got %s, want %s", w.Op.ID, g.Op.Fields, w.Op.Fields)
	}
	if !g.Op.LocalTime.Equal(w.Op.LocalTime.Truncate(time.Millisecond)) || !g.ReceivedAt.Equal(w.ReceivedAt.Truncate(time.Millisecond)) {
		t.Errorf("op %s times: got %v/%v, want %v/%v", w.Op.ID, g.Op.LocalTime, g.ReceivedAt, w.Op.LocalTime, w.ReceivedAt)
	}
	g.Op.Fields, w.Op.Fields = nil, nil
	g.Op.LocalTime, w.Op.LocalTime = time.Time{}, time.Time{}
	g.ReceivedAt, w.ReceivedAt = time.Time{}, time.Time{}
	if !sameResult(g.Result, w.Result) {
		t.Errorf("op %s result: got %+v, want %+v", w.Op.ID, g.Result, w.Result)
	}
	g.Result, w.Result = fieldsync.Result{}, fieldsync.Result{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("op entry: got %+v\nwant %+v", g, w)
	}
}

func sameResult(a, b fieldsync.Result) bool {
	if len(a.Conflicts) != len(b.Conflicts) {
		return false
	}
	for i := range a.Conflicts {
		x, y := a.Conflicts[i], b.Conflicts[i]
		if !sameJSON(x.ServerValue, y.ServerValue) || !sameJSON(x.DeviceValue, y.DeviceValue) {
			return false
		}
		x.ServerValue, x.DeviceValue, y.ServerValue, y.DeviceValue = nil, nil, nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	if (a.Recorded == nil) != (b.Recorded == nil) || a.Recorded != nil && !sameResult(*a.Recorded, *b.Recorded) {
		return false
	}
	a.Conflicts, b.Conflicts, a.Recorded, b.Recorded = nil, nil, nil, nil
	return reflect.DeepEqual(a, b)
}

// snapshot is everything readable from outside a transaction about a
// small store.
type snapshot struct {
	changes []fieldsync.Record
	max     int64
}

func snap(t *testing.T, st fieldsync.Store) snapshot {
	t.Helper()
	recs, max, err := st.Changes(ctx(t), 0, 1_000_000)
	if err != nil {
		t.Fatalf("changes: %v", err)
	}
	return snapshot{recs, max}
}

func testEpoch(t *testing.T, s *suite) {
	st := s.open(t)
	e := st.Epoch()
	if e == "" {
		t.Fatal("empty epoch")
	}
	if st.Epoch() != e {
		t.Fatal("the epoch changed between calls")
	}
	// Devices carry the epoch in their cursor: it must fit there.
	c := protocol.Cursor{Epoch: e, Seq: 1}
	if back, err := protocol.ParseCursor(c.String()); err != nil || back != c {
		t.Fatalf("epoch %q does not fit in a cursor: %v", e, err)
	}
	put(t, st, record("job", "a", 1, nil))
	if st.Epoch() != e {
		t.Fatal("the epoch changed after a write")
	}
	if other := s.open(t); other.Epoch() == e {
		t.Fatalf("two new stores share the epoch %s", e)
	}
}

func testReopen(t *testing.T, s *suite) {
	if s.reopen == nil {
		t.Log("no reopen hook: only checking that a store can be closed")
		if err := s.open(t).Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		return
	}
	st := s.open(t)
	epoch := st.Epoch()
	rec := record("job", "a", 1, map[string]string{"title": `"x"`})
	put(t, st, rec)
	e := entry(1, "dev-1", 1, "job", "a", rec.Seq)
	recordOps(t, st, e)
	var n1 int64
	if err := st.Update(ctx(t), func(tx fieldsync.StoreTx) (err error) {
		n1, err = tx.NextNumber("number:job", 1001)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	before := snap(t, st)

	st = s.reopen(t, st)
	if st.Epoch() != epoch {
		t.Fatalf("epoch %s after reopen, was %s", st.Epoch(), epoch)
	}
	after := snap(t, st)
	if after.max != before.max || len(after.changes) != 1 {
		t.Fatalf("after reopen: %d changes, max %d; before %d, %d", len(after.changes), after.max, len(before.changes), before.max)
	}
	checkRecord(t, after.changes[0], before.changes[0])
	got, err := st.OpEntry(ctx(t), e.Op.ID)
	if err != nil {
		t.Fatalf("op after reopen: %v", err)
	}
	checkEntry(t, got, e)
	err = st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		n2, err := tx.NextNumber("number:job", 1001)
		if err == nil && n2 != n1+1 {
			return fmt.Errorf("counter after reopen: %d, was %d", n2, n1)
		}
		if err != nil {
			return err
		}
		seq, err := tx.PutRecord(&fieldsync.Record{Type: "job", ID: "b", Version: 1, UpdatedAt: epochT})
		if err == nil && seq <= before.max {
			return fmt.Errorf("feed position %d after reopen, not above %d", seq, before.max)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testRecordRoundTrip(t *testing.T, s *suite) {
	st := s.open(t)
	full := fieldsync.Record{
		Type: "work_order", ID: "0190a6c4-0000-7000-8000-00000000a001", Number: "WO-1042", Version: 7,
		Fields: map[string]json.RawMessage{
			"title":    json.RawMessage(`"Boiler \"noise\" — ünïcode ✓"`),
			"amount":   json.RawMessage(`12.5`),
			"done":     json.RawMessage(`true`),
			"where":    json.RawMessage(`{"lat":1.5,"lon":-2,"tags":["a",null]}`),
			"comments": json.RawMessage(`[{"id":"x","value":"hi","by":"d","at":"2024-07-03T09:00:00Z"}]`),
		},
		Meta: map[string]fieldsync.FieldMeta{
			"title":  {Version: 7, By: "dev-1", Seq: 12},
			"amount": {Version: 3, By: "office", Seq: 2},
		},
		Review:    []string{"title", "amount"},
		UpdatedAt: epochT.Add(1234567 * time.Microsecond),
	}
	deleted := fieldsync.Record{Type: "work_order", ID: "gone", Version: 3, Deleted: true, UpdatedAt: epochT}
	seqs := put(t, st, full, deleted)
	full.Seq, deleted.Seq = seqs[0], seqs[1]
	recs, _, err := st.Changes(ctx(t), 0, 10)
	if err != nil || len(recs) != 2 {
		t.Fatalf("changes: %d records, %v", len(recs), err)
	}
	checkRecord(t, recs[0], full)
	checkRecord(t, recs[1], deleted)

	got, err := st.Record(ctx(t), full.Type, full.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkRecord(t, got, full)
	got, err = st.Record(ctx(t), deleted.Type, deleted.ID)
	if err != nil {
		t.Fatalf("a deleted record is still readable: %v", err)
	}
	checkRecord(t, got, deleted)
	err = st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		r, ok, err := tx.Record(full.Type, full.ID)
		if err != nil || !ok {
			return fmt.Errorf("tx.Record: %v, found %v", err, ok)
		}
		checkRecord(t, r, full)
		r, ok, err = tx.Record(deleted.Type, deleted.ID)
		if err != nil || !ok {
			return fmt.Errorf("tx.Record of a deleted record: %v, found %v", err, ok)
		}
		checkRecord(t, r, deleted)
		if _, ok, err := tx.Record("work_order", "nope"); err != nil || ok {
			return fmt.Errorf("tx.Record of a missing record: %v, found %v", err, ok)
		}
		if _, ok, err := tx.Record("other_type", full.ID); err != nil || ok {
			return fmt.Errorf("tx.Record with another type: %v, found %v", err, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testOpRoundTrip(t *testing.T, s *suite) {
	st := s.open(t)
	applied := fieldsync.Result{OpID: opID(1), Status: fieldsync.StatusApplied, Version: 1, Number: "WO-1001"}
	es := []fieldsync.OpEntry{
		{
			Op: fieldsync.Op{ID: opID(1), DeviceID: "dev-1", Seq: 5, PrevSeq: 0, EntityType: "work_order", EntityID: "wo-1",
				Kind: fieldsync.KindCreate, Fields: map[string]json.RawMessage{"title": json.RawMessage(`"é ✓"`), "n": json.RawMessage(`1`)},
				LocalTime: epochT.Add(1500 * time.Microsecond)},
			Result: applied, ReceivedAt: epochT.Add(time.Hour + 999*time.Microsecond), ChangeSeq: 4,
		},
		{
			Op: fieldsync.Op{ID: opID(2), DeviceID: "dev-1", Seq: 6, PrevSeq: 5, EntityType: "work_order", EntityID: "wo-1",
				Kind: fieldsync.KindUpdate, BaseVersion: 1, Fields: map[string]json.RawMessage{"status": json.RawMessage(`"x"`)}, LocalTime: epochT},
			Result: fieldsync.Result{OpID: opID(2), Status: fieldsync.StatusConflict, Version: 3, Number: "WO-1001", Code: fieldsync.EFieldConflict,
				Message: "status was changed", Conflicts: []fieldsync.FieldConflict{{Field: "status", ServerValue: json.RawMessage(`"y"`),
					DeviceValue: json.RawMessage(`"x"`), ServerVersion: 2, ServerBy: "office"}}},
			ReceivedAt: epochT, ChangeSeq: 5,
		},
		{
			Op:     fieldsync.Op{ID: opID(3), DeviceID: "dev-2", Seq: 1, EntityType: "work_order", EntityID: "wo-2", Kind: fieldsync.KindDelete, BaseVersion: 9, LocalTime: epochT},
			Result: fieldsync.Result{OpID: opID(3), Status: fieldsync.StatusRejected, Code: fieldsync.ERecordMissing, Message: "no such record"},
		},
	}
	recordOps(t, st, es...)
	for _, want := range es {
		got, err := st.OpEntry(ctx(t), want.Op.ID)
		if err != nil {
			t.Fatalf("OpEntry %s: %v", want.Op.ID, err)
		}
		checkEntry(t, got, want)
	}
	err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		for _, want := range es {
			got, ok, err := tx.OpByID(want.Op.ID)
			if err != nil || !ok {
				return fmt.Errorf("OpByID %s: %v, found %v", want.Op.ID, err, ok)
			}
			checkEntry(t, got, want)
			got, ok, err = tx.OpByDeviceSeq(want.Op.DeviceID, want.Op.Seq)
			if err != nil || !ok {
				return fmt.Errorf("OpByDeviceSeq %s/%d: %v, found %v", want.Op.DeviceID, want.Op.Seq, err, ok)
			}
			checkEntry(t, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A duplicate's answer carries the recorded result.
	dup := fieldsync.OpEntry{
		Op:     fieldsync.Op{ID: opID(4), DeviceID: "dev-3", Seq: 1, EntityType: "work_order", EntityID: "wo-1", Kind: fieldsync.KindUpdate, LocalTime: epochT},
		Result: fieldsync.Result{OpID: opID(4), Status: fieldsync.StatusDuplicate, Recorded: &applied}, ReceivedAt: epochT,
	}
	recordOps(t, st, dup)
	got, err := st.OpEntry(ctx(t), dup.Op.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, got, dup)
}

var errBoom = errors.New("boom")

func testUpdateRollsBack(t *testing.T, s *suite) {
	st := s.open(t)
	keep := record("job", "kept", 1, map[string]string{"title": `"kept"`})
	put(t, st, keep)
	before := snap(t, st)

	called := false
	err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		called = true
		r := record("job", "lost", 1, map[string]string{"title": `"lost"`})
		if _, err := tx.PutRecord(&r); err != nil {
			return err
		}
		k := keep
		k.Version = 2
		k.Fields = map[string]json.RawMessage{"title": json.RawMessage(`"overwritten"`)}
		if _, err := tx.PutRecord(&k); err != nil {
			return err
		}
		if err := tx.RecordOp(entry(1, "dev-1", 1, "job", "lost", r.Seq)); err != nil {
			return err
		}
		if _, err := tx.NextNumber("number:job", 1001); err != nil {
			return err
		}
		// What was written is visible inside the transaction.
		if _, ok, err := tx.Record("job", "lost"); err != nil || !ok {
			return fmt.Errorf("own write not visible in the transaction: %v, found %v", err, ok)
		}
		if _, ok, err := tx.OpByID(opID(1)); err != nil || !ok {
			return fmt.Errorf("own op not visible in the transaction: %v, found %v", err, ok)
		}
		return fmt.Errorf("apply: %w", errBoom)
	})
	if !called {
		t.Fatal("fn was not called")
	}
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	after := snap(t, st)
	if after.max != before.max || len(after.changes) != len(before.changes) {
		t.Fatalf("after a failed update: %d changes, max %d; before %d, %d", len(after.changes), after.max, len(before.changes), before.max)
	}
	checkRecord(t, after.changes[0], before.changes[0])
	if _, err := st.Record(ctx(t), "job", "lost"); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Errorf("a rolled-back record is readable: %v", err)
	}
	if _, err := st.OpEntry(ctx(t), opID(1)); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Errorf("a rolled-back op is readable: %v", err)
	}
	if tag, ok, err := st.ChangeTag(ctx(t), before.max+1); err != nil || ok {
		t.Errorf("a rolled-back change has a tag %q (%v)", tag, err)
	}
	// The store is usable afterwards, and the counter starts afresh.
	err = st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		n, err := tx.NextNumber("number:job", 1001)
		if err == nil && n != 1001 {
			return fmt.Errorf("a rolled-back counter kept its step: %d", n)
		}
		if _, ok, err := tx.OpByID(opID(1)); err != nil || ok {
			return fmt.Errorf("a rolled-back op is found: %v", err)
		}
		if _, ok, err := tx.OpByDeviceSeq("dev-1", 1); err != nil || ok {
			return fmt.Errorf("a rolled-back sequence number is found: %v", err)
		}
		return tx.RecordOp(entry(1, "dev-1", 1, "job", "kept", 0))
	})
	if err != nil {
		t.Fatalf("update after a rollback: %v", err)
	}
	// A store error inside fn that fn passes on also rolls back.
	err = st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		r := record("job", "lost-again", 1, nil)
		if _, err := tx.PutRecord(&r); err != nil {
			return err
		}
		return tx.RecordOp(entry(1, "dev-1", 1, "job", "kept", 0)) // a repeated op id
	})
	if err == nil {
		t.Fatal("recording an op id twice succeeded")
	}
	if _, err := st.Record(ctx(t), "job", "lost-again"); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Errorf("a write before a refused RecordOp was kept: %v", err)
	}
}

func testUpdateCancelled(t *testing.T, s *suite) {
	st := s.open(t)
	c, cancel := context.WithCancel(ctx(t))
	cancel()
	err := st.Update(c, func(tx fieldsync.StoreTx) error {
		r := record("job", "a", 1, nil)
		_, err := tx.PutRecord(&r)
		return err
	})
	if err == nil {
		t.Fatal("Update with a cancelled context succeeded")
	}
	if _, err := st.Record(ctx(t), "job", "a"); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Fatalf("a cancelled update was kept: %v", err)
	}
}

// testUpdateIsolated: readers outside a transaction do not see its
// writes before it commits, and are not blocked by it.
func testUpdateIsolated(t *testing.T, s *suite) {
	st := s.open(t)
	put(t, st, record("job", "a", 1, nil))
	err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		r := record("job", "b", 1, nil)
		if _, err := tx.PutRecord(&r); err != nil {
			return err
		}
		if err := tx.RecordOp(entry(1, "dev-1", 1, "job", "b", r.Seq)); err != nil {
			return err
		}
		recs, max, err := st.Changes(ctx(t), 0, 100)
		if err != nil {
			return fmt.Errorf("changes during an update: %w", err)
		}
		if len(recs) != 1 || max != recs[0].Seq {
			return fmt.Errorf("a reader sees an uncommitted write: %d records, max %d", len(recs), max)
		}
		if _, err := st.Record(ctx(t), "job", "b"); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
			return fmt.Errorf("a reader sees an uncommitted record: %v", err)
		}
		if _, err := st.OpEntry(ctx(t), opID(1)); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
			return fmt.Errorf("a reader sees an uncommitted op: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Record(ctx(t), "job", "b"); err != nil {
		t.Fatalf("committed record: %v", err)
	}
}

func testOpLookups(t *testing.T, s *suite) {
	st := s.open(t)
	recordOps(t, st, entry(1, "dev-1", 1, "job", "a", 0), entry(2, "dev-1", 2, "job", "a", 0), entry(3, "dev-2", 1, "job", "a", 0))
	err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		cases := []struct {
			device string
			seq    int64
			want   string // op id, "" for none
		}{
			{"dev-1", 1, opID(1)}, {"dev-1", 2, opID(2)}, {"dev-2", 1, opID(3)},
			{"dev-1", 3, ""}, {"dev-2", 2, ""}, {"dev-3", 1, ""}, {"dev-1", 0, ""}, {"DEV-1", 1, ""},
		}
		for _, c := range cases {
			e, ok, err := tx.OpByDeviceSeq(c.device, c.seq)
			if err != nil {
				return err
			}
			if ok != (c.want != "") || ok && e.Op.ID != c.want {
				return fmt.Errorf("OpByDeviceSeq(%s, %d) = %s, %v; want %q", c.device, c.seq, e.Op.ID, ok, c.want)
			}
		}
		for _, id := range []string{opID(4), "", opID(1)[:35], "0190A6C4-1B2C-7D3E-8F40-000000000001"} {
			if _, ok, err := tx.OpByID(id); err != nil || ok {
				return fmt.Errorf("OpByID(%q) found %v, %v", id, ok, err)
			}
		}
		// Ops recorded earlier in the same transaction are found.
		if err := tx.RecordOp(entry(5, "dev-3", 7, "job", "b", 0)); err != nil {
			return err
		}
		if e, ok, err := tx.OpByID(opID(5)); err != nil || !ok || e.Op.Seq != 7 {
			return fmt.Errorf("OpByID of an op of this transaction: %v, %v", ok, err)
		}
		if e, ok, err := tx.OpByDeviceSeq("dev-3", 7); err != nil || !ok || e.Op.ID != opID(5) {
			return fmt.Errorf("OpByDeviceSeq of an op of this transaction: %v, %v", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testOpUniqueness(t *testing.T, s *suite) {
	st := s.open(t)
	first := entry(1, "dev-1", 1, "job", "a", 0)
	recordOps(t, st, first)
	cases := []struct {
		name string
		e    fieldsync.OpEntry
	}{
		{"same op id", entry(1, "dev-9", 9, "job", "z", 0)},
		{"same device and seq", entry(2, "dev-1", 1, "job", "z", 0)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var recErr error
			err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
				recErr = tx.RecordOp(c.e)
				return recErr
			})
			if recErr == nil || err == nil {
				t.Fatalf("RecordOp accepted it (%v, %v)", recErr, err)
			}
			got, err := st.OpEntry(ctx(t), first.Op.ID)
			if err != nil {
				t.Fatal(err)
			}
			checkEntry(t, got, first)
			if c.e.Op.ID != first.Op.ID {
				if _, err := st.OpEntry(ctx(t), c.e.Op.ID); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
					t.Fatalf("the refused op was kept: %v", err)
				}
			}
		})
	}
	t.Run("within one transaction", func(t *testing.T) {
		err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
			if err := tx.RecordOp(entry(10, "dev-5", 1, "job", "a", 0)); err != nil {
				return err
			}
			if err := tx.RecordOp(entry(11, "dev-5", 1, "job", "a", 0)); err == nil {
				return errors.New("a repeated (device, seq) in one transaction was accepted")
			}
			if err := tx.RecordOp(entry(10, "dev-6", 1, "job", "a", 0)); err == nil {
				return errors.New("a repeated op id in one transaction was accepted")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("same seq on other devices", func(t *testing.T) {
		recordOps(t, st, entry(20, "dev-7", 1, "job", "a", 0), entry(21, "dev-8", 1, "job", "a", 0), entry(22, "dev-7", 2, "job", "a", 0))
	})
}

func testFeedPositions(t *testing.T, s *suite) {
	st := s.open(t)
	var all []int64
	for i := range 5 {
		recs := []fieldsync.Record{record("job", fmt.Sprint("r", i), 1, nil), record("job", fmt.Sprint("s", i), 1, nil)}
		all = append(all, put(t, st, recs...)...)
	}
	for i := 1; i < len(all); i++ {
		if all[i] <= all[i-1] {
			t.Fatalf("feed positions not strictly increasing: %v", all)
		}
	}
	if all[0] < 1 {
		t.Fatalf("first feed position %d, want 1 or more", all[0])
	}
	// An update moves the record to the end of the feed, once.
	moved := record("job", "r1", 2, map[string]string{"title": `"moved"`})
	seq := put(t, st, moved)[0]
	if seq <= all[len(all)-1] {
		t.Fatalf("updated record got position %d, not after %d", seq, all[len(all)-1])
	}
	recs, max, err := st.Changes(ctx(t), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 10 || max != seq {
		t.Fatalf("%d records, max %d; want 10, %d", len(recs), max, seq)
	}
	last := recs[len(recs)-1]
	if last.ID != "r1" || last.Version != 2 || last.Seq != seq {
		t.Fatalf("last in feed: %+v", last)
	}
	for _, r := range recs[:len(recs)-1] {
		if r.ID == "r1" {
			t.Fatal("the updated record is in the feed twice")
		}
	}
	// The same record written twice in one transaction ends up once, at
	// the later position.
	var p1, p2 int64
	err = st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		r := record("job", "r2", 2, nil)
		var err error
		if p1, err = tx.PutRecord(&r); err != nil {
			return err
		}
		r.Version = 3
		p2, err = tx.PutRecord(&r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if p2 <= p1 {
		t.Fatalf("second write in a transaction got %d, first %d", p2, p1)
	}
	got, err := st.Record(ctx(t), "job", "r2")
	if err != nil || got.Seq != p2 || got.Version != 3 {
		t.Fatalf("record after two writes: %+v, %v", got, err)
	}
}

func testNextNumber(t *testing.T, s *suite) {
	st := s.open(t)
	next := func(name string, start int64) int64 {
		t.Helper()
		var n int64
		if err := st.Update(ctx(t), func(tx fieldsync.StoreTx) (err error) {
			n, err = tx.NextNumber(name, start)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := next("number:job", 1001); n != 1001 {
		t.Fatalf("first number %d, want the start 1001", n)
	}
	if n := next("number:job", 1001); n != 1002 {
		t.Fatalf("second number %d, want 1002", n)
	}
	if n := next("number:job", 5); n != 1003 {
		t.Fatalf("a used counter restarted at the given start: %d", n)
	}
	if n := next("seq:office", 1); n != 1 {
		t.Fatalf("another counter starts at %d, want 1", n)
	}
	if n := next("number:job", 1001); n != 1004 {
		t.Fatalf("counters are not independent: %d", n)
	}
	// Several in one transaction.
	err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		for want := int64(2); want <= 4; want++ {
			n, err := tx.NextNumber("seq:office", 1)
			if err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("number %d in one transaction, want %d", n, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testChanges(t *testing.T, s *suite) {
	st := s.open(t)
	recs, max, err := st.Changes(ctx(t), 0, 10)
	if err != nil || len(recs) != 0 || max != 0 {
		t.Fatalf("empty store: %d changes, max %d, %v", len(recs), max, err)
	}
	var seqs []int64
	for i := range 7 {
		seqs = append(seqs, put(t, st, record("job", fmt.Sprint("r", i), 1, map[string]string{"n": fmt.Sprint(i)}))...)
	}
	top := seqs[len(seqs)-1]
	// Page through with every limit: each record once, in feed order.
	for limit := 1; limit <= 8; limit++ {
		var got []int64
		after := int64(0)
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatalf("limit %d: paging does not end", limit)
			}
			page, max, err := st.Changes(ctx(t), after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if max != top {
				t.Fatalf("max %d, want %d", max, top)
			}
			if len(page) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			if len(page) == 0 {
				break
			}
			for _, r := range page {
				if r.Seq <= after {
					t.Fatalf("limit %d: record at %d after %d", limit, r.Seq, after)
				}
				got = append(got, r.Seq)
				after = r.Seq
			}
		}
		if !slices.Equal(got, seqs) {
			t.Fatalf("limit %d: positions %v, want %v", limit, got, seqs)
		}
	}
	// From the middle, and from past the end.
	page, _, err := st.Changes(ctx(t), seqs[4], 100)
	if err != nil || len(page) != 2 || page[0].Seq != seqs[5] || page[0].ID != "r5" {
		t.Fatalf("after %d: %+v, %v", seqs[4], page, err)
	}
	if page, max, err := st.Changes(ctx(t), top+100, 10); err != nil || len(page) != 0 || max != top {
		t.Fatalf("past the end: %d records, max %d, %v", len(page), max, err)
	}
	if !sameJSON(page[1].Fields["n"], json.RawMessage("6")) {
		t.Fatalf("fields in a page: %s", page[1].Fields)
	}
}

func testChangeTag(t *testing.T, s *suite) {
	st := s.open(t)
	r := record("job", "a", 1, nil)
	seq := put(t, st, r)[0]
	r2 := record("job", "b", 1, nil)
	seq2 := put(t, st, r2)[0]
	recordOps(t, st,
		entry(0x1234abcd, "dev-1", 1, "job", "a", seq),
		entry(7, "dev-1", 2, "job", "a", 0), // decided, changed nothing
		entry(0xfeed, "dev-1", 3, "job", "b", seq2),
	)
	for _, c := range []struct {
		seq  int64
		want string
	}{{seq, "1234abcd"}, {seq2, "0000feed"}} {
		tag, ok, err := st.ChangeTag(ctx(t), c.seq)
		if err != nil || !ok || tag != c.want {
			t.Errorf("ChangeTag(%d) = %q, %v, %v; want %q", c.seq, tag, ok, err, c.want)
		}
		if tag != fieldsync.ChangeTag(opID(0x1234abcd)) && tag != fieldsync.ChangeTag(opID(0xfeed)) {
			t.Errorf("tag %q is not fieldsync.ChangeTag of the op id", tag)
		}
	}
	for _, unknown := range []int64{0, -1, seq2 + 1, 1 << 40} {
		if tag, ok, err := st.ChangeTag(ctx(t), unknown); err != nil || ok {
			t.Errorf("ChangeTag(%d) = %q, %v, %v; want unknown", unknown, tag, ok, err)
		}
	}
}

func testNotFound(t *testing.T, s *suite) {
	st := s.open(t)
	put(t, st, record("job", "a", 1, nil))
	recordOps(t, st, entry(1, "dev-1", 1, "job", "a", 0))
	for _, c := range []struct{ typ, id string }{{"job", "b"}, {"other", "a"}, {"", ""}, {"job", "A"}} {
		_, err := st.Record(ctx(t), c.typ, c.id)
		if fieldsync.ErrorCode(err) != fieldsync.ENotFound {
			t.Errorf("Record(%q, %q) = %v, want %s", c.typ, c.id, err, fieldsync.ENotFound)
		}
	}
	for _, id := range []string{opID(2), "", "x"} {
		_, err := st.OpEntry(ctx(t), id)
		if fieldsync.ErrorCode(err) != fieldsync.ENotFound {
			t.Errorf("OpEntry(%q) = %v, want %s", id, err, fieldsync.ENotFound)
		}
	}
	if ops, err := st.RecordOps(ctx(t), "job", "b"); err != nil || len(ops) != 0 {
		t.Errorf("RecordOps of a record without ops: %d, %v", len(ops), err)
	}
}

func testRecordOps(t *testing.T, s *suite) {
	st := s.open(t)
	// Op ids deliberately out of order: the log keeps decision order.
	recordOps(t, st, entry(9, "dev-1", 1, "job", "a", 0), entry(3, "dev-2", 1, "job", "b", 0))
	recordOps(t, st, entry(5, "dev-2", 2, "job", "a", 0), entry(1, "dev-1", 2, "other", "a", 0))
	recordOps(t, st, entry(7, "dev-1", 3, "job", "a", 0))
	ops, err := st.RecordOps(ctx(t), "job", "a")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range ops {
		ids = append(ids, e.Op.ID)
	}
	if want := []string{opID(9), opID(5), opID(7)}; !slices.Equal(ids, want) {
		t.Fatalf("RecordOps = %v, want %v", ids, want)
	}
	checkEntry(t, ops[1], entry(5, "dev-2", 2, "job", "a", 0))
}

// testConcurrentUpdates: many goroutines each read a record, add one and
// write it back, and draw numbers; serialised updates lose nothing.
func testConcurrentUpdates(t *testing.T, s *suite) {
	st := s.open(t)
	put(t, st, record("job", "counter", 0, map[string]string{"n": "0"}))
	const workers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	numbers := make(chan int64, workers*each)
	c := ctx(t)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				err := st.Update(c, func(tx fieldsync.StoreTx) error {
					r, ok, err := tx.Record("job", "counter")
					if err != nil || !ok {
						return fmt.Errorf("read: %v, found %v", err, ok)
					}
					var n int
					if err := json.Unmarshal(r.Fields["n"], &n); err != nil {
						return err
					}
					r.Fields["n"] = json.RawMessage(fmt.Sprint(n + 1))
					r.Version++
					if _, err := tx.PutRecord(&r); err != nil {
						return err
					}
					num, err := tx.NextNumber("number:job", 1)
					if err != nil {
						return err
					}
					numbers <- num
					return tx.RecordOp(entry(w*1000+i+1, fmt.Sprint("dev-", w), int64(i+1), "job", "counter", r.Seq))
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d update %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(numbers)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := st.Record(ctx(t), "job", "counter")
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(got.Fields["n"], json.RawMessage(fmt.Sprint(workers*each))) || got.Version != workers*each {
		t.Fatalf("after %d updates: n = %s, version %d", workers*each, got.Fields["n"], got.Version)
	}
	seen := map[int64]bool{}
	for n := range numbers {
		if seen[n] {
			t.Fatalf("number %d handed out twice", n)
		}
		seen[n] = true
	}
	for n := int64(1); n <= workers*each; n++ {
		if !seen[n] {
			t.Fatalf("number %d never handed out", n)
		}
	}
	ops, err := st.RecordOps(ctx(t), "job", "counter")
	if err != nil || len(ops) != workers*each {
		t.Fatalf("%d ops recorded, %v; want %d", len(ops), err, workers*each)
	}
}
