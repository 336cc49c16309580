package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// savedOp is an op the user was told was saved: Save had returned it.
type savedOp struct {
	ID     string
	Seq    int64
	Entity string
	Kind   string
}

// serverOp is one row of the server's op log.
type serverOp struct {
	Rowid     int64
	ID        string
	Device    string
	Seq, Prev int64
	Type      string
	Entity    string
	Kind      string
	Status    string
	Result    protocol.Result
	ChangeSeq int64
}

// readServerOps returns the op log rows of device ("" for all devices) in
// the order the server decided them.
func readServerOps(ctx context.Context, t *testing.T, db *sql.DB, device string) []serverOp {
	t.Helper()
	rows, err := db.QueryContext(ctx, `SELECT rowid, op_id, device_id, seq, prev_seq, entity_type, entity_id, kind, status, result, change_seq
		FROM ops WHERE ? = '' OR device_id = ? ORDER BY rowid`, device, device)
	if err != nil {
		t.Fatalf("read op log: %v", err)
	}
	defer rows.Close()
	var out []serverOp
	for rows.Next() {
		var o serverOp
		var result string
		if err := rows.Scan(&o.Rowid, &o.ID, &o.Device, &o.Seq, &o.Prev, &o.Type, &o.Entity, &o.Kind, &o.Status, &result, &o.ChangeSeq); err != nil {
			t.Fatalf("read op log: %v", err)
		}
		if err := json.Unmarshal([]byte(result), &o.Result); err != nil {
			t.Fatalf("op %s: recorded result: %v", o.ID, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read op log: %v", err)
	}
	return out
}

// oracle checks what must hold once a device has synced everything it
// has, whatever faults happened on the way.
type oracle struct {
	t     *testing.T
	fails int
}

func (o *oracle) errorf(format string, args ...any) {
	o.t.Helper()
	o.fails++
	if o.fails <= 25 {
		o.t.Errorf(format, args...)
	} else if o.fails == 26 {
		o.t.Errorf("more violations left out")
	}
}

// deviceStatusOf is the device status an op must end in for the result
// the server recorded.
var deviceStatusOf = map[string]string{
	string(fieldsync.StatusApplied):  client.OpDelivered,
	string(fieldsync.StatusConflict): client.OpConflict,
	string(fieldsync.StatusRejected): client.OpError,
}

// checkExactlyOnce proves, for device e against the server store st:
//   - every op the user was told was saved (saved) is in the outbox and on
//     the server exactly once, and the device's sequence numbers are
//     unique and grew in the order Save returned them;
//   - the server has no op of this device that the device does not know,
//     with the same sequence number, record and kind;
//   - nothing is left queued or sending, and each op's device status is
//     the one the server's recorded result calls for; Status counts match;
//   - the device's ops on each record were decided in device order (the
//     op log's order on the record equals the outbox's);
//   - every record's version counts the changes recorded for it once, and
//     every applied append is in its list exactly once;
//   - when sole is true (the device is the only writer of its records),
//     each record equals the replay of the device's ops in device order.
func checkExactlyOnce(ctx context.Context, t *testing.T, st *sqlite.Store, e *client.Engine, saved []savedOp, sole bool) {
	t.Helper()
	o := &oracle{t: t}
	device := e.DeviceID()
	dev, err := e.Ops(ctx, "", 1<<30)
	if err != nil {
		t.Fatalf("device ops: %v", err)
	}
	srvOps := readServerOps(ctx, t, st.DB(), device)
	allOps := readServerOps(ctx, t, st.DB(), "")

	// The device's own record of its ops.
	devByID := map[string]client.OpInfo{}
	for i, op := range dev {
		if _, dup := devByID[op.ID]; dup {
			o.errorf("op %s is twice in the outbox", op.ID)
		}
		devByID[op.ID] = op
		if i > 0 && op.Seq <= dev[i-1].Seq {
			o.errorf("outbox seqs not increasing: %d after %d", op.Seq, dev[i-1].Seq)
		}
		if op.Status == client.OpQueued || op.Status == client.OpSending {
			o.errorf("op %s (seq %d) is still %s", op.ID, op.Seq, op.Status)
		}
	}
	// Saved: unique ids, seqs increasing in the order Save returned.
	seenSaved := map[string]bool{}
	for i, s := range saved {
		if seenSaved[s.ID] {
			o.errorf("op %s was reported saved twice", s.ID)
		}
		seenSaved[s.ID] = true
		if i > 0 && s.Seq <= saved[i-1].Seq {
			o.errorf("saved op %s has seq %d after seq %d: a sequence number went back or was reused", s.ID, s.Seq, saved[i-1].Seq)
		}
		d, ok := devByID[s.ID]
		if !ok {
			o.errorf("saved op %s (seq %d) is not in the outbox: lost", s.ID, s.Seq)
			continue
		}
		if d.Seq != s.Seq || d.EntityID != s.Entity || d.Kind != s.Kind {
			o.errorf("saved op %s was seq %d %s on %s, the outbox has seq %d %s on %s", s.ID, s.Seq, s.Kind, s.Entity, d.Seq, d.Kind, d.EntityID)
		}
	}

	// The server's op log against the outbox.
	srvByID := map[string]serverOp{}
	bySeq := map[int64]string{}
	for _, so := range srvOps {
		if _, dup := srvByID[so.ID]; dup {
			o.errorf("op %s is twice in the op log", so.ID)
		}
		srvByID[so.ID] = so
		if other, dup := bySeq[so.Seq]; dup {
			o.errorf("seq %d of the device is in the op log twice: %s and %s", so.Seq, other, so.ID)
		}
		bySeq[so.Seq] = so.ID
		d, ok := devByID[so.ID]
		if !ok {
			o.errorf("the server has op %s (seq %d) of this device that the device does not know", so.ID, so.Seq)
			continue
		}
		if d.Seq != so.Seq || d.EntityID != so.Entity || d.Type != so.Type || d.Kind != so.Kind {
			o.errorf("op %s: server has seq %d %s %s/%s, device seq %d %s %s/%s", so.ID, so.Seq, so.Kind, so.Type, so.Entity,
				d.Seq, d.Kind, d.Type, d.EntityID)
		}
	}
	status, err := e.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	want := map[string]int{}
	for _, d := range dev {
		so, ok := srvByID[d.ID]
		if !ok {
			// A discarded op is never sent again: a server restored from
			// a backup taken before it was refused does not have it.
			lostDiscard := d.Status == client.OpDiscarded && status.Resynced != ""
			if d.Status != client.OpQueued && d.Status != client.OpSending && !lostDiscard {
				o.errorf("op %s (seq %d) is %s on the device but not on the server", d.ID, d.Seq, d.Status)
			}
			want[d.Status]++
			continue
		}
		ws := deviceStatusOf[so.Status]
		if so.Status == string(fieldsync.StatusRejected) && d.Status == client.OpDiscarded {
			ws = client.OpDiscarded
		}
		if ws == "" {
			o.errorf("op %s: the server recorded status %q", d.ID, so.Status)
		}
		if d.Status != ws {
			o.errorf("op %s (seq %d): server recorded %s, device says %s", d.ID, d.Seq, so.Status, d.Status)
		}
		if so.Status == string(fieldsync.StatusApplied) && d.Version != so.Result.Version {
			o.errorf("op %s: server recorded version %d, device stored %d", d.ID, so.Result.Version, d.Version)
		}
		want[ws]++
	}
	for _, s := range saved {
		if _, ok := srvByID[s.ID]; !ok && devByID[s.ID].Status != client.OpDiscarded {
			o.errorf("saved op %s (seq %d, %s) never reached the server", s.ID, s.Seq, s.Kind)
		}
	}

	// Status counts: what the device shows is the outbox's truth.
	got := map[string]int{}
	for k, v := range status.Counts {
		if v != 0 {
			got[k] = v
		}
	}
	if !maps.Equal(got, want) {
		o.errorf("Status().Counts = %v, the server's results say %v", got, want)
	}
	if status.Pending() != 0 {
		o.errorf("Status().Pending() = %d after a full sync", status.Pending())
	}

	// Order per record, and the effect of each op exactly once.
	type recKey struct{ typ, id string }
	devOn := map[recKey][]client.OpInfo{}
	for _, d := range dev {
		k := recKey{d.Type, d.EntityID}
		devOn[k] = append(devOn[k], d)
	}
	srvOn := map[recKey][]serverOp{}
	for _, so := range srvOps {
		k := recKey{so.Type, so.Entity}
		srvOn[k] = append(srvOn[k], so)
	}
	changesOn := map[recKey]int64{}
	for _, so := range allOps {
		if so.ChangeSeq > 0 {
			changesOn[recKey{so.Type, so.Entity}]++
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(devOn), func(a, b recKey) int { return strings.Compare(a.id, b.id) }) {
		var devIDs, srvIDs []string
		for _, d := range devOn[k] {
			if _, ok := srvByID[d.ID]; ok {
				devIDs = append(devIDs, d.ID)
			}
		}
		for i, so := range srvOn[k] {
			srvIDs = append(srvIDs, so.ID)
			if i > 0 && so.Seq <= srvOn[k][i-1].Seq {
				o.errorf("%s/%s: the server decided seq %d after seq %d: out of device order", k.typ, k.id, so.Seq, srvOn[k][i-1].Seq)
			}
		}
		if !slices.Equal(devIDs, srvIDs) {
			o.errorf("%s/%s: the server decided the device's ops in the order %v, the device made them in the order %v", k.typ, k.id, srvIDs, devIDs)
		}

		rec, err := st.Record(ctx, k.typ, k.id)
		if err != nil {
			if fieldsync.ErrorCode(err) == fieldsync.ENotFound && changesOn[k] == 0 {
				continue // its create was rejected: no record
			}
			o.errorf("%s/%s: %v", k.typ, k.id, err)
			continue
		}
		// A photo whose bytes arrive after its attach op was applied moves
		// the record's version once more, when it is marked ready.
		if extra := int64(len(rec.Attachments)); rec.Version < changesOn[k] || rec.Version > changesOn[k]+extra {
			o.errorf("%s/%s is at version %d, but the op log records %d changes to it (and it has %d attachments)", k.typ, k.id, rec.Version, changesOn[k], extra)
		}
		o.checkAppends(rec, srvOn[k])
		if sole {
			o.checkReplay(rec, devOn[k], srvByID)
			// Synced, nothing pending, nobody else writing: the device
			// shows the server's record.
			v, err := e.Get(ctx, k.typ, k.id)
			if err != nil {
				o.errorf("device view of %s/%s: %v", k.typ, k.id, err)
			} else if v.Version != rec.Version || v.Pending != 0 || v.OnlyOnDevice || !sameFields(v.Fields, rec.Fields) {
				o.errorf("device view of %s/%s: version %d, %d pending, fields %s; server: version %d, fields %s",
					k.typ, k.id, v.Version, v.Pending, jsonText(v.Fields), rec.Version, jsonText(rec.Fields))
			}
		}
	}
}

// checkAppends proves that every applied append of the device is in its
// list field exactly once, and that no list holds an item twice.
func (o *oracle) checkAppends(rec fieldsync.Record, ops []serverOp) {
	o.t.Helper()
	count := map[string]map[string]int{} // field -> item id -> count
	for name, raw := range rec.Fields {
		var items []fieldsync.AppendItem
		if json.Unmarshal(raw, &items) != nil || len(items) == 0 || items[0].ID == "" {
			continue // not a list
		}
		count[name] = map[string]int{}
		for _, it := range items {
			count[name][it.ID]++
			if count[name][it.ID] > 1 {
				o.errorf("%s/%s.%s holds item %s %d times", rec.Type, rec.ID, name, it.ID, count[name][it.ID])
			}
		}
	}
	for _, so := range ops {
		if so.Kind != string(fieldsync.KindAppend) || so.Status != string(fieldsync.StatusApplied) {
			continue
		}
		found := false
		for name := range count {
			if count[name][so.ID] == 1 {
				found = true
			}
		}
		if !found {
			o.errorf("%s/%s: applied append %s is not in the record exactly once", rec.Type, rec.ID, so.ID)
		}
	}
}

// checkReplay compares a record with the replay of the device's applied
// ops on it, in device order: the state a single writer must see.
func (o *oracle) checkReplay(rec fieldsync.Record, ops []client.OpInfo, srv map[string]serverOp) {
	o.t.Helper()
	fields := map[string]any{}
	type item struct {
		ID    string
		Value any
	}
	lists := map[string][]item{}
	deleted := false
	for _, d := range ops {
		if so, ok := srv[d.ID]; !ok || so.Status != string(fieldsync.StatusApplied) {
			continue
		}
		switch fieldsync.OpKind(d.Kind) {
		case fieldsync.KindCreate, fieldsync.KindUpdate:
			for name, raw := range d.Fields {
				v := decodeAny(raw)
				if v == nil {
					delete(fields, name)
				} else {
					fields[name] = v
				}
			}
		case fieldsync.KindAppend:
			for name, raw := range d.Fields {
				lists[name] = append(lists[name], item{d.ID, decodeAny(raw)})
			}
		case fieldsync.KindDelete:
			deleted = true
		}
	}
	if rec.Deleted != deleted {
		o.errorf("%s/%s: deleted = %v, replay says %v", rec.Type, rec.ID, rec.Deleted, deleted)
	}
	for name, raw := range rec.Fields {
		if want, ok := lists[name]; ok {
			var items []fieldsync.AppendItem
			if err := json.Unmarshal(raw, &items); err != nil {
				o.errorf("%s/%s.%s: %v", rec.Type, rec.ID, name, err)
				continue
			}
			got := make([]item, len(items))
			for i, it := range items {
				got[i] = item{it.ID, decodeAny(it.Value)}
			}
			if !reflect.DeepEqual(got, want) {
				o.errorf("%s/%s.%s = %s, replay in device order gives %s", rec.Type, rec.ID, name, brief(got), brief(want))
			}
			continue
		}
		want, ok := fields[name]
		if !ok {
			o.errorf("%s/%s has field %s = %s that no applied op of the device set", rec.Type, rec.ID, name, raw)
			continue
		}
		if got := decodeAny(raw); !reflect.DeepEqual(got, want) {
			o.errorf("%s/%s.%s = %v, replay in device order gives %v", rec.Type, rec.ID, name, got, want)
		}
	}
	for name := range fields {
		if _, ok := rec.Fields[name]; !ok {
			o.errorf("%s/%s lacks field %s that the device set", rec.Type, rec.ID, name)
		}
	}
	for name := range lists {
		if _, ok := rec.Fields[name]; !ok {
			o.errorf("%s/%s lacks list %s that the device appended to", rec.Type, rec.ID, name)
		}
	}
}

func sameFields(a, b map[string]json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !reflect.DeepEqual(decodeAny(v), decodeAny(w)) {
			return false
		}
	}
	return true
}

func decodeAny(raw json.RawMessage) any {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "invalid JSON: " + string(raw)
	}
	return v
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return brief(string(b))
}

// checkViews proves that the device, freshly synced with nothing pending,
// shows every record of the server as the server has it.
func checkViews(ctx context.Context, t *testing.T, st *sqlite.Store, e *client.Engine) {
	t.Helper()
	recs, _, err := st.Changes(ctx, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		v, err := e.Get(ctx, rec.Type, rec.ID)
		if err != nil {
			t.Errorf("device %s: %s/%s: %v", e.DeviceID(), rec.Type, rec.ID, err)
			continue
		}
		if v.Version != rec.Version || v.Deleted != rec.Deleted || v.Pending != 0 || !sameFields(v.Fields, rec.Fields) {
			t.Errorf("device %s shows %s/%s at version %d with %s; the server has version %d with %s", e.DeviceID(),
				rec.Type, rec.ID, v.Version, jsonText(v.Fields), rec.Version, jsonText(rec.Fields))
		}
	}
}

func brief(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// serverOpCount returns how many ops of device the server's op log holds.
func serverOpCount(ctx context.Context, t *testing.T, db *sql.DB, device string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM ops WHERE device_id = ?`, device).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// trailOutcomes returns the outcomes of an op's trail, "created" first.
func trailOutcomes(ctx context.Context, t *testing.T, e *client.Engine, opID string) []string {
	t.Helper()
	_, trail, err := e.Op(ctx, opID)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(trail))
	for i, a := range trail {
		out[i] = a.Outcome
	}
	return out
}
