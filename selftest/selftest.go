// Package selftest checks a running fieldsync deployment against the
// pre-launch checklist: the server answers, speaks this build's protocol,
// serves its schema, applies a device's ops exactly once, refuses a
// cursor of another history, turns a clash on a manual field into a
// conflict that can be settled, stores and serves attachments, and how
// fast it answers. It works as a real device would: a fresh device engine
// in a temporary folder, plus plain HTTP for what a device never does
// (office edits, duplicate pushes, stale cursors). Every record it makes
// has a title starting "selftest " and is deleted at the end.
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
	"path/filepath"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/client"
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
	// request, the device engine's included.
	Token string
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
	CheckInfo        = "info"
	CheckProtocol    = "protocol"
	CheckSchema      = "schema"
	CheckRoundTrip   = "round_trip"
	CheckIdempotent  = "idempotency"
	CheckStaleCursor = "stale_cursor"
	CheckConflict    = "conflict"
	CheckAttachment  = "attachment"
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

// run is one selftest under way.
type run struct {
	cfg    Config
	hc     *http.Client
	base   string
	eng    *client.Engine
	engErr error
	rep    *Report
	tag    string // random, in every title: tells this run's records apart
	dir    string // the devices' folders go in it

	epoch      string      // from /v1/info
	manual     manualField // a manual-policy field of EntityType, from the schema
	schemaRead bool        // GET /v1/schema gave a valid schema
	typeOK     bool        // the schema has EntityType with a title
	mine       []string    // ids of records the engine made, to delete
	raw        *rawRecord  // the record pushed by hand (idempotency), to delete
}

// Run runs every check against cfg.ServerURL. It returns an error only
// when it cannot start (a bad Config, no temporary folder); what the
// server got wrong is in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.ServerURL == "" {
		return nil, errors.New("selftest: Config.ServerURL is required")
	}
	if !strings.HasPrefix(cfg.ServerURL, "http://") && !strings.HasPrefix(cfg.ServerURL, "https://") {
		return nil, fmt.Errorf("selftest: server URL %q: want http:// or https://", cfg.ServerURL)
	}
	if cfg.Trips <= 0 {
		cfg.Trips = 10
	}
	if cfg.PushOps <= 0 {
		cfg.PushOps = 200
	}
	r := &run{cfg: cfg, base: strings.TrimRight(cfg.ServerURL, "/"), rep: &Report{Server: cfg.ServerURL}}
	r.hc = withToken(cfg.HTTPClient, cfg.Token)
	var tag [4]byte
	rand.Read(tag[:])
	r.tag = hex.EncodeToString(tag[:])

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
	r.eng, r.engErr = client.Open(ctx, client.Config{Dir: filepath.Join(dir, "device"), ServerURL: r.base, HTTPClient: r.hc, MinBackoff: 10 * time.Millisecond})
	if r.eng != nil {
		defer r.eng.Close()
	}

	steps := []struct {
		name, title string
		fn          func(context.Context) (Outcome, string)
	}{
		{CheckHealth, "GET /healthz answers", r.checkHealth},
		{CheckInfo, "GET /v1/info answers", r.checkInfo},
		{CheckProtocol, "protocol version accepted", r.checkProtocol},
		{CheckSchema, "schema readable", r.checkSchema},
		{CheckRoundTrip, "create + update + append round trip", r.checkRoundTrip},
		{CheckIdempotent, "duplicate push answered duplicate, nothing changed", r.checkIdempotent},
		{CheckStaleCursor, "cursor of another history refused", r.checkStaleCursor},
		{CheckConflict, "office edit vs device edit on a manual field: conflict, settled", r.checkConflict},
		{CheckAttachment, "attachment uploads (tus) and downloads identical", r.checkAttachment},
		{CheckLatency, "round-trip latency", r.checkLatency},
		{CheckThroughput, "push throughput", r.checkThroughput},
		{CheckCleanup, "selftest records deleted", r.checkCleanup},
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
	return r.rep, nil
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
