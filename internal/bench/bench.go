// Package bench measures the sync core on the machine it runs on: the
// fsync floor of the disk, the latency of one durable user action, push
// and pull throughput between a real device engine and a real server over
// loopback HTTP, bytes on the wire per op, and the process's peak memory.
// Every figure comes from one run, so ratios to the floors measured in the
// same run compare like with like. `fieldsync bench` prints the results.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/internal/cputime"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// Config says how much work a run does. Dir is required; every other zero
// value is the documented default.
type Config struct {
	Dir     string // working directory for the databases; must exist
	Ops     int    // push backlog in ops (default 10,000)
	Records int    // records pulled into a fresh device (default 10,000)
	Saves   int    // timed local saves (default 2,000)
	Fsyncs  int    // timed appends + fdatasync for the floor (default 2,000)
	Trips   int    // timed loopback round trips (default 1,000)
	// WireOps is the number of status updates pushed to measure bytes on
	// the wire per op (default 2,000).
	WireOps int
	// Photos is the number of photos of about 2 MB uploaded through an
	// emulated link (default 20) of LinkRate bytes a second (default
	// 1,000,000: 8 Mbit/s) that is cut every CutEvery (default 5 s).
	Photos   int
	LinkRate int64
	CutEvery time.Duration
	// PrepareRuns is the number of timed preparations of a 12-megapixel
	// photo (default 3), after one untimed.
	PrepareRuns int
	// Progress, when set, is told what the run is doing and how far it is:
	// done of total items of the named stage.
	Progress func(stage string, done, total int)
	// Catchup and Growth, when set, add the catch-up through emulated 3G
	// and 2G links (catchup.go) and the backlog growth (growth.go); nil:
	// not measured.
	Catchup *CatchupConfig
	Growth  *GrowthConfig
}

