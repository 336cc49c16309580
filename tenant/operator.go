package tenant

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/protocol"
)

// Bounds of a test organisation's removal and of the sweeper.
const (
	defaultSweepEvery = 5 * time.Minute
	sweepBatch        = 50               // test organisations removed per sweep at most
	sweepTimeout      = 2 * time.Minute  // one sweep's time at most
	drainTimeout      = 10 * time.Second // how long a removal waits for requests in flight
)

// operatorHandler serves the operator API behind auth.OperatorMiddleware:
// POST /v1/operator/test-orgs and DELETE /v1/operator/test-orgs/{name}.
func (f *Front) operatorHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+protocol.PathTestOrgs, f.serveCreateTestOrg)
	mux.HandleFunc("DELETE "+protocol.PathTestOrgs+"/{name}", f.serveDeleteTestOrg)
	return mux
}

func (f *Front) serveCreateTestOrg(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	body, err := auth.ReadOperatorBody(r)
	var req *protocol.TestOrgRequest
	if err == nil {
		req, err = protocol.DecodeTestOrgRequest(body)
	}
	var t auth.TestOrg
	if err == nil {
		t, err = f.ids.CreateTestOrg(r.Context(), req.Name, req.TTL(), p.User)
	}
	if err != nil {
		f.operatorError(w, r, p, err)
		return
	}
	f.log.Info("test organisation created", "org", t.Org, "operator", p.User, "expires", t.Expires)
	auth.WriteJSON(w, &protocol.TestOrgResponse{Org: t.Org, Expires: t.Expires, OfficeUser: t.OfficeUser, OfficeToken: t.OfficeToken,
		Worker: t.Worker, EnrolmentCode: t.Code})
}

func (f *Front) serveDeleteTestOrg(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	name := r.PathValue("name")
	if err := f.DeleteTestOrg(r.Context(), name); err != nil {
		f.operatorError(w, r, p, err)
		return
	}
	f.log.Info("test organisation deleted", "org", name, "operator", p.User)
	auth.WriteJSON(w, &protocol.TestOrgDeleted{Org: name, Deleted: true})
}

func (f *Front) operatorError(w http.ResponseWriter, r *http.Request, p auth.Principal, err error) {
	if auth.HTTPStatus(fieldsync.ErrorCode(err)) >= 500 || fieldsync.ErrorCode(err) == "" {
		f.log.Error("operator request failed", "method", r.Method, "path", r.URL.Path, "operator", p.User, "err", err)
		if fieldsync.ErrorCode(err) == "" {
			err = fieldsync.Errorf(fieldsync.EInternal, "the server could not do this: see its log")
		}
	} else {
		f.log.Info("operator request refused", "method", r.Method, "path", r.URL.Path, "operator", p.User,
			"code", fieldsync.ErrorCode(err), "msg", fieldsync.ErrorMessage(err))
	}
	auth.WriteError(w, err)
}

// DeleteTestOrg removes a test organisation completely, in an order
// that a crash at any point leaves for the sweeper to finish: its
// tokens and codes stop working (the identity store marks it expired);
// its open server is closed, once the requests it is serving are done
// (at most a few seconds); its store files (database, WAL, shared
// memory, attachments folder) are removed; then its identity rows
// (users, devices, tokens, codes, the organisation). It answers
// ENotFound for an unknown organisation and EForbidden for one that is
// not a test organisation, and then changes nothing.
func (f *Front) DeleteTestOrg(ctx context.Context, name string) error {
	f.delMu.Lock()
	defer f.delMu.Unlock()
	if err := f.ids.ExpireTestOrg(ctx, name); err != nil {
		return err
	}
	f.retire(name)
	defer func() {
		f.mu.Lock()
		delete(f.gone, name)
		f.mu.Unlock()
	}()
	if err := removeOrgFiles(f.cfg.Dir, name); err != nil {
		return fmt.Errorf("remove the files of %s: %w", name, err)
	}
	return f.ids.DeleteTestOrg(ctx, name)
}

// retire closes an organisation's server and keeps it from being opened
// again until the caller clears f.gone[name].
func (f *Front) retire(name string) {
	f.mu.Lock()
	f.gone[name] = true
	o := f.orgs[name]
	delete(f.orgs, name)
	f.mu.Unlock()
	if o == nil {
		return
	}
	drained := make(chan struct{})
	go func() {
		o.active.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		f.log.Warn("closing an organisation with requests in flight", "org", name)
	}
	if err := o.st.Close(); err != nil {
		f.log.Warn("close organisation", "org", name, "err", err)
	}
	f.log.Info("organisation closed", "org", name)
}

// removeOrgFiles removes an organisation's store files; files already
// gone are no error.
func removeOrgFiles(dir, name string) error {
	db := OrgPath(dir, name)
	var errs []error
	for _, p := range []string{db, db + "-wal", db + "-shm", db + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "orgs", name+".blobs")); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SweepTestOrgs removes test organisations whose expiry has passed (by
// the identity store's clock), at most a batch per call, and returns how
// many it removed. The Front calls it when it opens and every
// Config.SweepEvery.
func (f *Front) SweepTestOrgs(ctx context.Context) (int, error) {
	names, err := f.ids.ExpiredTestOrgs(ctx, sweepBatch)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, name := range names {
		err := f.DeleteTestOrg(ctx, name)
		if fieldsync.ErrorCode(err) == fieldsync.ENotFound {
			continue // removed meanwhile
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		f.log.Info("expired test organisation removed", "org", name)
		n++
	}
	return n, errors.Join(errs...)
}

// startSweeper runs SweepTestOrgs now and every Config.SweepEvery until
// Close.
func (f *Front) startSweeper() {
	ctx, cancel := context.WithCancel(context.Background())
	f.stopSweep = cancel
	f.sweeperEnd = make(chan struct{})
	every := f.cfg.SweepEvery
	if every == 0 {
		every = defaultSweepEvery
	}
	go func() {
		defer close(f.sweeperEnd)
		var tick <-chan time.Time
		if every > 0 {
			t := time.NewTicker(every)
			defer t.Stop()
			tick = t.C
		}
		for {
			sctx, scancel := context.WithTimeout(ctx, sweepTimeout)
			if _, err := f.SweepTestOrgs(sctx); err != nil && ctx.Err() == nil {
				f.log.Error("removing expired test organisations", "err", err)
			}
			scancel()
			select {
			case <-ctx.Done():
				return
			case <-tick:
			}
		}
	}()
}
