package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/internal/tusclient"
	"github.com/fieldsync/fieldsync/protocol"
)

const workOrderType = "work_order"

// attachPhotos creates a record on e and attaches n photos to it.
func attachPhotos(ctx context.Context, t *testing.T, e *client.Engine, n int, seed uint32) (string, []fieldsync.Attachment) {
	t.Helper()
	op, err := e.Create(ctx, workOrderType, map[string]any{"title": "Substation", "status": "new"})
	if err != nil {
		t.Fatal(err)
	}
	var atts []fieldsync.Attachment
	for i := range n {
		a, _, err := e.Attach(ctx, workOrderType, op.EntityID, client.AttachInput{Role: fieldsync.RolePhoto,
			Name: fmt.Sprintf("photo-%d.jpg", i+1), Data: bytes.NewReader(testPhoto(t, 1200+100*i, 900, seed+uint32(i)))})
		if err != nil {
			t.Fatal(err)
		}
		atts = append(atts, a)
	}
	return op.EntityID, atts
}

func patches(recs []StreamRecord) []StreamRecord {
	var out []StreamRecord
	for _, r := range recs {
		if r.Method == http.MethodPatch {
			out = append(out, r)
		}
	}
	return out
}

// TestAttachUploadCutAtRandom cuts uploads at random byte offsets, many
// times in one run. Every photo ends on the server whole and verified,
// and after each cut the upload goes on from at least where the cut
// chunk began: what is sent again is at most that one chunk.
func TestAttachUploadCutAtRandom(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 7))
	var rngMu sync.Mutex
	injected := 0 // cuts injected so far
	as := newAttachServer(t)
	e := openEngine(t, attachEngineConfig(t.TempDir(), as.URL))
	_, atts := attachPhotos(ctx, t, e, 6, uint32(seed))
	var total int64
	for _, a := range atts {
		total += a.Size
	}
	as.Proxy.SetRule(func(r *http.Request, n int) StreamFault {
		if r.Method != http.MethodPatch || r.ContentLength <= 0 {
			return StreamFault{}
		}
		rngMu.Lock()
		defer rngMu.Unlock()
		// The first chunks are all cut, so that however large the
		// chunks grow there are cuts enough; then one in two.
		if injected >= 8 && rng.IntN(2) == 0 {
			return StreamFault{}
		}
		injected++
		return StreamFault{Kind: StreamCut, At: rng.Int64N(r.ContentLength)}
	})
	start := time.Now()
	sent, syncs := syncUploads(ctx, t, e)
	took := time.Since(start)
	as.checkBlobs(ctx, t, e, atts)

	ps := patches(as.Proxy.Records())
	cuts, biggest := 0, int64(0)
	var resentAtProxy int64
	sizes := map[int64]int{}
	for i, p := range ps {
		biggest = max(biggest, p.Length)
		sizes[p.Length]++
		if p.Fault != StreamCut {
			continue
		}
		cuts++
		// The next PATCH of the same upload starts within the cut chunk,
		// at or after its start, and not past what reached the server.
		j := slices.IndexFunc(ps[i+1:], func(q StreamRecord) bool { return q.Path == p.Path })
		if j < 0 {
			t.Fatalf("no PATCH after the cut of %s at offset %d", p.Path, p.Offset)
		}
		next := ps[i+1+j]
		if next.Offset < p.Offset || next.Offset > p.Offset+p.Received {
			t.Fatalf("after a cut of the chunk at %d (%d of %d bytes through), the upload went on from %d",
				p.Offset, p.Received, p.Length, next.Offset)
		}
		resentAtProxy += p.Offset + p.Received - next.Offset
	}
	if cuts < 8 {
		t.Fatalf("only %d cuts: the test tested little", cuts)
	}
	wasted := sent - total
	if wasted > int64(cuts)*biggest {
		t.Fatalf("%d cuts wasted %d bytes: more than one chunk (%d) each", cuts, wasted, biggest)
	}
	var chunkSizes []string
	for _, s := range slices.Sorted(func(yield func(int64) bool) {
		for s := range sizes {
			if !yield(s) {
				return
			}
		}
	}) {
		if s >= tusclient.DefaultMinChunk {
			chunkSizes = append(chunkSizes, fmt.Sprintf("%dK×%d", s>>10, sizes[s]))
		}
	}
	t.Logf("%d photos, %s in all; %d PATCHes, %d cuts, %d syncs, %s", len(atts), client.FormatBytes(total), len(ps), cuts, syncs, took.Round(time.Millisecond))
	t.Logf("re-sent by the device: %d bytes (%.0f per cut, biggest chunk %d); lost at the proxy: %d bytes", wasted,
		float64(wasted)/float64(cuts), biggest, resentAtProxy)
	t.Logf("chunk sizes (whole chunks): %s", strings.Join(chunkSizes, " "))
}

