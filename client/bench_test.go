package client_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/internal/cputime"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

var benchStatuses = []string{"assigned", "in progress", "waiting for parts", "completed on site"}

// benchServer is a real server on a SQLite file behind loopback HTTP.
func benchServer(b *testing.B) (*server.Server, string) {
	b.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "server.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	srv, err := server.New(server.Config{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	b.Cleanup(hs.Close)
	return srv, hs.URL
}

func benchEngine(b *testing.B, url string) *client.Engine {
	b.Helper()
	e, err := client.Open(context.Background(), client.Config{Dir: b.TempDir(), ServerURL: url})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

// BenchmarkSave times one user action (a status update of an existing
// record) durably committed through the engine: the local save latency.
func BenchmarkSave(b *testing.B) {
	ctx := context.Background()
	e := benchEngine(b, "")
	ids := make([]string, 50)
	for i := range ids {
		op, err := e.Create(ctx, "work_order", map[string]any{"title": "Boiler " + strconv.Itoa(i), "status": "new"})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = op.EntityID
	}
	i := 0
	for b.Loop() {
		status := benchStatuses[(i/len(ids))%len(benchStatuses)]
		if _, err := e.Update(ctx, "work_order", ids[i%len(ids)], map[string]any{"status": status}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkPush times the push of a backlog of b.N ops (nine status
// updates for one appended comment, over 1000 records) from a device to a
// server over loopback HTTP. Building the backlog is not timed.
// cpu-µs/op is the process's CPU time (device and server both, and the
// pull of the changed records that ends the sync) per op.
func BenchmarkPush(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, url := benchServer(b)
	e := benchEngine(b, url)
	nrec := min(max(b.N/10, 1), 1000)
	ids := make([]string, nrec)
	for i := range ids {
		op, err := e.Create(ctx, "work_order", map[string]any{"title": "Boiler " + strconv.Itoa(i), "status": "new"})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = op.EntityID
	}
	if _, err := e.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	for i := range b.N {
		var err error
		if i%10 == 9 {
			_, err = e.Append(ctx, "work_order", ids[i%nrec], "comments", "checked valve "+strconv.Itoa(i))
		} else {
			_, err = e.Update(ctx, "work_order", ids[i%nrec], map[string]any{"status": benchStatuses[(i/nrec)%len(benchStatuses)]})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var cpu cputime.Meter
	cpu.Start()
	rep, err := e.Sync(ctx)
	cpu.Stop()
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if rep.Delivered != b.N {
		b.Fatalf("%d of %d ops delivered: %+v", rep.Delivered, b.N, rep)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(cpu.PerOp(b.N), "cpu-µs/op")
}

// BenchmarkPull times the pull of 10,000 records into a fresh device.
func BenchmarkPull(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	srv, url := benchServer(b)
	const records = 10000
	now := time.Now().UTC()
	for done := 0; done < records; done += 1000 {
		ops := make([]fieldsync.Op, 1000)
		for i := range ops {
			n := strconv.Itoa(done + i + 1)
			ops[i] = fieldsync.Op{
				ID: uuid.Must(uuid.NewV7()).String(), DeviceID: "seed", Seq: int64(done + i + 1),
				EntityType: "work_order", EntityID: uuid.Must(uuid.NewV7()).String(), Kind: fieldsync.KindCreate,
				Fields: map[string]json.RawMessage{
					"title":       json.RawMessage(`"Boiler ` + n + `"`),
					"status":      json.RawMessage(`"assigned"`),
					"address":     json.RawMessage(`"12 Harbour Road, Unit ` + n + `"`),
					"description": json.RawMessage(`"Annual service: check pressure, flue and valves."`),
				},
				LocalTime: now,
			}
		}
		if _, err := srv.Apply(ctx, ops); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var cpu cputime.Meter
	for range b.N {
		b.StopTimer()
		e, err := client.Open(ctx, client.Config{Dir: b.TempDir(), ServerURL: url})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu.Start()
		rep, err := e.Sync(ctx)
		cpu.Stop()
		b.StopTimer()
		e.Close()
		if err != nil {
			b.Fatal(err)
		}
		if rep.Pulled != records {
			b.Fatalf("pulled %d of %d records", rep.Pulled, records)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(records*b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(cpu.PerOp(records*b.N), "cpu-µs/record")
}
