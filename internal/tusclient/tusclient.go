// Package tusclient is a client of the tus 1.0 resumable upload protocol
// (core, creation and termination-free): it creates an upload with POST,
// asks a stored upload's offset with HEAD and sends the bytes from there
// with PATCH, one chunk per request.
//
// Chunks adapt to the link: they start small, grow while they go through
// quickly and shrink after a cut, so that a cut loses at most the one
// chunk in flight (a tus server keeps the bytes it received before a cut)
// and a slow link cut every few seconds still moves data. Only one chunk
// is ever on the wire.
//
// The package knows nothing of fieldsync except one server answer: HTTP
// 460 to the PATCH (or POST) that completes an upload means the server
// hashed the bytes and they do not match the checksum named at creation;
// it is reported as ErrChecksum. And a creation answered 200 (not 201
// Created) means the server already holds the bytes the metadata names.
package tusclient

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Version is the tus protocol version spoken, sent in Tus-Resumable.
const Version = "1.0.0"

// StatusChecksumMismatch is the HTTP status a server answers when the
// finished upload's bytes do not match their checksum.
const StatusChecksumMismatch = 460

// Chunk size bounds and defaults.
const (
	DefaultMinChunk   = 64 << 10
	DefaultFirstChunk = 256 << 10
	DefaultMaxChunk   = 8 << 20
	DefaultChunkTime  = 2 * time.Second
)

// ErrChecksum reports that the server hashed the finished upload and the
// bytes do not match the checksum they were announced with. The server
// dropped the upload; sending the right bytes again, from zero, is the
// only way on.
var ErrChecksum = errors.New("the server found that the uploaded bytes do not match their checksum")

// StatusError is an unexpected HTTP answer.
type StatusError struct {
	Method string
	Status int
	Body   string      // the start of the answer's body, for the log
	Header http.Header // the answer's headers (nil when not known)
	// RetryAfter is the wait the server asked for in Retry-After, read
	// when the answer came; zero when it named none.
	RetryAfter time.Duration
}

// Error implements error.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("tus %s: server answered HTTP %d", e.Method, e.Status)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Temporary reports whether the same request may succeed later: a server
// error, a lock held by another request, or a request to slow down.
func (e *StatusError) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusLocked ||
		e.Status == http.StatusRequestTimeout
}

// Client uploads files to a tus server. The zero value is usable; a
// Client is safe for concurrent use, and its chunk size, learned from the
// uploads it made, carries over from one upload to the next.
type Client struct {
	// HTTP sends the requests; nil means http.DefaultClient.
	HTTP *http.Client
	// Header is added to every request (e.g. a protocol version).
	Header http.Header
	// MinChunk, FirstChunk and MaxChunk bound the chunk size; zero means
	// the defaults (64 KiB, 256 KiB, 8 MiB).
	MinChunk, FirstChunk, MaxChunk int64
	// ChunkTime is how long one chunk should take on the wire; the chunk
	// size follows the measured rate towards it. Zero means 2s.
	ChunkTime time.Duration
	// RequestTimeout bounds each request; zero means 60s.
	RequestTimeout time.Duration
	// Retries is how many failures in a row without progress Upload rides
	// out (asking the server's offset after each) before it returns the
	// error; zero means 3. Progress resets the count.
	Retries int
	// RetryWait is the pause after the first failure in a row, doubled
	// after each further one; zero means 200ms.
	RetryWait time.Duration

	mu    sync.Mutex
	chunk int64 // current chunk size; 0 until the first upload
}

// Upload describes one file to send.
type Upload struct {
	// Endpoint is the creation URL, e.g. http://host/v1/files/.
	Endpoint string
	// URL is an upload made earlier, to resume; empty to create one.
	URL string
	// Size is the file's length in bytes; Data reads it.
	Size int64
	Data io.ReaderAt
	// Metadata is sent at creation in Upload-Metadata.
	Metadata map[string]string
	// Header is added to every request of this upload to the
	// Endpoint's origin (scheme, host and port), after the Client's:
	// e.g. its credentials, which may change between uploads, and which
	// never follow a Location to another origin.
	Header http.Header
	// Exists, when set, asks whether the server already holds the bytes;
	// it is called before an upload is created and when a resumed upload
	// turns out complete. True ends the upload with nothing sent.
	Exists func(ctx context.Context) (bool, error)
	// Progress, when set, is called with the upload's URL and the offset
	// the server confirmed: once the upload is known, and after every
	// chunk. An error from it stops the upload and is returned.
	Progress func(url string, offset int64) error
	// Chunk, when set, is called after each chunk with its size and
	// whether it went through whole.
	Chunk func(size int64, ok bool)
}

