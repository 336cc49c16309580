// Package tenant is the multi-organisation front of the sync server: one
// identity store for the installation (DATA/identity.db) and one sync
// store per organisation (DATA/orgs/<org>.db, attachments in
// DATA/orgs/<org>.blobs/), each served by its own server.Server, opened
// when its organisation is first asked for and closed with the Front.
//
// Every /v1 request other than enrolment and login passes auth.Middleware
// and reaches only the server of the organisation its token names: a
// request cannot reach another organisation's store. The servers require
// a principal (server.Config.RequireAuth) and decide every record with
// auth.Decide. docs/security.md describes the rules.
//
// /v1/operator/ is the operator API (auth.OperatorMiddleware: the
// installation's operator token only): it makes and removes temporary
// test organisations, for `fieldsync selftest`. Expired ones are removed
// by the Front itself when it opens and every Config.SweepEvery.
package tenant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/schema"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// Config configures a Front. Dir is required; the zero value of every
// other field is the documented default.
type Config struct {
	// Dir is the server's data directory (created with mode 0700).
	Dir string
	// Schema is the schema of a new organisation's store (default: the
	// one stored in it, else the bundled work-order schema).
	Schema *schema.Schema
	Logger *slog.Logger // default: discard
	// Identity tunes the identity store (sessions, enrolment codes).
	Identity authsqlite.Config
	// PrincipalRate limits each device or user session (default
	// auth.DefaultPrincipalRate); AddressRate limits enrolment and login
	// per client address (default auth.DefaultAddressRate).
	PrincipalRate, AddressRate auth.Rate
	// SweepEvery is how often expired test organisations are removed
	// (default 5 min; they are also removed when the Front opens).
	// Negative: only when the Front opens.
	SweepEvery time.Duration
}

// Front is the http.Handler of a multi-organisation server. It is safe
// for concurrent use.
type Front struct {
	cfg Config
	log *slog.Logger
	ids *authsqlite.Store
	mux *http.ServeMux
	// enrolments serves POST /v1/enrolments: codes from the identity
	// store, for the principal's own organisation.
	enrolments http.Handler

	mu     sync.Mutex
	orgs   map[string]*orgServer
	gone   map[string]bool // test organisations being removed: not to be opened
	closed bool

	delMu      sync.Mutex         // one test organisation removal at a time
	stopSweep  context.CancelFunc // ends the sweeper
	sweeperEnd chan struct{}      // closed when the sweeper has ended
}

// orgServer is one organisation's open store and its server. active
// counts the requests it is serving, so that a test organisation's
// removal closes it only once they are done.
type orgServer struct {
	st     *sqlite.Store
	srv    *server.Server
	active sync.WaitGroup
}

// IdentityPath is the identity store's file in a data directory.
func IdentityPath(dir string) string { return filepath.Join(dir, "identity.db") }

// OrgPath is an organisation's sync store file in a data directory.
func OrgPath(dir, org string) string { return filepath.Join(dir, "orgs", org+".db") }

// Open opens (creating them if needed) the data directory and its
// identity store, and returns the Front serving them.
func Open(ctx context.Context, cfg Config) (*Front, error) {
	if cfg.Dir == "" {
		return nil, errors.New("tenant: Config.Dir is required")
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "orgs"), 0o700); err != nil {
		return nil, fmt.Errorf("tenant: %w", err)
	}
	ids, err := authsqlite.Open(ctx, IdentityPath(cfg.Dir), cfg.Identity)
	if err != nil {
		return nil, fmt.Errorf("tenant: open the identity store: %w", err)
	}
	f := &Front{cfg: cfg, log: cfg.Logger, ids: ids, orgs: map[string]*orgServer{}, gone: map[string]bool{}}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	var plim, alim *auth.Limiter
	if cfg.PrincipalRate != (auth.Rate{}) {
		plim = auth.NewLimiter(cfg.PrincipalRate, nil)
	}
	if cfg.AddressRate != (auth.Rate{}) {
		alim = auth.NewLimiter(cfg.AddressRate, nil)
	}
	f.mux = http.NewServeMux()
	f.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	f.enrolments = auth.EnrolmentsHandler(ids, f.log)
	f.mux.Handle(protocol.PathEnroll, auth.EnrollHandler(ids, alim, f.log))
	f.mux.Handle(protocol.PathLogin, auth.LoginHandler(ids, alim, f.log))
	f.mux.Handle("/v1/", auth.Middleware(ids, plim, f.log, f.handler))
	f.mux.Handle(protocol.PathOperator, auth.OperatorMiddleware(ids, plim, f.log, f.operatorHandler()))
	f.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		auth.WriteError(w, fieldsyncNotFound(r))
	})
	f.startSweeper()
	return f, nil
}

