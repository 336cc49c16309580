package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// FaultKind names what the proxy does to one request.
type FaultKind int

// The faults. Every kind but Drop and CutRequest forwards the whole
// request to the upstream server and reads its whole answer first, so the
// server has committed whatever the request commits before the fault hits
// the client.
const (
	Pass                FaultKind = iota // forward and relay
	Drop                                 // forward nothing; close the client's connection
	DropResponse                         // forward, then close the client's connection without an answer
	CutResponse                          // forward, then relay the status, the headers and only Cut(len) bytes of the body
	CutRequest                           // send only Cut(len) bytes of the request body upstream, then close the client's connection
	Stall                                // forward, then hold the answer until the client gives up
	Duplicate                            // forward twice, one after the other; relay the second answer
	DuplicateConcurrent                  // forward twice at once; relay the first answer
)

var faultNames = [...]string{"pass", "drop", "drop-response", "cut-response", "cut-request", "stall", "duplicate", "duplicate-concurrent"}

func (k FaultKind) String() string {
	if int(k) < len(faultNames) {
		return faultNames[k]
	}
	return "fault(" + strconv.Itoa(int(k)) + ")"
}

// Fault is what the proxy does to one request.
type Fault struct {
	Kind FaultKind
	// Cut maps the full size of the body (the response body for
	// CutResponse, the request body for CutRequest) to the number of
	// bytes let through. Nil lets half through.
	Cut func(size int) int
	// Plain asks the upstream server for an uncompressed answer.
	Plain bool
	// Before runs before anything is forwarded.
	Before func()
	// Sent runs once the whole request was written to the upstream
	// server: from then on the server is deciding it.
	Sent func()
	// After runs once the upstream server answered (or failed), before
	// anything is relayed to the client.
	After func()
}

// Exchange is the proxy's record of one request.
type Exchange struct {
	Method, Path string
	N            int // 1-based index among the requests with the same method and path
	Fault        FaultKind
	RequestBody  []byte        // as the client sent it (compressed if it was)
	RequestEnc   string        // its Content-Encoding
	Status       int           // the upstream server's HTTP status; 0 when it did not answer
	ResponseBody []byte        // the upstream server's body, as it sent it
	ResponseEnc  string        // its Content-Encoding
	Relayed      int           // body bytes relayed to the client; -1 when no answer was relayed
	Err          error         // why forwarding failed, if it did
	FirstBody    []byte        // Duplicate: the upstream server's first answer, which the client never sees
	Duration     time.Duration // from the request's arrival to its answer (before any stall)
	ServerTime   time.Duration // from the request written upstream to the answer's first byte
}

// Proxy is an HTTP proxy for tests that applies a Fault to chosen
// requests. It sits between a client engine and a server on loopback.
// A Proxy is safe for concurrent use.
type Proxy struct {
	mu        sync.Mutex
	upstream  string
	rule      func(r *http.Request, n int) Fault
	counts    map[string]int
	exchanges []Exchange
	transport *http.Transport
}

// NewProxy returns a proxy to the server at upstream (a base URL such as
// http://127.0.0.1:8080) that passes everything until SetRule says
// otherwise.
func NewProxy(upstream string) *Proxy {
	return &Proxy{
		upstream: upstream,
		counts:   map[string]int{},
		transport: &http.Transport{
			Proxy:              nil,
			DisableCompression: true, // relay bodies as the server sent them
			MaxIdleConns:       8,
			IdleConnTimeout:    10 * time.Second,
		},
	}
}

// SetUpstream points the proxy at another server, e.g. a restarted one.
func (p *Proxy) SetUpstream(upstream string) {
	p.mu.Lock()
	p.upstream = upstream
	p.mu.Unlock()
	p.transport.CloseIdleConnections()
}

// SetRule sets the function that picks the fault of each request; n is
// the request's 1-based index among those with the same method and path.
// Nil passes everything.
func (p *Proxy) SetRule(rule func(r *http.Request, n int) Fault) {
	p.mu.Lock()
	p.rule = rule
	p.mu.Unlock()
}

// Exchanges returns the record of every request handled so far, in the
// order they were answered: each is on record before its client gets an
// answer or loses it.
func (p *Proxy) Exchanges() []Exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Exchange(nil), p.exchanges...)
}

// Close closes the proxy's idle upstream connections.
func (p *Proxy) Close() { p.transport.CloseIdleConnections() }

