package chaos

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

// A faultProxy stands at the server's door, behind the emulated link:
// device → link → faultProxy → server. It is an HTTP reverse proxy on
// loopback that decides, per request and from the scenario's seed, the
// fate of the exchange:
//
//   - cut before: the connection is closed before the server sees the
//     request; the device gets a connection error and nothing happened.
//   - cut after commit: the request is forwarded and the server answers
//     (so whatever it commits is committed), then the connection is
//     closed without the answer, or partway through it.
//   - duplicated: the same request is delivered to the server twice, one
//     copy after the other or both at once, and the device gets one of
//     the two answers.
//   - pass: forwarded, answered.
//
// It applies to every request: push, pull, the tus upload's creation,
// HEAD and PATCH, blob checks. A request a fault needs to forward is
// forwarded on a context of its own, as a server goes on with a request
// after its client has gone.
//
// Where a push was delivered twice, the proxy checks the two answers: an
// op decided by one copy must be answered `duplicate` with the same
// recorded result by the other, never decided twice; a PATCH delivered
// twice must not be accepted twice. Breaches are findings ("replay").
//
// A faultProxy is safe for concurrent use.
type faultProxy struct {
	upstream string // the server's host:port
	ln       net.Listener
	hs       *http.Server
	tr       *http.Transport

	mu       sync.Mutex
	rng      *rand.Rand
	rates    faultRates
	counts   faultCounts
	findings []Finding
}

// faultRates are the probabilities, per request, of each fault; they
// must add up to at most 1, and the rest passes.
type faultRates struct {
	CutBefore float64
	CutAfter  float64
	Duplicate float64
	// Together is, of the requests delivered twice, the share whose two
	// copies are sent at once rather than one after the other.
	Together float64
}

// validate says which rate is out of range.
func (f faultRates) validate() error {
	for _, x := range []struct {
		name string
		v    float64
	}{{"CutBefore", f.CutBefore}, {"CutAfter", f.CutAfter}, {"Duplicate", f.Duplicate}, {"Together", f.Together}} {
		if x.v < 0 || x.v > 1 {
			return fmt.Errorf("fault proxy: %s rate %g: want 0 to 1", x.name, x.v)
		}
	}
	if s := f.CutBefore + f.CutAfter + f.Duplicate; s > 1 {
		return fmt.Errorf("fault proxy: the fault rates add up to %g: want at most 1", s)
	}
	return nil
}

// Fault kinds, as counted and reported in Result.FaultKinds.
const (
	faultCutBefore = "cut_before"
	faultCutAfter  = "cut_after_commit"
	faultDuplicate = "duplicated"
	faultPass      = "passed"
)

// Request routes, for the counts.
const (
	routePush   = "push"
	routePull   = "pull"
	routeUpload = "upload" // tus: creation, HEAD, PATCH
	routeOther  = "other"
)

// faultCounts is what the proxy did.
type faultCounts struct {
	Requests       int
	CutBefore      int
	CutAfterCommit int
	MidResponse    int // of CutAfterCommit: the answer was cut partway
	Duplicated     int
	Concurrent     int // of Duplicated: both copies sent at once
	// DuplicateAnswers counts op results of a push delivered twice that
	// the server answered `duplicate`.
	DuplicateAnswers int
	// PatchReplays counts the answers to the second copy of a PATCH
	// delivered twice, by HTTP status.
	PatchReplays map[int]int
	// ByRoute counts each fault kind per route.
	ByRoute map[string]map[string]int
	// Unanswered counts requests the server did not answer at all.
	Unanswered int
}

// maxProxyBody bounds a request body the proxy holds: the largest push
// and a generous tus chunk.
const maxProxyBody = 16 << 20