func (c *Config) defaults() error {
	if c.Dir == "" {
		return errors.New("bench: Config.Dir is required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Ops, 10000)
	def(&c.Records, 10000)
	def(&c.Saves, 2000)
	def(&c.Fsyncs, 2000)
	def(&c.Trips, 1000)
	def(&c.WireOps, 2000)
	def(&c.Photos, 20)
	def(&c.PrepareRuns, 3)
	if c.LinkRate <= 0 {
		c.LinkRate = 1_000_000
	}
	if c.CutEvery <= 0 {
		c.CutEvery = 5 * time.Second
	}
	if c.Progress == nil {
		c.Progress = func(string, int, int) {}
	}
	return nil
}

// Metric is one measured figure. Its JSON form is the `fieldsync bench
// --json` format: {"name","value","unit"}.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// The names of the metrics a run reports.
const (
	FsyncFloorMS      = "fsync_floor_ms"
	LocalSaveP50MS    = "local_save_p50_ms"
	LocalSaveP99MS    = "local_save_p99_ms"
	LocalSaveRatio    = "local_save_p50_fsync_ratio"
	LocalSaveP99Ratio = "local_save_p99_fsync_ratio"
	PushOpsPerS       = "push_ops_per_s"
	PushOpMS          = "push_ms_per_op"
	PushCPUPerOp      = "push_cpu_us_per_op"
	PullRecordsPerS   = "pull_records_per_s"
	WireBytesPerOp    = "wire_bytes_per_op"
	WireBytesPerRec   = "wire_bytes_per_pulled_record"
	LoopbackRTTMS     = "loopback_rtt_ms"
	RSSPeakMB         = "rss_peak_mb"     // through push and pull
	RSSPeakAllMB      = "rss_peak_all_mb" // through every stage, photos and growth included
)

// Run measures everything once and returns the metrics in a fixed order.
func Run(ctx context.Context, cfg Config) ([]Metric, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var out []Metric
	add := func(name string, v float64, unit string) { out = append(out, Metric{name, v, unit}) }

	floor, err := fsyncFloor(ctx, &cfg)
	if err != nil {
		return nil, fmt.Errorf("fsync floor: %w", err)
	}
	add(FsyncFloorMS, ms(floor), "ms")

	p50, p99, err := localSaves(ctx, &cfg)
	if err != nil {
		return nil, fmt.Errorf("local saves: %w", err)
	}
	add(LocalSaveP50MS, ms(p50), "ms")
	add(LocalSaveP99MS, ms(p99), "ms")
	add(LocalSaveRatio, float64(p50)/float64(floor), "x")
	add(LocalSaveP99Ratio, float64(p99)/float64(floor), "x")

	push, err := pushBench(ctx, &cfg)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	add(PushOpsPerS, push.opsPerS, "ops/s")
	add(PushOpMS, 1000/push.opsPerS, "ms")
	add(PushCPUPerOp, push.cpuPerOp, "µs")

	pull, err := pullBench(ctx, &cfg)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	add(PullRecordsPerS, pull.recordsPerS, "records/s")
	add(WireBytesPerOp, push.wirePerOp, "bytes")
	add(WireBytesPerRec, pull.wirePerRecord, "bytes")
	add(LoopbackRTTMS, ms(push.rtt), "ms")

	// The memory target is for the sync core: the device and the server
	// through the push and the pull, before the photo stages decode a
	// 12-megapixel picture.
	rss, err := peakRSS()
	if err != nil {
		return nil, fmt.Errorf("peak memory: %w", err)
	}
	add(RSSPeakMB, rss, "MB")

	prep, err := photoPrepare(ctx, &cfg)
	if err != nil {
		return nil, fmt.Errorf("photo preparation: %w", err)
	}
	add(PhotoPrepareMS, ms(prep), "ms")
	photos, err := photoUpload(ctx, &cfg)
	if err != nil {
		return nil, fmt.Errorf("photo upload: %w", err)
	}
	add(PhotoGoodputRatio, photos.goodput/photos.linkRate, "x")
	add(PhotoWastedRatio, photos.wasted, "x")
	add(PhotoGoodputBPS, photos.goodput, "bytes/s")
	add(PhotoLinkBytesPerS, photos.linkRate, "bytes/s")
	add(PhotoBytesEach, photos.each, "bytes")
	add(PhotoLinkCuts, float64(photos.cuts), "cuts")

	if err := runExtra(ctx, &cfg, add); err != nil {
		return nil, err
	}
	all, err := peakRSS()
	if err != nil {
		return nil, fmt.Errorf("peak memory: %w", err)
	}
	add(RSSPeakAllMB, all, "MB")
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fsyncFloor appends 4 KiB and fdatasyncs, many times, and returns the
// median: the cheapest durable write this disk offers.
func fsyncFloor(ctx context.Context, cfg *Config) (time.Duration, error) {
	path := filepath.Join(cfg.Dir, "fsync-floor.dat")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	block := make([]byte, 4096)
	for i := range block {
		block[i] = byte(i)
	}
	settle()
	times := make([]time.Duration, 0, cfg.Fsyncs)
	for i := range cfg.Fsyncs {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		start := time.Now()
		if _, err := f.Write(block); err != nil {
			return 0, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return 0, err
		}
		times = append(times, time.Since(start))
		cfg.Progress("fsync floor", i+1, cfg.Fsyncs)
	}
	return percentile(times, 50), nil
}

// statuses are the values a status update cycles through.
var statuses = []string{"assigned", "in progress", "waiting for parts", "completed on site"}

// localSaves times Engine.Update of one record's status, each durably
// committed, on an offline device with a few records.
func localSaves(ctx context.Context, cfg *Config) (p50, p99 time.Duration, err error) {
	eng, err := client.Open(ctx, client.Config{Dir: filepath.Join(cfg.Dir, "save-device")})
	if err != nil {
		return 0, 0, err
	}
	defer eng.Close()
	ids := make([]string, 100)
	for i := range ids {
		op, err := eng.Create(ctx, "work_order", map[string]any{"title": "Boiler service " + strconv.Itoa(i), "status": "new"})
		if err != nil {
			return 0, 0, err
		}
		ids[i] = op.EntityID
	}
	settle()
	times := make([]time.Duration, 0, cfg.Saves)
	for i := range cfg.Saves {
		id := ids[i%len(ids)]
		status := statuses[(i/len(ids))%len(statuses)]
		start := time.Now()
		if _, err := eng.Update(ctx, "work_order", id, map[string]any{"status": status}); err != nil {
			return 0, 0, err
		}
		times = append(times, time.Since(start))
		cfg.Progress("local saves", i+1, cfg.Saves)
	}
	return percentile(times, 50), percentile(times, 99), nil
}

// settle starts a timed phase on a quiet disk and heap: the write-back of
// what the phases before wrote (tens of megabytes of SQLite files) would
// otherwise land in this phase's fsyncs, and their garbage in its GC.
func settle() {
	unix.Sync()
	runtime.GC()
}

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	rank := (p*len(s) + 99) / 100 // ceil(p/100 * n)
	return s[max(rank, 1)-1]
}

// testServer is a real server on a file-backed SQLite store, served over
// loopback HTTP through a listener that counts the bytes of every
// connection.
type testServer struct {
	srv     *server.Server
	store   *sqlite.Store
	http    *http.Server
	url     string
	read    atomic.Int64 // bytes the server read (requests)
	written atomic.Int64 // bytes the server wrote (responses)
	done    chan struct{}
}

func startServer(ctx context.Context, path string) (*testServer, error) {
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	srv, err := server.New(server.Config{Store: st, BlobDir: path + ".blobs"})
	if err != nil {
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.Close()
		return nil, err
	}
	ts := &testServer{srv: srv, store: st, url: "http://" + ln.Addr().String(), done: make(chan struct{})}
	ts.http = &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(ts.done)
		ts.http.Serve(&countingListener{Listener: ln, read: &ts.read, written: &ts.written})
	}()
	return ts, nil
}

// bytes returns the bytes carried so far, both directions.
func (ts *testServer) bytes() int64 { return ts.read.Load() + ts.written.Load() }

func (ts *testServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.http.Shutdown(ctx); err != nil {
		ts.http.Close()
	}
	<-ts.done
	ts.store.Close()
}

type countingListener struct {
	net.Listener
	read, written *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, read: l.read, written: l.written}, nil
}