// Identity returns the identity store, for administration in-process.
func (f *Front) Identity() *authsqlite.Store { return f.ids }

// ServeHTTP implements http.Handler.
func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

// handler returns the handler of p's organisation, opening its store on
// first use; nil (answered 503) when it cannot be opened.
func (f *Front) handler(p auth.Principal) http.Handler {
	o, err := f.acquire(p.Org)
	if err != nil {
		f.log.Error("open organisation", "org", p.Org, "err", err)
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer o.active.Done()
		if r.URL.Path == protocol.PathEnrolments {
			f.enrolments.ServeHTTP(w, r)
			return
		}
		o.srv.ServeHTTP(w, r)
	})
}

// Org returns the server of an organisation and its store, opening them
// on first use; the Front closes them. For in-process use (seeding,
// tests): requests from the network go through ServeHTTP.
func (f *Front) Org(org string) (*server.Server, fieldsync.Store, error) {
	o, err := f.org(org)
	if err != nil {
		return nil, nil, err
	}
	return o.srv, o.st, nil
}

// acquire is org for one request: the caller calls o.active.Done when
// it has served it.
func (f *Front) acquire(name string) (*orgServer, error) {
	return f.open(name, true)
}

func (f *Front) org(name string) (*orgServer, error) {
	return f.open(name, false)
}

func (f *Front) open(name string, request bool) (o *orgServer, err error) {
	if !protocol.ValidOrgName(name) {
		return nil, fmt.Errorf("organisation name %q is not valid", name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errors.New("the server is shutting down")
	}
	if f.gone[name] {
		return nil, fmt.Errorf("organisation %s is being removed", name)
	}
	defer func() {
		if err == nil && request {
			o.active.Add(1)
		}
	}()
	if o, ok := f.orgs[name]; ok {
		return o, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sqlite.Open(ctx, OrgPath(f.cfg.Dir, name))
	if err != nil {
		return nil, fmt.Errorf("open the store of %s: %w", name, err)
	}
	srv, err := server.New(server.Config{
		Store: st, Schema: f.cfg.Schema, Logger: f.log.With("org", name), Org: name, RequireAuth: true,
		BlobDir: filepath.Join(f.cfg.Dir, "orgs", name+".blobs"),
	})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("serve %s: %w", name, err)
	}
	o = &orgServer{st: st, srv: srv}
	f.orgs[name] = o
	f.log.Info("organisation opened", "org", name, "epoch", st.Epoch())
	return o, nil
}

// Close closes every organisation's store and the identity store. Call
// it once no request is being served.
func (f *Front) Close() error {
	f.stopSweep()
	<-f.sweeperEnd
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	var errs []error
	for name, o := range f.orgs {
		if err := o.st.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", name, err))
		}
		delete(f.orgs, name)
	}
	if err := f.ids.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close the identity store: %w", err))
	}
	return errors.Join(errs...)
}

func fieldsyncNotFound(r *http.Request) error {
	return fieldsync.Errorf(fieldsync.ENotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
}
