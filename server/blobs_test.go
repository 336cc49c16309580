package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// blobEnv is a server with attachments configured, on a real SQLite file
// and a real blob directory, served over loopback. restart replaces the
// server with a new one on the same store and directory.
type blobEnv struct {
	*env
	dir     string
	cfg     server.Config
	patched chan struct{} // a PATCH request ended on the server
}

func newBlobEnv(t *testing.T, cfg server.Config) *blobEnv {
	t.Helper()
	cfg.BlobDir = filepath.Join(t.TempDir(), "blobs")
	e := newEnv(t, cfg)
	cfg.Store = e.st
	b := &blobEnv{env: e, dir: cfg.BlobDir, cfg: cfg, patched: make(chan struct{}, 100)}
	b.serve(t, e.srv)
	return b
}

// serve serves srv on a new loopback listener, noting each PATCH that
// ends.
func (b *blobEnv) serve(t *testing.T, srv *server.Server) {
	b.hs.Close()
	b.srv = srv
	b.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.ServeHTTP(w, r)
		if r.Method == http.MethodPatch {
			select {
			case b.patched <- struct{}{}:
			default:
			}
		}
	}))
	t.Cleanup(b.hs.Close)
}

// restart stops the HTTP server and starts a new server.Server on the
// same store and blob directory.
func (b *blobEnv) restart(t *testing.T) {
	t.Helper()
	srv, err := server.New(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.serve(t, srv)
}

// testFile returns n bytes of random data and their SHA-256.
func testFile(r *rand.Rand, n int) ([]byte, string) {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(data)
	return data, hex.EncodeToString(sum[:])
}

// jpegFile returns n bytes that start like a JPEG, and their SHA-256.
func jpegFile(r *rand.Rand, n int) ([]byte, string) {
	data, _ := testFile(r, n)
	copy(data, []byte{0xff, 0xd8, 0xff, 0xe0})
	sum := sha256.Sum256(data)
	return data, hex.EncodeToString(sum[:])
}

// testRand returns a seeded generator, logging the seed; FIELDSYNC_SEED
// replays it.
func testRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := rand.Uint64()
	if s := os.Getenv("FIELDSYNC_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FIELDSYNC_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (replay with FIELDSYNC_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, 2))
}

// tusMeta encodes an Upload-Metadata header.
func tusMeta(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(parts, ",")
}

func tusHeaders(extra map[string]string) map[string]string {
	h := map[string]string{"Tus-Resumable": "1.0.0"}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// create starts an upload of size bytes with the given metadata.
func (b *blobEnv) create(t *testing.T, size int, meta string) response {
	t.Helper()
	return b.request(t, http.MethodPost, protocol.PathFiles, tusHeaders(map[string]string{
		"Upload-Length": strconv.Itoa(size), "Upload-Metadata": meta,
	}), nil)
}

// mustCreate starts an upload of data declared as sha and returns its
// path.
func (b *blobEnv) mustCreate(t *testing.T, data []byte, sha string) string {
	t.Helper()
	r := b.create(t, len(data), tusMeta(protocol.UploadMetaSHA256, sha, protocol.UploadMetaContentType, "image/jpeg", protocol.UploadMetaFilename, "boiler.jpg"))
	if r.status != http.StatusCreated {
		t.Fatalf("create: status %d: %s", r.status, r.body)
	}
	u, err := url.Parse(r.header.Get("Location"))
	if err != nil || !strings.HasPrefix(u.Path, protocol.PathFiles) || len(u.Path) == len(protocol.PathFiles) {
		t.Fatalf("create: Location %q", r.header.Get("Location"))
	}
	return u.Path
}

func (b *blobEnv) patch(t *testing.T, path string, offset int, chunk []byte) response {
	t.Helper()
	return b.request(t, http.MethodPatch, path, tusHeaders(map[string]string{
		"Upload-Offset": strconv.Itoa(offset), "Content-Type": "application/offset+octet-stream",
	}), chunk)
}

// offset asks the server how many bytes of the upload it holds.
func (b *blobEnv) offset(t *testing.T, path string) int {
	t.Helper()
	r := b.request(t, http.MethodHead, path, tusHeaders(nil), nil)
	if r.status != http.StatusOK {
		t.Fatalf("HEAD %s: status %d", path, r.status)
	}
	n, err := strconv.Atoi(r.header.Get("Upload-Offset"))
	if err != nil {
		t.Fatalf("HEAD %s: Upload-Offset %q", path, r.header.Get("Upload-Offset"))
	}
	return n
}

// upload sends data, declared as sha, in chunks of chunk bytes; the last
// PATCH's answer is returned.
func (b *blobEnv) upload(t *testing.T, data []byte, sha string, chunk int) response {
	t.Helper()
	path := b.mustCreate(t, data, sha)
	var r response
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		r = b.patch(t, path, off, data[off:end])
		if end < len(data) && r.status != http.StatusNoContent {
			t.Fatalf("PATCH at %d: status %d: %s", off, r.status, r.body)
		}
	}
	return r
}

// mustUpload uploads data and requires success.
func (b *blobEnv) mustUpload(t *testing.T, data []byte, sha string) {
	t.Helper()
	r := b.upload(t, data, sha, 64<<10)
	if r.status != http.StatusNoContent || r.header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("last PATCH: status %d, offset %q: %s", r.status, r.header.Get("Upload-Offset"), r.body)
	}
	if got := r.header.Get("Content-Location"); got != protocol.PathBlobs+sha {
		t.Errorf("Content-Location %q", got)
	}
}

