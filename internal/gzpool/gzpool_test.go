package gzpool

import (
	"bytes"
	"compress/gzip"
	"io"
	"runtime"
	"strings"
	"testing"
)

// TestReuse compresses with pooled writers, across garbage collections,
// and checks that every stream decompresses to what was written and that
// a returned writer is handed out again.
func TestReuse(t *testing.T) {
	var seen []*gzip.Writer
	for i := range 10 {
		var buf bytes.Buffer
		zw := Get(&buf)
		seen = append(seen, zw)
		text := strings.Repeat("batch ", 100*(i+1))
		if _, err := zw.Write([]byte(text)); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		Put(zw)
		runtime.GC()
		zr, err := gzip.NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || string(got) != text {
			t.Fatalf("stream %d: %d bytes back, want %d (%v)", i, len(got), len(text), err)
		}
	}
	if seen[0] != seen[9] {
		t.Fatal("a returned compressor was not reused after garbage collections")
	}
}
