package tusclient_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/filelocker"
	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	xslog "golang.org/x/exp/slog"

	"github.com/fieldsync/fieldsync/internal/tusclient"
)

// tusServer is a real tusd handler on loopback, with a finish check that
// hashes the bytes and answers 460 when they do not match the "sha256"
// metadata, as the fieldsync server does. cut, when set, picks PATCH
// requests to cut after a number of body bytes.
type tusServer struct {
	URL      string // the creation endpoint
	dir      string
	h        *handler.Handler
	cut      atomic.Pointer[func(r *http.Request) int64] // -1: no cut
	patches  atomic.Int64
	received atomic.Int64 // PATCH body bytes the handler read
	mu       sync.Mutex
	finished map[string][]byte // sha256 → bytes of finished, verified uploads
}

func newTusServer(t testing.TB) *tusServer {
	t.Helper()
	ts := &tusServer{dir: t.TempDir(), finished: map[string][]byte{}}
	store := filestore.New(ts.dir)
	composer := handler.NewStoreComposer()
	store.UseIn(composer)
	filelocker.New(ts.dir).UseIn(composer)
	h, err := handler.NewHandler(handler.Config{
		BasePath:                  "/files/",
		StoreComposer:             composer,
		DisableDownload:           true,
		PreFinishResponseCallback: ts.finish,
		NetworkTimeout:            10 * time.Second,
		Logger:                    xslog.New(xslog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.h = h
	hs := httptest.NewServer(http.StripPrefix("/files", ts))
	t.Cleanup(hs.Close)
	ts.URL = hs.URL + "/files/"
	return ts
}

func (ts *tusServer) finish(ev handler.HookEvent) (handler.HTTPResponse, error) {
	data, err := os.ReadFile(ev.Upload.Storage[filestore.StorageKeyPath])
	if err != nil {
		return handler.HTTPResponse{}, err
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != ev.Upload.MetaData["sha256"] {
		os.Remove(ev.Upload.Storage[filestore.StorageKeyPath])
		os.Remove(ev.Upload.Storage[filestore.StorageKeyInfoPath])
		return handler.HTTPResponse{}, handler.NewError("ERR_CHECKSUM_MISMATCH", "the bytes do not match sha256", tusclient.StatusChecksumMismatch)
	}
	ts.mu.Lock()
	ts.finished[hex.EncodeToString(sum[:])] = data
	ts.mu.Unlock()
	return handler.HTTPResponse{}, nil
}

func (ts *tusServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPatch {
		ts.h.ServeHTTP(w, r)
		return
	}
	ts.patches.Add(1)
	r.Body = &countBody{ReadCloser: r.Body, n: &ts.received}
	cut := int64(-1)
	if f := ts.cut.Load(); f != nil {
		cut = (*f)(r)
	}
	if cut < 0 {
		ts.h.ServeHTTP(w, r)
		return
	}
	// The link breaks after cut bytes: the handler keeps what it got, the
	// client gets no answer.
	r.Body = &cutBody{ReadCloser: r.Body, left: cut}
	ts.h.ServeHTTP(&discardWriter{h: http.Header{}}, r)
	panic(http.ErrAbortHandler)
}

func (ts *tusServer) has(sha string) ([]byte, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	b, ok := ts.finished[sha]
	return b, ok
}

type countBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
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

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func shaOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func upload(data []byte, sha string) *tusclient.Upload {
	return &tusclient.Upload{Size: int64(len(data)), Data: bytes.NewReader(data),
		Metadata: map[string]string{"sha256": sha, "filename": "p.jpg", "content_type": "image/jpeg"}}
}

func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := rand.Uint64() >> 1
	if v := os.Getenv("FIELDSYNC_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = n
	}
	t.Logf("seed %d (replay: FIELDSYNC_SEED=%d go test ./internal/tusclient -run '^%s$')", seed, seed, t.Name())
	return seed
}

func TestUploadWholeChunksGrow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := newTusServer(t)
	data := randomBytes(rand.New(rand.NewPCG(1, 1)), 5<<20+123)
	u := upload(data, shaOf(data))
	u.Endpoint = ts.URL
	var sizes []int64
	var urls []string
	u.Chunk = func(n int64, ok bool) { sizes = append(sizes, n) }
	u.Progress = func(url string, off int64) error { urls = append(urls, url); return nil }
	c := &tusclient.Client{}
	res, err := c.Upload(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := ts.has(shaOf(data))
	if !ok || !bytes.Equal(got, data) {
		t.Fatal("the server does not hold the verified bytes")
	}
	if res.Sent != int64(len(data)) || res.Created != 1 || res.Start != 0 || res.Cuts != 0 {
		t.Fatalf("result %+v", res)
	}
	if sizes[0] != tusclient.DefaultFirstChunk {
		t.Fatalf("first chunk %d, want %d", sizes[0], tusclient.DefaultFirstChunk)
	}
	for i := 1; i < len(sizes)-1; i++ {
		if sizes[i] > 2*sizes[i-1] || sizes[i] > tusclient.DefaultMaxChunk || sizes[i] < tusclient.DefaultMinChunk {
			t.Fatalf("chunk sizes %v: out of bounds or grew by more than twice", sizes)
		}
	}
	if len(urls) < 2 || urls[0] != res.URL || !strings.HasPrefix(res.URL, ts.URL) {
		t.Fatalf("progress URLs %v, result URL %q", urls, res.URL)
	}
	t.Logf("chunks: %v", sizes)
}

// TestUploadResume stops an upload after two chunks (as a process that
// stopped would) and resumes it from the stored URL: it starts from the
// server's offset, not zero.
func TestUploadResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := newTusServer(t)
	data := randomBytes(rand.New(rand.NewPCG(2, 2)), 3<<20)
	stop := errors.New("stop")
	var url string
	var off int64
	u := upload(data, shaOf(data))
	u.Endpoint = ts.URL
	chunks := 0
	u.Progress = func(uu string, o int64) error {
		url, off = uu, o
		if o > 0 {
			chunks++
		}
		if chunks == 2 {
			return stop
		}
		return nil
	}
	if _, err := (&tusclient.Client{}).Upload(ctx, u); !errors.Is(err, stop) {
		t.Fatalf("first upload: %v, want the stop", err)
	}
	if off == 0 || url == "" {
		t.Fatalf("nothing stored: url %q offset %d", url, off)
	}
	before := ts.received.Load()
	u2 := upload(data, shaOf(data))
	u2.Endpoint, u2.URL = ts.URL, url
	res, err := (&tusclient.Client{}).Upload(ctx, u2)
	if err != nil {
		t.Fatal(err)
	}
	if res.Start != off || res.Created != 0 || res.URL != url {
		t.Fatalf("resumed from %d (created %d, url %q), want %d of %q", res.Start, res.Created, res.URL, off, url)
	}
	if sent := ts.received.Load() - before; sent != int64(len(data))-off {
		t.Fatalf("the resumed upload sent %d bytes, want %d", sent, int64(len(data))-off)
	}
	if _, ok := ts.has(shaOf(data)); !ok {
		t.Fatal("the server does not hold the verified bytes")
	}
}

// TestUploadCutsWasteAtMostOneChunk cuts PATCH requests at random byte
// offsets, again and again, in one upload: it completes, the bytes check
// out, and each cut wastes at most the chunk it cut.
func TestUploadCutsWasteAtMostOneChunk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 3))
	var rngMu sync.Mutex
	ts := newTusServer(t)
	data := randomBytes(rng, 6<<20+77)
	patches := 0
	cut := func(r *http.Request) int64 {
		rngMu.Lock()
		defer rngMu.Unlock()
		patches++
		if patches > 1 && rng.IntN(2) != 0 { // the first is always cut, so every seed tests something
			return -1
		}
		return rng.Int64N(max(r.ContentLength, 1))
	}
	ts.cut.Store(&cut)
	var mu sync.Mutex
	var biggest int64
	u := upload(data, shaOf(data))
	u.Endpoint = ts.URL
	u.Chunk = func(n int64, ok bool) {
		mu.Lock()
		biggest = max(biggest, n)
		mu.Unlock()
	}
	c := &tusclient.Client{Retries: 1000, RetryWait: time.Millisecond}
	res, err := c.Upload(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := ts.has(shaOf(data)); !ok || !bytes.Equal(got, data) {
		t.Fatal("the server does not hold the verified bytes")
	}
	if res.Cuts == 0 {
		t.Fatal("no cut happened: the test tests nothing")
	}
	waste := res.Sent - int64(len(data))
	if waste > int64(res.Cuts)*biggest {
		t.Fatalf("%d cuts wasted %d bytes: more than one chunk (%d) each", res.Cuts, waste, biggest)
	}
	t.Logf("%d chunks, %d cuts, %d bytes re-sent (%.0f per cut), biggest chunk %d", res.Chunks, res.Cuts, waste,
		float64(waste)/float64(res.Cuts), biggest)
}

func TestUploadChecksumMismatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := newTusServer(t)
	data := randomBytes(rand.New(rand.NewPCG(4, 4)), 700<<10)
	u := upload(data, shaOf([]byte("other bytes")))
	u.Endpoint = ts.URL
	res, err := (&tusclient.Client{}).Upload(ctx, u)
	if !errors.Is(err, tusclient.ErrChecksum) {
		t.Fatalf("upload with a wrong checksum: %v", err)
	}
	// The server dropped it: a resume makes a new upload.
	u2 := upload(data, shaOf(data))
	u2.Endpoint, u2.URL = ts.URL, res.URL
	res2, err := (&tusclient.Client{}).Upload(ctx, u2)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Created != 1 || res2.Start != 0 || res2.URL == res.URL {
		t.Fatalf("after a mismatch: %+v", res2)
	}
	if _, ok := ts.has(shaOf(data)); !ok {
		t.Fatal("the server does not hold the verified bytes")
	}
}

func TestUploadEmptyAndExisting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := newTusServer(t)
	u := upload(nil, shaOf(nil))
	u.Endpoint = ts.URL
	if _, err := (&tusclient.Client{}).Upload(ctx, u); err != nil {
		t.Fatalf("empty upload: %v", err)
	}
	if _, ok := ts.has(shaOf(nil)); !ok {
		t.Fatal("empty upload not finished")
	}
	data := []byte("already there")
	u = upload(data, shaOf(data))
	u.Endpoint = ts.URL
	u.Exists = func(context.Context) (bool, error) { return true, nil }
	res, err := (&tusclient.Client{}).Upload(ctx, u)
	if err != nil || !res.Existing || res.Sent != 0 || res.Created != 0 {
		t.Fatalf("upload of bytes the server has: %+v, %v", res, err)
	}
}