// TestAttachUploadCorrupted flips a byte of an upload on its way: the
// server's hash check refuses the finished bytes (460), the device finds
// its file intact and sends it again from zero, and the blob ends
// verified.
func TestAttachUploadCorrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 8))
	as := newAttachServer(t)
	e := openEngine(t, attachEngineConfig(t.TempDir(), as.URL))
	_, atts := attachPhotos(ctx, t, e, 1, uint32(seed))
	var once sync.Once
	as.Proxy.SetRule(func(r *http.Request, n int) StreamFault {
		f := StreamFault{}
		if r.Method == http.MethodPatch && r.ContentLength > 0 {
			once.Do(func() { f = StreamFault{Kind: StreamFlip, At: rng.Int64N(r.ContentLength)} })
		}
		return f
	})
	sent, _ := syncUploads(ctx, t, e)
	as.checkBlobs(ctx, t, e, atts)
	recs := as.Proxy.Records()
	refused := slices.IndexFunc(recs, func(r StreamRecord) bool { return r.Status == protocol.StatusChecksumMismatch })
	if refused < 0 {
		t.Fatal("the server never refused the damaged bytes")
	}
	again := slices.IndexFunc(recs[refused:], func(r StreamRecord) bool { return r.Method == http.MethodPost })
	if again < 0 {
		t.Fatal("no new upload after the refusal")
	}
	if sent < 2*atts[0].Size {
		t.Fatalf("sent %d bytes of a %d-byte file: it was not sent again whole", sent, atts[0].Size)
	}
	st, _ := e.Status(ctx)
	if len(st.Storage.Failed) != 0 || st.Storage.Pending != 0 {
		t.Fatalf("storage %+v", st.Storage)
	}
	t.Logf("flipped a byte; %d bytes sent for a %d-byte file", sent, atts[0].Size)
}

