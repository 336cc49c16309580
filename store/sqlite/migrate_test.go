package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/internal/sqlitedb"
	"github.com/fieldsync/fieldsync/protocol"
)

// migrationsUpTo returns the embedded migrations numbered up to version.
func migrationsUpTo(t *testing.T, version int) fs.FS {
	t.Helper()
	sub, _ := fs.Sub(migrations, "migrations")
	names, err := fs.Glob(sub, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	out := fstest.MapFS{}
	for _, name := range names {
		var n int
		if _, err := fmt.Sscanf(name, "%04d_", &n); err != nil {
			t.Fatalf("migration %s: %v", name, err)
		}
		if n > version {
			continue
		}
		data, err := fs.ReadFile(sub, name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = &fstest.MapFile{Data: data}
	}
	return out
}

// oldOp is an op as the layout before 0004_oplog wrote it.
type oldOp struct {
	entry  fieldsync.OpEntry
	status string
}

// oldOps makes the op log of a small store in the old layout: ops on
// records that exist and on records that never did, from devices and the
// office, with every kind of result, an id that is not a UUID, and a
// record's ops interleaved with others'.
func oldOps() []oldOp {
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	var out []oldOp
	seqs := map[string]int64{}
	add := func(device, typ, id string, kind fieldsync.OpKind, res fieldsync.Result, changeSeq int64) {
		seqs[device]++
		n := len(out) + 1
		opID := fmt.Sprintf("0190a6c4-1b2c-7d3e-8f40-%012x", 0xabc000+n)
		if n == 7 {
			opID = "op-from-an-old-tool-7"
		}
		res.OpID = opID
		out = append(out, oldOp{
			entry: fieldsync.OpEntry{
				Op: fieldsync.Op{
					ID: opID, DeviceID: device, Seq: seqs[device], PrevSeq: max(seqs[device]-2, 0),
					EntityType: typ, EntityID: id, Kind: kind, BaseVersion: int64(n % 3),
					Fields:    map[string]json.RawMessage{"status": json.RawMessage(fmt.Sprintf(`"s%d"`, n))},
					LocalTime: at.Add(time.Duration(n) * time.Second),
				},
				Result:     res,
				ReceivedAt: at.Add(time.Duration(n) * time.Minute),
				ChangeSeq:  changeSeq,
			},
			status: string(res.Status),
		})
	}
	applied := func(v int64) fieldsync.Result {
		return fieldsync.Result{Status: fieldsync.StatusApplied, Version: v, Number: fmt.Sprintf("WO-%d", 1000+v)}
	}
	add("dev-a", "work_order", "r1", fieldsync.KindCreate, applied(1), 1)
	add("dev-b", "work_order", "r2", fieldsync.KindCreate, applied(1), 2)
	add("dev-a", "work_order", "r1", fieldsync.KindUpdate, applied(2), 3)
	add("dev-b", "work_order", "gone", fieldsync.KindUpdate, fieldsync.Result{
		Status: fieldsync.StatusRejected, Code: fieldsync.ERecordMissing, Message: "the server has no work_order gone",
	}, 0)
	add("office", "work_order", "r2", fieldsync.KindUpdate, applied(2), 4)
	add("dev-a", "work_order", "r1", fieldsync.KindUpdate, fieldsync.Result{
		Status: fieldsync.StatusConflict, Version: 3, Code: fieldsync.EFieldConflict, Message: "status: needs review",
		Conflicts: []fieldsync.FieldConflict{{Field: "status", ServerValue: json.RawMessage(`"x"`), DeviceValue: json.RawMessage(`"y"`), ServerVersion: 2, ServerBy: "dev-b"}},
	}, 5)
	add("dev-b", "work_order", "r1", fieldsync.KindUpdate, fieldsync.Result{
		Status: fieldsync.StatusApplied, Version: 4,
		Overridden: []fieldsync.Overridden{{Field: "status", Value: json.RawMessage(`"z"`), By: "dev-a", Policy: "server-wins"}},
	}, 6)
	add("dev-a", "work_order", "gone", fieldsync.KindAppend, fieldsync.Result{
		Status: fieldsync.StatusRejected, Code: fieldsync.ERecordMissing, Message: "again",
	}, 0)
	add("dev-c", "job", "r1", fieldsync.KindCreate, applied(1), 7)
	add("dev-a", "work_order", "r2", fieldsync.KindDelete, applied(3), 8)
	return out
}

// dumpOps returns the rows of the ops table (or view) as text, in row order.
func dumpOps(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT rowid, op_id, device_id, seq, prev_seq, entity_type, entity_id, kind, base_version,
		fields, local_time, received_at, status, result, change_seq FROM ops ORDER BY rowid`)
	if err != nil {
		t.Fatalf("dump ops: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals := make([]any, 15)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatalf("dump ops: %v", err)
		}
		out = append(out, fmt.Sprintf("%v", vals))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrateOpLog makes a store in the layout before 0004_oplog, with
// data, and checks that the migration keeps every op, its result, each
// record's history and the uniqueness rules; that the store goes on
// working; and that the way down gives back the old table as it was.
func TestMigrateOpLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "server.db")
	db, err := sqlitedb.Open(ctx, path, migrationsUpTo(t, 2), sqlitedb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		typ, id string
		seq     int64
	}{{"work_order", "r1", 6}, {"work_order", "r2", 8}, {"job", "r1", 7}} {
		if _, err := db.Exec(`INSERT INTO records (type, id, version, fields, meta, seq, updated_at) VALUES (?, ?, 1, '{}', '{}', ?, 0)`,
			r.typ, r.id, r.seq); err != nil {
			t.Fatal(err)
		}
	}
	ops := oldOps()
	for _, o := range ops {
		e := o.entry
		w := protocol.FromResult(&e.Result)
		result, _ := json.Marshal(&w)
		fields, _ := json.Marshal(e.Op.Fields)
		if _, err := db.Exec(`INSERT INTO ops (op_id, device_id, seq, prev_seq, entity_type, entity_id, kind, base_version,
			fields, local_time, received_at, status, result, change_seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			e.Op.ID, e.Op.DeviceID, e.Op.Seq, e.Op.PrevSeq, e.Op.EntityType, e.Op.EntityID, string(e.Op.Kind), e.Op.BaseVersion,
			string(fields), e.Op.LocalTime.UnixMilli(), e.ReceivedAt.UnixMilli(), o.status, string(result), e.ChangeSeq); err != nil {
			t.Fatal(err)
		}
	}
	before := dumpOps(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	st, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	defer func() { st.Close() }()
	if got := dumpOps(t, st.DB()); !slices.Equal(got, before) {
		t.Fatalf("the ops view after the migration:\n%s\nwant the old table:\n%s", strings.Join(got, "\n"), strings.Join(before, "\n"))
	}
	checkMigrated(ctx, t, st, ops, nil)

	// The migrated log goes on: lookups inside a transaction, and new ops
	// join the histories they belong to.
	dup, reused, gone := ops[2].entry, ops[3].entry, ops[3].entry
	err = st.Update(ctx, func(ftx fieldsync.StoreTx) error {
		t := ftx.(*tx)
		recorded, _, _, err := t.CheckOp(dup.Op.ID, "dev-x", 1, 0)
		if err != nil || recorded == nil || !reflect.DeepEqual(*recorded, roundTrip(dup.Result)) {
			return fmt.Errorf("CheckOp of recorded op %s: %+v, %v", dup.Op.ID, recorded, err)
		}
		_, holder, prevFound, err := t.CheckOp("0190a6c4-1b2c-7d3e-8f40-ffffffffffff", reused.Op.DeviceID, reused.Op.Seq, 1)
		if err != nil || holder != reused.Op.ID || !prevFound {
			return fmt.Errorf("CheckOp of a used sequence number: holder %q, prev found %v, %v", holder, prevFound, err)
		}
		if _, _, prevFound, err := t.CheckOp("0190a6c4-1b2c-7d3e-8f40-fffffffffffe", "dev-a", 99, 98); err != nil || prevFound {
			return fmt.Errorf("CheckOp of a missing previous op: found %v, %v", prevFound, err)
		}
		if e, ok, err := t.OpByDeviceSeq("dev-c", 1); err != nil || !ok || e.Op.ID != ops[8].entry.Op.ID {
			return fmt.Errorf("OpByDeviceSeq(dev-c, 1) = %s, %v, %v", e.Op.ID, ok, err)
		}
		if e, ok, err := t.OpByID(ops[6].entry.Op.ID); err != nil || !ok || e.Op.ID != ops[6].entry.Op.ID {
			return fmt.Errorf("OpByID(%s) = %s, %v, %v", ops[6].entry.Op.ID, e.Op.ID, ok, err)
		}
		rec, ok, err := t.Record("work_order", "r1")
		if err != nil || !ok {
			return fmt.Errorf("record r1: %v, %v", ok, err)
		}
		rec.Version++
		seq, err := t.PutRecord(&rec)
		if err != nil {
			return err
		}
		next := dup
		next.Op.ID, next.Result.OpID, next.Op.Seq, next.ChangeSeq = "0190a6c4-1b2c-7d3e-8f40-000000fff001", "0190a6c4-1b2c-7d3e-8f40-000000fff001", 50, seq
		if err := t.RecordOp(next); err != nil {
			return err
		}
		more := gone
		more.Op.ID, more.Result.OpID, more.Op.Seq = "0190a6c4-1b2c-7d3e-8f40-000000fff002", "0190a6c4-1b2c-7d3e-8f40-000000fff002", 51
		return t.RecordOp(more)
	})
	if err != nil {
		t.Fatal(err)
	}
	hist := func(typ, id string) []string {
		es, err := st.RecordOps(ctx, typ, id)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range es {
			ids = append(ids, e.Op.ID)
		}
		return ids
	}
	if got, want := hist("work_order", "r1"), []string{ops[0].entry.Op.ID, ops[2].entry.Op.ID, ops[5].entry.Op.ID, ops[6].entry.Op.ID, "0190a6c4-1b2c-7d3e-8f40-000000fff001"}; !slices.Equal(got, want) {
		t.Errorf("history of r1 after a new op: %v, want %v", got, want)
	}
	if got, want := hist("work_order", "gone"), []string{ops[3].entry.Op.ID, ops[7].entry.Op.ID, "0190a6c4-1b2c-7d3e-8f40-000000fff002"}; !slices.Equal(got, want) {
		t.Errorf("history of a record that never existed after a new op: %v, want %v", got, want)
	}

	// Down to the old layout: the same table, the two new ops added.
	sub, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectSQLite3, st.DB(), sub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 2); err != nil {
		t.Fatalf("migrate down: %v", err)
	}
	after := dumpOps(t, st.DB())
	if len(after) != len(before)+2 || !slices.Equal(after[:len(before)], before) {
		t.Fatalf("ops after the way down:\n%s\nwant the old table and two more:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	var n int
	if err := st.DB().QueryRow(`SELECT count(*) FROM pragma_table_info('records') WHERE name = 'last_op'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("records.last_op after the way down: %d, %v", n, err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("migrate up again: %v", err)
	}
	checkMigrated(ctx, t, st, ops, map[[2]string][]string{
		{"work_order", "r1"}:   {"0190a6c4-1b2c-7d3e-8f40-000000fff001"},
		{"work_order", "gone"}: {"0190a6c4-1b2c-7d3e-8f40-000000fff002"},
	})
}

// roundTrip is a result as the store gives it back: through its wire form.
func roundTrip(r fieldsync.Result) fieldsync.Result {
	w := protocol.FromResult(&r)
	return protocol.ToResult(&w)
}

// checkMigrated checks every op of ops through the store's API: the entry
// by id, each record's history (ops, then the ids in later), and the
// change tags.
func checkMigrated(ctx context.Context, t *testing.T, st *Store, ops []oldOp, later map[[2]string][]string) {
	t.Helper()
	history := map[[2]string][]string{}
	for _, o := range ops {
		want := o.entry
		want.Result = roundTrip(want.Result)
		got, err := st.OpEntry(ctx, want.Op.ID)
		if err != nil {
			t.Fatalf("op %s after the migration: %v", want.Op.ID, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("op %s after the migration:\n got %+v\nwant %+v", want.Op.ID, got, want)
		}
		k := [2]string{want.Op.EntityType, want.Op.EntityID}
		history[k] = append(history[k], want.Op.ID)
		if want.ChangeSeq > 0 {
			tag, ok, err := st.ChangeTag(ctx, want.ChangeSeq)
			if err != nil || !ok || tag != fieldsync.ChangeTag(want.Op.ID) {
				t.Errorf("change tag of %d: %q, %v, %v; want %q", want.ChangeSeq, tag, ok, err, fieldsync.ChangeTag(want.Op.ID))
			}
		}
	}
	for k, ids := range later {
		history[k] = append(history[k], ids...)
	}
	for k, want := range history {
		es, err := st.RecordOps(ctx, k[0], k[1])
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range es {
			got = append(got, e.Op.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("history of %s/%s after the migration: %v, want %v", k[0], k[1], got, want)
		}
	}
}
