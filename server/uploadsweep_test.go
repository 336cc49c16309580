package server_test

import (
	"context"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/server"
)

// age makes the files of the upload at urlPath look untouched for d.
func (b *blobEnv) age(t *testing.T, urlPath string, d time.Duration) {
	t.Helper()
	id := path.Base(urlPath)
	old := time.Now().Add(-d)
	for _, name := range []string{id, id + ".info"} {
		if err := os.Chtimes(filepath.Join(b.dir, "uploads", name), old, old); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAbandonedUploadsAreRemoved: an upload left half done and untouched
// for longer than the expiry is removed (the device asking for it gets
// 404 and starts again); a recent one is kept and still completes. The
// server looks by itself when an upload is created, at most hourly.
func TestAbandonedUploadsAreRemoved(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	b := newBlobEnv(t, server.Config{UploadExpiry: 48 * time.Hour, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	rng := testRand(t)

	oldData, oldSHA := jpegFile(rng, 300<<10)
	abandoned := b.mustCreate(t, oldData, oldSHA)
	if r := b.patch(t, abandoned, 0, oldData[:100<<10]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	newData, newSHA := jpegFile(rng, 300<<10)
	recent := b.mustCreate(t, newData, newSHA)
	if r := b.patch(t, recent, 0, newData[:100<<10]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	b.age(t, abandoned, 72*time.Hour)
	b.age(t, recent, 24*time.Hour)

	n, err := b.srv.SweepUploads(ctx)
	if err != nil || n != 1 {
		t.Fatalf("sweep: removed %d, %v; want the one abandoned upload", n, err)
	}
	if files := b.uploadFiles(t); !slices.Contains(files, path.Base(recent)) || slices.Contains(files, path.Base(abandoned)) ||
		slices.Contains(files, path.Base(abandoned)+".info") {
		t.Fatalf("uploads left: %v", files)
	}
	if r := b.request(t, http.MethodHead, abandoned, tusHeaders(nil), nil); r.status != http.StatusNotFound {
		t.Fatalf("HEAD of the removed upload: %d, want 404 so that the device starts again", r.status)
	}
	if got := b.offset(t, recent); got != 100<<10 {
		t.Fatalf("the recent upload holds %d bytes, want %d", got, 100<<10)
	}
	if r := b.patch(t, recent, 100<<10, newData[100<<10:]); r.status != http.StatusNoContent {
		t.Fatalf("finishing the recent upload: %d %s", r.status, r.body)
	}

	// Left alone again, a third upload ages past the expiry. Creating
	// an upload within the hour does not look; two hours later it does.
	third, thirdSHA := jpegFile(rng, 200<<10)
	left := b.mustCreate(t, third, thirdSHA)
	b.age(t, left, 72*time.Hour)
	another, anotherSHA := jpegFile(rng, 200<<10)
	b.mustCreate(t, another, anotherSHA)
	if !slices.Contains(b.uploadFiles(t), path.Base(left)) {
		t.Fatal("an upload was swept less than an hour after the last sweep")
	}
	clock.Add(int64(2 * time.Hour))
	b.mustCreate(t, another, anotherSHA)
	if slices.Contains(b.uploadFiles(t), path.Base(left)) {
		t.Fatal("creating an upload two hours after the last sweep did not remove the abandoned one")
	}
}

// TestUploadExpiryNegativeKeepsEverything: a negative expiry turns the
// sweep off.
func TestUploadExpiryNegativeKeepsEverything(t *testing.T) {
	b := newBlobEnv(t, server.Config{UploadExpiry: -1})
	data, sha := jpegFile(testRand(t), 100<<10)
	p := b.mustCreate(t, data, sha)
	b.age(t, p, 365*24*time.Hour)
	if n, err := b.srv.SweepUploads(context.Background()); err != nil || n != 0 {
		t.Fatalf("sweep with the expiry off: removed %d, %v", n, err)
	}
	if !slices.Contains(b.uploadFiles(t), path.Base(p)) {
		t.Fatal("the upload is gone with the expiry off")
	}
}