type countingConn struct {
	net.Conn
	read, written *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// pushWatch follows a sync's progress and notes when its push ended and
// how many bytes had crossed the wire by then.
type pushWatch struct {
	mu     sync.Mutex
	ts     *testServer
	stage  string
	total  int
	end    time.Time
	cpu    time.Duration // the process's CPU time at end
	bytes  int64
	report func(stage string, done, total int)
}

func (w *pushWatch) progress(p client.Progress) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.Stage == "push" && w.ts != nil {
		w.end = time.Now()
		w.cpu = cputime.Process()
		w.bytes = w.ts.bytes()
	}
	if w.stage != "" && p.Stage == "push" {
		w.report(w.stage, p.Done, p.Total)
	}
}

// arm starts watching a sync: stage names it for the progress line.
func (w *pushWatch) arm(ts *testServer, stage string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ts, w.stage, w.end, w.cpu, w.bytes = ts, stage, time.Time{}, 0, 0
}

func (w *pushWatch) result() (time.Time, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.end, w.bytes
}

// cpuAtEnd returns the process's CPU time when the push ended.
func (w *pushWatch) cpuAtEnd() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cpu
}

type pushResult struct {
	opsPerS   float64
	cpuPerOp  float64 // µs of the process's CPU (device and server) per op
	wirePerOp float64
	rtt       time.Duration
}

// pushBench builds a backlog of status updates and appends on a device
// (not timed), then times its push to a real server, and measures bytes
// on the wire per status update and the loopback round trip.
func pushBench(ctx context.Context, cfg *Config) (pushResult, error) {
	var res pushResult
	ts, err := startServer(ctx, filepath.Join(cfg.Dir, "push-server.db"))
	if err != nil {
		return res, err
	}
	defer ts.close()
	watch := &pushWatch{report: cfg.Progress}
	eng, err := client.Open(ctx, client.Config{
		Dir: filepath.Join(cfg.Dir, "push-device"), ServerURL: ts.url, Progress: watch.progress,
	})
	if err != nil {
		return res, err
	}
	defer eng.Close()

	// Records to work on, known to the server and pulled back, as on a
	// device that synced its work orders this morning.
	nrec := max(min(cfg.Ops/10, 1000), 1)
	ids := make([]string, nrec)
	for i := range ids {
		op, err := eng.Create(ctx, "work_order", map[string]any{
			"title": "Boiler service " + strconv.Itoa(i), "status": "new", "address": "12 Harbour Road, Unit " + strconv.Itoa(i),
		})
		if err != nil {
			return res, err
		}
		ids[i] = op.EntityID
		cfg.Progress("push: making records", i+1, nrec)
	}
	if _, err := eng.Sync(ctx); err != nil {
		return res, err
	}

	// The backlog: nine status updates for one appended comment.
	for i := range cfg.Ops {
		id := ids[i%nrec]
		if i%10 == 9 {
			_, err = eng.Append(ctx, "work_order", id, "comments", "checked valve "+strconv.Itoa(i)+": pressure 2.1 bar")
		} else {
			_, err = eng.Update(ctx, "work_order", id, map[string]any{"status": statuses[(i/nrec)%len(statuses)]})
		}
		if err != nil {
			return res, err
		}
		cfg.Progress("push: building backlog", i+1, cfg.Ops)
	}
	settle()
	watch.arm(ts, "push")
	start, startCPU := time.Now(), cputime.Process()
	rep, err := eng.Sync(ctx)
	if err != nil {
		return res, err
	}
	end, _ := watch.result()
	if rep.Delivered != cfg.Ops || end.IsZero() {
		return res, fmt.Errorf("pushed %d ops, %d delivered (%d rejected, %d conflicts, %d to retry)",
			cfg.Ops, rep.Delivered, rep.Rejected, rep.Conflicts, rep.Retry)
	}
	res.opsPerS = float64(cfg.Ops) / end.Sub(start).Seconds()
	res.cpuPerOp = float64((watch.cpuAtEnd() - startCPU).Microseconds()) / float64(cfg.Ops)

	// Bytes on the wire per status update, in compressed batches.
	watch.arm(nil, "")
	for i := range cfg.WireOps {
		id := ids[i%nrec]
		if _, err := eng.Update(ctx, "work_order", id, map[string]any{"status": statuses[(i/nrec+1)%len(statuses)]}); err != nil {
			return res, err
		}
		cfg.Progress("wire: building status updates", i+1, cfg.WireOps)
	}
	before := ts.bytes()
	watch.arm(ts, "wire: pushing status updates")
	rep, err = eng.Sync(ctx)
	if err != nil {
		return res, err
	}
	_, after := watch.result()
	if rep.Delivered != cfg.WireOps {
		return res, fmt.Errorf("wire: pushed %d status updates, %d delivered", cfg.WireOps, rep.Delivered)
	}
	res.wirePerOp = float64(after-before) / float64(cfg.WireOps)

	res.rtt, err = roundTrips(ctx, cfg, ts.url)
	return res, err
}

