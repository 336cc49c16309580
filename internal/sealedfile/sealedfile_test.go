package sealedfile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func seed(t testing.TB) uint64 {
	s := uint64(0)
	if v := os.Getenv("FIELDSYNC_SEED"); v != "" {
		s, _ = strconv.ParseUint(v, 10, 64)
	} else {
		var b [8]byte
		rand.Read(b[:])
		for _, c := range b {
			s = s<<8 | uint64(c)
		}
	}
	t.Logf("seed %d (set FIELDSYNC_SEED to replay)", s)
	return s
}

func TestRoundTripAtOffsets(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(seed(t), 1))
	for _, n := range []int{0, 1, SegmentSize - 1, SegmentSize, SegmentSize + 1, 3*SegmentSize + 17, 2 * SegmentSize} {
		plain := make([]byte, n)
		for i := range plain {
			plain[i] = byte(rng.Uint32())
		}
		sealed, err := Seal(key(1), plain)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(sealed)) != SealedSize(int64(n)) {
			t.Fatalf("n=%d: sealed %d bytes, SealedSize says %d", n, len(sealed), SealedSize(int64(n)))
		}
		r, err := NewReader(key(1), bytes.NewReader(sealed), int64(len(sealed)))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if r.Size() != int64(n) {
			t.Fatalf("n=%d: size %d", n, r.Size())
		}
		all, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
		if err != nil || !bytes.Equal(all, plain) {
			t.Fatalf("n=%d: read back differs: %v", n, err)
		}
		for range 50 {
			if n == 0 {
				break
			}
			off := rng.IntN(n)
			l := rng.IntN(n-off) + 1
			p := make([]byte, l)
			if _, err := r.ReadAt(p, int64(off)); err != nil && !(errors.Is(err, io.EOF) && off+l == n) {
				t.Fatalf("n=%d ReadAt(%d, %d): %v", n, l, off, err)
			}
			if !bytes.Equal(p, plain[off:off+l]) {
				t.Fatalf("n=%d ReadAt(%d, %d) differs", n, l, off)
			}
		}
		if _, err := r.ReadAt(make([]byte, 1), int64(n)); !errors.Is(err, io.EOF) {
			t.Fatalf("n=%d: read past the end: %v", n, err)
		}
	}
}

func TestDamageIsDetected(t *testing.T) {
	plain := bytes.Repeat([]byte("fieldsync "), 3*SegmentSize/10+5) // 4 segments
	sealed, err := Seal(key(1), plain)
	if err != nil {
		t.Fatal(err)
	}
	seg := func(i int) int { return HeaderSize + i*(SegmentSize+16) }
	cases := map[string][]byte{
		"flip in segment 0": flip(sealed, seg(0)+5),
		"flip in header":    flip(sealed, 9),
		"flip in last":      flip(sealed, len(sealed)-3),
		"cut mid segment":   sealed[:len(sealed)-7],
		"cut at boundary":   sealed[:seg(3)],
		"extended":          append(bytes.Clone(sealed), make([]byte, 40)...),
		"segments swapped":  swap(sealed, seg(0), seg(1), SegmentSize+16),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if err := readAll(key(1), b); !errors.Is(err, ErrDamaged) {
				t.Fatalf("got %v, want ErrDamaged", err)
			}
		})
	}
	t.Run("another key", func(t *testing.T) {
		if err := readAll(key(2), sealed); !errors.Is(err, ErrDamaged) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("intact", func(t *testing.T) {
		if err := readAll(key(1), sealed); err != nil {
			t.Fatal(err)
		}
	})
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func swap(b []byte, i, j, n int) []byte {
	c := bytes.Clone(b)
	copy(c[i:i+n], b[j:j+n])
	copy(c[j:j+n], b[i:i+n])
	return c
}

func readAll(k, sealed []byte) error {
	r, err := NewReader(k, bytes.NewReader(sealed), int64(len(sealed)))
	if err != nil {
		return err
	}
	_, err = io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	return err
}

func TestOpenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	sealed, _ := Seal(key(3), []byte("hello"))
	if err := os.WriteFile(path, sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Open(key(3), path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := make([]byte, 5)
	if _, err := f.ReadAt(p, 0); err != nil || string(p) != "hello" {
		t.Fatalf("%q %v", p, err)
	}
	if !IsSealed(sealed) || IsSealed([]byte("\xff\xd8\xff\xe0 JPEG")) {
		t.Fatal("IsSealed")
	}
}

// FuzzReader feeds arbitrary bytes to the reader as a sealed file: it
// must refuse them (or, for bytes that are a sealed file, read them)
// without panicking, and never return more than Size bytes.
func FuzzReader(f *testing.F) {
	for _, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("y"), SegmentSize+3)} {
		s, _ := Seal(key(1), p)
		f.Add(s, int64(0), 10)
	}
	f.Add([]byte("fsseal\x00\x01short"), int64(3), 4)
	f.Fuzz(func(t *testing.T, b []byte, off int64, n int) {
		r, err := NewReader(key(1), bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if r.Size() < 0 || r.Size() > int64(len(b)) {
			t.Fatalf("size %d of %d bytes", r.Size(), len(b))
		}
		if off < 0 || n < 0 || n > 1<<20 {
			return
		}
		got, err := r.ReadAt(make([]byte, n), off)
		// An empty read is answered 0, nil wherever it points, as os.File does.
		if got > n || (err == nil && n > 0 && off+int64(n) > r.Size()) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v with size %d", n, off, got, err, r.Size())
		}
	})
}
