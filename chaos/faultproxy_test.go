package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync/internal/tusclient"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// backend is a plain HTTP server on loopback that records what reached
// it and answers "answer N" to its Nth request.
type backend struct {
	mu          sync.Mutex
	bodies      []string
	inflight    int
	maxInflight int
	// twins, when set, holds each request until a second copy of its
	// body arrives: both copies must be under way at once.
	twins map[string]chan struct{}
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.bodies = append(b.bodies, string(data))
	n := len(b.bodies)
	b.inflight++
	b.maxInflight = max(b.maxInflight, b.inflight)
	var wait chan struct{}
	if b.twins != nil {
		if ch, ok := b.twins[string(data)]; ok {
			close(ch)
		} else {
			wait = make(chan struct{})
			b.twins[string(data)] = wait
		}
	}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inflight--
		b.mu.Unlock()
	}()
	if wait != nil {
		select {
		case <-wait:
		case <-time.After(10 * time.Second):
			http.Error(w, "the second copy never came while the first was under way", http.StatusInternalServerError)
			return
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("X-Answer", strconv.Itoa(n))
	fmt.Fprintf(w, "answer %d to %s", n, data)
}

func (b *backend) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.bodies...)
}

// startDoor runs a backend behind a fault proxy with the given rates.
func startDoor(t *testing.T, b http.Handler, seed uint64, rates faultRates) *faultProxy {
	t.Helper()
	hs := httptest.NewServer(b)
	t.Cleanup(hs.Close)
	p, err := startFaultProxy(hs.Listener.Addr().String(), seed, rates)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func testClient() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: nil}}
}

// post sends body and returns the whole answer, or the error that
// stopped it (a cut connection, an answer cut partway).
func post(c *http.Client, url, body string) (*http.Response, string, error) {
	resp, err := c.Post(url, "text/plain", bytes.NewReader([]byte(body)))
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, string(data), err
}

func TestFaultProxyCutBefore(t *testing.T) {
	seed := testSeed(t)
	b := &backend{}
	p := startDoor(t, b, seed, faultRates{CutBefore: 1})
	c := testClient()
	for i := range 8 {
		if _, got, err := post(c, "http://"+p.Addr()+protocol.PathPush, fmt.Sprint("batch ", i)); err == nil {
			t.Fatalf("request %d: answered %q, want a connection error", i, got)
		}
	}
	if s := b.seen(); len(s) != 0 {
		t.Errorf("the server saw %d requests cut before it: %q", len(s), s)
	}
	if c := p.Counts(); c.CutBefore != 8 || c.ByRoute[routePush][faultCutBefore] != 8 {
		t.Errorf("counts %+v, want 8 cut before on push", c)
	}
}

func TestFaultProxyCutAfterCommit(t *testing.T) {
	seed := testSeed(t)
	b := &backend{}
	p := startDoor(t, b, seed, faultRates{CutAfter: 1})
	c := testClient()
	const n = 16
	for i := range n {
		if _, got, err := post(c, "http://"+p.Addr()+protocol.PathChanges, fmt.Sprint("request ", i)); err == nil {
			t.Fatalf("request %d: answered whole %q, want the answer lost", i, got)
		}
		// The server handled it: the body reached it whole.
		if s := b.seen(); len(s) != i+1 || s[i] != fmt.Sprint("request ", i) {
			t.Fatalf("after request %d the server saw %q", i, s)
		}
	}
	cnt := p.Counts()
	t.Logf("counts %+v", cnt)
	if cnt.CutAfterCommit != n || cnt.ByRoute[routePull][faultCutAfter] != n {
		t.Errorf("%d cut after commit counted, want %d", cnt.CutAfterCommit, n)
	}
	// Some answers are cut partway, the others before their first byte.
	if cnt.MidResponse == 0 || cnt.MidResponse == n {
		t.Errorf("%d of %d answers cut partway: want some of each", cnt.MidResponse, n)
	}
}

func TestFaultProxyDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name     string
		together float64
	}{{"one after the other", 0}, {"both at once", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			seed := testSeed(t)
			b := &backend{}
			if tc.together == 1 {
				b.twins = map[string]chan struct{}{}
			}
			p := startDoor(t, b, seed, faultRates{Duplicate: 1, Together: tc.together})
			c := testClient()
			const n = 16
			gotFirst, gotSecond := 0, 0
			for i := range n {
				body := fmt.Sprint("push ", i)
				resp, got, err := post(c, "http://"+p.Addr()+protocol.PathPush, body)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: %s: %s", i, resp.Status, got)
				}
				s := b.seen()
				if len(s) != 2*(i+1) || s[2*i] != body || s[2*i+1] != body {
					t.Fatalf("after request %d the server saw %q, want %q twice more", i, s, body)
				}
				switch resp.Header.Get("X-Answer") {
				case strconv.Itoa(2*i + 1):
					gotFirst++
				case strconv.Itoa(2*i + 2):
					gotSecond++
				default:
					t.Fatalf("request %d: the device got %q (answer %s), not one of the two answers", i, got, resp.Header.Get("X-Answer"))
				}
			}
			if gotFirst == 0 || gotSecond == 0 {
				t.Errorf("the device got the first answer %d times, the second %d: want each sometimes", gotFirst, gotSecond)
			}
			b.mu.Lock()
			overlap := b.maxInflight
			b.mu.Unlock()
			if want := 1 + int(tc.together); overlap != want {
				t.Errorf("at most %d copies were under way at once, want %d", overlap, want)
			}
			cnt := p.Counts()
			if cnt.Duplicated != n || cnt.Concurrent != int(tc.together)*n {
				t.Errorf("counts %+v", cnt)
			}
		})
	}
}