// upstreamAnswer is what the upstream server sent back.
type upstreamAnswer struct {
	status     int
	header     http.Header
	body       []byte
	err        error
	serverTime time.Duration
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		hangUp(w)
		return
	}
	key := r.Method + " " + r.URL.Path
	p.mu.Lock()
	p.counts[key]++
	n := p.counts[key]
	rule, upstream := p.rule, p.upstream
	p.mu.Unlock()
	var f Fault
	if rule != nil {
		f = rule(r, n)
	}
	ex := Exchange{Method: r.Method, Path: r.URL.Path, N: n, Fault: f.Kind, RequestBody: body,
		RequestEnc: r.Header.Get("Content-Encoding"), Relayed: -1}
	if f.Before != nil {
		f.Before()
	}
	// The upstream request outlives the client's: a server finishes what
	// it received even when the client is gone.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 60*time.Second)
	defer cancel()

	var ans upstreamAnswer
	switch f.Kind {
	case Drop:
	case CutRequest:
		ans = p.sendCut(ctx, upstream, r, body, cutAt(f.Cut, len(body)))
	case Duplicate:
		first := p.forward(ctx, upstream, r, body, f.Plain, nil)
		ex.FirstBody = first.body
		ans = p.forward(ctx, upstream, r, body, f.Plain, f.Sent)
	case DuplicateConcurrent:
		var second upstreamAnswer
		var wg sync.WaitGroup
		wg.Go(func() { second = p.forward(ctx, upstream, r, body, f.Plain, nil) })
		ans = p.forward(ctx, upstream, r, body, f.Plain, f.Sent)
		wg.Wait()
		if ans.err != nil {
			ans = second
		}
	default:
		ans = p.forward(ctx, upstream, r, body, f.Plain, f.Sent)
	}
	ex.Status, ex.ResponseBody, ex.Err, ex.ServerTime = ans.status, ans.body, ans.err, ans.serverTime
	if ans.header != nil {
		ex.ResponseEnc = ans.header.Get("Content-Encoding")
	}
	if f.After != nil {
		f.After()
	}

	// The exchange is on record before the client hears anything, so a
	// client that got its answer (or lost it) finds it in Exchanges.
	failed := ans.err != nil || ans.status == 0
	switch {
	case failed:
	case f.Kind == CutResponse:
		ex.Relayed = cutAt(f.Cut, len(ans.body))
	case f.Kind == Pass || f.Kind == Duplicate || f.Kind == DuplicateConcurrent:
		ex.Relayed = len(ans.body)
	}
	ex.Duration = time.Since(start)
	p.mu.Lock()
	p.exchanges = append(p.exchanges, ex)
	p.mu.Unlock()

	if failed {
		hangUp(w)
		return
	}
	switch f.Kind {
	case Drop, DropResponse, CutRequest:
		hangUp(w)
	case CutResponse:
		writeCut(w, &ans, ex.Relayed)
	case Stall:
		// Hold the answer until the client gives up waiting for it.
		select {
		case <-r.Context().Done():
		case <-ctx.Done():
		}
		hangUp(w)
	default:
		for _, h := range []string{"Content-Type", "Content-Encoding", "Vary", "Retry-After"} {
			if v := ans.header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(ans.body)))
		w.WriteHeader(ans.status)
		w.Write(ans.body)
	}
}

func cutAt(cut func(int) int, size int) int {
	n := size / 2
	if cut != nil {
		n = cut(size)
	}
	return max(0, min(n, size))
}

func (p *Proxy) forward(ctx context.Context, upstream string, r *http.Request, body []byte, plain bool, sent func()) upstreamAnswer {
	var mu sync.Mutex // the trace runs on the transport's goroutines
	var wrote, first time.Time
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			mu.Lock()
			wrote = time.Now()
			mu.Unlock()
			if info.Err == nil && sent != nil {
				sent()
			}
		},
		GotFirstResponseByte: func() {
			mu.Lock()
			first = time.Now()
			mu.Unlock()
		},
	})
	req, err := http.NewRequestWithContext(ctx, r.Method, upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return upstreamAnswer{err: err}
	}
	for k, vs := range r.Header {
		switch k {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
			continue
		}
		req.Header[k] = vs
	}
	if plain {
		req.Header.Del("Accept-Encoding")
	}
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		return upstreamAnswer{err: err}
	}
	defer resp.Body.Close()
	mu.Lock()
	ans := upstreamAnswer{status: resp.StatusCode, header: resp.Header, serverTime: first.Sub(wrote)}
	mu.Unlock()
	ans.body, err = io.ReadAll(resp.Body)
	if err != nil {
		ans.err = fmt.Errorf("read answer: %w", err)
	}
	return ans
}

// sendCut sends the request upstream on a raw connection, declaring the
// full body length but sending only n bytes of it before closing its
// side, as a client cut off mid-upload would, and reads the answer.
func (p *Proxy) sendCut(ctx context.Context, upstream string, r *http.Request, body []byte, n int) upstreamAnswer {
	u, err := url.Parse(upstream)
	if err != nil {
		return upstreamAnswer{err: err}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return upstreamAnswer{err: err}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.Method, r.URL.RequestURI(), u.Host)
	for k, vs := range r.Header {
		switch k {
		case "Connection", "Content-Length", "Transfer-Encoding":
			continue
		}
		for _, v := range vs {
			fmt.Fprintf(&head, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(&head, "Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	head.Write(body[:n])
	if _, err := conn.Write(head.Bytes()); err != nil {
		return upstreamAnswer{err: err}
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return upstreamAnswer{err: fmt.Errorf("read answer to a cut request: %w", err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return upstreamAnswer{status: resp.StatusCode, header: resp.Header, body: data, err: err}
}

// hangUp closes the client's connection without an answer.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server closes the connection
	}
	conn.Close()
}

// writeCut writes the status line, the headers with the full
// Content-Length, and the first n bytes of the body, then closes the
// connection.
func writeCut(w http.ResponseWriter, ans *upstreamAnswer, n int) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", ans.status, http.StatusText(ans.status))
	for _, h := range []string{"Content-Type", "Content-Encoding", "Vary"} {
		if v := ans.header.Get(h); v != "" {
			fmt.Fprintf(buf, "%s: %s\r\n", h, v)
		}
	}
	fmt.Fprintf(buf, "Content-Length: %d\r\n\r\n", len(ans.body))
	buf.Write(ans.body[:n])
	buf.Flush()
}
