// Package selftest checks a running fieldsync deployment against the
// pre-launch checklist: the server answers, speaks this build's protocol,
// serves its schema, applies a device's ops exactly once, refuses a
// cursor of another history, turns a clash on a manual field into a
// conflict that can be settled, stores and serves attachments, and how
// fast it answers. It works as a real device would: a fresh device engine
// in a temporary folder, plus plain HTTP for what a device never does
// (office edits, duplicate pushes, stale cursors). Every record it makes
// has a title starting "selftest " and is deleted at the end.
//
// Against a server with authentication it works in a test organisation:
// with the installation's operator token it makes one through the
// operator API (POST /v1/operator/test-orgs), enrols its devices with
// one-time codes through POST /v1/enroll as real devices do, acts as
// the office with the organisation's dispatcher session, and deletes the
// whole organisation at the end — also when a check fails or the run is
// cancelled. With an office token and a field worker of an existing test
// organisation it does the same without making or deleting one.
package selftest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/protocol"
)

// TitlePrefix starts the title of every record the selftest makes.
const TitlePrefix = "selftest "

// EntityType is the entity type the selftest writes records of.
const EntityType = "work_order"

// Config says which server to check. ServerURL is required; every other
// zero value is the documented default.
type Config struct {
	ServerURL string // e.g. https://sync.example.com
	// Token, when set, is sent as "Authorization: Bearer <Token>" on every
	// request, the device engines' included: for a server without
	// fieldsync's own authentication behind a gateway that wants one
	// shared token. It cannot be given with the fields below.
	Token string
	// OperatorToken is the installation's operator token ("fso_…", made
	// on the server's host with `fieldsync admin operator-token`). With
	// it the selftest makes a test organisation, works in it, and deletes
	// it at the end.
	OperatorToken string
	// OfficeToken and Worker, given together, run the selftest in an
	// existing organisation (a test one) without operator rights:
	// OfficeToken is a dispatcher's or admin's session token of it, and
	// Worker one of its field workers, for whom the selftest asks
	// enrolment codes to enrol its devices. The records it makes are
	// deleted at the end; its devices stay enrolled.
	OfficeToken, Worker string
	// TestOrgTTL is how long a test organisation made with OperatorToken
	// lives if the selftest cannot delete it (default 1 h): the server
	// removes it then.
	TestOrgTTL time.Duration
	// CleanupTimeout bounds the cleanup, which runs even when ctx is
	// done (default 30 s).
	CleanupTimeout time.Duration
	// Dir is the device engine's folder (default: a temporary folder,
	// removed at the end).
	Dir string
	// HTTPClient makes every request (default: a client with a 60 s
	// timeout). Its transport is wrapped to add the token.
	HTTPClient *http.Client
	// Trips is the number of timed GET /healthz round trips (default 10).
	Trips int
	// PushOps is the number of ops pushed for the throughput figure
	// (default 200).
	PushOps int
}

// Outcome of one check.
type Outcome string

// The outcomes.
const (
	Pass Outcome = "pass"
	Fail Outcome = "fail"
	Skip Outcome = "skip" // could not be checked here; Detail says why
)

// The names of the checks, in the order they run.
const (
	CheckHealth      = "health"
	CheckSetup       = "setup"
	CheckAuth        = "auth"
	CheckInfo        = "info"
	CheckProtocol    = "protocol"
	CheckSchema      = "schema"
	CheckRoundTrip   = "round_trip"
	CheckIdempotent  = "idempotency"
	CheckStaleCursor = "stale_cursor"
	CheckConflict    = "conflict"
	CheckAttachment  = "attachment"
	CheckBigUpload   = "big_upload"
	CheckClock       = "clock"
	CheckLatency     = "latency"
	CheckThroughput  = "throughput"
	CheckCleanup     = "cleanup"
)

// Check is the result of one check.
type Check struct {
	Name    string        `json:"name"`
	Title   string        `json:"title"` // what was checked, in words
	Outcome Outcome       `json:"outcome"`
	Detail  string        `json:"detail,omitempty"` // what was seen; why it failed or was skipped
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Report is what a selftest found.
type Report struct {
	Server string  `json:"server"`
	Checks []Check `json:"checks"`
	// RoundTripMS is the median GET /healthz round trip; PushOpsPerS the
	// ops a second of a device's push of Config.PushOps ops. Zero when not
	// measured.
	RoundTripMS float64 `json:"round_trip_ms"`
	PushOpsPerS float64 `json:"push_ops_per_s"`
}

// OK reports whether no check failed.
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if c.Outcome == Fail {
			return false
		}
	}
	return true
}

