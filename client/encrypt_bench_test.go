package client_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

// BenchmarkSaveAtRest is BenchmarkSave on a plain device and on one
// encrypted with a PIN: the cost of encryption on the hot path.
func BenchmarkSaveAtRest(b *testing.B) {
	for _, pin := range []string{"", "2468"} {
		name := "plain"
		if pin != "" {
			name = "pin"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			e, err := client.Open(ctx, client.Config{Dir: b.TempDir(), PIN: pin})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
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
		})
	}
}

// BenchmarkUnlock times opening an encrypted device with its PIN at the
// default key-derivation costs (3 passes, 64 MiB, 2 lanes): what a
// person waits for after typing the PIN.
func BenchmarkUnlock(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	e, err := client.Open(ctx, client.Config{Dir: dir, PIN: "2468"})
	if err != nil {
		b.Fatal(err)
	}
	e.Close()
	for b.Loop() {
		e, err := client.Open(ctx, client.Config{Dir: dir, PIN: "2468"})
		if err != nil {
			b.Fatal(err)
		}
		e.Close()
	}
}

// BenchmarkSyncUploadAtRest is BenchmarkSyncUpload20Photos on a plain
// device and on an encrypted one, where each file is decrypted as it is
// sent (and checked against its hash on the server).
func BenchmarkSyncUploadAtRest(b *testing.B) {
	for _, pin := range []string{"", "2468"} {
		name := "plain"
		if pin != "" {
			name = "pin"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			bs := newBlobServer(b)
			cfg := client.Config{Dir: b.TempDir(), ServerURL: bs.URL, RequestTimeout: time.Minute, PIN: pin}
			cfg.Photo.Quality = 100
			e, err := client.Open(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			op, err := e.Create(ctx, "work_order", map[string]any{"title": "Bench", "status": "new"})
			if err != nil {
				b.Fatal(err)
			}
			var sent int64
			round := uint32(0)
			for b.Loop() {
				b.StopTimer()
				for range 20 {
					round++
					photo := testJPEG(b, 1200, 900, round)
					if _, _, err := e.Attach(ctx, "work_order", op.EntityID, client.AttachInput{Role: fieldsync.RolePhoto, Data: bytes.NewReader(photo)}); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				rep, err := e.Sync(ctx)
				if err != nil || rep.Uploaded != 20 {
					b.Fatalf("%+v, %v", rep, err)
				}
				sent += rep.BytesSent
			}
			b.ReportMetric(float64(sent)/b.Elapsed().Seconds()/1e6, "MB/s")
		})
	}
}