// startFaultProxy listens on a free loopback port and forwards to
// upstream. seed draws the faults.
func startFaultProxy(upstream string, seed uint64, rates faultRates) (*faultProxy, error) {
	if err := rates.validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault proxy: %w", err)
	}
	p := &faultProxy{
		upstream: upstream, ln: ln,
		rng:   rand.New(rand.NewPCG(seed, 0xfa17)),
		rates: rates,
		counts: faultCounts{
			PatchReplays: map[int]int{},
			ByRoute:      map[string]map[string]int{},
		},
		tr: &http.Transport{
			Proxy:               nil,
			DisableCompression:  true, // bodies pass as they are
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     5 * time.Second,
		},
	}
	p.hs = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.hs.Serve(ln)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

// Close stops the proxy and closes its connections.
func (p *faultProxy) Close() {
	p.hs.Close()
	p.tr.CloseIdleConnections()
}

// SetRates changes the fault rates from the next request on.
func (p *faultProxy) SetRates(rates faultRates) error {
	if err := rates.validate(); err != nil {
		return err
	}
	p.mu.Lock()
	p.rates = rates
	p.mu.Unlock()
	return nil
}

// Counts returns a copy of what the proxy did so far.
func (p *faultProxy) Counts() faultCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	c.PatchReplays = map[int]int{}
	for k, v := range p.counts.PatchReplays {
		c.PatchReplays[k] = v
	}
	c.ByRoute = map[string]map[string]int{}
	for r, m := range p.counts.ByRoute {
		c.ByRoute[r] = map[string]int{}
		for k, v := range m {
			c.ByRoute[r][k] = v
		}
	}
	return c
}

// Findings returns the breaches seen in the answers to requests
// delivered twice.
func (p *faultProxy) Findings() []Finding {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.findings)
}

// fate is the draw for one request.
type fate struct {
	kind       string
	partial    bool    // cut after commit: partway through the answer
	frac       float64 // how much of the answer crosses before the cut
	concurrent bool    // duplicated: both copies at once
	second     bool    // duplicated: the device gets the second answer
}

// draw decides a request's fate. Every draw takes the same numbers from
// the source, whatever the fault, so one request's fate never shifts the
// draws of the next.
func (p *faultProxy) draw() fate {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rates
	u := p.rng.Float64()
	f := fate{partial: p.rng.IntN(2) == 0, frac: p.rng.Float64(), concurrent: p.rng.Float64() < r.Together, second: p.rng.IntN(2) == 0}
	switch {
	case u < r.CutBefore:
		f.kind = faultCutBefore
	case u < r.CutBefore+r.CutAfter:
		f.kind = faultCutAfter
	case u < r.CutBefore+r.CutAfter+r.Duplicate:
		f.kind = faultDuplicate
	default:
		f.kind = faultPass
	}
	return f
}

// count records that a fault of kind was done to a request of route.
func (p *faultProxy) count(route, kind string, fn func(c *faultCounts)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.counts.ByRoute[route]
	if m == nil {
		m = map[string]int{}
		p.counts.ByRoute[route] = m
	}
	m[kind]++
	switch kind {
	case faultCutBefore:
		p.counts.CutBefore++
	case faultCutAfter:
		p.counts.CutAfterCommit++
	case faultDuplicate:
		p.counts.Duplicated++
	}
	if fn != nil {
		fn(&p.counts)
	}
}

func (p *faultProxy) finding(format string, args ...any) {
	p.mu.Lock()
	p.findings = append(p.findings, Finding{Check: "replay", Detail: fmt.Sprintf(format, args...)})
	p.mu.Unlock()
}

// routeOf names the kind of request.
func routeOf(r *http.Request) string {
	switch {
	case r.URL.Path == protocol.PathPush:
		return routePush
	case r.URL.Path == protocol.PathChanges:
		return routePull
	case strings.HasPrefix(r.URL.Path, protocol.PathFiles) || r.URL.Path+"/" == protocol.PathFiles:
		return routeUpload
	}
	return routeOther
}