// TestFaultProxyPasses checks that a request without a fault crosses
// unchanged both ways: method, path, query, headers, Host, status and
// body, and a HEAD's Content-Length.
func TestFaultProxyPasses(t *testing.T) {
	var gotHost, gotHeader, gotQuery string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost, gotHeader, gotQuery = r.Host, r.Header.Get("Upload-Offset"), r.URL.RawQuery
		switch r.Method {
		case http.MethodPatch:
			w.Header().Set("Upload-Offset", "42")
			w.WriteHeader(http.StatusNoContent)
		case http.MethodHead:
			w.Header().Set("Content-Length", "1234")
		default:
			data, _ := io.ReadAll(r.Body)
			w.WriteHeader(http.StatusCreated)
			w.Write(append([]byte("got "), data...))
		}
	})
	p := startDoor(t, h, 1, faultRates{})
	c := testClient()
	base := "http://" + p.Addr()

	resp, got, err := post(c, base+protocol.PathChanges+"?after=7", "hello")
	if err != nil || resp.StatusCode != http.StatusCreated || got != "got hello" || gotQuery != "after=7" {
		t.Fatalf("POST: %v %v %q query %q", err, resp, got, gotQuery)
	}
	if gotHost != p.Addr() {
		t.Errorf("the server saw Host %q, want the one the device dialled, %q", gotHost, p.Addr())
	}
	req, _ := http.NewRequest(http.MethodPatch, base+protocol.PathFiles+"abc", bytes.NewReader([]byte("bytes")))
	req.Header.Set("Upload-Offset", "37")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Offset") != "42" || gotHeader != "37" {
		t.Errorf("PATCH: %s, Upload-Offset %q; the server got %q", resp.Status, resp.Header.Get("Upload-Offset"), gotHeader)
	}
	resp, err = c.Head(base + protocol.PathBlobs + "ab")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != 1234 {
		t.Errorf("HEAD: Content-Length %d, want 1234", resp.ContentLength)
	}
	if c := p.Counts(); c.Requests != 3 || c.ByRoute[routePull][faultPass] != 1 || c.ByRoute[routeUpload][faultPass] != 1 || c.ByRoute[routeOther][faultPass] != 1 {
		t.Errorf("counts %+v", c)
	}
}

func TestFaultRatesValidate(t *testing.T) {
	for _, r := range []faultRates{{CutBefore: -0.1}, {Duplicate: 1.5}, {Together: 2}, {CutBefore: 0.5, CutAfter: 0.4, Duplicate: 0.2}} {
		if err := r.validate(); err == nil {
			t.Errorf("%+v: want an error", r)
		}
		if _, err := startFaultProxy("127.0.0.1:1", 1, r); err == nil {
			t.Errorf("start with %+v: want an error", r)
		}
	}
	if err := (faultRates{CutBefore: 0.25, CutAfter: 0.25, Duplicate: 0.5, Together: 1}).validate(); err != nil {
		t.Errorf("rates adding up to 1: %v", err)
	}
}

