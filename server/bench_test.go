package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/internal/cputime"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

var benchStatuses = []string{"assigned", "in progress", "waiting for parts", "completed on site"}

// benchWorld is a server on a SQLite file with nrec work orders created
// by one device, which goes on to send status updates and comments.
type benchWorld struct {
	srv    *server.Server
	device string
	ids    []string
	seq    int64
	prev   map[string]int64 // entity -> the device's last seq on it
}

func newBenchWorld(b *testing.B, nrec int) *benchWorld {
	b.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "server.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	srv, err := server.New(server.Config{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	w := &benchWorld{srv: srv, device: "bench-device", prev: map[string]int64{}}
	for done := 0; done < nrec; done += 1000 {
		ops := make([]fieldsync.Op, min(1000, nrec-done))
		for i := range ops {
			id := uuid.Must(uuid.NewV7()).String()
			w.ids = append(w.ids, id)
			n := strconv.Itoa(done + i + 1)
			ops[i] = w.op(id, fieldsync.KindCreate, map[string]json.RawMessage{
				"title":   json.RawMessage(`"Boiler ` + n + `"`),
				"status":  json.RawMessage(`"new"`),
				"address": json.RawMessage(`"12 Harbour Road, Unit ` + n + `"`),
			})
		}
		w.apply(b, ops)
	}
	return w
}

func (w *benchWorld) op(id string, kind fieldsync.OpKind, fields map[string]json.RawMessage) fieldsync.Op {
	w.seq++
	op := fieldsync.Op{
		ID: uuid.Must(uuid.NewV7()).String(), DeviceID: w.device, Seq: w.seq, PrevSeq: w.prev[id],
		EntityType: "work_order", EntityID: id, Kind: kind, Fields: fields, LocalTime: time.Now().UTC(),
	}
	if kind != fieldsync.KindCreate {
		op.BaseVersion = 1
	}
	w.prev[id] = w.seq
	return op
}

// next makes the device's next n ops: nine status updates for one comment.
func (w *benchWorld) next(n int) []fieldsync.Op {
	ops := make([]fieldsync.Op, n)
	for i := range ops {
		k := int(w.seq) + i
		id := w.ids[k%len(w.ids)]
		if k%10 == 9 {
			ops[i] = w.op(id, fieldsync.KindAppend, map[string]json.RawMessage{"comments": json.RawMessage(`"checked valve ` + strconv.Itoa(k) + `"`)})
		} else {
			status := benchStatuses[(k/len(w.ids))%len(benchStatuses)]
			ops[i] = w.op(id, fieldsync.KindUpdate, map[string]json.RawMessage{"status": json.RawMessage(strconv.Quote(status))})
		}
	}
	return ops
}

func (w *benchWorld) apply(b *testing.B, ops []fieldsync.Op) {
	b.Helper()
	results, err := w.srv.Apply(context.Background(), ops)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range results {
		if r.Status != fieldsync.StatusApplied {
			b.Fatalf("op %s: %s %s %s", r.OpID, r.Status, r.Code, r.Message)
		}
	}
}

// BenchmarkApply times Server.Apply of batches of 1000 ops, in process:
// the apply logic and the store, without HTTP. cpu-µs/op is the
// process's CPU time over the timed parts: it moves less than wall time
// when other work shares the machine.
func BenchmarkApply(b *testing.B) {
	w := newBenchWorld(b, 1000)
	const batch = 1000
	var cpu cputime.Meter
	for done := 0; done < b.N; done += batch {
		b.StopTimer()
		ops := w.next(min(batch, b.N-done))
		b.StartTimer()
		cpu.Start()
		w.apply(b, ops)
		cpu.Stop()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(cpu.PerOp(b.N), "cpu-µs/op")
}

// BenchmarkPushHTTP times POST /v1/push of gzipped batches of 1000 ops
// over loopback HTTP: decoding, apply, store and the encoded answer.
// cpu-µs/op counts the process, so the client's share of the request
// (sending the body, decoding the answer) is in it.
func BenchmarkPushHTTP(b *testing.B) {
	w := newBenchWorld(b, 1000)
	hs := httptest.NewServer(w.srv)
	b.Cleanup(hs.Close)
	const batch = 1000
	var cpu cputime.Meter
	for done := 0; done < b.N; done += batch {
		b.StopTimer()
		ops := w.next(min(batch, b.N-done))
		req := protocol.PushRequest{Device: w.device, Ops: make([]protocol.Op, len(ops))}
		for i := range ops {
			req.Ops[i] = protocol.FromOp(&ops[i])
		}
		var body bytes.Buffer
		zw := gzip.NewWriter(&body)
		if err := json.NewEncoder(zw).Encode(&req); err != nil {
			b.Fatal(err)
		}
		zw.Close()
		hreq, err := http.NewRequest(http.MethodPost, hs.URL+protocol.PathPush, &body)
		if err != nil {
			b.Fatal(err)
		}
		hreq.Header.Set("Content-Encoding", "gzip")
		hreq.Header.Set("Content-Type", "application/json")
		hreq.Header.Set(protocol.VersionHeader, strconv.Itoa(protocol.Version))
		b.StartTimer()
		cpu.Start()
		resp, err := hs.Client().Do(hreq)
		if err != nil {
			b.Fatal(err)
		}
		var out protocol.PushResponse
		err = json.NewDecoder(resp.Body).Decode(&out)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cpu.Stop()
		if err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || len(out.Results) != len(ops) {
			b.Fatalf("HTTP %d, %d results for %d ops", resp.StatusCode, len(out.Results), len(ops))
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(cpu.PerOp(b.N), "cpu-µs/op")
}

// BenchmarkChanges times GET /v1/changes pages of 1000 over 10,000
// records, from the beginning to the end of the feed.
func BenchmarkChanges(b *testing.B) {
	const records = 10000
	w := newBenchWorld(b, records)
	hs := httptest.NewServer(w.srv)
	b.Cleanup(hs.Close)
	pulled := 0
	for b.Loop() {
		cursor := ""
		for {
			u := hs.URL + protocol.PathChanges + "?limit=1000"
			if cursor != "" {
				u += "&cursor=" + cursor
			}
			req, err := http.NewRequest(http.MethodGet, u, nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set(protocol.VersionHeader, strconv.Itoa(protocol.Version))
			resp, err := hs.Client().Do(req)
			if err != nil {
				b.Fatal(err)
			}
			var page protocol.ChangesResponse
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("HTTP %d: %v", resp.StatusCode, err)
			}
			pulled += len(page.Changes)
			cursor = page.Cursor
			if !page.More {
				break
			}
		}
	}
	if pulled != records*b.N {
		b.Fatalf("pulled %d records, want %d", pulled, records*b.N)
	}
	b.ReportMetric(float64(pulled)/b.Elapsed().Seconds(), "records/s")
}
