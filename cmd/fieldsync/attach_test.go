package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"testing"
)

func writeTestJPEG(t *testing.T, path string, w, h int) {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAttachCommand(t *testing.T) {
	clearEnv(t)
	dir := filepath.Join(t.TempDir(), "dev")
	files := t.TempDir()
	out := mustCLI(t, "create", "--dir", dir, "--set", "title=Boiler", "--set", "status=new")
	m := createdRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("create said %s", out)
	}
	id := m[1]
	photo := filepath.Join(files, "boiler.jpg")
	writeTestJPEG(t, photo, 3000, 2000)
	out = mustCLI(t, "attach", "--dir", dir, "--id", id, photo)
	contains(t, "attach photo", out, "saved on this device: photo boiler.jpg attached to", "attachment ", "(image/jpeg)",
		"before,", "after preparation", "saved on this device; will upload when online")

	strokes := filepath.Join(files, "sig.json")
	os.WriteFile(strokes, []byte(`{"w":400,"h":150,"strokes":[[[10,10],[200,80],[300,20]],[[50,100]]]}`), 0o600)
	out = mustCLI(t, "attach", "--dir", dir, "--id", id, "--strokes", strokes)
	contains(t, "attach signature", out, "signature attached to", "(image/png)")

	out = mustCLI(t, "status", "--dir", dir)
	contains(t, "status", out, "storage: ", "of 2.0 GiB", "photos and scans", "thumbnails", "signatures",
		"attachments not yet on the server: 2")
	out = mustCLI(t, "status", "--dir", dir, "--json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Storage.Pending != 2 || st.Storage.Originals == 0 || st.Storage.Signatures == 0 || st.Storage.Limit != 2<<30 {
		t.Fatalf("status --json storage %+v", st.Storage)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"attach", "--dir", dir, photo}, "--id"},
		{[]string{"attach", "--dir", dir, "--id", id}, "FILE"},
		{[]string{"attach", "--dir", dir, "--id", id, "--strokes", strokes, photo}, "not both"},
		{[]string{"attach", "--dir", dir, "--id", id, "--role", "video", photo}, "photo, scan or signature"},
		{[]string{"attach", "--dir", dir, "--id", id, "--role", "photo", "--strokes", strokes}, "--strokes makes a signature"},
		{[]string{"attach", "--dir", dir, "--id", id, strokes}, "unsupported_media"},
		{[]string{"attach", "--dir", dir, "--id", id, filepath.Join(files, "missing.jpg")}, "cannot read"},
	} {
		contains(t, c.want, cliErr(t, c.args...), c.want)
	}
}