// blobFiles lists the files under the blob directory's sha256/.
func (b *blobEnv) blobFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(b.dir, "sha256"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(filepath.Join(b.dir, "sha256"), p)
			out = append(out, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// uploadFiles lists what is left in the uploads directory, lock files
// aside.
func (b *blobEnv) uploadFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(b.dir, "uploads"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".lock") && !strings.HasSuffix(e.Name(), ".stop") {
			out = append(out, e.Name())
		}
	}
	return out
}

func (b *blobEnv) blobRows(t *testing.T) int {
	t.Helper()
	var n int
	if err := b.st.DB().QueryRow(`SELECT count(*) FROM blobs`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// download GETs the blob with optional extra headers.
func (b *blobEnv) download(t *testing.T, method, sha string, header map[string]string) response {
	t.Helper()
	return b.request(t, method, protocol.PathBlobs+sha, header, nil)
}

func TestBlobsNotConfigured(t *testing.T) {
	e := newEnv(t, server.Config{})
	sha := strings.Repeat("ab", 32)
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, protocol.PathFiles},
		{http.MethodPatch, protocol.PathFiles + "0123abcd"},
		{http.MethodHead, protocol.PathFiles + "0123abcd"},
		{http.MethodGet, protocol.PathBlobs + sha},
	} {
		r := e.request(t, c.method, c.path, tusHeaders(nil), nil)
		if c.method == http.MethodHead {
			if r.status != http.StatusServiceUnavailable {
				t.Errorf("%s %s: status %d", c.method, c.path, r.status)
			}
			continue
		}
		checkError(t, r, http.StatusServiceUnavailable, fieldsync.EUnavailable)
		if !strings.Contains(string(r.body), "attachments are not configured on this server") {
			t.Errorf("%s %s: %s", c.method, c.path, r.body)
		}
	}
}

