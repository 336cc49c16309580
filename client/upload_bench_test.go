package client_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

// BenchmarkSyncUpload20Photos times the sync that uploads 20 photos of
// about 2 MB each (prepared at full quality) to a server on loopback:
// the attach ops, then the bytes, each file verified by the server.
// Preparing the photos is not timed.
func BenchmarkSyncUpload20Photos(b *testing.B) {
	ctx := context.Background()
	bs := newBlobServer(b)
	cfg := client.Config{Dir: b.TempDir(), ServerURL: bs.URL, RequestTimeout: time.Minute}
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
	var bytesSent int64
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
		bytesSent += rep.BytesSent
	}
	b.ReportMetric(float64(bytesSent)/float64(b.N)/1e6, "MB/op")
}