// Result says what an upload did.
type Result struct {
	URL      string // the upload's URL ("" when the server already had the bytes)
	Start    int64  // the offset the bytes were first sent from in this call; -1 when none were
	Sent     int64  // PATCH body bytes handed to the network, lost ones included
	Chunks   int    // PATCH requests made
	Cuts     int    // requests that failed on the way
	Created  int    // uploads created
	Existing bool   // the server already held the bytes (Exists, or a creation answered 200): nothing more was sent
}

// Upload sends u's bytes and returns once the server holds all of them.
// It resumes u.URL from the server's offset (HEAD); an upload the server
// no longer knows (404, 410) is made again; a stale offset (409) is asked
// again. A failure of the network or a temporary server error is ridden
// out up to Retries times in a row; then it is returned, and the upload
// can be resumed later from the URL last passed to Progress. ErrChecksum
// is returned when the server refused the finished bytes.
func (c *Client) Upload(ctx context.Context, u *Upload) (Result, error) {
	res := Result{URL: u.URL, Start: -1}
	if u.Size < 0 || u.Data == nil && u.Size > 0 {
		return res, errors.New("tus: an upload needs its size and data")
	}
	s := uploadState{c: c, u: u, res: &res}
	return res, s.run(ctx)
}

type uploadState struct {
	c        *Client
	u        *Upload
	res      *Result
	offset   int64
	failures int // in a row, without progress
}

func (s *uploadState) run(ctx context.Context) error {
	known := false // s.offset is the server's
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.res.URL == "" {
			if s.u.Exists != nil {
				held, err := s.u.Exists(ctx)
				if err != nil {
					if s.failed(ctx, err) {
						continue
					}
					return err
				}
				if held {
					s.res.Existing = true
					return nil
				}
			}
			loc, err := s.c.create(ctx, s.u)
			if errors.Is(err, errHeld) {
				s.res.Existing = true
				return nil
			}
			if errors.Is(err, ErrChecksum) {
				return err
			}
			if err != nil {
				if s.failed(ctx, err) {
					continue
				}
				return err
			}
			s.res.URL, s.offset, known = loc, 0, true
			s.res.Created++
			if s.res.Created > 3 {
				return errors.New("tus: the server lost the upload three times in a row")
			}
			if err := s.progress(); err != nil {
				return err
			}
		}
		if !known {
			off, err := s.c.head(ctx, s.res.URL, s.u.Size, s.u.headerFor(s.res.URL))
			if errors.Is(err, errGone) {
				s.res.URL = ""
				continue
			}
			if err != nil {
				if s.failed(ctx, err) {
					continue
				}
				return err
			}
			s.offset, known = off, true
			if err := s.progress(); err != nil {
				return err
			}
			if s.offset == s.u.Size && s.u.Exists != nil {
				// Complete, but was it verified? A server that stopped
				// between the last byte and its check holds an upload
				// that will never be checked.
				held, err := s.u.Exists(ctx)
				if err != nil {
					if s.failed(ctx, err) {
						known = false
						continue
					}
					return err
				}
				if !held {
					s.res.URL = ""
					continue
				}
			}
		}
		if s.offset >= s.u.Size {
			return nil
		}
		if s.res.Start < 0 {
			s.res.Start = s.offset
		}
		n := s.c.nextChunk(s.u.Size - s.offset)
		start := time.Now()
		off, sent, err := s.c.patch(ctx, s.res.URL, s.u.Data, s.offset, n, s.u.headerFor(s.res.URL))
		s.res.Sent += sent
		s.res.Chunks++
		switch {
		case err == nil:
			s.c.chunkDone(n, time.Since(start))
			if s.u.Chunk != nil {
				s.u.Chunk(n, true)
			}
			s.offset = off
			s.failures = 0
			if err := s.progress(); err != nil {
				return err
			}
		case errors.Is(err, ErrChecksum):
			return err
		case errors.Is(err, errGone):
			s.res.URL = ""
		case errors.Is(err, errConflict):
			known = false
			if !s.failed(ctx, err) {
				return err
			}
		default:
			s.res.Cuts++
			s.c.chunkCut()
			if s.u.Chunk != nil {
				s.u.Chunk(n, false)
			}
			known = false
			if !s.failed(ctx, err) {
				return err
			}
		}
	}
}