func TestUploadRefusals(t *testing.T) {
	b := newBlobEnv(t, server.Config{MaxAttachmentBytes: 1000})
	sha := strings.Repeat("0f", 32)
	cases := []struct {
		name   string
		size   int
		meta   string
		status int
		code   fieldsync.Code
	}{
		{"no metadata", 10, "", http.StatusBadRequest, fieldsync.EInvalidRequest},
		{"no sha256", 10, tusMeta("filename", "a.jpg"), http.StatusBadRequest, fieldsync.EInvalidRequest},
		{"upper-case sha256", 10, tusMeta("sha256", strings.ToUpper(sha)), http.StatusBadRequest, fieldsync.EInvalidRequest},
		{"short sha256", 10, tusMeta("sha256", sha[:63]), http.StatusBadRequest, fieldsync.EInvalidRequest},
		{"content type", 10, tusMeta("sha256", sha, "content_type", "text/html"), http.StatusUnsupportedMediaType, fieldsync.EUnsupportedMedia},
		{"control character in name", 10, tusMeta("sha256", sha, "filename", "a\nb"), http.StatusBadRequest, fieldsync.EInvalidRequest},
		{"empty file", 0, tusMeta("sha256", sha), http.StatusBadRequest, fieldsync.EInvalidRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkError(t, b.create(t, c.size, c.meta), c.status, c.code)
		})
	}
	t.Run("deferred length", func(t *testing.T) {
		r := b.request(t, http.MethodPost, protocol.PathFiles, tusHeaders(map[string]string{
			"Upload-Defer-Length": "1", "Upload-Metadata": tusMeta("sha256", sha),
		}), nil)
		if r.status == http.StatusCreated || r.status < 400 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("over the limit", func(t *testing.T) {
		r := b.create(t, 1001, tusMeta("sha256", sha))
		if r.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("no tus version", func(t *testing.T) {
		r := b.request(t, http.MethodPost, protocol.PathFiles, map[string]string{"Upload-Length": "10", "Upload-Metadata": tusMeta("sha256", sha)}, nil)
		if r.status != http.StatusPreconditionFailed {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("options", func(t *testing.T) {
		r := b.request(t, http.MethodOptions, protocol.PathFiles, nil, nil)
		if r.status != http.StatusOK || r.header.Get("Tus-Max-Size") != "1000" || r.header.Get("Tus-Version") != "1.0.0" {
			t.Fatalf("status %d, headers %v", r.status, r.header)
		}
	})
	t.Run("odd upload id", func(t *testing.T) {
		r := b.patch(t, protocol.PathFiles+"a.b", 0, []byte("x"))
		checkError(t, r, http.StatusNotFound, fieldsync.ENotFound)
	})
	if n := len(b.uploadFiles(t)); n != 0 {
		t.Errorf("%d files left in uploads/ after refused creations", n)
	}
	if n := b.blobRows(t); n != 0 {
		t.Errorf("%d blobs recorded", n)
	}
}

func TestUploadStoresVerifiedBlob(t *testing.T) {
	r := testRand(t)
	b := newBlobEnv(t, server.Config{})
	data, sha := jpegFile(r, 300_000)
	b.mustUpload(t, data, sha)
	files := b.blobFiles(t)
	if want := filepath.Join(sha[:2], sha[2:]); len(files) != 1 || files[0] != want {
		t.Fatalf("blob files %v, want [%s]", files, want)
	}
	got, err := os.ReadFile(filepath.Join(b.dir, "sha256", files[0]))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored file differs from the upload (%v)", err)
	}
	if left := b.uploadFiles(t); len(left) != 0 {
		t.Errorf("left in uploads/: %v", left)
	}
	blob, err := b.st.Blob(context.Background(), sha)
	if err != nil || blob.Size != int64(len(data)) || blob.ContentType != "image/jpeg" {
		t.Fatalf("blob %+v, %v", blob, err)
	}
	d := b.download(t, http.MethodGet, sha, nil)
	if d.status != http.StatusOK || !bytes.Equal(d.body, data) {
		t.Fatalf("download: status %d, %d bytes", d.status, len(d.body))
	}
	if d.header.Get("ETag") != `"`+sha+`"` || d.header.Get("Content-Type") != "image/jpeg" {
		t.Errorf("download headers %v", d.header)
	}
}

func TestUploadCorruptedIsRefused(t *testing.T) {
	r := testRand(t)
	b := newBlobEnv(t, server.Config{})
	data, sha := testFile(r, 200_000)
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 0x01
	resp := b.upload(t, bad, sha, 50_000)
	if resp.status != protocol.StatusChecksumMismatch || resp.header.Get("Content-Type") != "application/json" {
		t.Fatalf("corrupted upload: status %d: %s", resp.status, resp.body)
	}
	var eb protocol.ErrorBody
	decodeJSON(t, resp.body, &eb)
	if eb.Error.Code != string(fieldsync.EInvalidRequest) || !strings.Contains(eb.Error.Message, "again from the start") {
		t.Errorf("error body does not say what to do: %s", resp.body)
	}
	if files := b.blobFiles(t); len(files) != 0 {
		t.Errorf("blob files after a corrupted upload: %v", files)
	}
	if left := b.uploadFiles(t); len(left) != 0 {
		t.Errorf("left in uploads/: %v", left)
	}
	if n := b.blobRows(t); n != 0 {
		t.Errorf("%d blobs recorded", n)
	}
	checkError(t, b.download(t, http.MethodGet, sha, apiHeaders()), http.StatusNotFound, fieldsync.ENotFound)
	// The right bytes go through afterwards.
	b.mustUpload(t, data, sha)
}

func TestUploadTwiceStoredOnce(t *testing.T) {
	r := testRand(t)
	b := newBlobEnv(t, server.Config{})
	data, sha := jpegFile(r, 100_000)
	// Two uploads of the same bytes under way at once: both finish, one
	// file is kept.
	p1 := b.mustCreate(t, data, sha)
	p2 := b.mustCreate(t, data, sha)
	for _, p := range []string{p1, p2} {
		if resp := b.patch(t, p, 0, data); resp.status != http.StatusNoContent {
			t.Fatalf("PATCH %s: status %d: %s", p, resp.status, resp.body)
		}
	}
	if files := b.blobFiles(t); len(files) != 1 {
		t.Fatalf("blob files %v, want one", files)
	}
	if left := b.uploadFiles(t); len(left) != 0 {
		t.Errorf("left in uploads/: %v", left)
	}
	// A third creation learns that the bytes are there.
	resp := b.create(t, len(data), tusMeta("sha256", sha))
	if resp.status != http.StatusOK || resp.header.Get("Location") != "" || resp.header.Get("Content-Location") != protocol.PathBlobs+sha {
		t.Fatalf("creation of a held blob: status %d, headers %v: %s", resp.status, resp.header, resp.body)
	}
	var blob protocol.Blob
	decodeJSON(t, resp.body, &blob)
	if blob.SHA256 != sha || blob.Size != int64(len(data)) || blob.ContentType != "image/jpeg" || blob.Stored.IsZero() {
		t.Fatalf("blob %+v", blob)
	}
	// ... unless it names another size for them.
	checkError(t, b.create(t, len(data)+1, tusMeta("sha256", sha)), http.StatusBadRequest, fieldsync.EInvalidRequest)
	if n := b.blobRows(t); n != 1 {
		t.Errorf("%d blob rows", n)
	}
}

// cutBody yields n bytes of data and then fails, as a link that drops
// midway.
type cutBody struct {
	data []byte
	n    int
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.n == 0 {
		return 0, errors.New("link dropped")
	}
	k := copy(p, c.data[:min(len(c.data), c.n, len(p))])
	c.data, c.n = c.data[k:], c.n-k
	return k, nil
}

func TestUploadResumesAfterCutAndRestart(t *testing.T) {
	r := testRand(t)
	b := newBlobEnv(t, server.Config{})
	data, sha := jpegFile(r, 1_000_000)
	path := b.mustCreate(t, data, sha)

	// One PATCH of the whole file, cut after 400 kB.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, b.hs.URL+path, &cutBody{data: data, n: 400_000})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	for len(b.patched) > 0 {
		<-b.patched
	}
	if resp, err := b.hc.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a cut PATCH was answered %d", resp.StatusCode)
	}
	select {
	case <-b.patched:
	case <-ctx.Done():
		t.Fatal("the server did not end the cut PATCH")
	}

	b.restart(t)
	off := b.offset(t, path)
	if off <= 0 || off > 400_000 {
		t.Fatalf("offset after the cut: %d, want 1..400000", off)
	}
	t.Logf("the server kept %d of the 400000 bytes sent before the cut", off)
	// A stale offset is refused.
	if resp := b.patch(t, path, 0, data); resp.status != http.StatusConflict {
		t.Fatalf("PATCH at a stale offset: status %d", resp.status)
	}
	resp := b.patch(t, path, off, data[off:])
	if resp.status != http.StatusNoContent || resp.header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("resume: status %d: %s", resp.status, resp.body)
	}
	d := b.download(t, http.MethodGet, sha, nil)
	if d.status != http.StatusOK || !bytes.Equal(d.body, data) {
		t.Fatalf("download after the resumed upload: status %d, %d bytes, equal %v", d.status, len(d.body), bytes.Equal(d.body, data))
	}
	// The finished upload is gone: a late HEAD finds nothing, and the
	// device then asks for the blob.
	if resp := b.request(t, http.MethodHead, path, tusHeaders(nil), nil); resp.status != http.StatusNotFound {
		t.Errorf("HEAD of a finished upload: %d", resp.status)
	}
}

func TestBlobDownload(t *testing.T) {
	r := testRand(t)
	b := newBlobEnv(t, server.Config{})
	data, sha := testFile(r, 10_000)
	// No content type named, no known signature: served as octet-stream.
	c := b.create(t, len(data), tusMeta(protocol.UploadMetaSHA256, sha))
	u, err := url.Parse(c.header.Get("Location"))
	if c.status != http.StatusCreated || err != nil {
		t.Fatalf("create: status %d, Location %q", c.status, c.header.Get("Location"))
	}
	if resp := b.patch(t, u.Path, 0, data); resp.status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", resp.status, resp.body)
	}

	t.Run("range", func(t *testing.T) {
		d := b.download(t, http.MethodGet, sha, map[string]string{"Range": "bytes=1000-1999"})
		if d.status != http.StatusPartialContent || !bytes.Equal(d.body, data[1000:2000]) {
			t.Fatalf("status %d, %d bytes", d.status, len(d.body))
		}
		if cr := d.header.Get("Content-Range"); cr != fmt.Sprintf("bytes 1000-1999/%d", len(data)) {
			t.Errorf("Content-Range %q", cr)
		}
		d = b.download(t, http.MethodGet, sha, map[string]string{"Range": "bytes=-10"})
		if d.status != http.StatusPartialContent || !bytes.Equal(d.body, data[len(data)-10:]) {
			t.Fatalf("suffix range: status %d", d.status)
		}
		d = b.download(t, http.MethodGet, sha, map[string]string{"Range": "bytes=20000-"})
		if d.status != http.StatusRequestedRangeNotSatisfiable {
			t.Fatalf("range past the end: status %d", d.status)
		}
	})
	t.Run("head", func(t *testing.T) {
		d := b.download(t, http.MethodHead, sha, nil)
		if d.status != http.StatusOK || len(d.body) != 0 || d.header.Get("Content-Length") != strconv.Itoa(len(data)) {
			t.Fatalf("status %d, headers %v", d.status, d.header)
		}
		if d.header.Get("ETag") != `"`+sha+`"` || d.header.Get("Content-Type") != "application/octet-stream" || d.header.Get("Accept-Ranges") != "bytes" {
			t.Errorf("headers %v", d.header)
		}
	})
	t.Run("etag", func(t *testing.T) {
		d := b.download(t, http.MethodGet, sha, map[string]string{"If-None-Match": `"` + sha + `"`})
		if d.status != http.StatusNotModified || len(d.body) != 0 {
			t.Fatalf("status %d", d.status)
		}
		d = b.download(t, http.MethodGet, sha, map[string]string{"Range": "bytes=0-9", "If-Range": `"other"`})
		if d.status != http.StatusOK || len(d.body) != len(data) {
			t.Fatalf("If-Range with another tag: status %d, %d bytes", d.status, len(d.body))
		}
	})
	t.Run("not held", func(t *testing.T) {
		checkError(t, b.download(t, http.MethodGet, strings.Repeat("0", 64), nil), http.StatusNotFound, fieldsync.ENotFound)
		checkError(t, b.download(t, http.MethodGet, "abc", nil), http.StatusBadRequest, fieldsync.EInvalidRequest)
		checkError(t, b.download(t, http.MethodGet, strings.ToUpper(sha), nil), http.StatusBadRequest, fieldsync.EInvalidRequest)
		if d := b.download(t, http.MethodHead, strings.Repeat("0", 64), nil); d.status != http.StatusNotFound {
			t.Fatalf("HEAD of a missing blob: %d", d.status)
		}
	})
}

// TestBlobFileWithoutRecord: the server stopped after moving a verified
// file into place but before recording it. The next request for the hash
// records it and marks the attachments waiting for it ready; a file that
// does not match its name is never served.
func TestBlobFileWithoutRecord(t *testing.T) {
	r := testRand(t)
	b := newBlobEnv(t, server.Config{})
	data, sha := jpegFile(r, 5000)
	b.push(t, "dev-1", createOp(1, "wo-1", map[string]string{"title": `"Boiler"`}))
	res := b.push(t, "dev-1", attachOp(2, 1, "wo-1", attachmentJSON(sha, len(data))))
	if res[0].Status != "applied" {
		t.Fatalf("attach: %+v", res[0])
	}
	place := func(sha string, content []byte) {
		p := filepath.Join(b.dir, "sha256", sha[:2], sha[2:])
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	place(sha, data)
	b.restart(t)
	if d := b.download(t, http.MethodHead, sha, nil); d.status != http.StatusOK || d.header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("HEAD: status %d, headers %v", d.status, d.header)
	}
	if a := b.history(t, "work_order", "wo-1").Record.Attachments; len(a) != 1 || a[0].Status != fieldsync.AttachmentReady {
		t.Fatalf("attachments %+v", a)
	}

	_, other := testFile(r, 10)
	place(other, []byte("not what the name says"))
	checkError(t, b.download(t, http.MethodGet, other, nil), http.StatusNotFound, fieldsync.ENotFound)
	if _, err := os.Stat(filepath.Join(b.dir, "sha256", other[:2], other[2:])); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a file that does not match its name was kept: %v", err)
	}
}