// roundTrips times tiny GETs of /healthz on a kept-alive connection.
func roundTrips(ctx context.Context, cfg *Config, url string) (time.Duration, error) {
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	get := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		var buf [64]byte
		for {
			if _, err := resp.Body.Read(buf[:]); err != nil {
				break
			}
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: HTTP %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(); err != nil { // open the connection
		return 0, err
	}
	times := make([]time.Duration, 0, cfg.Trips)
	for i := range cfg.Trips {
		start := time.Now()
		if err := get(); err != nil {
			return 0, err
		}
		times = append(times, time.Since(start))
		cfg.Progress("loopback round trips", i+1, cfg.Trips)
	}
	return percentile(times, 50), nil
}

type pullResult struct {
	recordsPerS   float64
	wirePerRecord float64
}

// pullBench puts records on a server in big batches, then times their
// pull into a fresh device.
func pullBench(ctx context.Context, cfg *Config) (pullResult, error) {
	var res pullResult
	ts, err := startServer(ctx, filepath.Join(cfg.Dir, "pull-server.db"))
	if err != nil {
		return res, err
	}
	defer ts.close()
	if err := seed(ctx, ts.srv, cfg); err != nil {
		return res, err
	}
	watch := &pushWatch{report: cfg.Progress}
	pulled := 0
	eng, err := client.Open(ctx, client.Config{
		Dir: filepath.Join(cfg.Dir, "pull-device"), ServerURL: ts.url,
		Progress: func(p client.Progress) {
			watch.progress(p)
			if p.Stage == "pull" {
				pulled = p.Done
				cfg.Progress("pull", p.Done, cfg.Records)
			}
		},
	})
	if err != nil {
		return res, err
	}
	defer eng.Close()
	settle()
	before := ts.bytes()
	start := time.Now()
	rep, err := eng.Sync(ctx)
	if err != nil {
		return res, err
	}
	elapsed := time.Since(start)
	after := ts.bytes()
	if rep.Pulled != cfg.Records || pulled != cfg.Records {
		return res, fmt.Errorf("pulled %d records of %d", rep.Pulled, cfg.Records)
	}
	res.recordsPerS = float64(cfg.Records) / elapsed.Seconds()
	res.wirePerRecord = float64(after-before) / float64(cfg.Records)
	return res, nil
}

// seed creates cfg.Records work orders on the server, in batches of 1000
// through Server.Apply, as if one device had sent them.
func seed(ctx context.Context, srv *server.Server, cfg *Config) error {
	const batch = 1000
	now := time.Now().UTC()
	seq := int64(0)
	for done := 0; done < cfg.Records; {
		n := min(batch, cfg.Records-done)
		ops := make([]fieldsync.Op, n)
		for i := range ops {
			seq++
			ops[i] = fieldsync.Op{
				ID: uuid.Must(uuid.NewV7()).String(), DeviceID: "seed-device", Seq: seq,
				EntityType: "work_order", EntityID: uuid.Must(uuid.NewV7()).String(), Kind: fieldsync.KindCreate,
				Fields: map[string]json.RawMessage{
					"title":       json.RawMessage(`"Boiler service ` + strconv.FormatInt(seq, 10) + `"`),
					"status":      json.RawMessage(`"assigned"`),
					"address":     json.RawMessage(`"12 Harbour Road, Unit ` + strconv.FormatInt(seq, 10) + `"`),
					"description": json.RawMessage(`"Annual service: check pressure, flue and valves."`),
				},
				LocalTime: now,
			}
		}
		results, err := srv.Apply(ctx, ops)
		if err != nil {
			return err
		}
		for _, r := range results {
			if r.Status != fieldsync.StatusApplied {
				return fmt.Errorf("seed op %s: %s %s", r.OpID, r.Status, r.Message)
			}
		}
		done += n
		cfg.Progress("pull: seeding server", done, cfg.Records)
	}
	return nil
}

// peakRSS returns the process's peak resident set (VmHWM) in MB.
func peakRSS() (float64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return 0, err
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}
