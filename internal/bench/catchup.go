package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/internal/linkemu"
	"github.com/fieldsync/fieldsync/media"
	"github.com/fieldsync/fieldsync/protocol"
)

// The names of the catch-up metrics. Each capacity ratio is the useful
// payload (the ops' own JSON, uncompressed, as the device sends it, and the
// attachments' bytes) delivered per second, over the link's bytes per
// second in one direction.
const (
	Catchup3GRatio      = "catchup_3g_capacity_ratio"
	Catchup3GOpRatio    = "catchup_3g_op_ratio"   // op JSON per second of the push, over the link rate
	Catchup3GBlobRatio  = "catchup_3g_blob_ratio" // attachment bytes per second after the push, over the link rate
	Catchup3GSeconds    = "catchup_3g_seconds"
	Catchup2GRatio      = "catchup_2g_capacity_ratio"
	Catchup2GOpRatio    = "catchup_2g_op_ratio"
	Catchup2GBlobRatio  = "catchup_2g_blob_ratio"
	Catchup2GSeconds    = "catchup_2g_seconds"
	Catchup2GStalls     = "catchup_2g_loss_stalls"
	CatchupOpJSONBytes  = "catchup_op_json_bytes" // mean size of one op's own JSON in the backlog
	WireBytesPerOpRatio = "wire_bytes_per_op_ratio"
)

// LinkProfile is an emulated mobile link: a rate in each direction, a
// one-way latency, and TCP loss modelled as stalls (see linkemu.Loss).
type LinkProfile struct {
	Rate    int64         // bytes per second, each way
	Latency time.Duration // one way
	Loss    float64       // probability that a 1,460-byte segment is lost
	RTO     time.Duration // stall per lost segment
}

// The default links: 3G at about 1 Mbit/s, 2G (EDGE) at about 100 kbit/s.
var (
	Link3G = LinkProfile{Rate: 125_000, Latency: 150 * time.Millisecond}
	Link2G = LinkProfile{Rate: 12_500, Latency: 500 * time.Millisecond, Loss: 0.02, RTO: 1200 * time.Millisecond}
)

// CatchupConfig sizes the catch-up runs: a device that worked a day
// offline and meets the network again. Zero fields take the defaults.
type CatchupConfig struct {
	Ops3G      int         // ops in the 3G backlog (default 300)
	Photos3G   int         // photos in the 3G backlog (default 4)
	PhotoDim3G int         // width of each 3G photo in pixels, 4:3 (default 1280: about 290 KB prepared)
	Ops2G      int         // ops in the 2G backlog (default 100)
	Photos2G   int         // photos in the 2G backlog (default 2)
	PhotoDim2G int         // width of each 2G photo (default 800: about 115 KB prepared)
	Link3G     LinkProfile // default Link3G
	Link2G     LinkProfile // default Link2G
	Seed       uint64      // the loss sequence (default 1)
}

func (c *CatchupConfig) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Ops3G, 300)
	def(&c.Photos3G, 4)
	def(&c.Ops2G, 100)
	def(&c.Photos2G, 2)
	def(&c.PhotoDim3G, 2048)
	def(&c.PhotoDim2G, 800)
	if c.Link3G.Rate <= 0 {
		c.Link3G = Link3G
	}
	if c.Link2G.Rate <= 0 {
		c.Link2G = Link2G
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
}

// catchupResult is one catch-up run through one link.
type catchupResult struct {
	ratio, opRatio, blobRatio float64
	elapsed                   time.Duration
	opJSON                    int64 // bytes of the ops' own JSON
	ops                       int
	wirePush                  int64 // link bytes, both ways, during the push
	stalls                    int64
}

