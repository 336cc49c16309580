package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// The test binary runs itself as a client or server process: helperEnv
// names the mode, the other variables its arguments.
const (
	helperEnv = "FIELDSYNC_E2E_HELPER"
	dirEnv    = "FIELDSYNC_E2E_DIR"
	urlEnv    = "FIELDSYNC_E2E_URL"
	dbEnv     = "FIELDSYNC_E2E_DB"
	runEnv    = "FIELDSYNC_E2E_RUN_SEED"
)

// helperLife bounds a helper process that nobody kills.
const helperLife = 90 * time.Second

// TestHelperClient is not a test: it is the client process of
// TestKillClientSIGKILL, started by it with helperEnv=client. It opens
// the device in $FIELDSYNC_E2E_DIR, syncs with Engine.Run against
// $FIELDSYNC_E2E_URL and meanwhile saves ops in a loop, printing
// "SAVED <op id> <seq> <entity> <kind>" once each Save has returned.
func TestHelperClient(t *testing.T) {
	if os.Getenv(helperEnv) != "client" {
		return
	}
	if err := runClientHelper(); err != nil {
		fmt.Fprintln(os.Stderr, "client helper:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func runClientHelper() error {
	ctx, cancel := context.WithTimeout(context.Background(), helperLife)
	defer cancel()
	seed, err := strconv.ParseUint(os.Getenv(runEnv), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %w", runEnv, err)
	}
	cfg := engineConfig(os.Getenv(dirEnv), os.Getenv(urlEnv))
	cfg.BatchSize = 7
	e, err := client.Open(ctx, cfg)
	if err != nil {
		return err
	}
	go e.Run(ctx)
	w := newWorkload(rand.New(rand.NewPCG(seed, 2)), 6, 0.5)
	views, err := e.List(ctx, workOrder)
	if err != nil {
		return err
	}
	for _, v := range views {
		w.records = append(w.records, v.ID)
	}
	for ctx.Err() == nil {
		s, err := w.next(ctx, e)
		if err != nil {
			return err
		}
		// One write per line, straight to the pipe: nothing is buffered.
		fmt.Fprintf(os.Stdout, "SAVED %s %d %s %s\n", s.ID, s.Seq, s.Entity, s.Kind)
	}
	return nil
}

// TestHelperServer is not a test: it is the server process of
// TestServerKilledMidBatch, started by it with helperEnv=server. It
// serves the store at $FIELDSYNC_E2E_DB on 127.0.0.1:0 and prints
// "ADDR <host:port>" once it listens.
func TestHelperServer(t *testing.T) {
	if os.Getenv(helperEnv) != "server" {
		return
	}
	if err := runServerHelper(); err != nil {
		fmt.Fprintln(os.Stderr, "server helper:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func runServerHelper() error {
	ctx, cancel := context.WithTimeout(context.Background(), helperLife)
	defer cancel()
	st, err := sqlite.Open(ctx, os.Getenv(dbEnv))
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := server.New(server.Config{Store: st})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	fmt.Fprintf(os.Stdout, "ADDR %s\n", ln.Addr())
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// proc is a helper process: this test binary run in a helper mode.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line; closed at EOF
	stderr bytes.Buffer
	done   chan struct{} // closed once the process was waited for
	err    error         // from Wait, once done
	killed atomic.Bool
}

// startProc runs the test binary in helper mode with the given
// environment (KEY=value).
func startProc(t *testing.T, mode string, env ...string) *proc {
	t.Helper()
	p := &proc{lines: make(chan string, 4096), done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestHelper"+mode+"$", "-test.count=1", "-test.timeout=5m")
	p.cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + strings.ToLower(mode)}, env...)...)
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		for range p.lines {
		}
		<-p.done
	})
	return p
}

// kill sends SIGKILL; it may be called any number of times.
func (p *proc) kill() {
	p.killed.Store(true)
	p.cmd.Process.Signal(syscall.SIGKILL)
}

// killAndWait kills the process and waits until it is gone.
func (p *proc) killAndWait() {
	p.kill()
	<-p.done
}

// drain reads the process's remaining output until it has ended, and
// returns that output.
func (p *proc) drain(ctx context.Context) ([]string, error) {
	var out []string
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				select {
				case <-p.done:
					return out, nil
				case <-ctx.Done():
					return out, ctx.Err()
				}
			}
			out = append(out, l)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// diedBySIGKILL reports whether the process ended by our SIGKILL; when
// not, it says how it ended.
func (p *proc) diedBySIGKILL() (bool, string) {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL && p.killed.Load() {
			return true, ""
		}
	}
	return false, fmt.Sprintf("exit: %v; stderr:\n%s", p.err, p.stderr.String())
}

// parseSaved parses a "SAVED <op id> <seq> <entity> <kind>" line.
func parseSaved(line string) (savedOp, bool) {
	f := strings.Fields(line)
	if len(f) != 5 || f[0] != "SAVED" {
		return savedOp{}, false
	}
	seq, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return savedOp{}, false
	}
	return savedOp{ID: f[1], Seq: seq, Entity: f[3], Kind: f[4]}, true
}

// serveProc starts a server process on the store at path and returns it
// with its base URL.
func serveProc(ctx context.Context, t *testing.T, path string) (*proc, string) {
	t.Helper()
	p := startProc(t, "Server", dbEnv+"="+path)
	select {
	case l, ok := <-p.lines:
		addr, found := strings.CutPrefix(l, "ADDR ")
		if !ok || !found {
			p.kill()
			<-p.done
			t.Fatalf("server process did not start: %q; %s", l, p.stderr.String())
		}
		return p, "http://" + addr
	case <-ctx.Done():
		p.killAndWait()
		t.Fatalf("server process did not start in time: %s", p.stderr.String())
	}
	return nil, ""
}
