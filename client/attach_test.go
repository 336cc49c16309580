package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/media"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// blobServer is a sync server with attachments enabled, on loopback. Its
// handler can be wrapped to inject faults into upload requests.
type blobServer struct {
	URL     string
	BlobDir string
	wrap    atomic.Pointer[func(w http.ResponseWriter, r *http.Request, next http.Handler)]
	patched atomic.Int64 // PATCH body bytes that reached the server
}

func newBlobServer(t testing.TB) *blobServer {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bs := &blobServer{BlobDir: filepath.Join(dir, "blobs")}
	srv, err := server.New(server.Config{Store: st, BlobDir: bs.BlobDir})
	if err != nil {
		t.Fatal(err)
	}
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			r.Body = &countingBody{ReadCloser: r.Body, n: &bs.patched}
		}
		srv.ServeHTTP(w, r)
	})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := bs.wrap.Load(); f != nil {
			(*f)(w, r, counted)
			return
		}
		counted.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	bs.URL = hs.URL
	return bs
}

// setWrap sets a fault on the server's requests; nil removes it.
func (bs *blobServer) setWrap(f func(w http.ResponseWriter, r *http.Request, next http.Handler)) {
	if f == nil {
		bs.wrap.Store(nil)
		return
	}
	bs.wrap.Store(&f)
}

