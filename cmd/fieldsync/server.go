package main

import (
	"context"
	"crypto/tls"
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
	"github.com/fieldsync/fieldsync/tenant"
)

const serverUsage = `Usage: fieldsync server [--addr HOST:PORT] [--data DIR] [--tls-cert FILE --tls-key FILE | --tls-self-signed [--tls-host NAME]...] [--schema FILE.json] [--log-level LEVEL]
       fieldsync server --no-auth [--addr HOST:PORT] [--db FILE] [--schema FILE.json] [--log-level LEVEL]

Run the sync server: the /v1 API that devices push to and pull from, and
that the office edits through. Every request carries a token (devices
enrol with a code from "fieldsync admin enrol-code", people log in with
"fieldsync login"); each organisation's data is its own database,
DATA/orgs/ORG.db, with its attachments in DATA/orgs/ORG.blobs/, and the
identities are in DATA/identity.db ("fieldsync admin init" makes them).

--tls-cert and --tls-key serve HTTPS with that certificate and key.
--tls-self-signed makes a self-signed certificate once (kept in DATA/tls/,
for 127.0.0.1, ::1, localhost and every --tls-host name) and prints its
SHA-256 fingerprint, which devices pin. Without TLS a token on the wire is
as good as stolen: the server refuses a non-loopback address without TLS
unless --insecure-listen is given.

--no-auth serves one database (--db) to anyone, with no tokens and every
right: for development on one machine only. It prints a warning.

Prints the URL it listens on (with --addr HOST:0, a free port is picked
and printed). Ctrl-C (SIGINT) or SIGTERM stops it cleanly: requests in
flight finish, then the databases close.
`

// runServer runs `fieldsync server`.
func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("server", serverUsage)
	addr := cmd.String("addr", envOr("FIELDSYNC_ADDR", "127.0.0.1:8080"), "listen on `HOST:PORT` (env FIELDSYNC_ADDR)")
	data := cmd.String("data", envOr("FIELDSYNC_DATA", "fieldsync-data"), "the server's data `DIR` (env FIELDSYNC_DATA)")
	noAuth := cmd.Bool("no-auth", false, "serve --db to anyone with every right (development only)")
	dbPath := cmd.String("db", envOr("FIELDSYNC_DB", "fieldsync-server.db"), "with --no-auth: the SQLite database `FILE` (env FIELDSYNC_DB)")
	certFile := cmd.String("tls-cert", "", "serve HTTPS with the certificate `FILE` (PEM)")
	keyFile := cmd.String("tls-key", "", "the private key `FILE` of --tls-cert (PEM)")
	selfSigned := cmd.Bool("tls-self-signed", false, "serve HTTPS with a self-signed certificate kept in DATA/tls/")
	var hosts stringList
	cmd.Var(&hosts, "tls-host", "a `NAME` or address the self-signed certificate is for, besides localhost (repeatable)")
	insecure := cmd.Bool("insecure-listen", false, "allow a non-loopback address without TLS")
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
	if cmd.isSet("db") && !*noAuth {
		return cmd.usageError("--db serves one database without authentication: add --no-auth (development only), or use --data")
	}
	if (*certFile == "") != (*keyFile == "") {
		return cmd.usageError("--tls-cert and --tls-key go together")
	}
	if *selfSigned && *certFile != "" {
		return cmd.usageError("--tls-self-signed or --tls-cert, not both")
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
	useTLS := *selfSigned || *certFile != ""
	if host, _, err := net.SplitHostPort(*addr); err == nil && !useTLS && !*insecure && !isLoopback(host) {
		return cmd.usageError(fmt.Sprintf("%s is reachable from the network and tokens would travel in clear: serve TLS (--tls-cert/--tls-key or --tls-self-signed), or add --insecure-listen on a network you trust", *addr))
	}
	ln, err := listen(*addr)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if *noAuth {
		return serveNoAuth(ctx, ln, *dbPath, sch, log, stdout, stderr)
	}
	var tlsCfg *tls.Config
	if useTLS {
		var fp string
		tlsCfg, fp, err = loadTLS(*data, *certFile, *keyFile, *selfSigned, hosts)
		if err != nil {
			ln.Close()
			return fmt.Errorf("server: %w", err)
		}
		fmt.Fprintf(stdout, "TLS certificate SHA-256 fingerprint: %s\n", fp)
		ln = tls.NewListener(ln, tlsCfg)
	}
	front, err := tenant.Open(ctx, tenant.Config{Dir: *data, Schema: sch, Logger: log})
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: %w", err)
	}
	defer front.Close()
	url := listenURL(ln)
	if useTLS {
		url = "https" + strings.TrimPrefix(url, "http")
	}
	fmt.Fprintf(stdout, "fieldsync server listening on %s (data %s)\n", url, *data)
	log.Info("server started", "url", url, "data", *data)
	err = serve(ctx, ln, front, log)
	log.Info("server stopped")
	return err
}

// serveNoAuth serves one database with no authentication: the
// development mode of --no-auth.
func serveNoAuth(ctx context.Context, ln net.Listener, dbPath string, sch *schema.Schema, log *slog.Logger, stdout, stderr io.Writer) error {
	st, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: open the database: %w", err)
	}
	defer st.Close()
	blobDir := filepath.Join(filepath.Dir(dbPath), "blobs") // attachments, next to the database
	srv, err := server.New(server.Config{Store: st, Schema: sch, Logger: log, BlobDir: blobDir})
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: %w", err)
	}
	fmt.Fprintln(stderr, "WARNING: --no-auth: anyone who reaches this address can read and change every record. Development only.")
	url := listenURL(ln)
	fmt.Fprintf(stdout, "fieldsync server listening on %s (database %s, no authentication)\n", url, dbPath)
	log.Warn("server started without authentication", "url", url, "db", dbPath, "blobs", blobDir, "epoch", st.Epoch())
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
