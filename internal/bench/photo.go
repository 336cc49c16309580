package bench

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/internal/linkemu"
	"github.com/fieldsync/fieldsync/media"
)

// The names of the attachment metrics.
const (
	PhotoPrepareMS     = "photo_prepare_ms"    // decode, resize, encode and thumbnail of a 12 MP JPEG
	PhotoGoodputRatio  = "photo_goodput_ratio" // photo bytes delivered per second over the link's capacity
	PhotoWastedRatio   = "photo_wasted_ratio"  // bytes sent beyond the photos' own size, over that size
	PhotoLinkBytesPerS = "photo_link_bytes_per_s"
	PhotoGoodputBPS    = "photo_goodput_bytes_per_s"
	PhotoBytesEach     = "photo_bytes_each"
	PhotoLinkCuts      = "photo_link_cuts"
)

// photoPrepare times media.PreparePhoto of a 12-megapixel JPEG: the median
// of cfg.PrepareRuns runs, after one untimed run.
func photoPrepare(ctx context.Context, cfg *Config) (time.Duration, error) {
	src := media.Synthetic12MP()
	var times []time.Duration
	runs := cfg.PrepareRuns + 1
	for i := range runs {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		start := time.Now()
		p, err := media.PreparePhoto(bytes.NewReader(src), media.PhotoOptions{})
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		if len(p.Data) == 0 || len(p.Thumb) == 0 {
			return 0, fmt.Errorf("prepared photo has %d bytes and a %d-byte thumbnail", len(p.Data), len(p.Thumb))
		}
		if i > 0 {
			times = append(times, d)
		}
		cfg.Progress("photo preparation", i+1, runs)
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

// noisyPhoto makes a 2048×1536 JPEG of about 2 MB at quality 90: a
// gradient under noise, different for every seed.
func noisyPhoto(seed uint64) []byte {
	const w, h = 2048, 1536
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	for y := range h {
		for x := range w {
			n := r.IntN(80)
			img.SetRGBA(x, y, color.RGBA{uint8((x/8 + n) % 256), uint8((y/6 + n) % 256), uint8((x + y) / 16 % 256), 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		panic(err) // encoding into memory cannot fail
	}
	return b.Bytes()
}

type photoResult struct {
	goodput, linkRate float64 // bytes per second
	wasted            float64 // ratio
	each              float64 // bytes per photo
	cuts              int
}

// photoUpload attaches cfg.Photos photos on a device (not timed), then
// times their upload through an emulated link of cfg.LinkRate bytes per
// second that is cut every cfg.CutEvery, syncing again at once after
// every failure, as Run would once the link is back.
func photoUpload(ctx context.Context, cfg *Config) (photoResult, error) {
	var res photoResult
	ts, err := startServer(ctx, filepath.Join(cfg.Dir, "photo-server.db"))
	if err != nil {
		return res, err
	}
	defer ts.close()
	link, err := linkemu.Start(linkemu.Config{Upstream: strings.TrimPrefix(ts.url, "http://"), Rate: cfg.LinkRate})
	if err != nil {
		return res, err
	}
	defer link.Close()
	eng, err := client.Open(ctx, client.Config{
		Dir: filepath.Join(cfg.Dir, "photo-device"), ServerURL: link.URL(),
		Photo: media.PhotoOptions{MaxDim: 2048, Quality: 90},
	})
	if err != nil {
		return res, err
	}
	defer eng.Close()

	op, err := eng.Create(ctx, "work_order", map[string]any{"title": "Roof inspection", "status": "new"})
	if err != nil {
		return res, err
	}
	// The work order is on the server before the photos are taken.
	if err := syncThrough(ctx, eng, nil); err != nil {
		return res, err
	}
	var total int64
	for i := range cfg.Photos {
		att, _, err := eng.Attach(ctx, "work_order", op.EntityID, client.AttachInput{
			Role: fieldsync.RolePhoto, Name: fmt.Sprintf("roof-%02d.jpg", i+1), Data: bytes.NewReader(noisyPhoto(uint64(i + 1))),
		})
		if err != nil {
			return res, err
		}
		total += att.Size
		cfg.Progress("photos: taking photos", i+1, cfg.Photos)
	}
	res.each = float64(total) / float64(cfg.Photos)

	// Timed: the attach ops, then the photos, through the cut link. What
	// crosses the link beyond the photos' own bytes (requests, answers'
	// acknowledgements aside, and bytes sent again after a cut) is waste.
	before := link.Stats()
	cutCtx, stopCuts := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.CutEvery)
		defer t.Stop()
		for {
			select {
			case <-cutCtx.Done():
				return
			case <-t.C:
				link.Cut()
			}
		}
	}()
	start := time.Now()
	err = syncThrough(ctx, eng, func(rep client.Report) {
		if done := cfg.Photos - rep.UploadsLeft; done > 0 {
			cfg.Progress("photos: uploading through a link cut every "+cfg.CutEvery.String(), done, cfg.Photos)
		}
	})
	elapsed := time.Since(start)
	stopCuts()
	wg.Wait()
	if err != nil {
		return res, err
	}
	after := link.Stats()
	up := after.BytesUp - before.BytesUp
	if up < total {
		return res, fmt.Errorf("only %d bytes crossed the link for %d bytes of photos", up, total)
	}
	res.goodput = float64(total) / elapsed.Seconds()
	res.linkRate = float64(cfg.LinkRate)
	res.wasted = float64(up-total) / float64(total)
	res.cuts = after.Cuts - before.Cuts
	return res, nil
}

// syncThrough syncs until nothing is left to send, syncing again at once
// after a retryable failure (the link was cut). It fails on anything else.
func syncThrough(ctx context.Context, eng *client.Engine, report func(client.Report)) error {
	for attempt := 0; ; attempt++ {
		rep, err := eng.Sync(ctx)
		if report != nil {
			report(rep)
		}
		if err == nil && rep.UploadsLeft == 0 {
			st, err := eng.Status(ctx)
			if err != nil {
				return err
			}
			if st.Storage.Pending == 0 {
				return nil
			}
			continue
		}
		if err != nil && !fieldsync.ErrorCode(err).Retryable() {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt > 100000 {
			return fmt.Errorf("no end to the uploads after %d syncs: %v", attempt, err)
		}
	}
}