// TestFaultProxyDuplicatedPatch uploads a file in small chunks through
// the door to a real server, every request delivered twice: the second
// copy of each PATCH is refused (the offset moved, or the upload is
// busy or done), never written again, and the blob the server keeps is
// the file.
func TestFaultProxyDuplicatedPatch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		together float64
	}{{"one after the other", 0}, {"both at once", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			seed := testSeed(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dir := t.TempDir()
			st, err := sqlite.Open(ctx, filepath.Join(dir, "server.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			srv, err := server.New(server.Config{Store: st, BlobDir: filepath.Join(dir, "blobs")})
			if err != nil {
				t.Fatal(err)
			}
			p := startDoor(t, srv, seed, faultRates{Duplicate: 1, Together: tc.together})
			data := make([]byte, 3*8<<10+100)
			rng := rand.New(rand.NewPCG(seed, 9))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			sum := sha256.Sum256(data)
			sha := hex.EncodeToString(sum[:])
			up := &tusclient.Client{
				HTTP:     testClient(),
				Header:   http.Header{protocol.VersionHeader: {strconv.Itoa(protocol.Version)}},
				MinChunk: 8 << 10, FirstChunk: 8 << 10, MaxChunk: 8 << 10,
				Retries: 20, RetryWait: time.Millisecond,
			}
			res, err := up.Upload(ctx, &tusclient.Upload{
				Endpoint: "http://" + p.Addr() + protocol.PathFiles,
				Size:     int64(len(data)), Data: bytes.NewReader(data),
				Metadata: map[string]string{protocol.UploadMetaSHA256: sha, protocol.UploadMetaFilename: "site.jpg", protocol.UploadMetaContentType: "image/jpeg"},
			})
			if err != nil {
				t.Fatalf("upload: %v (result %+v)", err, res)
			}
			cnt := p.Counts()
			t.Logf("upload %+v; door %+v", res, cnt)
			for _, f := range p.Findings() {
				t.Errorf("finding: %s", f)
			}
			patches := cnt.ByRoute[routeUpload][faultDuplicate]
			if patches < 4 || len(cnt.PatchReplays) == 0 {
				t.Fatalf("%d upload requests delivered twice, replays answered %v: want every PATCH twice", patches, cnt.PatchReplays)
			}
			for status := range cnt.PatchReplays {
				if status >= 200 && status < 300 {
					t.Errorf("a PATCH delivered twice was accepted twice (%v)", cnt.PatchReplays)
				}
			}
			if tc.together == 0 && cnt.PatchReplays[http.StatusConflict] == 0 {
				t.Errorf("no repeated PATCH answered 409 (%v)", cnt.PatchReplays)
			}
			resp, err := testClient().Get("http://" + p.upstream + protocol.PathBlobs + sha)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
				t.Fatalf("the server's blob: %s, %d bytes (%v), want the %d bytes sent", resp.Status, len(got), err, len(data))
			}
		})
	}
}

// TestJudgeReplay feeds the door's replay check pairs of push answers,
// as a server would give to a push delivered twice, and expects a
// finding for each breach of exactly-once.
func TestJudgeReplay(t *testing.T) {
	res := func(op, status string, v int64, rec *protocol.Result) string {
		return fmt.Sprintf(`{"op":%q,"status":%q,"version":%d%s}`, op, status, v, func() string {
			if rec == nil {
				return ""
			}
			return fmt.Sprintf(`,"recorded":{"op":%q,"status":%q,"version":%d}`, rec.Op, rec.Status, rec.Version)
		}())
	}
	ans := func(results ...string) *answer {
		body := `{"results":[`
		for i, r := range results {
			if i > 0 {
				body += ","
			}
			body += r
		}
		return &answer{status: http.StatusOK, header: http.Header{}, body: []byte(body + `]}`)}
	}
	applied3 := &protocol.Result{Op: "o1", Status: "applied", Version: 3}
	cases := []struct {
		name          string
		first, second *answer
		together      bool
		breach        bool
	}{
		{"duplicate with the recorded result", ans(res("o1", "applied", 3, nil)), ans(res("o1", "duplicate", 0, applied3)), false, false},
		{"both at once, the first answered duplicate", ans(res("o1", "duplicate", 0, applied3)), ans(res("o1", "applied", 3, nil)), true, false},
		{"retry, then applied", ans(res("o1", "retry", 0, nil)), ans(res("o1", "applied", 3, nil)), false, false},
		{"applied twice", ans(res("o1", "applied", 3, nil)), ans(res("o1", "applied", 4, nil)), false, true},
		{"applied twice at once", ans(res("o1", "applied", 3, nil)), ans(res("o1", "conflict", 4, nil)), true, true},
		{"applied, then retry", ans(res("o1", "applied", 3, nil)), ans(res("o1", "retry", 0, nil)), false, true},
		{"duplicate of another result", ans(res("o1", "applied", 3, nil)),
			ans(res("o1", "duplicate", 0, &protocol.Result{Op: "o1", Status: "applied", Version: 5})), false, true},
		{"not answered 200", &answer{status: http.StatusServiceUnavailable, header: http.Header{}}, ans(res("o1", "applied", 3, nil)), false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &faultProxy{counts: faultCounts{PatchReplays: map[int]int{}, ByRoute: map[string]map[string]int{}}}
			p.judgePush(c.first, c.second, c.together)
			f := p.Findings()
			for _, x := range f {
				t.Logf("finding: %s", x)
				if x.Check != "replay" {
					t.Errorf("finding under %q, want replay", x.Check)
				}
			}
			if got := len(f) > 0; got != c.breach {
				t.Errorf("breach found %v, want %v", got, c.breach)
			}
		})
	}
	// A PATCH accepted twice wrote the same bytes twice.
	p := &faultProxy{counts: faultCounts{PatchReplays: map[int]int{}, ByRoute: map[string]map[string]int{}}}
	r := httptest.NewRequest(http.MethodPatch, protocol.PathFiles+"abc", nil)
	p.judgeReplay(r, routeUpload, &answer{status: http.StatusNoContent}, &answer{status: http.StatusConflict}, false)
	if len(p.Findings()) != 0 {
		t.Errorf("a PATCH refused the second time: findings %v", p.Findings())
	}
	p.judgeReplay(r, routeUpload, &answer{status: http.StatusNoContent}, &answer{status: http.StatusNoContent}, true)
	if len(p.Findings()) != 1 {
		t.Errorf("a PATCH accepted twice: findings %v", p.Findings())
	}
}
