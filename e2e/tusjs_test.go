package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// tusjsDirEnv names a directory holding node_modules/tus-js-client.
const tusjsDirEnv = "FIELDSYNC_TUSJS_DIR"

// tusjsInstall is how to provide tus-js-client for the interop test.
const tusjsInstall = `npm install --no-audit --no-fund --prefix DIR tus-js-client@4.3.1, then set ` + tusjsDirEnv + `=DIR`

// tusjsSetup returns the node binary and the tus-js-client directory, or
// skips the test (fails it under CI) when either is missing.
func tusjsSetup(t *testing.T) (node, dir string) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: CI must run the tus-js-client interop test (%s)", msg, tusjsInstall)
		}
		t.Skipf("%s: to run this test, %s", msg, tusjsInstall)
	}
	dir = os.Getenv(tusjsDirEnv)
	if dir == "" {
		missing("%s is not set", tusjsDirEnv)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "tus-js-client", "package.json")); err != nil {
		missing("%s=%s holds no node_modules/tus-js-client", tusjsDirEnv, dir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	return node, dir
}

// tusjsEvent is one line the upload script prints.
type tusjsEvent struct {
	Event    string `json:"event"`
	Method   string `json:"method"`
	Status   int    `json:"status"`
	Offset   *int64 `json:"offset"`
	Location string `json:"location"`
	URL      string `json:"url"`
	Size     int64  `json:"size"`
	Accepted int64  `json:"accepted"`
	Sent     int64  `json:"sent"`
	Message  string `json:"message"`
}

// tusjsRun runs the upload script with args and returns its exit code and
// the events it printed.
func tusjsRun(t *testing.T, node, dir string, args ...string) (int, []tusjsEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	script, err := filepath.Abs(filepath.Join("testdata", "tusjs", "upload.js"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), tusjsDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run node: %v\n%s", err, stderr.String())
	}
	if ctx.Err() != nil {
		t.Fatalf("the upload script did not finish in time\nstdout:\n%s\nstderr:\n%s", out, stderr.String())
	}
	var events []tusjsEvent
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var ev tusjsEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("script output %q: %v\nstderr:\n%s", sc.Text(), err, stderr.String())
		}
		events = append(events, ev)
	}
	t.Logf("node upload.js %s: exit %d, %d events, stderr %q", strings.Join(args, " "), code, len(events), stderr.String())
	return code, events
}

