package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/media"
)

const marker = "MARKER-7f3a-unmistakable-plaintext"

// cheapKDF keeps the tests fast; the default costs are measured by the
// benchmarks.
var cheapKDF = client.KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}

func pinConfig(dir, url, pin string) client.Config {
	cfg := attachConfig(dir, url)
	cfg.PIN, cfg.PINParams = pin, cheapKDF
	return cfg
}

// deviceBytes reads every file of the device directory but the key file.
func deviceBytes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "keys.json" || strings.HasSuffix(d.Name(), ".lock") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// leaks names the device files that hold any of needles.
func leaks(t *testing.T, dir string, needles ...[]byte) []string {
	t.Helper()
	var out []string
	for name, b := range deviceBytes(t, dir) {
		for _, n := range needles {
			if len(n) > 0 && bytes.Contains(b, n) {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

func readAttachment(ctx context.Context, t *testing.T, e *client.Engine, id string) []byte {
	t.Helper()
	r, err := e.OpenAttachment(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// savedWithMarker saves a record whose title holds the marker, and
// attaches a photo and a signature; it returns the record id, the
// attachments and parts of each prepared file's plaintext.
func savedWithMarker(ctx context.Context, t *testing.T, e *client.Engine) (string, []fieldsync.Attachment, [][]byte) {
	t.Helper()
	op, err := e.Create(ctx, "work_order", map[string]any{"title": marker, "status": "new"})
	if err != nil {
		t.Fatal(err)
	}
	photo := attachPhoto(ctx, t, e, op.EntityID, testJPEG(t, 300, 200, 7))
	strokes := []media.Stroke{{{X: 10, Y: 10}, {X: 200, Y: 80}, {X: 300, Y: 20}}, {{X: 50, Y: 100}}}
	sig, _, err := e.Attach(ctx, "work_order", op.EntityID, client.AttachInput{Role: fieldsync.RoleSignature, Strokes: strokes, Width: 400, Height: 150})
	if err != nil {
		t.Fatal(err)
	}
	atts := []fieldsync.Attachment{photo, sig}
	var parts [][]byte
	for _, a := range atts {
		b := readAttachment(ctx, t, e, a.ID)
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != a.SHA256 {
			t.Fatalf("attachment %s reads back with another hash", a.ID)
		}
		parts = append(parts, b[:32], b[len(b)/2:len(b)/2+32], b[len(b)-32:])
	}
	return op.EntityID, atts, parts
}

// checkReadsBack checks that the record and the attachments read back.
func checkReadsBack(ctx context.Context, t *testing.T, e *client.Engine, id string, atts []fieldsync.Attachment) {
	t.Helper()
	v, err := e.Get(ctx, "work_order", id)
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Fields["title"]) != `"`+marker+`"` {
		t.Fatalf("title reads back as %s", v.Fields["title"])
	}
	for _, a := range atts {
		b := readAttachment(ctx, t, e, a.ID)
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != a.SHA256 {
			t.Fatalf("attachment %s reads back with another hash", a.ID)
		}
	}
}

// The scan can fail: without a PIN the marker is in the files.
func TestPlainDeviceHoldsPlaintext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	e := openWith(t, attachConfig(dir, ""))
	_, _, parts := savedWithMarker(ctx, t, e)
	if found := leaks(t, dir, []byte(marker)); len(found) == 0 {
		t.Fatal("the marker is not found in a plain device: the scan cannot see plaintext")
	}
	if found := leaks(t, dir, parts...); len(found) == 0 {
		t.Fatal("the attachment bytes are not found in a plain device")
	}
	if e.Encrypted() {
		t.Fatal("a device without a PIN says it is encrypted")
	}
}

func TestEncryptedDeviceAtRest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	e, err := client.Open(ctx, pinConfig(dir, "", "1234"))
	if err != nil {
		t.Fatal(err)
	}
	if !e.Encrypted() {
		t.Fatal("a device with a PIN is not encrypted")
	}
	id, atts, parts := savedWithMarker(ctx, t, e)
	if _, err := os.Stat(filepath.Join(dir, "device.db-wal")); err != nil {
		t.Fatalf("the WAL should exist while the engine is open: %v", err)
	}
	needles := append([][]byte{[]byte(marker)}, parts...)
	if found := leaks(t, dir, needles...); len(found) > 0 {
		t.Fatalf("plaintext found in %v", found)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if found := leaks(t, dir, needles...); len(found) > 0 {
		t.Fatalf("plaintext found after close in %v", found)
	}

	t.Run("no PIN", func(t *testing.T) {
		before := deviceBytes(t, dir)
		_, err := client.Open(ctx, attachConfig(dir, ""))
		if fieldsync.ErrorCode(err) != fieldsync.EPINRequired {
			t.Fatalf("open without a PIN: %v", err)
		}
		sameFiles(t, before, deviceBytes(t, dir))
	})
	t.Run("wrong PIN", func(t *testing.T) {
		before := deviceBytes(t, dir)
		_, err := client.Open(ctx, pinConfig(dir, "", "9999"))
		if fieldsync.ErrorCode(err) != fieldsync.EWrongPIN {
			t.Fatalf("open with a wrong PIN: %v", err)
		}
		sameFiles(t, before, deviceBytes(t, dir))
	})
	t.Run("right PIN after restart", func(t *testing.T) {
		e := openWith(t, pinConfig(dir, "", "1234"))
		checkReadsBack(ctx, t, e, id, atts)
		e.Close()
	})
	t.Run("change PIN", func(t *testing.T) {
		if err := client.ChangePIN(ctx, pinConfig(dir, "", "0000"), "5678"); fieldsync.ErrorCode(err) != fieldsync.EWrongPIN {
			t.Fatalf("change with a wrong PIN: %v", err)
		}
		if err := client.ChangePIN(ctx, pinConfig(dir, "", "1234"), "12"); fieldsync.ErrorCode(err) != fieldsync.EInvalidRequest {
			t.Fatalf("change to a short PIN: %v", err)
		}
		before := deviceBytes(t, dir)
		if err := client.ChangePIN(ctx, pinConfig(dir, "", "1234"), "5678"); err != nil {
			t.Fatal(err)
		}
		sameFiles(t, before, deviceBytes(t, dir)) // only keys.json changes
		if _, err := client.Open(ctx, pinConfig(dir, "", "1234")); fieldsync.ErrorCode(err) != fieldsync.EWrongPIN {
			t.Fatalf("open with the old PIN: %v", err)
		}
		e := openWith(t, pinConfig(dir, "", "5678"))
		checkReadsBack(ctx, t, e, id, atts)
	})
}

func sameFiles(t *testing.T, before, after map[string][]byte) {
	t.Helper()
	for name, b := range before {
		if !bytes.Equal(b, after[name]) {
			t.Errorf("%s changed", name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s appeared", name)
		}
	}
}

func TestWrongPINsWaitLonger(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	cfg := pinConfig(dir, "", "1234")
	cfg.Now = func() time.Time { return now }
	e, err := client.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	try := func(pin string) error {
		c := cfg
		c.PIN = pin
		e, err := client.Open(ctx, c)
		if err == nil {
			e.Close()
		}
		return err
	}
	for i := range 3 {
		if err := try("0000"); fieldsync.ErrorCode(err) != fieldsync.EWrongPIN {
			t.Fatalf("wrong PIN %d: %v", i+1, err)
		}
	}
	// Even the right PIN waits now, and is not checked.
	if err := try("1234"); fieldsync.ErrorCode(err) != fieldsync.ELocked || !strings.Contains(err.Error(), "30s") {
		t.Fatalf("right PIN during the wait: %v", err)
	}
	now = now.Add(30 * time.Second)
	if err := try("0000"); fieldsync.ErrorCode(err) != fieldsync.EWrongPIN || !strings.Contains(err.Error(), "1m0s") {
		t.Fatalf("wrong PIN 4: %v", err)
	}
	now = now.Add(59 * time.Second)
	if err := try("1234"); fieldsync.ErrorCode(err) != fieldsync.ELocked {
		t.Fatalf("right PIN 1s before the wait ends: %v", err)
	}
	now = now.Add(time.Second)
	if err := try("1234"); err != nil {
		t.Fatalf("right PIN after the wait: %v", err)
	}
	// The right PIN resets the count.
	for i := range 2 {
		if err := try("0000"); fieldsync.ErrorCode(err) != fieldsync.EWrongPIN {
			t.Fatalf("wrong PIN %d after reset: %v", i+1, err)
		}
	}
	if err := try("1234"); err != nil {
		t.Fatalf("right PIN after two wrong: %v", err)
	}
}

func TestEncryptPlainDevice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	e := openWith(t, attachConfig(dir, ""))
	id, atts, parts := savedWithMarker(ctx, t, e)
	e.Close()
	needles := append([][]byte{[]byte(marker)}, parts...)
	if len(leaks(t, dir, needles...)) == 0 {
		t.Fatal("a plain device shows no plaintext")
	}
	e = openWith(t, pinConfig(dir, "", "1234"))
	checkReadsBack(ctx, t, e, id, atts)
	if found := leaks(t, dir, needles...); len(found) > 0 {
		t.Fatalf("plaintext left in %v after encrypting", found)
	}
	// New saves go on as usual.
	if _, err := e.Update(ctx, "work_order", id, map[string]any{"status": "in progress"}); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e = openWith(t, pinConfig(dir, "", "1234"))
	checkReadsBack(ctx, t, e, id, atts)
}

func TestEncryptedFileTamperedIsDetected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	dir := t.TempDir()
	e := openWith(t, pinConfig(dir, bs.URL, "1234"))
	id := newRecord(ctx, t, e)
	a := attachPhoto(ctx, t, e, id, testJPEG(t, 300, 200, 9))
	lf, err := e.LocalFile(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := os.ReadFile(lf.Path)
	if err != nil {
		t.Fatal(err)
	}
	for name, damage := range map[string]func([]byte) []byte{
		"flipped byte": func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)-1] },
		"extended":     func(b []byte) []byte { return append(b, 0) },
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(lf.Path, damage(bytes.Clone(sealed)), 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := e.OpenAttachment(ctx, a.ID)
			if err == nil {
				_, err = io.ReadAll(r)
				r.Close()
			}
			if err == nil {
				t.Fatal("a damaged file read back without an error")
			}
		})
	}
	// The uploader refuses to send it and says why.
	if _, err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := e.Storage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Failed) != 1 || st.Failed[0].SHA256 != a.SHA256 {
		t.Fatalf("failed attachments = %+v", st.Failed)
	}
	if bs.holds(t, a.SHA256) != nil {
		t.Fatal("the server holds bytes of a damaged file")
	}
}