// answer is a server's whole answer, held by the proxy.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.counts.Requests++
	p.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxProxyBody+1))
	if err != nil || len(body) > maxProxyBody {
		// The request did not arrive whole: the connection goes, as it
		// would have on the link.
		hangUp(w)
		return
	}
	route := routeOf(r)
	f := p.draw()
	// A fault's forwarding outlives the device's connection, as the
	// server's work does.
	detached, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	switch f.kind {
	case faultCutBefore:
		p.count(route, faultCutBefore, nil)
		hangUp(w)
	case faultCutAfter:
		a, err := p.forward(detached, r, body)
		if err != nil {
			p.unanswered()
			hangUp(w)
			return
		}
		// An answer with no body cannot be cut partway: its header is
		// all of it.
		partial := f.partial && r.Method != http.MethodHead && len(a.body) > 1
		p.count(route, faultCutAfter, func(c *faultCounts) {
			if partial {
				c.MidResponse++
			}
		})
		if partial {
			writePartial(w, r, a, f.frac)
			return
		}
		hangUp(w)
	case faultDuplicate:
		first, second, err := p.twice(detached, r, body, f.concurrent)
		if err != nil {
			p.unanswered()
			hangUp(w)
			return
		}
		p.count(route, faultDuplicate, func(c *faultCounts) {
			if f.concurrent {
				c.Concurrent++
			}
		})
		p.judgeReplay(r, route, first, second, f.concurrent)
		if f.second {
			first = second
		}
		write(w, r, first)
	default:
		a, err := p.forward(r.Context(), r, body)
		if err != nil {
			p.unanswered()
			hangUp(w)
			return
		}
		p.count(route, faultPass, nil)
		write(w, r, a)
	}
}

func (p *faultProxy) unanswered() {
	p.mu.Lock()
	p.counts.Unanswered++
	p.mu.Unlock()
}

// twice delivers the request two times, one after the other or both at
// once. Concurrent copies come back in the order they were started.
func (p *faultProxy) twice(ctx context.Context, r *http.Request, body []byte, concurrent bool) (*answer, *answer, error) {
	if !concurrent {
		a, err := p.forward(ctx, r, body)
		if err != nil {
			return nil, nil, err
		}
		b, err := p.forward(ctx, r, body)
		if err != nil {
			return nil, nil, err
		}
		return a, b, nil
	}
	var wg sync.WaitGroup
	var ans [2]*answer
	var errs [2]error
	for i := range 2 {
		wg.Go(func() { ans[i], errs[i] = p.forward(ctx, r, body) })
	}
	wg.Wait()
	if err := errors.Join(errs[0], errs[1]); err != nil {
		return nil, nil, err
	}
	return ans[0], ans[1], nil
}

// hopHeaders belong to one connection and are not forwarded.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect"}