// headerFor is the upload's own header for a request to target: nil
// unless target has the Endpoint's origin.
func (u *Upload) headerFor(target string) http.Header {
	if len(u.Header) == 0 {
		return nil
	}
	e, err1 := url.Parse(u.Endpoint)
	t, err2 := url.Parse(target)
	if err1 != nil || err2 != nil || !strings.EqualFold(e.Scheme, t.Scheme) || !strings.EqualFold(e.Host, t.Host) {
		return nil
	}
	return u.Header
}

// failed counts a failure and reports whether to go on after a pause.
func (s *uploadState) failed(ctx context.Context, err error) bool {
	if !retryable(err) {
		return false
	}
	s.failures++
	if s.failures > cmp.Or(s.c.Retries, 3) {
		return false
	}
	wait := cmp.Or(s.c.RetryWait, 200*time.Millisecond) << (s.failures - 1)
	var se *StatusError
	if errors.As(err, &se) && se.RetryAfter > wait {
		// The server asked for a longer wait than a pause: the caller
		// waits, not the upload.
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *uploadState) progress() error {
	if s.u.Progress == nil {
		return nil
	}
	return s.u.Progress(s.res.URL, s.offset)
}

// retryable reports whether err may go away by itself: anything but a
// refusal by the server and a cancelled context.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	return true
}

// Internal answers that Upload handles itself.
var (
	errGone     = errors.New("tus: the server no longer has the upload")
	errConflict = errors.New("tus: the upload's offset moved")
	errHeld     = errors.New("tus: the server already holds the bytes")
)

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) request(ctx context.Context, method, target string, body io.Reader, extra http.Header) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range c.Header {
		req.Header[k] = slices.Clone(vs)
	}
	for k, vs := range extra {
		req.Header[k] = slices.Clone(vs)
	}
	req.Header.Set("Tus-Resumable", Version)
	return req, nil
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	return c.httpClient().Do(req)
}

func (c *Client) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, cmp.Or(c.RequestTimeout, 60*time.Second))
}

// create makes a new upload and returns its absolute URL.
func (c *Client) create(ctx context.Context, u *Upload) (string, error) {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	req, err := c.request(ctx, http.MethodPost, u.Endpoint, nil, u.Header)
	if err != nil {
		return "", err
	}
	req.Header.Set("Upload-Length", strconv.FormatInt(u.Size, 10))
	if md := EncodeMetadata(u.Metadata); md != "" {
		req.Header.Set("Upload-Metadata", md)
	}
	resp, err := c.do(req)
	if err != nil {
		return "", err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated:
	case http.StatusOK, http.StatusNoContent:
		// Not created: the server says it already holds these bytes.
		return "", errHeld
	case StatusChecksumMismatch: // an empty upload completes at creation
		return "", ErrChecksum
	default:
		return "", statusError(resp)
	}
	loc, err := ResolveLocation(u.Endpoint, resp.Header.Get("Location"))
	if err != nil {
		return "", fmt.Errorf("tus POST: %w", err)
	}
	return loc, nil
}

// head asks the server's offset of the upload at target.
func (c *Client) head(ctx context.Context, target string, size int64, extra http.Header) (int64, error) {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	req, err := c.request(ctx, http.MethodHead, target, nil, extra)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(req)
	if err != nil {
		return 0, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent:
	case http.StatusNotFound, http.StatusGone, http.StatusForbidden:
		return 0, errGone
	default:
		return 0, statusError(resp)
	}
	off, err := ParseOffset(resp.Header.Get("Upload-Offset"))
	if err != nil {
		return 0, fmt.Errorf("tus HEAD: %w", err)
	}
	if l := resp.Header.Get("Upload-Length"); l != "" {
		if n, err := ParseOffset(l); err == nil && n != size {
			return 0, errGone // another upload than this file's
		}
	}
	if off > size {
		return 0, errGone
	}
	return off, nil
}

