package e2e

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/protocol"
)

// TestServerRestoredFromBackup: the server's database is copied after
// some syncs, more syncs follow (with an op the server refuses, and later
// ops on the same record), then the copy is put back (the server restarts
// on the old file). The device notices (cursor_invalid, then
// Report.Resynced and Status().Resynced), sends again what the restored
// server lost, and every op ends on the server exactly once. In the
// second case the refused op was discarded, and the restored server has
// moved on past the device's cursor with other changes, so only the tag
// of the change at the cursor tells the histories apart.
func TestServerRestoredFromBackup(t *testing.T) {
	for _, movedOn := range []bool{false, true} {
		name := "behind the cursor"
		if movedOn {
			name = "moved on past the cursor"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ts := newTestServer(t)
			e := openEngine(t, engineConfig(t.TempDir(), ts.URL))
			w := newWorkload(rand.New(rand.NewPCG(7, 1)), 4, 0.5)
			more := func(n int) []savedOp {
				s, err := w.make(ctx, e, n)
				mustNoErr(t, err)
				return s
			}

			saved := more(25)
			syncUntilDone(ctx, t, e)
			backup := filepath.Join(t.TempDir(), "backup.db")
			if _, err := ts.Store.DB().ExecContext(ctx, `VACUUM INTO ?`, backup); err != nil {
				t.Fatalf("backup: %v", err)
			}
			saved = append(saved, more(15)...)
			// An op the server refuses, then more ops on the same record:
			// they name the refused op as their predecessor.
			bad, err := e.Update(ctx, workOrder, w.records[0], map[string]any{"status": "banana"})
			mustNoErr(t, err)
			saved = append(saved, savedOp{ID: bad.ID, Seq: bad.Seq, Entity: bad.EntityID, Kind: string(bad.Kind)})
			saved = append(saved, more(14)...)
			syncUntilDone(ctx, t, e)
			if op, _, err := e.Op(ctx, bad.ID); err != nil || op.Status != client.OpError {
				t.Fatalf("the refused op is %s (%v), want %s", op.Status, err, client.OpError)
			}
			if movedOn {
				mustNoErr(t, e.Discard(ctx, bad.ID))
			}
			lost := serverOpCount(ctx, t, ts.Store.DB(), e.DeviceID()) - 25

			// Restore: stop the server, put the copy in place of its file,
			// start a server on it.
			mustNoErr(t, ts.Store.Close())
			for _, suffix := range []string{"", "-wal", "-shm"} {
				if err := os.Remove(ts.Path + suffix); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(backup)
			mustNoErr(t, err)
			mustNoErr(t, os.WriteFile(ts.Path, data, 0o600))
			ts.open(t)
			if n := serverOpCount(ctx, t, ts.Store.DB(), e.DeviceID()); n != 25 {
				t.Fatalf("the restored server has %d ops of the device, want 25", n)
			}
			if movedOn {
				st, err := e.Status(ctx)
				mustNoErr(t, err)
				cur, err := protocol.ParseCursor(st.Cursor)
				mustNoErr(t, err)
				_, maxSeq, err := ts.Store.Changes(ctx, 0, 1)
				mustNoErr(t, err)
				for i := maxSeq; i <= cur.Seq; i++ {
					_, _, err := ts.Server.Create(ctx, workOrder, map[string]json.RawMessage{"title": json.RawMessage(`"Office order"`)})
					mustNoErr(t, err)
				}
			}
			// Ops made after the restore, before the device learns of it:
			// some depend on ops the restored server lost.
			saved = append(saved, more(10)...)

			var resynced bool
			for ctx.Err() == nil {
				rep, err := e.Sync(ctx)
				resynced = resynced || rep.Resynced
				if err == nil {
					break
				}
				t.Logf("sync: %v", err)
			}
			if !resynced {
				t.Fatalf("no sync reported a resync after the restore")
			}
			var noticed bool
			for _, ex := range ts.Proxy.Exchanges() {
				if ex.Path == protocol.PathChanges && ex.Status == http.StatusConflict {
					noticed = protocol.DecodeErrorBody(ex.Status, ex.ResponseBody).Code == fieldsync.ECursorInvalid
				}
			}
			if !noticed {
				t.Errorf("the server never answered %s to the device's cursor", fieldsync.ECursorInvalid)
			}
			syncUntilDone(ctx, t, e)
			st, err := e.Status(ctx)
			mustNoErr(t, err)
			if st.Resynced == "" {
				t.Errorf("Status().Resynced is empty after a resync")
			}
			t.Logf("the restored server had lost %d ops; Status().Resynced = %q", lost, st.Resynced)
			checkExactlyOnce(ctx, t, ts.Store, e, saved, true)

			// The device's view is the restored server's state again.
			for _, id := range w.records {
				v, err := e.Get(ctx, workOrder, id)
				mustNoErr(t, err)
				rec, err := ts.Store.Record(ctx, workOrder, id)
				mustNoErr(t, err)
				state := client.RecordSent
				if id == bad.EntityID && !movedOn {
					state = client.RecordError // refused again, and not discarded
				}
				if v.Version != rec.Version || v.State != state || !jsonEqual(v.Fields, rec.Fields) {
					t.Errorf("device view of %s: version %d state %s; server version %d", id, v.Version, v.State, rec.Version)
				}
			}
		})
	}
}