// forward sends one copy of the request to the server and reads its whole
// answer.
func (p *faultProxy) forward(ctx context.Context, r *http.Request, body []byte) (*answer, error) {
	out, err := http.NewRequestWithContext(ctx, r.Method, "http://"+p.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	// The server names the upload URLs it hands out after the host the
	// device dialled.
	out.Host = r.Host
	out.ContentLength = int64(len(body))
	if len(body) == 0 {
		out.Body = http.NoBody
	}
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// write passes an answer on to the device.
func write(w http.ResponseWriter, r *http.Request, a *answer) {
	writeHeader(w, r, a)
	if r.Method != http.MethodHead {
		w.Write(a.body)
	}
}

func writeHeader(w http.ResponseWriter, r *http.Request, a *answer) {
	h := w.Header()
	for k, v := range a.header {
		h[k] = slices.Clone(v)
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	switch {
	case a.status == http.StatusNoContent || a.status == http.StatusNotModified || a.status < 200:
		h.Del("Content-Length")
	case r.Method != http.MethodHead:
		h.Set("Content-Length", fmt.Sprint(len(a.body)))
	}
	w.WriteHeader(a.status)
}

// writePartial sends the answer's header and frac of its body (never
// all of it), then closes the connection.
func writePartial(w http.ResponseWriter, r *http.Request, a *answer, frac float64) {
	writeHeader(w, r, a)
	w.Write(a.body[:int(frac*float64(len(a.body)-1))])
	// What was written goes out before the connection closes.
	_ = http.NewResponseController(w).Flush()
	hangUp(w)
}

// hangUp closes the device's connection with no more said.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not an HTTP/1 connection: abort the handler, which closes it.
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// judgeReplay checks the two answers to a request delivered twice.
func (p *faultProxy) judgeReplay(r *http.Request, route string, first, second *answer, concurrent bool) {
	switch {
	case route == routePush && r.Method == http.MethodPost:
		p.judgePush(first, second, concurrent)
	case route == routeUpload && r.Method == http.MethodPatch:
		ok := func(a *answer) bool { return a.status >= 200 && a.status < 300 }
		later := second
		if concurrent && !ok(first) {
			later = first
		}
		p.mu.Lock()
		p.counts.PatchReplays[later.status]++
		p.mu.Unlock()
		if ok(first) && ok(second) {
			p.finding("%s %s (Upload-Offset %s) was delivered twice and accepted both times (%d, %d): the same bytes were written twice",
				r.Method, r.URL.Path, r.Header.Get("Upload-Offset"), first.status, second.status)
		}
	}
}

// judgePush checks that no op of a push delivered twice was decided
// twice: the later copy answers `duplicate` with the recorded result.
// Of two copies sent at once, the one answered `duplicate` is the later.
func (p *faultProxy) judgePush(first, second *answer, concurrent bool) {
	a, errA := pushResults(first)
	b, errB := pushResults(second)
	if errA != nil || errB != nil {
		return // not both answered 200 with results: nothing to compare
	}
	byOp := map[string]protocol.Result{}
	for _, x := range a {
		byOp[x.Op] = x
	}
	dups := 0
	for _, y := range b {
		x, ok := byOp[y.Op]
		if !ok {
			continue
		}
		earlier, later := x, y
		if concurrent && x.Status == string(fieldsync.StatusDuplicate) && y.Status != string(fieldsync.StatusDuplicate) {
			earlier, later = y, x
		}
		if later.Status == string(fieldsync.StatusDuplicate) {
			dups++
		}
		if msg := replayBreach(earlier, later); msg != "" {
			p.finding("op %s, its push delivered twice: %s", y.Op, msg)
		}
	}
	p.mu.Lock()
	p.counts.DuplicateAnswers += dups
	p.mu.Unlock()
}

// replayBreach says what is wrong when later is the answer to a repeat
// of the op that earlier answered ("" when nothing is).
func replayBreach(earlier, later protocol.Result) string {
	decided := func(s string) bool {
		return s == string(fieldsync.StatusApplied) || s == string(fieldsync.StatusConflict) || s == string(fieldsync.StatusRejected)
	}
	effective := func(x protocol.Result) (string, int64) {
		if x.Status == string(fieldsync.StatusDuplicate) && x.Recorded != nil {
			return x.Recorded.Status, x.Recorded.Version
		}
		return x.Status, x.Version
	}
	switch {
	case decided(earlier.Status) && decided(later.Status):
		return fmt.Sprintf("decided twice (%s at v%d, then %s at v%d)", earlier.Status, earlier.Version, later.Status, later.Version)
	case decided(earlier.Status) || earlier.Status == string(fieldsync.StatusDuplicate):
		if later.Status != string(fieldsync.StatusDuplicate) {
			return fmt.Sprintf("answered %s, then %s instead of duplicate", earlier.Status, later.Status)
		}
		es, ev := effective(earlier)
		ls, lv := effective(later)
		if es != ls || ev != lv {
			return fmt.Sprintf("answered %s at v%d, then duplicate of %s at v%d", es, ev, ls, lv)
		}
	}
	return ""
}

// pushResults decodes a push answer of 200.
func pushResults(a *answer) ([]protocol.Result, error) {
	if a.status != http.StatusOK {
		return nil, fmt.Errorf("status %d", a.status)
	}
	var rd io.Reader = bytes.NewReader(a.body)
	if strings.EqualFold(a.header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		rd = zr
	}
	var resp protocol.PushResponse
	if err := json.NewDecoder(rd).Decode(&resp); err != nil {
		return nil, err
	}
	return resp.Results, nil
}