// patch sends n bytes of data from offset and returns the server's new
// offset and how many body bytes went to the network.
func (c *Client) patch(ctx context.Context, target string, data io.ReaderAt, offset, n int64, extra http.Header) (int64, int64, error) {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	body := &countingReader{r: io.NewSectionReader(data, offset, n)}
	req, err := c.request(ctx, http.MethodPatch, target, body, extra)
	if err != nil {
		return 0, 0, err
	}
	req.ContentLength = n
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	resp, err := c.do(req)
	if err != nil {
		return 0, body.count(), err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK:
	case StatusChecksumMismatch:
		return 0, body.count(), ErrChecksum
	case http.StatusNotFound, http.StatusGone:
		return 0, body.count(), errGone
	case http.StatusConflict:
		return 0, body.count(), errConflict
	default:
		return 0, body.count(), statusError(resp)
	}
	off, err := ParseOffset(resp.Header.Get("Upload-Offset"))
	if err != nil {
		return 0, body.count(), fmt.Errorf("tus PATCH: %w", err)
	}
	if off < offset || off > offset+n {
		return 0, body.count(), errConflict
	}
	return off, body.count(), nil
}

// countingReader counts the bytes read from it; the transport reads the
// body on its own goroutine.
type countingReader struct {
	r  io.Reader
	mu sync.Mutex
	n  int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.mu.Lock()
	c.n += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *countingReader) count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func statusError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	wait, _ := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return &StatusError{Method: resp.Request.Method, Status: resp.StatusCode, Body: strings.TrimSpace(string(data)),
		Header: resp.Header.Clone(), RetryAfter: wait}
}

// MaxRetryAfter bounds the wait ParseRetryAfter returns: a server (or
// something between) asking for more is not taken at its word.
const MaxRetryAfter = time.Hour

// ParseRetryAfter reads an HTTP Retry-After value: whole seconds, or an
// HTTP date (taken relative to now). It returns false for an empty or
// malformed value; a date in the past is a zero wait, and a wait is at
// most MaxRetryAfter.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		if len(v) > 10 || strings.Trim(v, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		if n >= int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), MaxRetryAfter), true
}

// nextChunk returns the size of the next chunk, at most left.
func (c *Client) nextChunk(left int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.chunk == 0 {
		c.chunk = c.clamp(cmp.Or(c.FirstChunk, DefaultFirstChunk))
	}
	return min(c.chunk, left)
}

// chunkDone follows the rate measured on a whole chunk of n bytes: the
// next chunk should take ChunkTime, and the size changes by at most a
// factor of two per chunk.
func (c *Client) chunkDone(n int64, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	took = max(took, time.Millisecond)
	want := int64(float64(n) * float64(cmp.Or(c.ChunkTime, DefaultChunkTime)) / float64(took))
	if n < c.chunk && want > c.chunk {
		return // a short last chunk says little about a bigger one
	}
	c.chunk = c.clamp(min(max(want, c.chunk/2), c.chunk*2))
}

// chunkCut halves the chunk after a failed one.
func (c *Client) chunkCut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.chunk = c.clamp(c.chunk / 2)
}

// ChunkSize returns the size the next chunk would have.
func (c *Client) ChunkSize() int64 {
	return c.nextChunk(1 << 62)
}

func (c *Client) clamp(n int64) int64 {
	lo, hi := cmp.Or(c.MinChunk, DefaultMinChunk), cmp.Or(c.MaxChunk, DefaultMaxChunk)
	return min(max(n, lo), max(hi, lo))
}

// EncodeMetadata encodes an Upload-Metadata header value: "key
// base64(value)" pairs, comma-separated, keys sorted.
func EncodeMetadata(md map[string]string) string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + base64.StdEncoding.EncodeToString([]byte(md[k]))
	}
	return strings.Join(parts, ",")
}

// ParseOffset parses an Upload-Offset or Upload-Length value: a
// non-negative decimal integer.
func ParseOffset(s string) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, fmt.Errorf("bad offset %q", truncate(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad offset %q", truncate(s))
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad offset %q", truncate(s))
	}
	return n, nil
}

// ResolveLocation resolves a creation answer's Location against the
// endpoint; it must be an http or https URL.
func ResolveLocation(endpoint, loc string) (string, error) {
	if loc == "" {
		return "", errors.New("no Location in the answer")
	}
	base, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("endpoint: %w", err)
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("bad Location %q", truncate(loc))
	}
	abs := base.ResolveReference(ref)
	if abs.Scheme != "http" && abs.Scheme != "https" || abs.Host == "" {
		return "", fmt.Errorf("bad Location %q", truncate(loc))
	}
	return abs.String(), nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
