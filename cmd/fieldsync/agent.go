package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/fieldsync/fieldsync/client"
)

const agentUsage = `Usage: fieldsync agent --dir DIR [--server URL] [--tls-pin SHA256] [--status-addr 127.0.0.1:0] [--interval 30s]

Run a headless field agent: it syncs the device directory with the server
at once, after every change saved there (by this agent), at least every
--interval, and with growing, jittered delays while the server cannot be
reached. Each sync's outcome is logged on stderr. GET /status on the
status address (this machine only) returns the device's status as JSON:
the queue, the last sync, what needs attention. The device commands
(create, update, status…) may run on the same --dir meanwhile.

An enrolled device (fieldsync enroll) needs no --server: the agent syncs
with the server it enrolled with, sending its token. When the server
refuses the token (the office revoked the device), the agent logs why,
keeps the queue and tries again only every --interval; a new enrolment
(fieldsync enroll on the same --dir) is used at its next sync.
`

// runAgent runs `fieldsync agent`.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("agent", agentUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	serverURL := cmd.String("server", envOr("FIELDSYNC_SERVER", ""), serverURLUsage)
	statusAddr := cmd.String("status-addr", "127.0.0.1:0", "serve GET /status on this loopback `HOST:PORT` (port 0: a free one)")
	interval := cmd.Duration("interval", 30*time.Second, "pull changes at least every `DURATION`")
	level := cmd.String("log-level", "info", "log `LEVEL`: debug, info, warn or error")
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
	if *interval <= 0 {
		return cmd.usageError("--interval must be more than 0")
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return cmd.usageError(err.Error())
	}
	ln, err := listenStatus(*statusAddr)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	eng, err := openDevice(ctx, *dir, true, client.Config{PIN: *pin, ServerURL: url, Logger: log, Interval: *interval,
		TLS: client.TLSConfig{PinSHA256: tlsPin.value()}})
	if err != nil {
		ln.Close()
		return fmt.Errorf("agent: %w", err)
	}
	defer eng.Close()
	if url = eng.ServerURL(); url == "" {
		ln.Close()
		return noServerError(cmd)
	}
	statusURL := listenURL(ln) + "/status"
	fmt.Fprintf(stdout, "fieldsync agent: device %s (%s) syncing with %s\n", eng.DeviceID(), *dir, url)
	fmt.Fprintf(stdout, "status at %s\n", statusURL)
	return runAgentLoops(ctx, eng, ln, log)
}

// runAgentLoops runs the engine's sync loop and the status endpoint until
// ctx ends or one of them fails, then stops both.
func runAgentLoops(ctx context.Context, eng *client.Engine, ln net.Listener, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() {
		err := eng.Run(ctx)
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		errc <- err
	}()
	go func() { errc <- serve(ctx, ln, statusHandler(eng), log) }()
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	if first != nil {
		return fmt.Errorf("agent: %w", first)
	}
	return nil
}

// listenStatus listens on a loopback address only: the status shows the
// device's queue and is for this machine.
func listenStatus(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("status address %q: want host:port, e.g. 127.0.0.1:0", addr)
	}
	if !isLoopback(host) {
		return nil, fmt.Errorf("status address %q: serve it on 127.0.0.1 (it shows this device's queue to whoever asks)", addr)
	}
	return listen(addr)
}

// statusHandler serves GET /status: the device's status as JSON.
func statusHandler(eng *client.Engine) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st, err := eng.Status(r.Context())
		var out statusJSON
		if err == nil {
			out, err = statusOf(r.Context(), eng, st, defaultType)
		}
		if err != nil {
			http.Error(w, "cannot read the device's status: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, out)
	})
	return mux
}
