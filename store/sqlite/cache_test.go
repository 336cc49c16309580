package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
)

// TestRecordCacheMatchesDatabase writes random records (plain and odd
// field values, conflicts, attachments, times in other zones, empty and
// nil maps) and checks that what a write transaction's Record returns,
// from the cache or not, is exactly what reading the database gives, also
// after transactions that roll back and after writes from another
// connection.
func TestRecordCacheMatchesDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(codecSeed(t), 2))
	ids := []string{"a", "b", "c", "d"}
	values := []string{`"plain"`, `12`, `[1, 2]`, `{"a":"<b>"}`, `"é"`, `"x y"`, `null`, `true`}
	zone := time.FixedZone("east", 3*3600)
	random := func(id string, version int64) fieldsync.Record {
		r := fieldsync.Record{Type: "job", ID: id, Version: version, Number: "J-" + id,
			UpdatedAt: time.Date(2024, 1, 2, 3, 4, 5, rng.IntN(1e9), zone)}
		if rng.IntN(5) > 0 {
			r.Fields, r.Meta = map[string]json.RawMessage{}, map[string]fieldsync.FieldMeta{}
			for range rng.IntN(4) {
				name := "f" + strconv.Itoa(rng.IntN(5))
				r.Fields[name] = json.RawMessage(values[rng.IntN(len(values))])
				r.Meta[name] = fieldsync.FieldMeta{Version: version, By: "dev-" + strconv.Itoa(rng.IntN(3)), Seq: version, HLC: fieldsync.HLC(rng.Int64N(1 << 50)), OpID: "op"}
			}
		}
		if rng.IntN(4) == 0 {
			r.Review = []string{"f1"}
		}
		if rng.IntN(6) == 0 {
			r.Conflicts = []fieldsync.Conflict{{ID: "c1", Field: "f1", OpenedAt: time.Date(2024, 1, 2, 3, 4, 5, 6, zone),
				Server: fieldsync.ConflictValue{Value: json.RawMessage(`"s"`), By: "dev-1"},
				Theirs: []fieldsync.ConflictValue{{Value: json.RawMessage(`"t"`), By: "dev-2"}}}}
		}
		if rng.IntN(6) == 0 {
			r.Attachments = []fieldsync.Attachment{{ID: "att", SHA256: "ab", Size: 3, ContentType: "image/jpeg", Role: "photo", At: time.Date(2024, 1, 2, 3, 4, 5, 6, zone)}}
		}
		r.Deleted = rng.IntN(8) == 0
		return r
	}
	version := map[string]int64{}
	var n int64 // ops recorded
	check := func(step int) {
		t.Helper()
		err := st.Update(ctx, func(ftx fieldsync.StoreTx) error {
			for _, id := range ids {
				got, ok, err := ftx.Record("job", id)
				if err != nil {
					return err
				}
				want, werr := st.Record(ctx, "job", id)
				if !ok {
					if fieldsync.ErrorCode(werr) != fieldsync.ENotFound {
						return fmt.Errorf("step %d: record %s: not in the transaction, database: %v", step, id, werr)
					}
					continue
				}
				if werr != nil {
					return werr
				}
				if !reflect.DeepEqual(got, want) {
					return fmt.Errorf("step %d: record %s in a transaction:\n%#v\nin the database:\n%#v", step, id, got, want)
				}
				// What the caller does with its copy stays with it.
				got.Fields["scribble"] = json.RawMessage(`1`)
				got.Review = append(got.Review, "scribble")
			}
			return errors.New("read only")
		})
		if err == nil || err.Error() != "read only" {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	for step := range 400 {
		rollBack := rng.IntN(5) == 0
		changed := map[string]int64{}
		err := st.Update(ctx, func(ftx fieldsync.StoreTx) error {
			tx := ftx.(*tx)
			for range 1 + rng.IntN(6) {
				id := ids[rng.IntN(len(ids))]
				got, ok, err := tx.Record("job", id)
				if err != nil {
					return err
				}
				if ok && rng.IntN(2) == 0 {
					// What the caller does with the record it read stays
					// with it, whether it writes it back or not.
					got.Fields["scribble"] = json.RawMessage(`1`)
					got.Meta["scribble"] = fieldsync.FieldMeta{Version: 99}
					got.Review = append(got.Review, "scribble")
				}
				if rng.IntN(4) == 0 {
					continue // read, not written (a rejected op)
				}
				v := version[id] + 1
				if c, ok := changed[id]; ok {
					v = c + 1
				}
				r := random(id, v)
				put := tx.PutRecord
				if rng.IntN(2) == 0 {
					put = tx.PutRecordOwned // r is not touched again
				}
				if _, err := put(&r); err != nil {
					return err
				}
				changed[id] = v
				if rng.IntN(2) == 0 {
					// A rejected op moves the record's history along
					// without changing the record.
					other := ids[rng.IntN(len(ids))]
					n++
					if err := tx.RecordOp(fieldsync.OpEntry{Op: fieldsync.Op{
						ID: fmt.Sprintf("0190a6c4-1b2c-7d3e-8f40-%012x", n), DeviceID: "d", Seq: n,
						EntityType: "job", EntityID: other, Kind: fieldsync.KindUpdate,
					}, Result: fieldsync.Result{Status: fieldsync.StatusRejected}}); err != nil {
						return err
					}
				}
			}
			if rollBack {
				return errors.New("roll back")
			}
			return nil
		})
		if rollBack && (err == nil || err.Error() != "roll back") || !rollBack && err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if !rollBack {
			for id, v := range changed {
				version[id] = v
			}
		}
		if step%7 == 6 {
			// Another connection changes a record behind the store's back.
			id := ids[rng.IntN(len(ids))]
			if _, err := st.DB().ExecContext(ctx, `UPDATE records SET number = 'changed elsewhere' WHERE type = 'job' AND id = ?`, id); err != nil {
				t.Fatal(err)
			}
		}
		if rollBack || step%5 == 4 {
			// After a rollback, and now and then: reading a record takes
			// it out of the cache, and what is checked is a cache that
			// lived through several transactions.
			check(step)
		}
	}
	check(-1)
}

// TestRecordCacheRejectedOpThenRollBack: an op recorded on a cached record
// without changing it, then the record read and changed by the next op,
// then the transaction rolled back: the next transaction must see the
// record as committed, not the changed copy.
func TestRecordCacheRejectedOpThenRollBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec := fieldsync.Record{Type: "job", ID: "x", Version: 1, UpdatedAt: time.UnixMilli(1000).UTC(),
		Fields: map[string]json.RawMessage{"a": json.RawMessage(`1`)}, Meta: map[string]fieldsync.FieldMeta{}}
	if err := st.Update(ctx, func(ftx fieldsync.StoreTx) error { _, err := ftx.PutRecord(&rec); return err }); err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(ftx fieldsync.StoreTx) error {
		if err := ftx.RecordOp(fieldsync.OpEntry{Op: fieldsync.Op{ID: "0190a6c4-1b2c-7d3e-8f40-000000000001", DeviceID: "d", Seq: 1, EntityType: "job", EntityID: "x", Kind: "update"}, Result: fieldsync.Result{Status: "rejected"}}); err != nil {
			return err
		}
		got, _, err := ftx.Record("job", "x")
		if err != nil {
			return err
		}
		got.Fields["scribble"] = json.RawMessage(`2`)
		return errors.New("roll back")
	})
	if err == nil || err.Error() != "roll back" {
		t.Fatalf("update: %v", err)
	}
	var got fieldsync.Record
	if err := st.Update(ctx, func(ftx fieldsync.StoreTx) (err error) {
		got, _, err = ftx.Record("job", "x")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want, err := st.Record(ctx, "job", "x")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("after the rollback, a transaction reads\n%+v\nthe database holds\n%+v (%v)", got, want, err)
	}
}