// TestUploadStaleOffset: a PATCH whose offset the server does not have
// (409) is followed by a HEAD and the upload goes on.
func TestUploadStaleOffset(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := newTusServer(t)
	data := randomBytes(rand.New(rand.NewPCG(5, 5)), 1<<20)
	var n atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch && n.Add(1) == 2 {
			r.Header.Set("Upload-Offset", "1")
		}
		target := ts.URL + strings.TrimPrefix(r.URL.Path, "/files/")
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, target, r.Body)
		req.Header = r.Header.Clone()
		req.ContentLength = r.ContentLength
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		if l := w.Header().Get("Location"); l != "" {
			w.Header().Set("Location", "/files/"+l[strings.LastIndex(l, "/")+1:])
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer front.Close()
	u := upload(data, shaOf(data))
	u.Endpoint = front.URL + "/files/"
	res, err := (&tusclient.Client{RetryWait: time.Millisecond}).Upload(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ts.has(shaOf(data)); !ok {
		t.Fatal("not finished")
	}
	if res.Sent <= int64(len(data)) {
		t.Fatalf("the refused chunk was not counted: %+v", res)
	}
}

func TestUploadRefusedIsNotRetried(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var calls atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	defer hs.Close()
	data := []byte("x")
	u := upload(data, shaOf(data))
	u.Endpoint = hs.URL + "/files/"
	_, err := (&tusclient.Client{}).Upload(ctx, u)
	var se *tusclient.StatusError
	if !errors.As(err, &se) || se.Status != 413 || se.Temporary() || calls.Load() != 1 {
		t.Fatalf("refused upload: %v after %d calls", err, calls.Load())
	}
	// A server that keeps failing is given up after Retries.
	calls.Store(0)
	hs.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	_, err = (&tusclient.Client{Retries: 2, RetryWait: time.Millisecond}).Upload(ctx, u)
	if !errors.As(err, &se) || !se.Temporary() || calls.Load() != 3 {
		t.Fatalf("failing server: %v after %d calls", err, calls.Load())
	}
}

func TestChunkSizeAdapts(t *testing.T) {
	c := &tusclient.Client{MinChunk: 64 << 10, FirstChunk: 256 << 10, MaxChunk: 8 << 20, ChunkTime: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got := c.ChunkSize(); got != 256<<10 {
		t.Fatalf("first chunk %d", got)
	}
	// A link that never cuts grows the chunk to the cap, doubling each time.
	ts := newTusServer(t)
	data := randomBytes(rand.New(rand.NewPCG(6, 6)), 20<<20)
	u := upload(data, shaOf(data))
	u.Endpoint = ts.URL
	if _, err := c.Upload(ctx, u); err != nil {
		t.Fatal(err)
	}
	if got := c.ChunkSize(); got != 8<<20 {
		t.Fatalf("after 20 MiB over loopback the chunk is %d, want the cap", got)
	}
	// Cuts halve it, down to the floor.
	fail := func(r *http.Request) int64 { return 0 }
	ts.cut.Store(&fail)
	data = randomBytes(rand.New(rand.NewPCG(7, 7)), 100)
	u = upload(data, shaOf(data))
	u.Endpoint = ts.URL
	c.Retries, c.RetryWait = 8, time.Millisecond
	if _, err := c.Upload(ctx, u); err == nil {
		t.Fatal("an upload over a link that always cuts succeeded")
	}
	if got := c.ChunkSize(); got != 64<<10 {
		t.Fatalf("after many cuts the chunk is %d, want the floor", got)
	}
}

func TestMetadataAndHeaders(t *testing.T) {
	if got := tusclient.EncodeMetadata(map[string]string{"sha256": "ab", "filename": "a b.jpg"}); got != "filename YSBiLmpwZw==,sha256 YWI=" {
		t.Fatalf("metadata %q", got)
	}
	for _, c := range []struct {
		in string
		ok bool
	}{{"0", true}, {"123", true}, {"", false}, {"-1", false}, {"+1", false}, {"1e3", false}, {"99999999999999999999", false}} {
		if _, err := tusclient.ParseOffset(c.in); (err == nil) != c.ok {
			t.Errorf("ParseOffset(%q): %v", c.in, err)
		}
	}
	for _, c := range []struct{ loc, want string }{
		{"/v1/files/abc", "http://h:1/v1/files/abc"},
		{"abc", "http://h:1/v1/files/abc"},
		{"https://other/x", "https://other/x"},
		{"ftp://x/y", ""},
		{"", ""},
	} {
		got, err := tusclient.ResolveLocation("http://h:1/v1/files/", c.loc)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("ResolveLocation(%q) = %q, %v; want %q", c.loc, got, err, c.want)
		}
	}
}

// FuzzAnswerHeaders: the headers of a server's answers never panic the
// parsers, and what they accept is sane.
func FuzzAnswerHeaders(f *testing.F) {
	f.Add("0", "/v1/files/abc")
	f.Add("18446744073709551615", "http://[::1]:80/x")
	f.Add("12", "//evil/x")
	f.Add("", "%zz")
	f.Fuzz(func(t *testing.T, off, loc string) {
		if n, err := tusclient.ParseOffset(off); err == nil && (n < 0 || fmt.Sprint(n) != strings.TrimLeft(off, "0") && n != 0) {
			t.Fatalf("ParseOffset(%q) = %d", off, n)
		}
		if u, err := tusclient.ResolveLocation("http://127.0.0.1:8080/v1/files/", loc); err == nil &&
			!strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			t.Fatalf("ResolveLocation(%q) = %q", loc, u)
		}
	})
}

// TestCreationAnsweredOK: a server that answers a creation with 200 (it
// already holds the bytes the metadata names) is taken at its word.
func TestCreationAnsweredOK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var patches atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			if r.Header.Get("Tus-Resumable") != tusclient.Version || r.Header.Get("Upload-Length") != "5" ||
				!strings.Contains(r.Header.Get("Upload-Metadata"), "sha256 ") {
				http.Error(w, "bad creation", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusOK)
		default:
			patches.Add(1)
			http.Error(w, "unexpected", http.StatusMethodNotAllowed)
		}
	}))
	defer hs.Close()
	data := []byte("hello")
	u := upload(data, shaOf(data))
	u.Endpoint = hs.URL + "/files/"
	res, err := (&tusclient.Client{}).Upload(ctx, u)
	if err != nil || !res.Existing || res.Sent != 0 || patches.Load() != 0 {
		t.Fatalf("%+v, %v", res, err)
	}
}
