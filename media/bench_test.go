package media

import (
	"bytes"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"

	"golang.org/x/image/draw"
)

var (
	synthOnce sync.Once
	synth12   []byte
)

// synthetic12 returns Synthetic12MP, made once per test binary.
func synthetic12() []byte {
	synthOnce.Do(func() { synth12 = Synthetic12MP() })
	return synth12
}

// peakHeap samples the live heap while it runs; stop returns the highest
// value seen, in bytes. Sampling reads runtime/metrics, which does not stop
// the world.
func peakHeap() (stop func() uint64) {
	done, result := make(chan struct{}), make(chan uint64)
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				result <- peak
				return
			default:
				runtime.Gosched()
			}
		}
	}()
	return func() uint64 { close(done); return <-result }
}

// BenchmarkPreparePhoto12MP prepares a 4000×3000 camera JPEG at the default
// options: the figure `fieldsync bench` reports as photo_prepare_ms. After
// the timed runs, one more run is made with the heap sampled, for
// peak-heap-MB (garbage not yet collected included).
func BenchmarkPreparePhoto12MP(b *testing.B) {
	src := synthetic12()
	prepare := func() Prepared {
		p, err := PreparePhoto(bytes.NewReader(src), PhotoOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	b.ReportAllocs()
	for b.Loop() {
		prepare()
	}
	runtime.GC()
	stop := peakHeap()
	p := prepare()
	b.ReportMetric(float64(stop())/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(len(src)), "input-bytes")
	b.ReportMetric(float64(len(p.Data)), "output-bytes")
	b.ReportMetric(float64(len(p.Thumb)), "thumb-bytes")
}

// BenchmarkResize12MP compares the downsizing this package does (halving,
// then bilinear) with draw.CatmullRom on the same decoded 12-megapixel
// photo, to 2048×1536.
func BenchmarkResize12MP(b *testing.B) {
	img, err := jpeg.Decode(bytes.NewReader(synthetic12()))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("halving-bilinear", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			resize(img, 2048, 1536)
		}
	})
	b.Run("catmullrom", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dst := image.NewRGBA(image.Rect(0, 0, 2048, 1536))
			draw.CatmullRom.Scale(dst, dst.Rect, img, img.Bounds(), draw.Src, nil)
		}
	})
}

// BenchmarkDecode12MP is the floor of BenchmarkPreparePhoto12MP: decoding
// the JPEG alone.
func BenchmarkDecode12MP(b *testing.B) {
	src := synthetic12()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jpeg.Decode(bytes.NewReader(src)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeSignature draws a typical signature on a 600×200 pad.
func BenchmarkEncodeSignature(b *testing.B) {
	strokes := handwriting(rand.New(rand.NewPCG(1, 1)), 600, 200)
	var p Prepared
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if p, err = EncodeSignature(strokes, 600, 200); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(p.Data)), "png-bytes")
}
