// Package chaos is fieldsync's fault-injection suite: scenarios that put
// a real device engine and a real server through the faults of the field
// (a basement with no signal, a day offline, a flapping link, processes
// killed with SIGKILL, a full disk, a wrong clock, a dispatcher editing
// the same records, requests cut before or after the server commits or
// delivered twice) and an oracle that then checks nothing was lost,
// duplicated, reordered or silently overwritten.
//
// Every scenario is deterministic given its seed: all random choices come
// from it (the timing of the machine still varies). Processes that are
// killed are real: the scenario re-executes a worker command (by default
// this binary's hidden `chaos-worker` subcommand) and sends it SIGKILL.
package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/internal/linkemu"
	"github.com/fieldsync/fieldsync/schema"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// Options configures a run. The zero value runs the full scenarios in a
// temporary directory with seed 0.
type Options struct {
	Seed uint64
	// Dir keeps the scenario's files (a subdirectory per scenario); empty:
	// a temporary directory removed afterwards.
	Dir string
	// Short shrinks every scenario (fewer ops, shorter outages) for tests.
	Short bool
	// Worker returns the command that runs RunWorker with args in a new
	// process. Default: this executable's `chaos-worker` subcommand.
	Worker func(args []string) *exec.Cmd
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// DiskMethod is how disk-full fills the disk: DiskTmpfs or DiskRlimit.
	// Default: tmpfs when running as root, RLIMIT_FSIZE otherwise.
	DiskMethod string
}

// Result is the outcome of one scenario.
type Result struct {
	Scenario            string    `json:"scenario"`
	Seed                uint64    `json:"seed"`
	Passed              bool      `json:"passed"`
	Findings            []Finding `json:"findings"`
	DurationMS          int64     `json:"duration_ms"`
	OpsCreated          int       `json:"ops_created"`
	OpsDelivered        int       `json:"ops_delivered"`
	Duplicates          int       `json:"duplicates"`
	Lost                int       `json:"lost"`
	ConflictsOpen       int       `json:"conflicts_open"`
	AttachmentsVerified int       `json:"attachments_verified"`
	BytesSent           int64     `json:"bytes_sent"`
	WastedBytes         int64     `json:"wasted_bytes"`
	// Faults counts the faults injected (cuts, outages, kills, failed saves).
	Faults int `json:"faults"`
	// FaultKinds counts them by kind: outage, cut, loss_stall,
	// kill_client, kill_server, disk_full, and at the server's door
	// cut_before, cut_after_commit, duplicated.
	FaultKinds map[string]int `json:"fault_kinds,omitempty"`
	// Notes says how the scenario ran (e.g. which disk-full method).
	Notes []string `json:"notes,omitempty"`
	// Error is set when the scenario could not run to its end; it fails.
	Error string `json:"error,omitempty"`
}

// scenario is one fault drill.
type scenario struct {
	name, summary string
	run           func(ctx context.Context, r *run) error
}

// scenarios in the order `all` runs them.
var scenarios = []scenario{
	{"basement", "a status change and 3 photos; the link is up 2 minutes, then down an hour", basement},
	{"day-offline", "300 ops and 30 photos made offline, then a short lossy link", dayOffline},
	{"flapping", "a link that drops every few seconds under a long backlog", flapping},
	{"kill-client", "the device process SIGKILLed at random points while saving and syncing", killClient},
	{"kill-server", "the server process SIGKILLed mid-batch and restarted on the same files", killServer},
	{"disk-full", "the device's disk fills; saving fails clearly, nothing saved is lost", diskFull},
	{"clock-skew", "device clocks wrong by hours, ahead and behind", clockSkew},
	{"two-sides", "a device and a dispatcher editing the same records", twoSides},
	{"lost-responses", "requests cut before and after the server commits, and delivered twice", lostResponses},
	{"kernel-link", "a day's backlog over a real kernel link: tc-shaped, lossy, cut at random (root)", kernelLink},
}

// Names lists the scenarios in the order `all` runs them.
func Names() []string {
	var out []string
	for _, s := range scenarios {
		out = append(out, s.name)
	}
	return out
}

// Summary describes a scenario in one line ("" for an unknown name).
func Summary(name string) string {
	for _, s := range scenarios {
		if s.name == name {
			return s.summary
		}
	}
	return ""
}

// Run runs one scenario and judges it with the oracle. An error means the
// scenario could not be set up at all; a scenario that broke midway comes
// back as a failed Result.
func Run(ctx context.Context, name string, opts Options) (Result, error) {
	i := slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == name })
	if i < 0 {
		return Result{}, fmt.Errorf("unknown scenario %q (have %v)", name, Names())
	}
	base := opts.Dir
	if base == "" {
		tmp, err := os.MkdirTemp("", "fieldsync-chaos-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(tmp)
		base = tmp
	}
	dir := filepath.Join(base, name)
	if err := os.RemoveAll(dir); err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Result{}, err
	}
	r := &run{
		opts: opts, dir: dir, name: name,
		rng:    rand.New(rand.NewPCG(opts.Seed, uint64(i)+1)),
		timing: rand.New(rand.NewPCG(opts.Seed, uint64(i)+1001)),
		hist:   History{Devices: map[string]DeviceState{}, Blobs: map[string]string{}, Policies: policies()},
		res:    Result{Scenario: name, Seed: opts.Seed, Findings: []Finding{}},
	}
	start := time.Now()
	// A scenario must end; this bounds one that hangs.
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	r.logf("start (seed %d)", opts.Seed)
	err := scenarios[i].run(ctx, r)
	if err == nil {
		err = r.collectDevices(ctx)
	}
	r.closeAll()
	if err == nil {
		err = r.judge(ctx)
	}
	if err != nil {
		r.res.Error = err.Error()
	}
	r.res.DurationMS = time.Since(start).Milliseconds()
	r.res.Passed = err == nil && len(r.res.Findings) == 0
	r.logf("done in %v: passed=%v findings=%d", time.Since(start).Round(time.Millisecond), r.res.Passed, len(r.res.Findings))
	return r.res, nil
}

func policies() map[string]map[string]string {
	out := map[string]map[string]string{}
	sc := schema.Default()
	for name, t := range sc.Types {
		out[name] = map[string]string{}
		for f, def := range t.Fields {
			out[name][f] = def.Policy
		}
	}
	return out
}

// run is one scenario under way.
type run struct {
	opts Options
	name string
	dir  string
	rng  *rand.Rand
	// timing is for the delays of concurrent loops.
	timing *rand.Rand
	hist   History
	res    Result

	mu      sync.Mutex
	closers []func()
	srv     *inproc
	engines []*client.Engine // devices to collect at the end (opened in this process)
	link    *linkemu.Link
}

func (r *run) logf(format string, args ...any) {
	if r.opts.Log != nil {
		fmt.Fprintf(r.opts.Log, "chaos %s: %s\n", r.name, fmt.Sprintf(format, args...))
	}
}

func (r *run) note(format string, args ...any) {
	r.res.Notes = append(r.res.Notes, fmt.Sprintf(format, args...))
}

// fault counts n faults of a kind.
func (r *run) fault(kind string, n int) {
	if n <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.res.FaultKinds == nil {
		r.res.FaultKinds = map[string]int{}
	}
	r.res.FaultKinds[kind] += n
	r.res.Faults += n
}

func (r *run) onClose(fn func()) {
	r.mu.Lock()
	r.closers = append(r.closers, fn)
	r.mu.Unlock()
}

func (r *run) closeAll() {
	r.mu.Lock()
	cl := r.closers
	r.closers = nil
	r.mu.Unlock()
	for i := len(cl) - 1; i >= 0; i-- {
		cl[i]()
	}
}

// scale picks the short or the full size of a figure.
func (r *run) scale(short, full int) int {
	if r.opts.Short {
		return short
	}
	return full
}

// saveLedger returns callbacks that put saved ops in the history.
func (r *run) ledger(w *worker) {
	w.onSave = func(s SavedOp) {
		r.mu.Lock()
		r.hist.Saved = append(r.hist.Saved, s)
		r.mu.Unlock()
	}
	w.onAttach = func(a SavedAttachment) {
		r.mu.Lock()
		r.hist.Attached = append(r.hist.Attached, a)
		r.mu.Unlock()
	}
}

// inproc is a server running in this process on a loopback port.
type inproc struct {
	st      *sqlite.Store
	srv     *server.Server
	hs      *http.Server
	addr    string
	blobDir string
}

// startServer runs a server in this process on the scenario's files.
func (r *run) startServer(ctx context.Context) (*inproc, error) {
	return r.startServerOn(ctx, "127.0.0.1:0")
}

// startServerOn starts the server in this process, listening on addr.
func (r *run) startServerOn(ctx context.Context, addr string) (*inproc, error) {
	st, err := sqlite.Open(ctx, filepath.Join(r.dir, "server.db"))
	if err != nil {
		return nil, fmt.Errorf("open server store: %w", err)
	}
	p := &inproc{st: st, blobDir: filepath.Join(r.dir, "blobs")}
	p.srv, err = server.New(server.Config{Store: st, BlobDir: p.blobDir})
	if err != nil {
		st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		st.Close()
		return nil, err
	}
	p.addr = ln.Addr().String()
	p.hs = &http.Server{Handler: p.srv, ReadHeaderTimeout: 10 * time.Second}
	go p.hs.Serve(ln)
	r.srv = p
	r.onClose(func() {
		p.hs.Close()
		st.Close()
	})
	return p, nil
}

// startServerLink starts the server in this process and an emulated link
// in front of it (cfg.Upstream is set to the server).
func (r *run) startServerLink(ctx context.Context, cfg linkemu.Config) (*inproc, *linkemu.Link, error) {
	srv, err := r.startServer(ctx)
	if err != nil {
		return nil, nil, err
	}
	cfg.Upstream = srv.addr
	link, err := r.startLink(cfg)
	if err != nil {
		return nil, nil, err
	}
	return srv, link, nil
}

// startLink puts an emulated link in front of the server at addr.
func (r *run) startLink(cfg linkemu.Config) (*linkemu.Link, error) {
	l, err := linkemu.Start(cfg)
	if err != nil {
		return nil, err
	}
	r.link = l
	r.onClose(l.Close)
	return l, nil
}

// engineConfig is a device tuned for compressed time: quick retries.
func engineConfig(dir, url string) client.Config {
	return client.Config{
		Dir: dir, ServerURL: url,
		BatchSize:      50,
		RequestTimeout: 5 * time.Second,
		MinBackoff:     20 * time.Millisecond,
		MaxBackoff:     250 * time.Millisecond,
		Interval:       300 * time.Millisecond,
		HTTPClient:     &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 5 * time.Second}},
	}
}

// openDevice opens a device in this process; it is collected at the end.
func (r *run) openDevice(ctx context.Context, cfg client.Config) (*client.Engine, error) {
	e, err := client.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r.engines = append(r.engines, e)
	r.onClose(func() { e.Close() })
	return e, nil
}

// drain syncs the device until nothing is pending, at most until limit.
func (r *run) drain(ctx context.Context, e *client.Engine, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var lastErr error
	for {
		rep, err := e.Sync(ctx)
		r.addSent(rep)
		if err == nil {
			st, serr := e.Status(ctx)
			if serr != nil {
				return serr
			}
			if st.Pending() == 0 && st.Storage.Pending == 0 && len(st.Storage.Failing) == 0 {
				return nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("device %.8s not drained within %v (last error: %v)", e.DeviceID(), limit, lastErr)
		case <-time.After(30 * time.Millisecond):
		}
	}
}

// addSent counts the attachment bytes a sync sent.
func (r *run) addSent(rep client.Report) {
	r.mu.Lock()
	r.res.WastedBytes += rep.BytesSent
	r.mu.Unlock()
}

// syncLoop syncs e again and again, as Run does with quick retries, until
// the returned stop is called; it counts what each sync sent.
func (r *run) syncLoop(ctx context.Context, e *client.Engine) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			rep, _ := e.Sync(ctx)
			r.addSent(rep)
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(20+r.jitter(30)) * time.Millisecond):
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// jitter is a random number below n from the scenario's source.
// It draws from a source of its own, so that timing never shifts the
// scenario's main sequence of choices.
func (r *run) jitter(n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.timing.IntN(n)
}

// judge collects the final state and runs the oracle.
func (r *run) judge(ctx context.Context) error {
	st, err := sqlite.Open(ctx, filepath.Join(r.dir, "server.db"))
	if err != nil {
		return fmt.Errorf("reopen the server store: %w", err)
	}
	defer st.Close()
	if err := collectServer(ctx, st, filepath.Join(r.dir, "blobs"), &r.hist); err != nil {
		return err
	}
	findings, t := Check(r.hist)
	r.res.Findings = append(r.res.Findings, findings...)
	r.res.OpsCreated, r.res.OpsDelivered, r.res.Duplicates, r.res.Lost = t.OpsCreated, t.OpsDelivered, t.Duplicates, t.Lost
	r.res.ConflictsOpen, r.res.AttachmentsVerified = t.ConflictsOpen, t.AttachmentsVerified
	if r.link != nil {
		s := r.link.Stats()
		r.res.BytesSent = s.BytesUp
	}
	// Attachment bytes sent beyond each verified file's size were lost to
	// faults and sent again.
	var need int64
	for _, a := range r.hist.Attached {
		for _, rh := range r.hist.Server {
			for _, x := range rh.Record.Attachments {
				if x.ID == a.ID {
					need += x.Size
				}
			}
		}
	}
	r.res.WastedBytes = max(r.res.WastedBytes-need, 0)
	return nil
}

// collectDevices collects the devices once the scenario drained them.
func (r *run) collectDevices(ctx context.Context) error {
	for _, e := range r.engines {
		if err := collectDevice(ctx, e, &r.hist); err != nil {
			return err
		}
	}
	r.hist.Drained = true
	return nil
}

// waitFor polls cond until it holds or limit passes.
func waitFor(ctx context.Context, limit time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", limit, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
