// Package gzpool keeps gzip compressors (gzip.BestSpeed) for reuse. Each
// holds several hundred KiB of state. A sync.Pool drops its contents at
// every garbage collection, and a push collects garbage every few hundred
// ops, so most batches paid for a new compressor; this pool keeps a few
// for good.
package gzpool

import (
	"compress/gzip"
	"io"
)

// free holds the compressors not in use: as many as requests are usually
// compressed at once on a small machine.
var free = make(chan *gzip.Writer, 4)

// Get returns a compressor writing to w.
func Get(w io.Writer) *gzip.Writer {
	select {
	case zw := <-free:
		zw.Reset(w)
		return zw
	default:
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // a valid level: no error
		return zw
	}
}

// Put returns zw, closed or abandoned, for reuse; the caller must not use
// it again.
func Put(zw *gzip.Writer) {
	zw.Reset(nil) // let go of the last writer
	select {
	case free <- zw:
	default:
	}
}