// runCatchup measures the 3G and 2G catch-ups and adds their metrics.
func runCatchup(ctx context.Context, cfg *Config, cc CatchupConfig, add func(string, float64, string)) error {
	cc.defaults()
	g3, err := catchup(ctx, cfg, "catchup-3g", cc.Link3G, cc.Ops3G, cc.Photos3G, cc.PhotoDim3G, cc.Seed)
	if err != nil {
		return fmt.Errorf("catch-up over 3G: %w", err)
	}
	g2, err := catchup(ctx, cfg, "catchup-2g", cc.Link2G, cc.Ops2G, cc.Photos2G, cc.PhotoDim2G, cc.Seed)
	if err != nil {
		return fmt.Errorf("catch-up over 2G: %w", err)
	}
	add(Catchup3GRatio, g3.ratio, "x")
	add(Catchup3GOpRatio, g3.opRatio, "x")
	add(Catchup3GBlobRatio, g3.blobRatio, "x")
	add(Catchup3GSeconds, g3.elapsed.Seconds(), "s")
	add(Catchup2GRatio, g2.ratio, "x")
	add(Catchup2GOpRatio, g2.opRatio, "x")
	add(Catchup2GBlobRatio, g2.blobRatio, "x")
	add(Catchup2GSeconds, g2.elapsed.Seconds(), "s")
	add(Catchup2GStalls, float64(g2.stalls), "stalls")
	add(CatchupOpJSONBytes, float64(g3.opJSON)/float64(g3.ops), "bytes")
	add(WireBytesPerOpRatio, float64(g3.wirePush)/float64(g3.opJSON), "x")
	return nil
}

// catchupWatch notes when a sync's push ended and what had crossed the
// link by then.
type catchupWatch struct {
	mu    sync.Mutex
	link  *linkemu.Link
	armed bool
	end   time.Time
	stats linkemu.Stats
}

func (w *catchupWatch) progress(p client.Progress) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed && p.Stage == "push" {
		w.end, w.stats = time.Now(), w.link.Stats()
	}
}

func (w *catchupWatch) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = true
}

func (w *catchupWatch) result() (time.Time, linkemu.Stats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.end, w.stats
}

// catchup runs one catch-up: a device syncs a few work orders through the
// link (not timed), works offline (ops ops, photos photos of width dim;
// not timed), then syncs everything through the link, timed from the
// start of Sync until the server holds every op and every photo.
func catchup(ctx context.Context, cfg *Config, name string, lp LinkProfile, ops, photos, dim int, seed uint64) (catchupResult, error) {
	var res catchupResult
	ts, err := startServer(ctx, filepath.Join(cfg.Dir, name+"-server.db"))
	if err != nil {
		return res, err
	}
	defer ts.close()
	link, err := linkemu.Start(linkemu.Config{Upstream: strings.TrimPrefix(ts.url, "http://"), Rate: lp.Rate, Latency: lp.Latency})
	if err != nil {
		return res, err
	}
	defer link.Close()
	var loss *linkemu.LossCounter
	if lp.Loss > 0 {
		if loss, err = link.AddLoss(linkemu.Loss{Probability: lp.Loss, RTO: lp.RTO, Seed: seed}); err != nil {
			return res, err
		}
	}
	watch := &catchupWatch{link: link}
	eng, err := client.Open(ctx, client.Config{
		Dir: filepath.Join(cfg.Dir, name+"-device"), ServerURL: link.URL(), Progress: watch.progress,
		Photo: media.PhotoOptions{MaxDim: dim, Quality: 80},
	})
	if err != nil {
		return res, err
	}
	defer eng.Close()

	// This morning's work orders, synced before leaving.
	nrec := max(min(ops/15, 20), 1)
	ids := make([]string, nrec)
	for i := range ids {
		op, err := eng.Create(ctx, "work_order", map[string]any{
			"title": "Boiler service " + strconv.Itoa(i), "status": "assigned", "address": "12 Harbour Road, Unit " + strconv.Itoa(i),
		})
		if err != nil {
			return res, err
		}
		ids[i] = op.EntityID
	}
	if err := syncThrough(ctx, eng, nil); err != nil {
		return res, err
	}

	// The day offline.
	var opJSON int64
	count := func(op fieldsync.Op) error {
		data, err := json.Marshal(protocol.FromOp(&op))
		opJSON += int64(len(data))
		return err
	}
	for i := range ops {
		op, err := dayOp(ctx, eng, ids, i)
		if err != nil {
			return res, err
		}
		if err := count(op); err != nil {
			return res, err
		}
		cfg.Progress(name+": working offline", i+1, ops)
	}
	var blobs int64
	for i := range photos {
		att, op, err := eng.Attach(ctx, "work_order", ids[i%nrec], client.AttachInput{
			Role: fieldsync.RolePhoto, Name: fmt.Sprintf("site-%02d.jpg", i+1), Data: bytes.NewReader(sitePhoto(uint64(i+1), dim)),
		})
		if err != nil {
			return res, err
		}
		if err := count(op); err != nil {
			return res, err
		}
		blobs += att.Size
	}
	res.ops = ops + photos
	res.opJSON = opJSON

	settle()
	before := link.Stats()
	watch.arm()
	start := time.Now()
	err = syncThrough(ctx, eng, func(rep client.Report) {
		cfg.Progress(name+": catching up", photos-rep.UploadsLeft, photos)
	})
	res.elapsed = time.Since(start)
	if err != nil {
		return res, err
	}
	pushEnd, atPush := watch.result()
	if pushEnd.IsZero() {
		return res, fmt.Errorf("%s: the sync reported no push", name)
	}
	pushDur := pushEnd.Sub(start)
	rate := float64(lp.Rate)
	res.ratio = float64(opJSON+blobs) / res.elapsed.Seconds() / rate
	res.opRatio = float64(opJSON) / pushDur.Seconds() / rate
	if rest := res.elapsed - pushDur; rest > 0 {
		res.blobRatio = float64(blobs) / rest.Seconds() / rate
	}
	res.wirePush = atPush.BytesUp - before.BytesUp + atPush.BytesDown - before.BytesDown
	if loss != nil {
		res.stalls = loss.Stalls()
	}
	return res, nil
}

// dayOp makes the i-th op of a day's work: mostly status changes,
// comments, readings and checklist ticks on the morning's work orders,
// and now and then a new work order.
func dayOp(ctx context.Context, eng *client.Engine, ids []string, i int) (fieldsync.Op, error) {
	id := ids[i%len(ids)]
	switch i % 10 {
	case 0, 5:
		return eng.Update(ctx, "work_order", id, map[string]any{"status": statuses[(i/len(ids))%len(statuses)]})
	case 1, 6:
		return eng.Append(ctx, "work_order", id, "comments", "Checked the valve at "+strconv.Itoa(8+i%10)+":"+strconv.Itoa(10+i%50)+", pressure holds at 2.1 bar.")
	case 2, 7:
		return eng.Append(ctx, "work_order", id, "readings", map[string]any{"kind": "pressure_bar", "value": 1.5 + float64(i%10)/10, "meter": "M-" + strconv.Itoa(1000+i)})
	case 3, 8:
		return eng.Append(ctx, "work_order", id, "checklist", map[string]any{"item": "step " + strconv.Itoa(i%12+1), "done": true})
	case 4:
		return eng.Update(ctx, "work_order", id, map[string]any{"description": "Customer reports noise from the pump; replaced seal, item " + strconv.Itoa(i) + "."})
	default:
		return eng.Create(ctx, "work_order", map[string]any{"title": "Follow-up visit " + strconv.Itoa(i), "status": "new", "address": "3 Mill Lane"})
	}
}

// sitePhoto makes a dim×(3/4·dim) JPEG that compresses like a photo of a
// site: smooth shapes under fine noise, different for every seed.
func sitePhoto(seed uint64, dim int) []byte {
	w, h := dim, dim*3/4
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(seed, 0x517e))
	for y := range h {
		for x := range w {
			n := r.IntN(24)
			img.SetRGBA(x, y, color.RGBA{uint8((x*255/w + n) % 256), uint8((y*200/h + n) % 256), uint8((x + y) / 8 % 256), 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		panic(err) // encoding into memory cannot fail
	}
	return b.Bytes()
}

// runExtra runs the measurements a Config asks for beyond the core ones:
// the catch-up and the backlog growth.
func runExtra(ctx context.Context, cfg *Config, add func(string, float64, string)) error {
	if cfg.Catchup != nil {
		if err := runCatchup(ctx, cfg, *cfg.Catchup, add); err != nil {
			return err
		}
	}
	if cfg.Growth != nil {
		if err := runGrowth(ctx, cfg, *cfg.Growth, add); err != nil {
			return fmt.Errorf("backlog growth: %w", err)
		}
	}
	return nil
}