// TestTusJSClient proves the upload endpoint against an independent tus
// client: tus-js-client uploads a photo in several PATCHes, is stopped
// midway, and a new process resumes from the offset the server holds
// rather than from zero. The attachment the device had attached before
// the bytes turns ready. A file whose bytes do not match its declared
// hash is refused with 460, and the client reports it.
func TestTusJSClient(t *testing.T) {
	node, dir := tusjsSetup(t)
	r := rand.New(rand.NewPCG(testSeed(t), 3))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	tmp := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(tmp, "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := server.New(server.Config{Store: st, BlobDir: filepath.Join(tmp, "blobs")})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()

	const size = 1 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	copy(data, []byte{0xff, 0xd8, 0xff, 0xe0})
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	file := filepath.Join(tmp, "boiler.jpg")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}

	// The device attached the photo before its bytes went up.
	attachment := fmt.Sprintf(`{"id":"0190a6c4-1b2c-7d3e-8f40-00000000a001","sha256":%q,"size":%d,"content_type":"image/jpeg","role":"photo"}`, sha, size)
	res, err := srv.Apply(ctx, []fieldsync.Op{
		{ID: "0190a6c4-1b2c-7d3e-8f40-000000000001", DeviceID: "dev-1", Seq: 1, EntityType: "work_order", EntityID: "wo-1",
			Kind: fieldsync.KindCreate, Fields: map[string]json.RawMessage{"title": json.RawMessage(`"Boiler"`)}},
		{ID: "0190a6c4-1b2c-7d3e-8f40-000000000002", DeviceID: "dev-1", Seq: 2, PrevSeq: 1, EntityType: "work_order", EntityID: "wo-1",
			Kind: fieldsync.KindAttach, Fields: map[string]json.RawMessage{fieldsync.AttachField: json.RawMessage(attachment)}},
	})
	if err != nil || res[1].Status != fieldsync.StatusApplied {
		t.Fatalf("attach: %+v, %v", res, err)
	}

	endpoint := hs.URL + protocol.PathFiles
	const chunk = 64 << 10
	common := []string{"--endpoint", endpoint, "--file", file, "--sha256", sha, "--chunk-size", fmt.Sprint(chunk), "--content-type", "image/jpeg"}

	// First process: stopped after about 300 kB.
	code, events := tusjsRun(t, node, dir, append(common, "--abort-after", "300000")...)
	last := events[len(events)-1]
	if code != 3 || last.Event != "aborted" || last.URL == "" {
		t.Fatalf("first run: exit %d, events %+v", code, events)
	}
	patches := 0
	for _, ev := range events {
		if ev.Event == "request" && ev.Method == http.MethodPatch {
			patches++
		}
	}
	if patches < 2 {
		t.Fatalf("the first run sent %d PATCHes, want several", patches)
	}

	// Second process: resumes the stored upload URL.
	code, events = tusjsRun(t, node, dir, append(common, "--upload-url", last.URL)...)
	if code != 0 || events[len(events)-1].Event != "done" {
		t.Fatalf("second run: exit %d, events %+v", code, events)
	}
	var held, firstPatch int64 = -1, -1
	var resent int64
	for _, ev := range events {
		switch {
		case ev.Event == "request" && ev.Method == http.MethodPost:
			t.Fatalf("the second run created a new upload instead of resuming: %+v", events)
		case ev.Event == "response" && ev.Method == http.MethodHead && ev.Offset != nil:
			held = *ev.Offset
		case ev.Event == "request" && ev.Method == http.MethodPatch && firstPatch < 0 && ev.Offset != nil:
			firstPatch = *ev.Offset
		case ev.Event == "chunk":
			resent += ev.Size
		}
	}
	t.Logf("the server held %d bytes after the stop; the second run sent %d", held, resent)
	if held <= 0 || held >= size || firstPatch != held || resent != size-held {
		t.Fatalf("resume: server held %d, first PATCH at %d, %d bytes sent again of %d; events %+v", held, firstPatch, resent, size, events)
	}

	// The bytes are verified and served, and the attachment is ready.
	resp, err := http.Get(hs.URL + protocol.PathBlobs + sha)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("download: status %d, %d bytes, equal %v, %v", resp.StatusCode, len(got), bytes.Equal(got, data), err)
	}
	rec, err := st.Record(ctx, "work_order", "wo-1")
	if err != nil || len(rec.Attachments) != 1 || rec.Attachments[0].Status != fieldsync.AttachmentReady {
		t.Fatalf("record after the upload: %+v, %v", rec.Attachments, err)
	}

	// Bytes that do not match their declared hash: refused with 460.
	bad := bytes.Clone(data)
	bad[size/3] ^= 0xff
	badFile := filepath.Join(tmp, "bad.jpg")
	if err := os.WriteFile(badFile, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	otherSum := sha256.Sum256(append(bytes.Clone(data), 0))
	otherSHA := hex.EncodeToString(otherSum[:]) // not held, so the upload starts
	code, events = tusjsRun(t, node, dir, "--endpoint", endpoint, "--file", badFile, "--sha256", otherSHA, "--chunk-size", fmt.Sprint(chunk))
	last = events[len(events)-1]
	if code != 1 || last.Event != "error" || !strings.Contains(last.Message, "460") {
		t.Fatalf("corrupted upload: exit %d, last event %+v", code, last)
	}
	if _, err := st.Blob(ctx, otherSHA); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Fatalf("a corrupted upload was recorded: %v", err)
	}
}
