// Package sealedfile encrypts a file in 64 KiB segments with
// XChaCha20-Poly1305 so that it can be read back at any offset, and so
// that any change, truncation, extension or reordering of its bytes is
// detected on read.
//
// Layout: an 24-byte header (8 bytes of magic with the format version,
// then a random 16-byte nonce prefix made for this file), then the
// segments, each SegmentSize bytes of plaintext (the last one fewer, and
// at least one segment even for an empty file) sealed with a 16-byte tag.
// Segment i is sealed with the nonce prefix‖i (big-endian uint64) and
// the associated data header‖i‖final, where final is 1 for the last
// segment and 0 otherwise.
package sealedfile

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// SegmentSize is the plaintext size of every segment but the last.
const SegmentSize = 64 << 10

// Sizes of the parts of a sealed file.
const (
	magicSize   = 8
	prefixSize  = 16
	HeaderSize  = magicSize + prefixSize
	tagSize     = chacha20poly1305.Overhead
	sealedChunk = SegmentSize + tagSize
)

var magic = [magicSize]byte{'f', 's', 's', 'e', 'a', 'l', 0, 1}

// ErrDamaged is returned when a sealed file's bytes are not what was
// sealed with that key: changed, cut short, extended, or another key.
var ErrDamaged = errors.New("the encrypted file is damaged or was sealed with another key")

// IsSealed reports whether b starts like a sealed file.
func IsSealed(b []byte) bool {
	return len(b) >= magicSize && bytes.Equal(b[:magicSize], magic[:])
}

// SealedSize is the size of the sealed form of n bytes of plaintext.
func SealedSize(n int64) int64 {
	segs := max(1, (n+SegmentSize-1)/SegmentSize)
	return HeaderSize + n + segs*tagSize
}

// Seal returns the sealed form of plaintext under key (32 bytes).
func Seal(key, plaintext []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, HeaderSize, SealedSize(int64(len(plaintext))))
	copy(out, magic[:])
	rand.Read(out[magicSize:HeaderSize])
	header := out[:HeaderSize:HeaderSize]
	var nonce [chacha20poly1305.NonceSizeX]byte
	var ad [HeaderSize + 9]byte
	for i := int64(0); ; i++ {
		seg := plaintext[min(int64(len(plaintext)), i*SegmentSize):min(int64(len(plaintext)), (i+1)*SegmentSize)]
		final := (i+1)*SegmentSize >= int64(len(plaintext))
		segParams(header, i, final, &nonce, &ad)
		out = aead.Seal(out, nonce[:], seg, ad[:])
		if final {
			return out, nil
		}
	}
}

// segParams fills the nonce and associated data of segment i.
func segParams(header []byte, i int64, final bool, nonce *[chacha20poly1305.NonceSizeX]byte, ad *[HeaderSize + 9]byte) {
	copy(nonce[:], header[magicSize:HeaderSize])
	binary.BigEndian.PutUint64(nonce[prefixSize:], uint64(i))
	copy(ad[:], header)
	binary.BigEndian.PutUint64(ad[HeaderSize:], uint64(i))
	ad[HeaderSize+8] = 0
	if final {
		ad[HeaderSize+8] = 1
	}
}

// Reader reads the plaintext of a sealed file at any offset, decrypting
// and authenticating the segments it touches. It is safe for concurrent
// use.
type Reader struct {
	r      io.ReaderAt
	aead   cipher.AEAD
	header [HeaderSize]byte
	size   int64 // plaintext size
	segs   int64

	mu    sync.Mutex
	cur   int64 // segment held in buf; -1 for none
	buf   []byte
	chunk []byte
}

// NewReader reads the sealed file of sealedSize bytes in r with key. It
// authenticates the header and the last segment at once, so a file cut
// short or extended is refused here with ErrDamaged.
func NewReader(key []byte, r io.ReaderAt, sealedSize int64) (*Reader, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	rd := &Reader{r: r, aead: aead, cur: -1, buf: make([]byte, 0, SegmentSize), chunk: make([]byte, sealedChunk)}
	if sealedSize < HeaderSize+tagSize {
		return nil, ErrDamaged
	}
	if _, err := r.ReadAt(rd.header[:], 0); err != nil {
		return nil, fmt.Errorf("read the header: %w", err)
	}
	if !IsSealed(rd.header[:]) {
		return nil, ErrDamaged
	}
	body := sealedSize - HeaderSize
	rd.segs = (body + sealedChunk - 1) / sealedChunk
	last := body - (rd.segs-1)*sealedChunk
	if last < tagSize || (last == tagSize && rd.segs > 1) {
		return nil, ErrDamaged
	}
	rd.size = body - rd.segs*tagSize
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if err := rd.load(rd.segs - 1); err != nil {
		return nil, err
	}
	return rd, nil
}

// Size is the plaintext size.
func (r *Reader) Size() int64 { return r.size }

// load decrypts segment i into r.buf. r.mu is held.
func (r *Reader) load(i int64) error {
	if r.cur == i {
		return nil
	}
	r.cur = -1
	off := HeaderSize + i*sealedChunk
	n := int64(sealedChunk)
	final := i == r.segs-1
	if final {
		n = tagSize + r.size - i*SegmentSize
	}
	chunk := r.chunk[:n]
	if _, err := r.r.ReadAt(chunk, off); err != nil {
		if errors.Is(err, io.EOF) {
			return ErrDamaged
		}
		return err
	}
	var nonce [chacha20poly1305.NonceSizeX]byte
	var ad [HeaderSize + 9]byte
	segParams(r.header[:], i, final, &nonce, &ad)
	out, err := r.aead.Open(r.buf[:0], nonce[:], chunk, ad[:])
	if err != nil {
		return ErrDamaged
	}
	r.buf, r.cur = out, i
	return nil
}

// ReadAt implements io.ReaderAt over the plaintext.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("sealedfile: negative offset")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.size {
			return n, io.EOF
		}
		i := pos / SegmentSize
		if err := r.load(i); err != nil {
			return n, err
		}
		n += copy(p[n:], r.buf[pos-i*SegmentSize:])
	}
	return n, nil
}

// File is an open sealed file.
type File struct {
	*Reader
	f *os.File
}

// Open opens the sealed file at path with key.
func Open(key []byte, path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	r, err := NewReader(key, f, fi.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{Reader: r, f: f}, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }
