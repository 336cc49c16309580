package chaos

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// workerLife bounds a worker process that nobody stops.
const workerLife = 3 * time.Minute

// RunWorker is the body of a worker process that a scenario starts and
// kills: `--role device` saves ops on a device directory while syncing,
// `--role server` serves a store. It writes one line to out per event
// (DEVICE, SAVED, ATTACHED, FAILED, DONE for a device; ADDR for a
// server), each written as soon as the event happened.
func RunWorker(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("chaos-worker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	role := fs.String("role", "", "device or server")
	dir := fs.String("dir", "", "device directory")
	url := fs.String("url", "", "server URL for the device")
	seed := fs.Uint64("seed", 0, "random seed")
	ops := fs.Int("ops", 100, "ops the device holds when it is done saving")
	photoEvery := fs.Int("photo-every", 0, "attach a photo every N ops (0: none)")
	fsize := fs.Int64("fsize", 0, "RLIMIT_FSIZE for the device process in bytes (0: none)")
	db := fs.String("db", "", "server database")
	blobs := fs.String("blobs", "", "server blob directory")
	listen := fs.String("listen", "127.0.0.1:0", "server listen address")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("chaos-worker: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, workerLife)
	defer cancel()
	switch *role {
	case "device":
		return deviceWorker(ctx, out, *dir, *url, *seed, *ops, *photoEvery, *fsize)
	case "server":
		return serverWorker(ctx, out, *db, *blobs, *listen)
	}
	return fmt.Errorf("chaos-worker: --role must be device or server, not %q", *role)
}

// lineWriter writes whole lines, one write each, from several goroutines.
type lineWriter struct {
	mu  sync.Mutex
	out io.Writer
}

func (w *lineWriter) printf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, format+"\n", args...)
}

func deviceWorker(ctx context.Context, out io.Writer, dir, url string, seed uint64, budget, photoEvery int, fsize int64) error {
	if fsize > 0 {
		// Past the limit a write fails with EFBIG instead of the process
		// being killed by SIGXFSZ.
		signal.Ignore(syscall.SIGXFSZ)
		lim := syscall.Rlimit{Cur: uint64(fsize), Max: uint64(fsize)}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			return fmt.Errorf("set RLIMIT_FSIZE: %w", err)
		}
	}
	lw := &lineWriter{out: out}
	e, err := client.Open(ctx, engineConfig(dir, url))
	if err != nil {
		lw.printf("FAILED open: %s", oneLine(err))
		return err
	}
	defer e.Close()
	lw.printf("DEVICE %s", e.DeviceID())
	if url != "" {
		go e.Run(ctx)
	}
	views, err := e.List(ctx, workOrder)
	if err != nil {
		return err
	}
	st, err := e.Status(ctx)
	if err != nil {
		return err
	}
	have := 0
	for _, n := range st.Counts {
		have += n
	}
	// Each start draws from its own stream, so a restarted device makes
	// new choices.
	w := newWorker(rand.New(rand.NewPCG(seed, uint64(have)+7)), e, 8)
	for _, v := range views {
		w.records = append(w.records, v.ID)
	}
	w.onSave = func(s SavedOp) { lw.printf("SAVED %s %s %d %s %s %s", s.ID, s.Device, s.Seq, s.Type, s.Entity, s.Kind) }
	w.onAttach = func(a SavedAttachment) {
		lw.printf("ATTACHED %s %s %s %s %s %s", a.ID, a.Device, a.SHA256, a.Type, a.Entity, a.OpID)
	}
	for have < budget && ctx.Err() == nil {
		if photoEvery > 0 && have%photoEvery == photoEvery-1 {
			err = w.photo(ctx, 24)
		} else {
			err = w.step(ctx)
		}
		if err != nil {
			lw.printf("FAILED %s", oneLine(err))
			break
		}
		have++
	}
	lw.printf("DONE %d", have)
	<-ctx.Done()
	return nil
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

func serverWorker(ctx context.Context, out io.Writer, db, blobs, listen string) error {
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := server.New(server.Config{Store: st, BlobDir: blobs})
	if err != nil {
		return err
	}
	var ln net.Listener
	// The port may still be held a moment by the process killed before.
	for range 100 {
		if ln, err = net.Listen("tcp", listen); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	fmt.Fprintf(out, "ADDR %s\n", ln.Addr())
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// proc is a worker process.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line; closed at EOF
	done   chan struct{}
	stderr strings.Builder
}

// defaultWorker runs this executable's chaos-worker subcommand.
func defaultWorker(args []string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return exec.Command(exe, append([]string{"chaos-worker"}, args...)...)
}

// startWorker starts a worker process; it is killed when the run ends.
func (r *run) startWorker(args ...string) (*proc, error) {
	mk := r.opts.Worker
	if mk == nil {
		mk = defaultWorker
	}
	p := &proc{cmd: mk(args), lines: make(chan string, 1<<16), done: make(chan struct{})}
	p.cmd.Stderr = &syncWriter{b: &p.stderr}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.cmd.Wait()
		close(p.done)
	}()
	r.onClose(p.killWait)
	return p, nil
}

// kill sends SIGKILL.
func (p *proc) kill() { _ = p.cmd.Process.Signal(syscall.SIGKILL) }

// killWait kills the process and waits until it is gone and its output
// read.
func (p *proc) killWait() {
	p.kill()
	<-p.done
}

// syncWriter guards a builder written by exec's copying goroutine.
type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.b.Len() > 64<<10 {
		return len(p), nil
	}
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// record parses a device worker's line into the history; it returns the
// line's first word.
func (r *run) record(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	switch {
	case f[0] == "SAVED" && len(f) == 7:
		seq, _ := strconv.ParseInt(f[3], 10, 64)
		r.mu.Lock()
		r.hist.Saved = append(r.hist.Saved, SavedOp{ID: f[1], Device: f[2], Seq: seq, Type: f[4], Entity: f[5], Kind: f[6]})
		r.mu.Unlock()
	case f[0] == "ATTACHED" && len(f) == 7:
		r.mu.Lock()
		r.hist.Attached = append(r.hist.Attached, SavedAttachment{ID: f[1], Device: f[2], SHA256: f[3], Type: f[4], Entity: f[5], OpID: f[6]})
		r.mu.Unlock()
	}
	return f[0]
}

// readUntil records the worker's lines until one starts with a word in
// stop (returned with the line), the process ends, or limit passes.
func (r *run) readUntil(ctx context.Context, p *proc, limit time.Duration, stop ...string) (string, error) {
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("worker ended: %s", strings.TrimSpace(lastLines(p.cmd.Stderr.(*syncWriter).String(), 5)))
			}
			w := r.record(line)
			for _, s := range stop {
				if w == s {
					return line, nil
				}
			}
		case <-t.C:
			return "", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// drainLines records whatever the worker printed before it ended.
func (r *run) drainLines(p *proc) {
	for line := range p.lines {
		r.record(line)
	}
	<-p.done
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