// Check returns the check of that name.
func (r *Report) Check(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// WriteText prints the report: one ✓, ✗ or – line per check, then a
// summary line.
func (r *Report) WriteText(w io.Writer) error {
	failed, skipped := 0, 0
	for _, c := range r.Checks {
		mark := "✓"
		switch c.Outcome {
		case Fail:
			mark = "✗"
			failed++
		case Skip:
			mark = "–"
			skipped++
		}
		line := fmt.Sprintf("%s %s", mark, c.Title)
		if c.Detail != "" {
			line += ": " + c.Detail
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	verdict := "all checks passed"
	if failed > 0 {
		verdict = fmt.Sprintf("%d of %d checks failed", failed, len(r.Checks))
	}
	if skipped > 0 {
		verdict += fmt.Sprintf(" (%d skipped)", skipped)
	}
	_, err := fmt.Fprintf(w, "%s: %s\n", r.Server, verdict)
	return err
}

// ErrAuthRequired is returned by Run when the server asks for a token
// and Config names no way to get one.
var ErrAuthRequired = errors.New("the server requires authentication")

// mode is how the selftest reaches the server.
type mode int

const (
	modeOpen     mode = iota // no token, or Config.Token on every request
	modeOperator             // a test organisation made and deleted with the operator token
	modeOffice               // an existing organisation: office token and a field worker
)

// run is one selftest under way.
type run struct {
	cfg    Config
	mode   mode
	hc     *http.Client // the office's requests (and, in the open mode, every one)
	plain  *http.Client // no token: enrolment, the devices' engines in an organisation
	devHC  *http.Client // the hand-pushed device's requests
	opHC   *http.Client // the operator API
	base   string
	eng    *client.Engine
	attach *client.Engine // the attachment check's device
	engErr error
	rep    *Report
	tag    string // random, in every title: tells this run's records apart
	dir    string // the devices' folders go in it

	org     string // the test organisation made (operator mode)
	worker  string // the field worker the devices are enrolled for
	rawDev  string // the device id of the hand-pushed ops
	created bool   // the test organisation exists and is to be deleted

	epoch      string      // from /v1/info
	manual     manualField // a manual-policy field of EntityType, from the schema
	schemaRead bool        // GET /v1/schema gave a valid schema
	typeOK     bool        // the schema has EntityType with a title
	mine       []string    // ids of records the engine made, to delete
	raw        *rawRecord  // the record pushed by hand (idempotency), to delete
}

// Run runs every check against cfg.ServerURL, then cleans up. It
// returns an error only when it cannot start (a bad Config, no temporary
// folder, a server that requires a token when none was given:
// ErrAuthRequired); what the server got wrong is in the report. The
// cleanup runs even when ctx is done, bounded by Config.CleanupTimeout.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.ServerURL == "" {
		return nil, errors.New("selftest: Config.ServerURL is required")
	}
	if !strings.HasPrefix(cfg.ServerURL, "http://") && !strings.HasPrefix(cfg.ServerURL, "https://") {
		return nil, fmt.Errorf("selftest: server URL %q: want http:// or https://", cfg.ServerURL)
	}
	m := modeOpen
	switch {
	case cfg.OperatorToken != "" && (cfg.OfficeToken != "" || cfg.Worker != "" || cfg.Token != ""):
		return nil, errors.New("selftest: give the operator token alone, or the office token and a worker, not both")
	case cfg.OperatorToken != "":
		m = modeOperator
	case (cfg.OfficeToken == "") != (cfg.Worker == ""):
		return nil, errors.New("selftest: the office token and the field worker go together")
	case cfg.OfficeToken != "" && cfg.Token != "":
		return nil, errors.New("selftest: give the office token and a worker, or one shared token, not both")
	case cfg.OfficeToken != "":
		m = modeOffice
	}
	if cfg.Trips <= 0 {
		cfg.Trips = 10
	}
	if cfg.PushOps <= 0 {
		cfg.PushOps = 200
	}
	if cfg.TestOrgTTL <= 0 {
		cfg.TestOrgTTL = time.Hour
	}
	if cfg.CleanupTimeout <= 0 {
		cfg.CleanupTimeout = 30 * time.Second
	}
	r := &run{cfg: cfg, mode: m, base: strings.TrimRight(cfg.ServerURL, "/"), rep: &Report{Server: cfg.ServerURL}}
	var tag [4]byte
	rand.Read(tag[:])
	r.tag = hex.EncodeToString(tag[:])
	r.rawDev = "selftest-" + r.tag
	r.plain = withToken(cfg.HTTPClient, "")
	switch m {
	case modeOpen:
		r.hc = withToken(cfg.HTTPClient, cfg.Token)
		if err := r.probe(ctx); err != nil {
			return nil, err
		}
	case modeOperator:
		r.opHC = withToken(cfg.HTTPClient, cfg.OperatorToken)
		r.hc = r.plain // the office's token once the organisation is made
	case modeOffice:
		r.hc = withToken(cfg.HTTPClient, cfg.OfficeToken)
		r.worker = cfg.Worker
	}
	if m == modeOpen {
		r.devHC = r.hc // else once its device is enrolled
	}

	dir := cfg.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "fieldsync-selftest-")
		if err != nil {
			return nil, fmt.Errorf("selftest: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	r.dir = dir
	defer func() {
		for _, e := range []*client.Engine{r.eng, r.attach} {
			if e != nil {
				e.Close()
			}
		}
	}()

	steps := []struct {
		name, title string
		fn          func(context.Context) (Outcome, string)
	}{
		{CheckHealth, "GET /healthz answers", r.checkHealth},
		{CheckSetup, r.setupTitle(), r.checkSetup},
		{CheckAuth, "requests without a token or beyond their rights refused", r.checkAuth},
		{CheckInfo, "GET /v1/info answers", r.checkInfo},
		{CheckProtocol, "protocol version accepted", r.checkProtocol},
		{CheckSchema, "schema readable", r.checkSchema},
		{CheckRoundTrip, "create + update + append round trip", r.checkRoundTrip},
		{CheckIdempotent, "duplicate push answered duplicate, nothing changed", r.checkIdempotent},
		{CheckStaleCursor, "cursor of another history refused", r.checkStaleCursor},
		{CheckConflict, "office edit vs device edit on a manual field: conflict, settled", r.checkConflict},
		{CheckAttachment, "attachment uploads (tus) and downloads identical", r.checkAttachment},
		{CheckBigUpload, "upload chunks as large as devices send pass, and resume from the offset", r.checkBigUpload},
		{CheckClock, "the server's clock agrees with this machine's", r.checkClock},
		{CheckLatency, "round-trip latency", r.checkLatency},
		{CheckThroughput, "push throughput", r.checkThroughput},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			r.rep.Checks = append(r.rep.Checks, Check{Name: s.name, Title: s.title, Outcome: Fail, Detail: "stopped: " + err.Error()})
			continue
		}
		start := time.Now()
		out, detail := s.fn(ctx)
		r.rep.Checks = append(r.rep.Checks, Check{Name: s.name, Title: s.title, Outcome: out, Detail: detail, Elapsed: time.Since(start)})
	}
	// The cleanup runs whatever happened above, with a time of its own.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.CleanupTimeout)
	defer cancel()
	start := time.Now()
	title, out, detail := r.cleanup(cctx)
	r.rep.Checks = append(r.rep.Checks, Check{Name: CheckCleanup, Title: title, Outcome: out, Detail: detail, Elapsed: time.Since(start)})
	return r.rep, nil
}

// probe asks GET /v1/info as the open mode would: a server that answers
// 401 wants a token the Config does not give.
func (r *run) probe(ctx context.Context) error {
	a, err := r.do(ctx, http.MethodGet, protocol.PathInfo, thisVersion, nil)
	if err != nil || a.status != http.StatusUnauthorized {
		return nil // the checks say what is wrong, if anything
	}
	if r.cfg.Token != "" {
		return fmt.Errorf("selftest: %w: the token given was refused (%s)", ErrAuthRequired, a.apiError())
	}
	return fmt.Errorf("selftest: %w: give the operator token (made on the server's host), or an office token and a field worker of a test organisation", ErrAuthRequired)
}

// tokenTransport adds the bearer token to every request.
type tokenTransport struct {
	token string
	next  http.RoundTripper
}

func (t *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+t.token)
	return t.next.RoundTrip(req)
}

// withToken returns a client like hc (or a default one) whose requests
// carry the token, when there is one.
func withToken(hc *http.Client, token string) *http.Client {
	c := &http.Client{Timeout: 60 * time.Second}
	if hc != nil {
		cc := *hc
		c = &cc
	}
	if token != "" {
		next := c.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		c.Transport = &tokenTransport{token: token, next: next}
	}
	return c
}

// failf is a failed check with its detail.
func failf(format string, args ...any) (Outcome, string) {
	return Fail, fmt.Sprintf(format, args...)
}
