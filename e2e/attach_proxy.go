package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// StreamFaultKind names what a StreamProxy does to one request body.
type StreamFaultKind int

// The body faults. Unlike Proxy, a StreamProxy streams each request body
// to the upstream server as it arrives, so a fault hits at an exact byte
// of an upload: what came before it reached the server.
const (
	StreamPass StreamFaultKind = iota // forward and relay
	StreamCut                         // forward At bytes of the body, then break both connections
	StreamFlip                        // flip every bit of the body's byte at offset At
	StreamHold                        // forward At bytes, then wait for Release and break both connections
)

var streamFaultNames = [...]string{"pass", "cut", "flip", "hold"}

func (k StreamFaultKind) String() string {
	if int(k) < len(streamFaultNames) {
		return streamFaultNames[k]
	}
	return "stream-fault(" + strconv.Itoa(int(k)) + ")"
}

// StreamFault is what a StreamProxy does to one request.
type StreamFault struct {
	Kind StreamFaultKind
	At   int64 // the body offset the fault hits
	// Held, for StreamHold, is closed once At bytes were forwarded and
	// the request waits; closing Release ends the wait.
	Held, Release chan struct{}
}

// StreamRecord is a StreamProxy's record of one request.
type StreamRecord struct {
	Method, Path string
	N            int // 1-based index among the requests with the same method
	Fault        StreamFaultKind
	Offset       int64 // the request's Upload-Offset header; -1 without one
	Length       int64 // its declared body length
	Received     int64 // body bytes read from the client
	Status       int   // the upstream server's answer; 0 when none
	AnswerOffset int64 // the answer's Upload-Offset; -1 without one
	Err          error // why forwarding failed, if it did
}

// StreamProxy is an HTTP proxy for upload tests that streams request
// bodies and applies a StreamFault to chosen requests. It is safe for
// concurrent use.
type StreamProxy struct {
	mu        sync.Mutex
	upstream  string
	rule      func(r *http.Request, n int) StreamFault
	counts    map[string]int
	records   []StreamRecord
	changed   chan struct{} // closed and replaced when a record is added
	transport *http.Transport
}

// NewStreamProxy returns a proxy to the server at upstream (a base URL)
// that passes everything until SetRule says otherwise.
func NewStreamProxy(upstream string) *StreamProxy {
	return &StreamProxy{upstream: upstream, counts: map[string]int{}, changed: make(chan struct{}),
		transport: &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConns: 8, IdleConnTimeout: 10 * time.Second}}
}

// SetRule sets the function that picks the fault of each request; n is
// its 1-based index among requests of the same method. Nil passes all.
func (p *StreamProxy) SetRule(rule func(r *http.Request, n int) StreamFault) {
	p.mu.Lock()
	p.rule = rule
	p.mu.Unlock()
}

// Records returns the record of every request answered so far, in the
// order they ended.
func (p *StreamProxy) Records() []StreamRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]StreamRecord(nil), p.records...)
}

// WaitRecord waits until a request that match accepts has ended and
// returns its record, or returns ctx's error.
func (p *StreamProxy) WaitRecord(ctx context.Context, match func(StreamRecord) bool) (StreamRecord, error) {
	for {
		p.mu.Lock()
		for _, r := range p.records {
			if match(r) {
				p.mu.Unlock()
				return r, nil
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return StreamRecord{}, ctx.Err()
		}
	}
}

// Close closes the proxy's idle upstream connections.
func (p *StreamProxy) Close() { p.transport.CloseIdleConnections() }

// errStreamCut is the error a cut body returns to the upstream request.
var errStreamCut = errors.New("stream proxy: link cut")

// faultBody reads the client's body, applying the fault.
type faultBody struct {
	r      io.Reader
	f      StreamFault
	mu     sync.Mutex
	n      int64
	once   sync.Once
	failed bool
}

func (b *faultBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	n0 := b.n
	b.mu.Unlock()
	if (b.f.Kind == StreamCut || b.f.Kind == StreamHold) && n0 >= b.f.At {
		if b.f.Kind == StreamHold {
			b.once.Do(func() { close(b.f.Held) })
			<-b.f.Release
		}
		b.mu.Lock()
		b.failed = true
		b.mu.Unlock()
		return 0, errStreamCut
	}
	if (b.f.Kind == StreamCut || b.f.Kind == StreamHold) && int64(len(p)) > b.f.At-n0 {
		p = p[:b.f.At-n0]
	}
	n, err := b.r.Read(p)
	if b.f.Kind == StreamFlip && b.f.At >= n0 && b.f.At < n0+int64(n) {
		p[b.f.At-n0] ^= 0xff
	}
	b.mu.Lock()
	b.n += int64(n)
	b.mu.Unlock()
	return n, err
}

func (b *faultBody) count() (int64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n, b.failed
}

func headerInt(h http.Header, key string) int64 {
	v := h.Get(key)
	if v == "" {
		return -1
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// ServeHTTP implements http.Handler.
func (p *StreamProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.counts[r.Method]++
	n := p.counts[r.Method]
	rule, upstream := p.rule, p.upstream
	p.mu.Unlock()
	var f StreamFault
	if rule != nil {
		f = rule(r, n)
	}
	if f.Kind == StreamHold && (f.Held == nil || f.Release == nil) {
		panic("StreamHold needs its Held and Release channels")
	}
	rec := StreamRecord{Method: r.Method, Path: r.URL.Path, N: n, Fault: f.Kind,
		Offset: headerInt(r.Header, "Upload-Offset"), Length: r.ContentLength, AnswerOffset: -1}
	body := &faultBody{r: r.Body, f: f}
	// The upstream request outlives the client's: the server finishes
	// what it received.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 60*time.Second)
	defer cancel()
	var reqBody io.Reader = body
	if r.ContentLength == 0 {
		reqBody = nil
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, upstream+r.URL.RequestURI(), reqBody)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	req.ContentLength = r.ContentLength
	// Keep the client's Host: the upload server makes upload URLs from it,
	// and they must lead back through the proxy.
	req.Host = r.Host
	for k, vs := range r.Header {
		switch k {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
			continue
		}
		req.Header[k] = vs
	}
	resp, err := p.transport.RoundTrip(req)
	var answer []byte
	if err == nil {
		answer, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		rec.Status = resp.StatusCode
		rec.AnswerOffset = headerInt(resp.Header, "Upload-Offset")
	}
	rec.Received, _ = body.count()
	_, broken := body.count()
	rec.Err = err
	p.mu.Lock()
	p.records = append(p.records, rec)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	if err != nil || broken {
		panic(http.ErrAbortHandler) // the client's connection closes without an answer
	}
	for k, vs := range resp.Header {
		switch k {
		case "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length":
			continue
		}
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
	w.WriteHeader(resp.StatusCode)
	w.Write(answer)
}