// holds reports whether the server holds verified bytes of sha.
func (bs *blobServer) holds(t *testing.T, sha string) []byte {
	t.Helper()
	resp, err := http.Get(bs.URL + protocol.PathBlobs + sha)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// testJPEG is a w×h photo-like JPEG: a gradient with noise, so it does
// not compress to nothing.
func testJPEG(t testing.TB, w, h int, seed uint32) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	x := seed*2*2654435761 + 1
	for py := 0; py < h; py++ {
		for px := 0; px < w; px++ {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			m.Set(px, py, color.RGBA{uint8(px * 255 / w), uint8(py * 255 / h), uint8(x), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 92}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func attachConfig(dir, url string) client.Config {
	return client.Config{Dir: dir, ServerURL: url, BatchSize: 50, RequestTimeout: 10 * time.Second}
}

func openWith(t *testing.T, cfg client.Config) *client.Engine {
	t.Helper()
	e, err := client.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func newRecord(ctx context.Context, t *testing.T, e *client.Engine) string {
	t.Helper()
	op, err := e.Create(ctx, "work_order", map[string]any{"title": "Boiler", "status": "new"})
	if err != nil {
		t.Fatal(err)
	}
	return op.EntityID
}

func attachPhoto(ctx context.Context, t *testing.T, e *client.Engine, id string, photo []byte) fieldsync.Attachment {
	t.Helper()
	a, _, err := e.Attach(ctx, "work_order", id, client.AttachInput{Role: fieldsync.RolePhoto, Name: "boiler.jpg", Data: bytes.NewReader(photo)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func attachmentByID(t *testing.T, atts []fieldsync.Attachment, id string) fieldsync.Attachment {
	t.Helper()
	for _, a := range atts {
		if a.ID == id {
			return a
		}
	}
	t.Fatalf("attachment %s not in %+v", id, atts)
	return fieldsync.Attachment{}
}

func TestAttachPhotoSavedThenUploaded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	dir := t.TempDir()
	e := openWith(t, attachConfig(dir, bs.URL))
	id := newRecord(ctx, t, e)
	photo := testJPEG(t, 1600, 1200, 1)
	a, op, err := e.Attach(ctx, "work_order", id, client.AttachInput{Role: fieldsync.RolePhoto, Name: "boiler.jpg", Data: bytes.NewReader(photo)})
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != client.AttachmentOnDevice || a.ContentType != "image/jpeg" || a.Size == 0 || !fieldsync.ValidSHA256(a.SHA256) {
		t.Fatalf("attachment %+v", a)
	}
	// The op carries the attachment without the server's fields.
	if op.Kind != fieldsync.KindAttach || len(op.Fields) != 1 {
		t.Fatalf("op %+v", op)
	}
	var keys map[string]any
	json.Unmarshal(op.Fields[fieldsync.AttachField], &keys)
	for _, k := range []string{"status", "by", "at"} {
		if _, ok := keys[k]; ok {
			t.Fatalf("the op's attachment has %q: %s", k, op.Fields[fieldsync.AttachField])
		}
	}
	if got, err := protocol.DecodeAttachment(op.Fields[fieldsync.AttachField]); err != nil || got.ID != a.ID {
		t.Fatalf("the op's attachment does not decode: %v", err)
	}
	// The prepared bytes are on disk under their hash, with a thumbnail.
	lf, err := e.LocalFile(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(lf.Path)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != a.SHA256 || lf.Path != filepath.Join(dir, "attachments", a.SHA256[:2], a.SHA256[2:]) {
		t.Fatalf("file %s does not hold the attachment", lf.Path)
	}
	if _, err := os.Stat(lf.Thumbnail); err != nil || lf.Thumbnail == lf.Path {
		t.Fatalf("thumbnail %q: %v", lf.Thumbnail, err)
	}
	v, err := e.Get(ctx, "work_order", id)
	if err != nil {
		t.Fatal(err)
	}
	if got := attachmentByID(t, v.Attachments, a.ID); got.Status != client.AttachmentOnDevice || got.By != e.DeviceID() {
		t.Fatalf("view shows %+v", got)
	}
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Storage.Pending != 1 || st.Storage.Originals != a.Size || st.Storage.Thumbnails == 0 || st.Storage.Database == 0 {
		t.Fatalf("storage before sync %+v", st.Storage)
	}

	rep, err := e.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Uploaded != 1 || rep.BytesSent != a.Size || rep.UploadsLeft != 0 || rep.Delivered != 2 {
		t.Fatalf("report %+v", rep)
	}
	if got := bs.holds(t, a.SHA256); !bytes.Equal(got, data) {
		t.Fatal("the server does not hold the bytes")
	}
	v, _ = e.Get(ctx, "work_order", id)
	if got := attachmentByID(t, v.Attachments, a.ID); got.Status != fieldsync.AttachmentReady {
		t.Fatalf("after the upload the view shows %+v", got)
	}
	// The next pull brings the server's "ready".
	if _, err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	v, _ = e.Get(ctx, "work_order", id)
	if got := attachmentByID(t, v.Attachments, a.ID); got.Status != fieldsync.AttachmentReady || got.By != e.DeviceID() || v.State != client.RecordSent {
		t.Fatalf("after the pull the view shows %+v (%s)", got, v.State)
	}
	st, _ = e.Status(ctx)
	if st.Storage.Pending != 0 {
		t.Fatalf("storage after sync %+v", st.Storage)
	}
}

func TestAttachSignatureAndScan(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	e := openWith(t, attachConfig(t.TempDir(), bs.URL))
	id := newRecord(ctx, t, e)
	strokes := []media.Stroke{{{X: 10, Y: 10}, {X: 200, Y: 80}, {X: 300, Y: 20}}, {{X: 50, Y: 100}}}
	sig, _, err := e.Attach(ctx, "work_order", id, client.AttachInput{Role: fieldsync.RoleSignature, Strokes: strokes, Width: 400, Height: 150})
	if err != nil {
		t.Fatal(err)
	}
	if sig.ContentType != "image/png" {
		t.Fatalf("signature %+v", sig)
	}
	lf, err := e.LocalFile(ctx, sig.ID)
	if err != nil || lf.Thumbnail != lf.Path {
		t.Fatalf("a signature is its own thumbnail: %+v, %v", lf, err)
	}
	path := filepath.Join(t.TempDir(), "scan.jpg")
	os.WriteFile(path, testJPEG(t, 800, 1100, 2), 0o600)
	scan, _, err := e.Attach(ctx, "work_order", id, client.AttachInput{Role: fieldsync.RoleScan, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if scan.Name != "scan.jpg" {
		t.Fatalf("scan %+v", scan)
	}
	st, _ := e.Status(ctx)
	if st.Storage.Signatures != sig.Size || st.Storage.Originals != scan.Size {
		t.Fatalf("storage %+v", st.Storage)
	}
	// Bad inputs are refused with a code, and nothing is queued.
	before, _ := e.Ops(ctx, "", 0)
	for name, in := range map[string]client.AttachInput{
		"no role":           {Data: bytes.NewReader([]byte("x"))},
		"two sources":       {Role: fieldsync.RolePhoto, Data: bytes.NewReader([]byte("x")), Path: path},
		"not a picture":     {Role: fieldsync.RolePhoto, Data: strings.NewReader("hello, not a JPEG")},
		"strokes for photo": {Role: fieldsync.RolePhoto, Strokes: strokes, Width: 10, Height: 10},
		"empty signature":   {Role: fieldsync.RoleSignature, Strokes: []media.Stroke{}, Width: 10, Height: 10},
		"missing file":      {Role: fieldsync.RolePhoto, Path: filepath.Join(t.TempDir(), "none.jpg")},
	} {
		_, _, err := e.Attach(ctx, "work_order", id, in)
		var fe *fieldsync.Error
		if !errors.As(err, &fe) || fe.Message == "" {
			t.Errorf("%s: %v, want a *fieldsync.Error", name, err)
		}
	}
	if _, _, err := e.Attach(ctx, "work_order", "no-such-record", client.AttachInput{Role: fieldsync.RoleSignature, Strokes: strokes, Width: 400, Height: 150}); !client.ErrNotFound(err) {
		t.Errorf("attach to an unknown record: %v", err)
	}
	after, _ := e.Ops(ctx, "", 0)
	if len(after) != len(before) {
		t.Fatalf("refused attachments queued ops: %d → %d", len(before), len(after))
	}
	rep, err := e.Sync(ctx)
	if err != nil || rep.Uploaded != 2 {
		t.Fatalf("sync: %+v, %v", rep, err)
	}
}

// filesUnder lists the files under dir.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestAttachLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	photo := testJPEG(t, 1200, 900, 3)
	probe := openWith(t, client.Config{Dir: t.TempDir()})
	size := attachPhoto(ctx, t, probe, newRecord(ctx, t, probe), photo).Size

	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		e := openWith(t, client.Config{Dir: dir, Limits: client.Limits{MaxFileBytes: size - 1}})
		id := newRecord(ctx, t, e)
		room, err := e.AttachRoom(ctx, "work_order", id)
		if err != nil || room.MaxFile != size-1 || room.FileLimit != size-1 {
			t.Fatalf("room %+v, %v", room, err)
		}
		_, _, err = e.Attach(ctx, "work_order", id, client.AttachInput{Role: fieldsync.RolePhoto, Data: bytes.NewReader(photo)})
		if fieldsync.ErrorCode(err) != fieldsync.ETooLarge || !strings.Contains(fieldsync.ErrorMessage(err), "at most") {
			t.Fatalf("over the file limit: %v", err)
		}
		if f := filesUnder(t, filepath.Join(dir, "attachments")); len(f) != 0 {
			t.Fatalf("a refused attachment left files: %v", f)
		}
	})
	t.Run("record", func(t *testing.T) {
		e := openWith(t, client.Config{Dir: t.TempDir(), Limits: client.Limits{MaxRecordBytes: size + size/2}})
		id := newRecord(ctx, t, e)
		attachPhoto(ctx, t, e, id, photo)
		room, _ := e.AttachRoom(ctx, "work_order", id)
		if room.RecordUsed != size || room.MaxFile != size/2 {
			t.Fatalf("room %+v", room)
		}
		_, _, err := e.Attach(ctx, "work_order", id, client.AttachInput{Role: fieldsync.RolePhoto, Data: bytes.NewReader(testJPEG(t, 1200, 900, 4))})
		if fieldsync.ErrorCode(err) != fieldsync.ETooLarge || !strings.Contains(fieldsync.ErrorMessage(err), "per record") {
			t.Fatalf("over the record limit: %v", err)
		}
		// Another record has its own room.
		attachPhoto(ctx, t, e, newRecord(ctx, t, e), photo)
	})
	t.Run("store", func(t *testing.T) {
		dir := t.TempDir()
		e := openWith(t, client.Config{Dir: dir})
		id := newRecord(ctx, t, e)
		st, _ := e.Status(ctx)
		e.Close()
		// Room for one photo and its thumbnail, not two.
		limit := st.Storage.Total() + size + size/2
		e = openWith(t, client.Config{Dir: dir, Limits: client.Limits{MaxStoreBytes: limit}})
		first := attachPhoto(ctx, t, e, id, photo)
		files := filesUnder(t, dir)
		ops, _ := e.Ops(ctx, "", 0)
		_, _, err := e.Attach(ctx, "work_order", id, client.AttachInput{Role: fieldsync.RolePhoto, Data: bytes.NewReader(testJPEG(t, 1200, 900, 5))})
		if fieldsync.ErrorCode(err) != fieldsync.EStorageFull || !strings.Contains(fieldsync.ErrorMessage(err), "Text can still be saved") {
			t.Fatalf("over the store limit: %v", err)
		}
		t.Logf("refusal: %s", fieldsync.ErrorMessage(err))
		if got := filesUnder(t, dir); len(got) != len(files) {
			t.Fatalf("a refused attachment left files: %v → %v", files, got)
		}
		if after, _ := e.Ops(ctx, "", 0); len(after) != len(ops) {
			t.Fatal("a refused attachment queued an op")
		}
		// Text still saves, however full the store.
		for i := range 20 {
			if _, err := e.Append(ctx, "work_order", id, "comments", strings.Repeat("note ", 6000)+string(rune('a'+i%26))); err != nil {
				t.Fatalf("text save with a full store: %v", err)
			}
		}
		room, _ := e.AttachRoom(ctx, "work_order", id)
		if room.MaxFile != 0 || !strings.Contains(room.Reason, "full") {
			t.Fatalf("room with a full store: %+v", room)
		}
		// The store is over its limit after the text: refused at once.
		if _, _, err := e.Attach(ctx, "work_order", id, client.AttachInput{Role: fieldsync.RolePhoto, Data: bytes.NewReader(photo)}); fieldsync.ErrorCode(err) != fieldsync.EStorageFull {
			t.Fatalf("attach with the store over its limit: %v", err)
		}
		v, _ := e.Get(ctx, "work_order", id)
		if len(v.Attachments) != 1 || v.Attachments[0].ID != first.ID {
			t.Fatalf("attachments %+v", v.Attachments)
		}
	})
}

// TestOpenRemovesOrphans: files left by an attach that stopped before
// its commit, and temporary files, are removed at Open; files an
// attachment names stay.
func TestOpenRemovesOrphans(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	e := openWith(t, client.Config{Dir: dir})
	a := attachPhoto(ctx, t, e, newRecord(ctx, t, e), testJPEG(t, 640, 480, 6))
	e.Close()
	orphan := strings.Repeat("ab", 32)
	paths := []string{
		filepath.Join(dir, "attachments", orphan[:2], orphan[2:]),
		filepath.Join(dir, "thumbs", orphan[:2], orphan[2:]),
		filepath.Join(dir, "attachments", "cd", ".tmp-123"),
	}
	for _, p := range paths {
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte("half written"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	cfg := client.Config{Dir: dir, Logger: newTestLogger(&logs)}
	e = openWith(t, cfg)
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	if !strings.Contains(logs.String(), "no attachment names") {
		t.Errorf("no log line about the orphan: %s", logs.String())
	}
	lf, err := e.LocalFile(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{lf.Path, lf.Thumbnail} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("a named file was removed: %v", err)
		}
	}
}

func TestReclaimKeepsThumbnails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	cfg := attachConfig(t.TempDir(), bs.URL)
	cfg.Retention.KeepOriginalsFor = time.Nanosecond
	e := openWith(t, cfg)
	id := newRecord(ctx, t, e)
	sent := attachPhoto(ctx, t, e, id, testJPEG(t, 900, 700, 7))
	sig, _, err := e.Attach(ctx, "work_order", id, client.AttachInput{Role: fieldsync.RoleSignature,
		Strokes: []media.Stroke{{{X: 1, Y: 1}, {X: 90, Y: 40}}}, Width: 100, Height: 50})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	kept := attachPhoto(ctx, t, e, id, testJPEG(t, 900, 700, 8)) // not sent yet
	st, _ := e.Status(ctx)
	if st.Storage.Reclaimable != sent.Size {
		t.Fatalf("reclaimable %d, want %d", st.Storage.Reclaimable, sent.Size)
	}
	rep, err := e.Reclaim(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 1 || rep.Bytes != sent.Size {
		t.Fatalf("reclaim %+v", rep)
	}
	lf, _ := e.LocalFile(ctx, sent.ID)
	if lf.Path != "" {
		t.Fatalf("reclaimed original still named: %+v", lf)
	}
	if _, err := os.Stat(lf.Thumbnail); err != nil {
		t.Fatalf("thumbnail gone: %v", err)
	}
	for _, a := range []fieldsync.Attachment{kept, sig} {
		lf, _ := e.LocalFile(ctx, a.ID)
		if _, err := os.Stat(lf.Path); err != nil {
			t.Fatalf("%s original removed before it was safe or a signature removed: %v", a.Role, err)
		}
	}
	st2, _ := e.Status(ctx)
	if st2.Storage.Originals != st.Storage.Originals-sent.Size || st2.Storage.Reclaimable != 0 {
		t.Fatalf("storage after reclaim %+v (before %+v)", st2.Storage, st.Storage)
	}
	// Attaching the same bytes again brings the original back.
	if _, _, err := e.Attach(ctx, "work_order", id, client.AttachInput{Role: fieldsync.RolePhoto, Data: bytes.NewReader(testJPEG(t, 900, 700, 7))}); err != nil {
		t.Fatal(err)
	}
	if lf, _ := e.LocalFile(ctx, sent.ID); lf.Path == "" {
		t.Fatal("the original is not back")
	}
}

// cutPatches makes the server's link break after limit bytes of every
// PATCH body while on is set: the server keeps what it got, the client
// gets no answer.
func cutPatches(limit int64, on *atomic.Bool) func(w http.ResponseWriter, r *http.Request, next http.Handler) {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method != http.MethodPatch || !on.Load() {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = &cutBody{ReadCloser: r.Body, left: limit}
		next.ServeHTTP(&discardWriter{h: http.Header{}}, r)
		panic(http.ErrAbortHandler)
	}
}

type cutBody struct {
	io.ReadCloser
	left int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// TestUploadResumesAcrossSyncs: a link that breaks mid-chunk makes the
// sync fail; the next one, on a new engine (as after a restart), resumes
// from the server's offset.
func TestUploadResumesAcrossSyncs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	dir := t.TempDir()
	e := openWith(t, attachConfig(dir, bs.URL))
	id := newRecord(ctx, t, e)
	cfg := attachConfig(dir, bs.URL)
	cfg.Photo.Quality = 100 // a bigger file: several chunks
	e.Close()
	e = openWith(t, cfg)
	a := attachPhoto(ctx, t, e, id, testJPEG(t, 2000, 1500, 9))
	var on atomic.Bool
	on.Store(true)
	bs.setWrap(cutPatches(100<<10, &on))
	rep, err := e.Sync(ctx)
	if err == nil || !fieldsync.ErrorCode(err).Retryable() {
		t.Fatalf("sync over a broken link: %v", err)
	}
	if rep.BytesSent == 0 || rep.Uploaded != 0 || rep.UploadsLeft != 1 {
		t.Fatalf("report %+v", rep)
	}
	st, _ := e.Status(ctx)
	if st.Storage.Pending != 1 || !strings.Contains(st.LastError, "reach the server") {
		t.Fatalf("status after a failed upload: %+v, %q", st.Storage, st.LastError)
	}
	held := bs.patched.Load()
	e.Close()
	on.Store(false)
	e = openWith(t, cfg)
	before := bs.patched.Load()
	rep, err = e.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Uploaded != 1 || rep.BytesSent != a.Size-held {
		t.Fatalf("resumed upload %+v: want %d bytes sent (the server had %d of %d)", rep, a.Size-held, held, a.Size)
	}
	if got := bs.patched.Load() - before; got != a.Size-held {
		t.Fatalf("the server got %d more bytes, want %d", got, a.Size-held)
	}
	if bs.holds(t, a.SHA256) == nil {
		t.Fatal("not verified")
	}
}

// TestUploadDamagedInTransit: a byte flipped on the way makes the server
// refuse the bytes (460); the file on the device is intact, so it is sent
// again from zero and ends verified.
func TestUploadDamagedInTransit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	e := openWith(t, attachConfig(t.TempDir(), bs.URL))
	a := attachPhoto(ctx, t, e, newRecord(ctx, t, e), testJPEG(t, 800, 600, 10))
	var flipped atomic.Int64
	bs.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPatch && flipped.Add(1) == 1 {
			r.Body = &flipBody{ReadCloser: r.Body, at: 100}
		}
		next.ServeHTTP(w, r)
	})
	rep, err := e.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Uploaded != 1 || rep.BytesSent < 2*a.Size {
		t.Fatalf("report %+v: want the file sent twice (%d bytes)", rep, 2*a.Size)
	}
	lf, _ := e.LocalFile(ctx, a.ID)
	want, _ := os.ReadFile(lf.Path)
	if got := bs.holds(t, a.SHA256); !bytes.Equal(got, want) {
		t.Fatal("the server does not hold the right bytes")
	}
}

type flipBody struct {
	io.ReadCloser
	at, pos int64
}

func (b *flipBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.at >= b.pos && b.at < b.pos+int64(n) {
		p[b.at-b.pos] ^= 0xff
	}
	b.pos += int64(n)
	return n, err
}

// TestUploadDamagedOnDevice: a file damaged on the device is refused by
// the server's hash check; the device finds its own copy damaged and
// marks the attachment failed, with the reason in the status.
func TestUploadDamagedOnDevice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	e := openWith(t, attachConfig(t.TempDir(), bs.URL))
	id := newRecord(ctx, t, e)
	a := attachPhoto(ctx, t, e, id, testJPEG(t, 800, 600, 11))
	lf, _ := e.LocalFile(ctx, a.ID)
	data, _ := os.ReadFile(lf.Path)
	data[len(data)/2] ^= 1
	if err := os.WriteFile(lf.Path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := e.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Uploaded != 0 || rep.UploadsLeft != 0 {
		t.Fatalf("report %+v", rep)
	}
	st, _ := e.Status(ctx)
	if len(st.Storage.Failed) != 1 || st.Storage.Failed[0].ID != a.ID || !strings.Contains(st.Storage.Failed[0].LastError, "damaged") {
		t.Fatalf("failed %+v", st.Storage.Failed)
	}
	v, _ := e.Get(ctx, "work_order", id)
	if got := attachmentByID(t, v.Attachments, a.ID); got.Status != fieldsync.AttachmentUploading {
		t.Fatalf("the server has the op, not the bytes: %+v", got)
	}
	// The next sync does not try again.
	before := bs.patched.Load()
	if _, err := e.Sync(ctx); err != nil || bs.patched.Load() != before {
		t.Fatalf("a failed attachment was sent again: %v", err)
	}
}

// TestUploadYieldsToNewOps: an op saved while a photo uploads goes
// before the rest of the photo.
func TestUploadYieldsToNewOps(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	cfg := attachConfig(t.TempDir(), bs.URL)
	cfg.Photo.Quality = 100
	e := openWith(t, cfg)
	id := newRecord(ctx, t, e)
	a := attachPhoto(ctx, t, e, id, testJPEG(t, 2000, 1500, 12))
	var once sync.Once
	bs.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPatch {
			once.Do(func() {
				if _, err := e.Update(ctx, "work_order", id, map[string]any{"status": "in progress"}); err != nil {
					t.Error(err)
				}
			})
		}
		next.ServeHTTP(w, r)
	})
	rep, err := e.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Uploaded != 0 || rep.UploadsLeft != 1 || rep.BytesSent == 0 || rep.BytesSent >= a.Size {
		t.Fatalf("the upload did not stop for the new op: %+v", rep)
	}
	rep, err = e.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Delivered != 1 || rep.Uploaded != 1 {
		t.Fatalf("second sync %+v", rep)
	}
}

// TestUploadSkipsBytesTheServerHas: the same photo from a second device
// is not sent again.
func TestUploadSkipsBytesTheServerHas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	a := openWith(t, attachConfig(t.TempDir(), bs.URL))
	b := openWith(t, attachConfig(t.TempDir(), bs.URL))
	id := newRecord(ctx, t, a)
	if _, err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	photo := testJPEG(t, 800, 600, 13)
	attachPhoto(ctx, t, a, id, photo)
	if rep, err := a.Sync(ctx); err != nil || rep.Uploaded != 1 {
		t.Fatalf("%+v, %v", rep, err)
	}
	attachPhoto(ctx, t, b, id, photo)
	rep, err := b.Sync(ctx)
	if err != nil || rep.Uploaded != 1 || rep.BytesSent != 0 {
		t.Fatalf("second device: %+v, %v", rep, err)
	}
	v, _ := b.Get(ctx, "work_order", id)
	if len(v.Attachments) != 2 || v.Attachments[0].Status != fieldsync.AttachmentReady || v.Attachments[1].Status != fieldsync.AttachmentReady {
		t.Fatalf("attachments %+v", v.Attachments)
	}
}

// TestRunUploadsAndReclaims: the Run loop sends an attachment saved while
// it runs, and reclaims its original once the retention has passed.
func TestRunUploadsAndReclaims(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	cfg := attachConfig(t.TempDir(), bs.URL)
	cfg.Retention.KeepOriginalsFor = time.Nanosecond
	cfg.Interval, cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 5*time.Millisecond, 50*time.Millisecond
	e := openWith(t, cfg)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()
	id := newRecord(ctx, t, e)
	a := attachPhoto(ctx, t, e, id, testJPEG(t, 640, 480, 14))
	// With a retention this short, Run reclaims after every sync: the
	// original goes once the server holds it; the thumbnail stays.
	for {
		lf, err := e.LocalFile(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if lf.Path == "" {
			if _, err := os.Stat(lf.Thumbnail); err != nil {
				t.Fatalf("thumbnail gone: %v", err)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("Run did not upload and reclaim the attachment")
		case <-time.After(10 * time.Millisecond): // poll interval of a bounded wait
		}
	}
	if bs.holds(t, a.SHA256) == nil {
		t.Fatal("reclaimed an original the server does not hold")
	}
}

// TestUploadRefusedShowsInStatus: a server that keeps refusing a file
// does not stop the ops or the other files; after three attempts the
// status names the file, the attempts and the server's reason.
func TestUploadRefusedShowsInStatus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	e := openWith(t, attachConfig(t.TempDir(), bs.URL))
	id := newRecord(ctx, t, e)
	big := attachPhoto(ctx, t, e, id, testJPEG(t, 1200, 900, 15))
	small, _, err := e.Attach(ctx, "work_order", id, client.AttachInput{Role: fieldsync.RoleSignature,
		Strokes: []media.Stroke{{{X: 1, Y: 1}, {X: 90, Y: 40}}}, Width: 100, Height: 50})
	if err != nil {
		t.Fatal(err)
	}
	bs.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == protocol.PathFiles &&
			r.Header.Get("Upload-Length") == strconv.FormatInt(big.Size, 10) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			w.Write([]byte(`{"error":{"code":"too_large","message":"larger than this server takes"}}`))
			return
		}
		next.ServeHTTP(w, r)
	})
	for range 3 {
		rep, err := e.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.UploadsLeft != 1 {
			t.Fatalf("report %+v", rep)
		}
	}
	if bs.holds(t, small.SHA256) == nil {
		t.Fatal("the other file was not sent")
	}
	st, _ := e.Status(ctx)
	if st.Counts[client.OpDelivered] != 3 || len(st.Storage.Failing) != 1 {
		t.Fatalf("status %+v, storage %+v", st.Counts, st.Storage)
	}
	f := st.Storage.Failing[0]
	if f.ID != big.ID || f.Attempts != 3 || !strings.Contains(f.LastError, "413") || f.LastAttempt.IsZero() {
		t.Fatalf("failing %+v", f)
	}
}

// TestUploadAgainAfterServerRestore: a device that finds the server's
// history changed (restored from a backup, or replaced) checks the bytes
// it had sent again, and sends those the server no longer holds.
func TestUploadAgainAfterServerRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	old := newBlobServer(t)
	dir := t.TempDir()
	e := openWith(t, attachConfig(dir, old.URL))
	id := newRecord(ctx, t, e)
	a := attachPhoto(ctx, t, e, id, testJPEG(t, 800, 600, 16))
	if rep, err := e.Sync(ctx); err != nil || rep.Uploaded != 1 {
		t.Fatalf("%+v, %v", rep, err)
	}
	e.Close()
	fresh := newBlobServer(t)
	e = openWith(t, attachConfig(dir, fresh.URL))
	rep, err := e.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Resynced || rep.Uploaded != 1 || rep.BytesSent != a.Size {
		t.Fatalf("after the server changed: %+v", rep)
	}
	if fresh.holds(t, a.SHA256) == nil {
		t.Fatal("the new server does not hold the bytes")
	}
}
