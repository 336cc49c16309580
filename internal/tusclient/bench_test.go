package tusclient_test

import (
	"context"
	"math/rand/v2"
	"net/url"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/linkemu"
	"github.com/fieldsync/fieldsync/internal/tusclient"
)

// BenchmarkUploadLoopback sends 20 files of 2 MiB over loopback to a tusd
// server, one after the other, with one Client (its chunk size carries
// over).
func BenchmarkUploadLoopback(b *testing.B) {
	ts := newTusServer(b)
	rng := rand.New(rand.NewPCG(1, 2))
	files := make([][]byte, 20)
	for i := range files {
		files[i] = randomBytes(rng, 2<<20)
	}
	ctx := context.Background()
	b.SetBytes(20 << 20 * 2)
	for b.Loop() {
		c := &tusclient.Client{}
		for _, f := range files {
			u := upload(f, shaOf(f))
			u.Endpoint = ts.URL
			if _, err := c.Upload(ctx, u); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkUploadSlowLinkCut sends 6 MiB over an emulated 1 MB/s link
// with 40 ms latency that is cut every 3 seconds, with adaptive chunks
// and with fixed small and large ones. Metrics: goodput (file bytes per
// second) and the bytes the link carried per file byte.
func BenchmarkUploadSlowLinkCut(b *testing.B) {
	cases := []struct {
		name  string
		chunk int64 // 0: adaptive
	}{{"adaptive", 0}, {"fixed-64KiB", 64 << 10}, {"fixed-8MiB", 8 << 20}}
	data := randomBytes(rand.New(rand.NewPCG(3, 4)), 6<<20)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ts := newTusServer(b)
			u, _ := url.Parse(ts.URL)
			link, err := linkemu.Start(linkemu.Config{Upstream: u.Host, Rate: 1_000_000, Latency: 40 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			defer link.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				t := time.NewTicker(3 * time.Second)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						link.Cut()
					}
				}
			}()
			var took time.Duration
			var cuts int
			for b.Loop() {
				cl := &tusclient.Client{MinChunk: c.chunk, FirstChunk: c.chunk, MaxChunk: c.chunk, Retries: 1000, RetryWait: 50 * time.Millisecond}
				up := upload(data, shaOf(data))
				up.Endpoint = link.URL() + "/files/"
				start := time.Now()
				res, err := cl.Upload(ctx, up)
				if err != nil {
					b.Fatal(err)
				}
				took += time.Since(start)
				cuts += res.Cuts
			}
			st := link.Stats()
			n := float64(b.N)
			b.ReportMetric(float64(len(data))*n/took.Seconds()/1e6, "MB/s")
			b.ReportMetric(float64(st.BytesUp)/(float64(len(data))*n), "link-bytes/byte")
			b.ReportMetric(float64(cuts)/n, "cuts/op")
		})
	}
}
