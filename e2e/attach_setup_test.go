package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// attachServer is an in-process sync server with attachments enabled, on
// a real SQLite file and a real blob directory, served on loopback behind
// a StreamProxy.
type attachServer struct {
	Store   *sqlite.Store
	BlobDir string
	Direct  string // the server's own URL, for checks that must not meet a fault
	Proxy   *StreamProxy
	URL     string // the proxy's URL: what devices use
}

func newAttachServer(t *testing.T) *attachServer {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	as := &attachServer{Store: st, BlobDir: filepath.Join(dir, "blobs")}
	srv, err := server.New(server.Config{Store: st, BlobDir: as.BlobDir})
	if err != nil {
		t.Fatal(err)
	}
	direct := httptest.NewServer(srv)
	t.Cleanup(direct.Close)
	as.Direct = direct.URL
	as.Proxy = NewStreamProxy(direct.URL)
	t.Cleanup(as.Proxy.Close)
	front := httptest.NewServer(as.Proxy)
	t.Cleanup(front.Close)
	as.URL = front.URL
	return as
}

// blob returns the verified bytes the server holds for sha, or nil.
func (as *attachServer) blob(t *testing.T, sha string) []byte {
	t.Helper()
	resp, err := http.Get(as.Direct + protocol.PathBlobs + sha)
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

// uploadOffset asks the server (HEAD, with no proxy) the offset of the
// upload at path.
func (as *attachServer) uploadOffset(ctx context.Context, t *testing.T, path string) int64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, as.Direct+path, nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD %s: HTTP %d", path, resp.StatusCode)
	}
	n, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkBlobs fails the test unless the server holds, verified, exactly
// the bytes of every attachment in atts as the device stored them.
func (as *attachServer) checkBlobs(ctx context.Context, t *testing.T, e *client.Engine, atts []fieldsync.Attachment) {
	t.Helper()
	for _, a := range atts {
		lf, err := e.LocalFile(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		local, err := os.ReadFile(lf.Path)
		if err != nil {
			t.Fatal(err)
		}
		got := as.blob(t, a.SHA256)
		sum := sha256.Sum256(got)
		if got == nil || hex.EncodeToString(sum[:]) != a.SHA256 || !bytes.Equal(got, local) {
			t.Fatalf("attachment %s: the server does not hold its verified bytes (%d of %d bytes)", a.ID, len(got), a.Size)
		}
	}
}

// attachEngineConfig is the device configuration of the attachment
// tests: photos kept at full quality, so they take several chunks.
func attachEngineConfig(dir, url string) client.Config {
	cfg := engineConfig(dir, url)
	cfg.Photo.Quality = 100
	cfg.RequestTimeout = 20 * time.Second
	return cfg
}

// testPhoto is a w×h photo-like JPEG: gradients and per-pixel noise, so
// it stays large once prepared.
func testPhoto(t testing.TB, w, h int, seed uint32) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	x := seed*2*2654435761 + 1
	for py := 0; py < h; py++ {
		for px := 0; px < w; px++ {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			m.Pix[py*m.Stride+px*4+0] = uint8(px * 255 / w)
			m.Pix[py*m.Stride+px*4+1] = uint8(x)
			m.Pix[py*m.Stride+px*4+2] = uint8(py*255/h) ^ uint8(x>>8)&0x3f
			m.Pix[py*m.Stride+px*4+3] = 255
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// syncUploads syncs until a sync succeeds with no attachment left to
// send, and returns the attachment bytes sent meanwhile.
func syncUploads(ctx context.Context, t *testing.T, e *client.Engine) (sent int64, syncs int) {
	t.Helper()
	for {
		rep, err := e.Sync(ctx)
		sent += rep.BytesSent
		syncs++
		if err == nil && rep.UploadsLeft == 0 && rep.Retry == 0 {
			return sent, syncs
		}
		if ctx.Err() != nil {
			t.Fatalf("uploads not done in time (last error %v)", err)
		}
		if err != nil && !fieldsync.ErrorCode(err).Retryable() {
			t.Fatalf("sync: %v", err)
		}
	}
}
