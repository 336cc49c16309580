package selftest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/internal/tusclient"
	"github.com/fieldsync/fieldsync/protocol"
)

// Two things that break a pilot on its first day and that no request of
// the other checks shows: a server clock that is wrong (every change it
// records carries its time), and something in front of the server (a
// reverse proxy, a load balancer) that refuses the large upload chunks
// devices send or loses the upload headers a device resumes by.

// MaxClockOffset is the difference between the server's clock and this
// machine's beyond which the clock check fails.
const MaxClockOffset = 2 * time.Minute

// checkClock compares the server's clock (its Date header, to the second)
// with this machine's at the middle of the request.
func (r *run) checkClock(ctx context.Context) (Outcome, string) {
	var best time.Duration
	var offset time.Duration
	for i := range 3 {
		start := time.Now()
		a, err := r.do(ctx, http.MethodGet, "/healthz", "", nil)
		rtt := time.Since(start)
		if err != nil {
			return failf("GET /healthz: %v", err)
		}
		date, err := http.ParseTime(a.header.Get("Date"))
		if err != nil {
			return Skip, fmt.Sprintf("the answer has no Date header to read the server's clock from (%q)", a.header.Get("Date"))
		}
		// Date is truncated to the second: its middle is half a second on.
		mid := start.Add(rtt / 2)
		if o := date.Add(500 * time.Millisecond).Sub(mid); i == 0 || rtt < best {
			best, offset = rtt, o
		}
	}
	dir := "ahead of"
	abs := offset
	if offset < 0 {
		dir, abs = "behind", -offset
	}
	margin := (500*time.Millisecond + best/2).Round(time.Millisecond)
	seen := fmt.Sprintf("the server's clock is %v %s this machine's (±%v)", abs.Round(time.Second), dir, margin)
	if abs < time.Second {
		seen = fmt.Sprintf("the two clocks agree (±%v)", margin)
	}
	if abs > MaxClockOffset {
		return failf("%s: one of the two clocks is wrong. The server stamps every change it records; set its clock right (NTP) before the pilot", seen)
	}
	return Pass, seen
}

// bigUploadSize is the upload the large-chunk check begins: one chunk as
// large as a device sends at most, and a little more.
const bigUploadSize = tusclient.DefaultMaxChunk + 512<<10

// checkBigUpload starts an upload of bigUploadSize bytes the way a device
// on a fast link does: one PATCH of the largest chunk a device sends, a
// HEAD for the offset (what a device resumes from after a cut), then the
// next part. It then ends the upload (tus DELETE), so nothing is stored.
func (r *run) checkBigUpload(ctx context.Context) (Outcome, string) {
	hc := r.devHC
	if hc == nil {
		return Skip, "no device token (the setup failed)"
	}
	data := make([]byte, bigUploadSize)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for i := 0; i+8 <= len(data); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	sum := sha256.Sum256(data)
	meta := func(k, v string) string { return k + " " + base64.StdEncoding.EncodeToString([]byte(v)) }
	send := func(method, path string, header map[string]string, body []byte) (answer, error) {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		u := path
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			u = r.base + path
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return answer{}, err
		}
		req.Header.Set("Tus-Resumable", tusclient.Version)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return answer{}, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return answer{status: resp.StatusCode, header: resp.Header, body: b}, err
	}
	created, err := send(http.MethodPost, protocol.PathFiles, map[string]string{
		"Upload-Length":   strconv.Itoa(len(data)),
		"Upload-Metadata": meta(protocol.UploadMetaSHA256, hex.EncodeToString(sum[:])) + "," + meta(protocol.UploadMetaFilename, "selftest-"+r.tag+".bin"),
	}, nil)
	if err != nil {
		return failf("POST %s: %v", protocol.PathFiles, err)
	}
	if created.status != http.StatusCreated {
		return failf("POST %s: %s", protocol.PathFiles, created.apiError())
	}
	loc, err := url.Parse(created.header.Get("Location"))
	if err != nil || loc.Path == "" {
		return failf("POST %s: no usable Location (%q)", protocol.PathFiles, created.header.Get("Location"))
	}
	upload := created.header.Get("Location")
	if !loc.IsAbs() {
		upload = loc.Path
	}
	ended := false
	defer func() {
		// Whatever happened, the upload goes: nothing of it is kept.
		if !ended {
			send(http.MethodDelete, upload, nil, nil)
		}
	}()
	first := tusclient.DefaultMaxChunk
	start := time.Now()
	patched, err := send(http.MethodPatch, upload, map[string]string{
		"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
	}, data[:first])
	took := time.Since(start)
	if err != nil {
		return failf("PATCH of %s: %v (a proxy in front of the server may cut large request bodies)", sizeText(first), err)
	}
	switch {
	case patched.status == http.StatusRequestEntityTooLarge:
		return failf("PATCH of %s refused with 413: devices send upload chunks of up to %s; raise the body size limit of whatever is in front of the server (nginx: client_max_body_size 16m)",
			sizeText(first), sizeText(first))
	case patched.status != http.StatusNoContent:
		return failf("PATCH of %s: %s", sizeText(first), patched.apiError())
	case patched.header.Get("Upload-Offset") != strconv.Itoa(first):
		return failf("PATCH of %s: Upload-Offset %q, want %d", sizeText(first), patched.header.Get("Upload-Offset"), first)
	}
	head, err := send(http.MethodHead, upload, nil, nil)
	if err != nil {
		return failf("HEAD of the upload: %v", err)
	}
	if head.status != http.StatusOK || head.header.Get("Upload-Offset") != strconv.Itoa(first) {
		return failf("HEAD of the upload: HTTP %d, Upload-Offset %q, want %d: a device could not resume where it stopped (does something in front of the server drop the Upload-Offset header?)",
			head.status, head.header.Get("Upload-Offset"), first)
	}
	next, err := send(http.MethodPatch, upload, map[string]string{
		"Upload-Offset": strconv.Itoa(first), "Content-Type": "application/offset+octet-stream",
	}, data[first:first+256<<10])
	if err != nil {
		return failf("PATCH from the offset: %v", err)
	}
	if next.status != http.StatusNoContent || next.header.Get("Upload-Offset") != strconv.Itoa(first+256<<10) {
		return failf("PATCH from the offset: HTTP %d, Upload-Offset %q", next.status, next.header.Get("Upload-Offset"))
	}
	ended = true
	del, err := send(http.MethodDelete, upload, nil, nil)
	if err != nil {
		return failf("DELETE of the upload: %v", err)
	}
	if del.status != http.StatusNoContent {
		return failf("DELETE of the upload: %s", del.apiError())
	}
	if gone, err := send(http.MethodHead, upload, nil, nil); err != nil || gone.status != http.StatusNotFound {
		return failf("the upload is still there after DELETE (HEAD: HTTP %d, %v)", gone.status, err)
	}
	rate := float64(first) / took.Seconds()
	return Pass, fmt.Sprintf("one chunk of %s in %v (%s/s), resumed from offset %d, then ended: nothing kept", sizeText(first),
		took.Round(time.Millisecond), sizeText(int(rate)), first)
}

// sizeText writes a byte count as KiB or MiB.
func sizeText(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
