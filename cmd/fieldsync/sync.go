package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	neturl "net/url"
	"os"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

const syncUsage = `Usage: fieldsync sync [--dir DIR] [--server URL] [--tls-pin SHA256]

Sync once: send every queued op to the server (in batches, each op
acknowledged on its own), then pull every change since the last sync.
Shows progress on stderr and a summary at the end. When the server cannot
be reached, nothing is lost: the ops stay saved on the device, in the
queue, and the next sync sends them. An enrolled device (fieldsync
enroll) sends its token with every request and needs no --server: it
syncs with the server it enrolled with, checking the certificate it
pinned then. When the office has revoked the device, sync says so and
keeps the queue: enrol again with a new code to deliver it.

Example:
  fieldsync sync --server http://127.0.0.1:8080
`

// runSync runs `fieldsync sync`.
func runSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("sync", syncUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	serverURL := cmd.String("server", envOr("FIELDSYNC_SERVER", ""), serverURLUsage)
	batch := cmd.Int("batch", 0, "ops per push request (0: the engine's default, 500)")
	timeout := cmd.Duration("timeout", 60*time.Second, "give up on one request after `DURATION`")
	tlsPin := tlsPinFlag(cmd)
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	url, err := serverOrEnrolled(cmd, *serverURL, *dir)
	if err != nil {
		return err
	}
	prog := newSyncProgress(stderr)
	eng, err := openDevice(ctx, *dir, false, client.Config{
		PIN: *pin, ServerURL: url, BatchSize: *batch, RequestTimeout: *timeout, Progress: prog.report,
		TLS: client.TLSConfig{PinSHA256: tlsPin.value()},
	})
	if err != nil {
		return err
	}
	defer eng.Close()
	if url = eng.ServerURL(); url == "" {
		return noServerError(cmd)
	}
	rep, syncErr := eng.Sync(ctx)
	prog.done()
	st, err := eng.Status(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if syncErr != nil {
		if errors.Is(syncErr, context.Canceled) {
			return fmt.Errorf("sync: stopped; nothing is lost: %s saved on this device and queued for the next sync",
				plural(st.Pending(), "op is", "ops are"))
		}
		msg := fieldsync.ErrorMessage(syncErr)
		if client.IsAuthRefusal(syncErr) {
			return fmt.Errorf("sync: the server at %s refused this device: %s.\n%s", url, msg, authHint(*dir, st.Pending()))
		}
		if fieldsync.ErrorCode(syncErr) == fieldsync.EInternal {
			msg = syncErr.Error()
		}
		if fieldsync.ErrorCode(syncErr).Retryable() {
			var ue *neturl.Error
			if errors.As(syncErr, &ue) {
				msg = fmt.Sprintf("cannot reach the server at %s: %v", url, ue.Err)
			} else {
				msg = fmt.Sprintf("%s (server %s)", msg, url)
			}
			return fmt.Errorf("sync: %s.\nNothing is lost: %s safe on this device and queued; run fieldsync sync again when the server is back, or keep fieldsync agent running to retry by itself",
				msg, plural(st.Pending(), "op is", "ops are"))
		}
		return fmt.Errorf("sync: the server at %s refused: %s.\n%s still saved on this device and queued; check --server and the server's log",
			url, msg, plural(st.Pending(), "op is", "ops are"))
	}
	fmt.Fprintf(stdout, "synced with %s: sent %s, %d delivered, %d need review, %d rejected, %d to retry; pulled %s\n",
		url, plural(rep.Sent, "op", "ops"), rep.Delivered, rep.Conflicts, rep.Rejected, rep.Retry, plural(rep.Pulled, "record", "records"))
	if rep.Resynced {
		fmt.Fprintf(stdout, "the server's history changed (%s): the device started over and sent its ops again\n", st.Resynced)
	}
	fmt.Fprintf(stdout, "in queue: %s\n", plural(st.Pending(), "op", "ops"))
	a := needsAttention(ctx, eng, st, nil)
	if len(a.reviews) > 0 {
		var names []string
		for _, r := range a.reviews {
			name := r.Number
			if name == "" {
				name = shortID(r.ID)
			}
			names = append(names, name+" "+r.Conflict.Field)
		}
		fmt.Fprintf(stdout, "needs review: %d (%s); see fieldsync status --dir %s\n", len(a.reviews), strings.Join(names, ", "), shellQuote(*dir))
	}
	if n := len(a.ops); n > 0 {
		fmt.Fprintf(stdout, "needs attention: %s; see fieldsync status --dir %s\n", plural(n, "op", "ops"), shellQuote(*dir))
	}
	return nil
}

// syncProgress prints the sync's progress on one line: rewritten in place on
// a terminal, a line at most every second otherwise.
type syncProgress struct {
	w        io.Writer
	tty      bool
	last     time.Time
	line     string // last line made
	printed  string // last line printed
	anything bool
}

func newSyncProgress(w io.Writer) *syncProgress {
	p := &syncProgress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *syncProgress) report(pr client.Progress) {
	if pr.Stage == "push" {
		p.line = fmt.Sprintf("push %d/%d ops", pr.Done, pr.Total)
	} else {
		p.line = "pull " + plural(pr.Done, "record", "records")
	}
	now := time.Now()
	final := pr.Stage == "push" && pr.Done >= pr.Total
	if !p.tty && !final && now.Sub(p.last) < time.Second {
		return
	}
	p.last = now
	p.print()
}

func (p *syncProgress) print() {
	if p.line == p.printed {
		return
	}
	p.printed = p.line
	p.anything = true
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", p.line)
		return
	}
	fmt.Fprintln(p.w, p.line)
}

// done prints the last state and ends the line.
func (p *syncProgress) done() {
	p.print()
	if p.tty && p.anything {
		fmt.Fprintln(p.w)
	}
}