// TestHelperAttachClient is not a test: it is the client process of
// TestAttachClientKilledMidUpload, started with helperEnv=attachclient.
// It syncs the device in $FIELDSYNC_E2E_DIR with $FIELDSYNC_E2E_URL until
// every attachment is uploaded, then prints "UPLOADED <bytes sent>".
func TestHelperAttachClient(t *testing.T) {
	if os.Getenv(helperEnv) != "attachclient" {
		return
	}
	if err := runAttachClientHelper(); err != nil {
		fmt.Fprintln(os.Stderr, "attach client helper:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func runAttachClientHelper() error {
	ctx, cancel := context.WithTimeout(context.Background(), helperLife)
	defer cancel()
	e, err := client.Open(ctx, attachEngineConfig(os.Getenv(dirEnv), os.Getenv(urlEnv)))
	if err != nil {
		return err
	}
	defer e.Close()
	var sent int64
	for {
		rep, err := e.Sync(ctx)
		sent += rep.BytesSent
		if err == nil && rep.UploadsLeft == 0 {
			fmt.Fprintf(os.Stdout, "UPLOADED %d\n", sent)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(os.Stdout, "RETRY %v\n", err)
	}
}

// TestAttachClientKilledMidUpload kills the client process with SIGKILL
// in the middle of a chunk, then starts it again: it asks the server
// where the upload stands and goes on from there, not from zero and not
// from the offset it had noted itself, and sends only the rest.
func TestAttachClientKilledMidUpload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	as := newAttachServer(t)
	dir := t.TempDir()
	e := openEngine(t, attachEngineConfig(dir, as.URL))
	_, atts := attachPhotos(ctx, t, e, 1, 99)
	size := atts[0].Size
	e.Close()

	held, release := make(chan struct{}), make(chan struct{})
	const heldPatch = 3
	as.Proxy.SetRule(func(r *http.Request, n int) StreamFault {
		if r.Method == http.MethodPatch && n == heldPatch {
			return StreamFault{Kind: StreamHold, At: r.ContentLength / 2, Held: held, Release: release}
		}
		return StreamFault{}
	})
	p := startProc(t, "AttachClient", dirEnv+"="+dir, urlEnv+"="+as.URL)
	select {
	case <-held:
	case <-p.done:
		t.Fatalf("the client ended before its upload was held: %s", p.stderr.String())
	case <-ctx.Done():
		t.Fatal("the upload never reached its third chunk")
	}
	p.killAndWait()
	if ok, why := p.diedBySIGKILL(); !ok {
		t.Fatalf("the client did not die by SIGKILL: %s", why)
	}
	close(release)
	cut, err := as.Proxy.WaitRecord(ctx, func(r StreamRecord) bool { return r.Method == http.MethodPatch && r.N == heldPatch })
	if err != nil {
		t.Fatal(err)
	}
	onServer := as.uploadOffset(ctx, t, cut.Path)
	if onServer <= cut.Offset || onServer > cut.Offset+cut.Received {
		t.Fatalf("the server holds %d bytes; the cut chunk began at %d and %d of it went through", onServer, cut.Offset, cut.Received)
	}
	killedAt := len(as.Proxy.Records())

	as.Proxy.SetRule(nil)
	p2 := startProc(t, "AttachClient", dirEnv+"="+dir, urlEnv+"="+as.URL)
	var sent int64 = -1
	for sent < 0 {
		select {
		case l, ok := <-p2.lines:
			if !ok {
				<-p2.done
				t.Fatalf("the restarted client ended without uploading: %s", p2.stderr.String())
			}
			if v, found := strings.CutPrefix(l, "UPLOADED "); found {
				sent, _ = strconv.ParseInt(v, 10, 64)
			}
		case <-ctx.Done():
			t.Fatal("the restarted client did not finish in time")
		}
	}
	after := patches(as.Proxy.Records()[killedAt:])
	if len(after) == 0 || after[0].Path != cut.Path || after[0].Offset != onServer {
		t.Fatalf("after the restart the first PATCH was %+v; want %s from the server's offset %d", after, cut.Path, onServer)
	}
	if sent != size-onServer {
		t.Fatalf("the restarted client sent %d bytes; the rest was %d", sent, size-onServer)
	}
	e2 := openEngine(t, attachEngineConfig(dir, as.URL))
	as.checkBlobs(ctx, t, e2, atts)
	t.Logf("killed in the chunk at %d (noted by the device); the server had %d of %d bytes; the restarted client sent the other %d",
		cut.Offset, onServer, size, sent)
}

// TestAttachStorageFull fills the device's store: text saves go on, the
// photo that does not fit is refused with the reason and leaves nothing,
// and everything saved before and after is delivered, photos included.
func TestAttachStorageFull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	as := newAttachServer(t)
	dir := t.TempDir()
	e := openEngine(t, attachEngineConfig(dir, as.URL))
	op, err := e.Create(ctx, workOrderType, map[string]any{"title": "Pump", "status": "new"})
	if err != nil {
		t.Fatal(err)
	}
	id := op.EntityID
	saved := []string{op.ID}
	photos := [][]byte{testPhoto(t, 1000, 800, 1), testPhoto(t, 1000, 800, 2), testPhoto(t, 1000, 800, 3)}
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	// Room for two photos and their thumbnails, not three: a device with
	// nothing to send measures what one takes.
	probe := openEngine(t, attachEngineConfig(t.TempDir(), ""))
	probeID, _ := attachPhotos(ctx, t, probe, 0, 0)
	if _, _, err := probe.Attach(ctx, workOrderType, probeID, client.AttachInput{Role: fieldsync.RolePhoto, Data: bytes.NewReader(photos[0])}); err != nil {
		t.Fatal(err)
	}
	ps, _ := probe.Storage(ctx)
	one := ps.Originals + ps.Thumbnails
	cfg := attachEngineConfig(dir, as.URL)
	cfg.Limits.MaxStoreBytes = st.Storage.Total() + 2*one + one/2
	e = openEngine(t, cfg)
	comment := func(s string) {
		t.Helper()
		op, err := e.Append(ctx, workOrderType, id, "comments", s)
		if err != nil {
			t.Fatalf("text save with the store at %v: %v", cfg.Limits.MaxStoreBytes, err)
		}
		saved = append(saved, op.ID)
	}
	var atts []fieldsync.Attachment
	var refusal error
	for i, photo := range photos {
		comment(fmt.Sprintf("before photo %d", i+1))
		a, op, err := e.Attach(ctx, workOrderType, id, client.AttachInput{Role: fieldsync.RolePhoto, Data: bytes.NewReader(photo)})
		if err != nil {
			refusal = err
			break
		}
		atts = append(atts, a)
		saved = append(saved, op.ID)
	}
	if fieldsync.ErrorCode(refusal) != fieldsync.EStorageFull || len(atts) == 0 {
		t.Fatalf("after %d photos: %v; want storage_full", len(atts), refusal)
	}
	msg := fieldsync.ErrorMessage(refusal)
	for _, want := range []string{"full", "used of", "Text can still be saved"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("refusal %q does not say %q", msg, want)
		}
	}
	room, err := e.AttachRoom(ctx, workOrderType, id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		comment(fmt.Sprintf("after the refusal %d: %s", i, strings.Repeat("reading ok ", 20)))
	}
	if _, err := e.Update(ctx, workOrderType, id, map[string]any{"status": "in progress"}); err != nil {
		t.Fatal(err)
	}
	syncUploads(ctx, t, e)

	for _, id := range saved {
		entry, err := as.Store.OpEntry(ctx, id)
		if err != nil || entry.Result.Effective().Status != fieldsync.StatusApplied {
			t.Fatalf("op %s not applied on the server: %+v, %v", id, entry.Result, err)
		}
	}
	rec, err := as.Store.Record(ctx, workOrderType, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Attachments) != len(atts) {
		t.Fatalf("the server has %d attachments, the device attached %d", len(rec.Attachments), len(atts))
	}
	for _, a := range rec.Attachments {
		if a.Status != fieldsync.AttachmentReady {
			t.Fatalf("attachment %s is %s on the server", a.ID, a.Status)
		}
	}
	as.checkBlobs(ctx, t, e, atts)
	t.Logf("%d photos fitted, the next refused: %s (room before: %d bytes); %d ops delivered", len(atts), msg, room.MaxFile, len(saved)+1)
}
