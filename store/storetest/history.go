package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
)

// historySeed returns the seed of a randomised test: FIELDSYNC_SEED when
// set, else a new one; it is logged so a failure can be replayed.
func historySeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FIELDSYNC_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FIELDSYNC_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with FIELDSYNC_SEED=%d)", seed, seed)
	return seed
}

var errRollBack = errors.New("roll back on purpose")

// testRecordHistory drives a store with random transactions mixing what
// the server does: an op that changes its record (Record, PutRecord,
// RecordOp), an op recorded without a change (rejected, or on a record
// that does not exist yet), a record written with no op, a record written
// and then an op of another record, and transactions rolled back. After
// each one, RecordOps of every record must be exactly its committed ops in
// the order they were recorded, whatever the record's state was when each
// op came.
func testRecordHistory(t *testing.T, s *suite) {
	st := s.open(t)
	rng := rand.New(rand.NewPCG(historySeed(t), 7))
	type key struct{ typ, id string }
	keys := []key{{"job", "a"}, {"job", "b"}, {"job", "c"}, {"other", "a"}, {"job", "never"}}
	history := map[key][]string{} // committed
	version := map[key]int64{}    // committed
	n, seqs := 0, map[string]int64{}
	newEntry := func(k key) fieldsync.OpEntry {
		n++
		dev := "dev-" + strconv.Itoa(rng.IntN(3))
		seqs[dev]++
		e := entry(n, dev, seqs[dev], k.typ, k.id, 0)
		if rng.IntN(8) == 0 {
			// Ids that are not UUIDs are kept as they are.
			e.Op.ID = fmt.Sprintf("legacy-%d", n)
			e.Result.OpID = e.Op.ID
		}
		return e
	}
	check := func(step int) {
		t.Helper()
		for _, k := range keys {
			ops, err := st.RecordOps(ctx(t), k.typ, k.id)
			if err != nil {
				t.Fatalf("step %d: RecordOps %v: %v", step, k, err)
			}
			var ids []string
			for _, e := range ops {
				if e.Op.EntityType != k.typ || e.Op.EntityID != k.id {
					t.Fatalf("step %d: RecordOps %v returned op %s of %s/%s", step, k, e.Op.ID, e.Op.EntityType, e.Op.EntityID)
				}
				ids = append(ids, e.Op.ID)
			}
			if want := history[k]; !slices.Equal(ids, want) {
				t.Fatalf("step %d: RecordOps %v = %v, want %v", step, k, ids, want)
			}
		}
	}
	for step := range 60 {
		txHistory := map[key][]string{}
		txVersion := map[key]int64{}
		var did []string
		rollBack := rng.IntN(6) == 0
		err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
			ver := func(k key) int64 {
				if v, ok := txVersion[k]; ok {
					return v
				}
				return version[k]
			}
			write := func(k key) error {
				rec := record(k.typ, k.id, ver(k)+1, map[string]string{"status": strconv.Quote("s" + strconv.Itoa(step))})
				if _, err := tx.PutRecord(&rec); err != nil {
					return err
				}
				txVersion[k] = rec.Version
				return nil
			}
			recordOp := func(k key, changeSeq int64) error {
				e := newEntry(k)
				e.ChangeSeq = changeSeq
				if err := tx.RecordOp(e); err != nil {
					return err
				}
				txHistory[k] = append(txHistory[k], e.Op.ID)
				return nil
			}
			for range 1 + rng.IntN(8) {
				k := keys[rng.IntN(len(keys)-1)] // the last record is never written
				var err error
				switch a := rng.IntN(10); {
				case a < 5: // an op that changes its record
					did = append(did, "change "+k.id)
					var rec fieldsync.Record
					var ok bool
					if rec, ok, err = tx.Record(k.typ, k.id); err == nil && ok != (ver(k) > 0) || ok && rec.Version != ver(k) {
						return fmt.Errorf("step %d: Record %v = version %d, %v; want version %d", step, k, rec.Version, ok, ver(k))
					}
					if err == nil {
						if err = write(k); err == nil {
							err = recordOp(k, 0)
						}
					}
				case a < 7: // an op recorded without a change
					k = keys[rng.IntN(len(keys))]
					did = append(did, "no change "+k.id)
					if rng.IntN(2) == 0 {
						_, _, err = tx.Record(k.typ, k.id)
					}
					if err == nil {
						err = recordOp(k, 0)
					}
				case a < 8: // a record written with no op
					did = append(did, "write "+k.id)
					err = write(k)
				default: // a record written, then an op of another record
					other := keys[rng.IntN(len(keys))]
					did = append(did, "write "+k.id+", op of "+other.id)
					if err = write(k); err == nil {
						err = recordOp(other, 0)
					}
				}
				if err != nil {
					return err
				}
			}
			if rollBack {
				return errRollBack
			}
			return nil
		})
		if rollBack {
			if !errors.Is(err, errRollBack) {
				t.Fatalf("step %d: rolled back transaction: %v", step, err)
			}
		} else {
			if err != nil {
				t.Fatalf("step %d (%s): %v", step, strings.Join(did, "; "), err)
			}
			for k, ids := range txHistory {
				history[k] = append(history[k], ids...)
			}
			for k, v := range txVersion {
				version[k] = v
			}
		}
		check(step)
		if s.reopen != nil && step%20 == 19 {
			st = s.reopen(t, st)
			check(step)
		}
	}
	// Every op is still found by its id.
	for k, ids := range history {
		for _, id := range ids {
			e, err := st.OpEntry(ctx(t), id)
			if err != nil || e.Op.ID != id || e.Op.EntityType != k.typ || e.Op.EntityID != k.id {
				t.Fatalf("OpEntry(%s) = %s %s/%s, %v", id, e.Op.ID, e.Op.EntityType, e.Op.EntityID, err)
			}
		}
	}
}
