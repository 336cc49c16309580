package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fieldsync/fieldsync/schema"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

const serverUsage = `Usage: fieldsync server [--addr HOST:PORT] [--db FILE] [--schema FILE.json] [--log-level LEVEL]

Run the sync server on an embedded SQLite database (created if missing):
the /v1 API that devices push to and pull from, and that the office edits
through. Attachment files are kept in a "blobs" folder next to the
database file. Prints the URL it listens on (with --addr HOST:0, a free
port is picked and printed). Ctrl-C (SIGINT) or SIGTERM stops it cleanly:
requests in flight finish, then the database closes.
`

// runServer runs `fieldsync server`.
func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("server", serverUsage)
	addr := cmd.String("addr", envOr("FIELDSYNC_ADDR", "127.0.0.1:8080"), "listen on `HOST:PORT` (env FIELDSYNC_ADDR)")
	dbPath := cmd.String("db", envOr("FIELDSYNC_DB", "fieldsync-server.db"), "the SQLite database file `FILE` (env FIELDSYNC_DB)")
	schemaPath := cmd.String("schema", "", "the entity schema, a JSON file `FILE` (default: the bundled work-order schema)")
	level := cmd.String("log-level", "info", "log `LEVEL`: debug, info, warn or error")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return cmd.usageError(err.Error())
	}
	var sch *schema.Schema
	if *schemaPath != "" {
		data, err := os.ReadFile(*schemaPath)
		if err != nil {
			return fmt.Errorf("server: read the schema: %w", err)
		}
		if sch, err = schema.Parse(data); err != nil {
			return fmt.Errorf("server: %s: %w", *schemaPath, err)
		}
	}
	ln, err := listen(*addr)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	st, err := sqlite.Open(ctx, *dbPath)
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: open the database: %w", err)
	}
	defer st.Close()
	blobDir := filepath.Join(filepath.Dir(*dbPath), "blobs") // attachments, next to the database
	srv, err := server.New(server.Config{Store: st, Schema: sch, Logger: log, BlobDir: blobDir})
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: %w", err)
	}
	url := listenURL(ln)
	fmt.Fprintf(stdout, "fieldsync server listening on %s (database %s)\n", url, *dbPath)
	log.Info("server started", "url", url, "db", *dbPath, "blobs", blobDir, "epoch", st.Epoch())
	err = serve(ctx, ln, srv, log)
	log.Info("server stopped")
	return err
}

// newLogger makes a text logger on w at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// listen opens a TCP listener and explains the usual failures.
func listen(addr string) (net.Listener, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("address %q: want host:port, e.g. 127.0.0.1:8080 (port 0 picks a free one)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s is already in use: stop what listens there, or pick another address with --addr (port 0 picks a free one)", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// listenURL is the http URL of a listener, with 127.0.0.1 for a listener
// on every interface.
func listenURL(ln net.Listener) string {
	a, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return "http://" + ln.Addr().String()
	}
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(a.Port))
}

// serve serves h on ln until ctx ends, then shuts down gracefully: no new
// connections, requests in flight get up to 10 seconds to finish.
func serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // a batch of ops is at most a few MB
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("shut down %s: %w", ln.Addr(), err)
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// isLoopback reports whether host names this machine only.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