// attachOp is a device's attach op on a work order.
func attachOp(seq, prev int64, entity string, attachment string) wop {
	return wop{ID: newOpID(), Seq: seq, Prev: prev, Type: "work_order", Entity: entity, Kind: "attach",
		Fields: map[string]json.RawMessage{fieldsync.AttachField: json.RawMessage(attachment)}, At: 1720000000000}
}

// attachmentJSON is the value of an attach op for a photo of size bytes
// with hash sha, under a new attachment id.
func attachmentJSON(sha string, size int) string {
	return fmt.Sprintf(`{"id":%q,"sha256":%q,"size":%d,"content_type":"image/jpeg","role":"photo","name":"boiler.jpg"}`, newOpID(), sha, size)
}

// BenchmarkUpload measures one whole upload over loopback: creation,
// PATCHes of 1 MiB, verification (hashing the file back), fsync, the
// rename into place and the store commit. The report is a throughput.
func BenchmarkUpload(b *testing.B) {
	for _, size := range []int{256 << 10, 8 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "server.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			srv, err := server.New(server.Config{Store: st, BlobDir: filepath.Join(b.TempDir(), "blobs")})
			if err != nil {
				b.Fatal(err)
			}
			hs := httptest.NewServer(srv)
			defer hs.Close()
			hc := hs.Client()
			do := func(method, url string, h map[string]string, body []byte, want int) *http.Response {
				req, err := http.NewRequest(method, url, bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Tus-Resumable", "1.0.0")
				for k, v := range h {
					req.Header.Set(k, v)
				}
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					b.Fatalf("%s %s: status %d, want %d", method, url, resp.StatusCode, want)
				}
				return resp
			}
			data, _ := testFile(rand.New(rand.NewPCG(1, 2)), size)
			b.SetBytes(int64(size))
			n := 0
			for b.Loop() {
				b.StopTimer()
				n++
				binary.BigEndian.PutUint64(data, uint64(n)) // new bytes each time: no dedup
				sum := sha256.Sum256(data)
				sha := hex.EncodeToString(sum[:])
				b.StartTimer()
				resp := do(http.MethodPost, hs.URL+protocol.PathFiles, map[string]string{
					"Upload-Length": strconv.Itoa(size), "Upload-Metadata": tusMeta("sha256", sha, "content_type", "image/jpeg"),
				}, nil, http.StatusCreated)
				loc := resp.Header.Get("Location")
				for off := 0; off < size; off += 1 << 20 {
					do(http.MethodPatch, loc, map[string]string{
						"Upload-Offset": strconv.Itoa(off), "Content-Type": "application/offset+octet-stream",
					}, data[off:min(off+1<<20, size)], http.StatusNoContent)
				}
			}
		})
	}
}