func TestEncryptedDeviceSyncsAndUploads(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	dir := t.TempDir()
	e := openWith(t, pinConfig(dir, bs.URL, "1234"))
	id, atts, _ := savedWithMarker(ctx, t, e)
	// Also a photo larger than one 64 KiB segment, read at offsets.
	big := attachPhoto(ctx, t, e, id, testJPEG(t, 1200, 900, 3))
	if big.Size <= 64<<10 {
		t.Fatalf("the large photo is %d bytes: want more than one segment", big.Size)
	}
	atts = append(atts, big)
	rep, err := e.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Uploaded != len(atts) {
		t.Fatalf("report = %+v", rep)
	}
	for _, a := range atts {
		got := bs.holds(t, a.SHA256)
		if sum := sha256.Sum256(got); got == nil || hex.EncodeToString(sum[:]) != a.SHA256 {
			t.Fatalf("the server's blob of %s does not match its hash", a.ID)
		}
	}
	v, err := e.Get(ctx, "work_order", id)
	if err != nil {
		t.Fatal(err)
	}
	if v.State != client.RecordSent {
		t.Fatalf("record state %s after sync", v.State)
	}
}

func TestEncryptedFileDamagedMidwayIsNotSent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bs := newBlobServer(t)
	e := openWith(t, pinConfig(t.TempDir(), bs.URL, "1234"))
	id := newRecord(ctx, t, e)
	a := attachPhoto(ctx, t, e, id, testJPEG(t, 1200, 900, 4))
	if a.Size <= 2*64<<10 {
		t.Fatalf("the photo is %d bytes: want three segments or more", a.Size)
	}
	lf, err := e.LocalFile(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(lf.Path)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 0x80 // in the first segment: the open check reads only the last
	if err := os.WriteFile(lf.Path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	e.Sync(ctx) // the upload fails on the damaged segment
	st, err := e.Storage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Failed) != 1 || st.Failed[0].SHA256 != a.SHA256 {
		t.Fatalf("failed attachments = %+v, failing = %+v", st.Failed, st.Failing)
	}
	if bs.holds(t, a.SHA256) != nil {
		t.Fatal("the server holds bytes of a damaged file")
	}
}

func TestEncryptedDeviceWithoutKeyFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	e := openWith(t, pinConfig(dir, "", "1234"))
	newRecord(ctx, t, e)
	e.Close()
	if err := os.Remove(filepath.Join(dir, "keys.json")); err != nil {
		t.Fatal(err)
	}
	before := deviceBytes(t, dir)
	_, err := client.Open(ctx, pinConfig(dir, "", "1234"))
	if fieldsync.ErrorCode(err) != fieldsync.EPINRequired || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("open without the key file: %v", err)
	}
	sameFiles(t, before, deviceBytes(t, dir))
	if _, err := os.Stat(filepath.Join(dir, "keys.json")); err == nil {
		t.Fatal("a new key file was made for an encrypted database")
	}
}
