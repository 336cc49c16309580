package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// FuzzPushHandler sends random bodies and headers to POST /v1/push of
// the real handler over a real SQLite store. The answer is 200 or 4xx,
// never 5xx or a panic. A 4xx carries an error body with a known code
// mapped to that status, and the store is unchanged. A 200 has one
// result per op, in order, and the op log grew by exactly the ops
// recorded with a final result.
func FuzzPushHandler(f *testing.F) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sqlite.Open(ctx, filepath.Join(f.TempDir(), "server.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	srv, err := server.New(server.Config{Store: st, MaxBodyBytes: 256 << 10})
	if err != nil {
		f.Fatal(err)
	}
	seed := pushBody(f, "dev-seed",
		protocol.Op{ID: "0190a6c4-1b2c-7d3e-8f40-000000000001", Seq: 1, Type: "work_order", Entity: "wo-seed", Kind: "create",
			Fields: raw(map[string]string{"title": `"Seed"`, "status": `"new"`}), At: 1720000000000})
	if code := serve(srv, seed, false, "application/json", "", "1").Code; code != 200 {
		f.Fatalf("seed push: %d", code)
	}
	// An open conflict on wo-seed's status, for settle ops to settle: the
	// office moves it on, then dev-seed writes from the old version.
	if res, err := srv.Edit(ctx, "work_order", "wo-seed", 1, raw(map[string]string{"status": `"waiting for parts"`})); err != nil || res.Status != fieldsync.StatusApplied {
		f.Fatalf("seed office edit: %+v, %v", res, err)
	}
	clash := pushBody(f, "dev-seed",
		protocol.Op{ID: seedConflict, Seq: 2, Prev: 1, Type: "work_order", Entity: "wo-seed", Kind: "update", Base: 1,
			Fields: raw(map[string]string{"status": `"completed on site"`}), At: 1720000000000, HLC: 1720000000000 << 16})
	if code := serve(srv, clash, false, "application/json", "", "1").Code; code != 200 {
		f.Fatalf("seed clash: %d", code)
	}
	settle := func(id string, seq int64, fields string) string {
		return `{"id":"` + id + `","seq":` + strconv.FormatInt(seq, 10) + `,"type":"work_order","entity":"wo-seed","kind":"settle","base":3,"fields":` + fields + `,"at":1720000000000,"hlc":112721920000000001}`
	}
	settles := []byte(`{"device":"dev-s","ops":[` +
		settle("0190a6c4-1b2c-7d3e-8f40-0000000000d1", 1, `{"status":{"conflict":"`+seedConflict+`","choice":"mine"}}`) + `,` +
		settle("0190a6c4-1b2c-7d3e-8f40-0000000000d2", 2, `{"comments":{"conflict":"`+seedConflict+`","choice":"keep_server"}}`) + `,` +
		settle("0190a6c4-1b2c-7d3e-8f40-0000000000d3", 3, `{"status":{"conflict":"`+seedConflict+`","choice":"new_value","value":"done"}}`) + `,` +
		settle("0190a6c4-1b2c-7d3e-8f40-0000000000d4", 4, `{"status":{"conflict":"`+seedConflict+`","choice":"take_device","op":"`+seedConflict+`","note":"done on site"}}`) + `,` +
		settle("0190a6c4-1b2c-7d3e-8f40-0000000000d5", 5, `{"status":{"conflict":"`+seedConflict+`","choice":"keep_server"}}`) + `,` +
		settle("0190a6c4-1b2c-7d3e-8f40-0000000000d6", 6, `{"title":{"conflict":"`+seedConflict+`","choice":"keep_server"}}`) + `]}`)
	twoFields := []byte(`{"device":"dev-s","ops":[` + settle("0190a6c4-1b2c-7d3e-8f40-0000000000d7", 7,
		`{"status":{"conflict":"`+seedConflict+`","choice":"keep_server"},"description":{"conflict":"`+seedConflict+`","choice":"keep_server"}}`) + `]}`)
	clocks := pushBody(f, "dev-h",
		protocol.Op{ID: "0190a6c4-1b2c-7d3e-8f40-0000000000e1", Seq: 1, Type: "work_order", Entity: "wo-h", Kind: "create",
			Fields: raw(map[string]string{"title": `"Clock"`, "address": `"1 Quay St"`}), At: 1720000000000, HLC: math.MaxInt64},
		protocol.Op{ID: "0190a6c4-1b2c-7d3e-8f40-0000000000e2", Seq: 2, Type: "work_order", Entity: "wo-seed", Kind: "update", Base: 1,
			Fields: raw(map[string]string{"title": `"Seed (fast clock)"`, "address": `"2 Quay St"`, "status": `"closed"`}), At: 4102444800000, HLC: 4102444800000 << 16},
		protocol.Op{ID: "0190a6c4-1b2c-7d3e-8f40-0000000000e3", Seq: 3, Prev: 2, Type: "work_order", Entity: "wo-seed", Kind: "update", Base: 1,
			Fields: raw(map[string]string{"title": `"Seed (no clock)"`}), At: 0},
	)

	good := pushBody(f, "dev-a",
		protocol.Op{ID: "0190a6c4-1b2c-7d3e-8f40-0000000000a1", Seq: 1, Type: "work_order", Entity: "wo-1", Kind: "create",
			Fields: raw(map[string]string{"title": `"Boiler"`}), At: 1720000000000},
		protocol.Op{ID: "0190a6c4-1b2c-7d3e-8f40-0000000000a2", Seq: 2, Prev: 1, Type: "work_order", Entity: "wo-1", Kind: "update", Base: 1,
			Fields: raw(map[string]string{"status": `"in progress"`}), At: 1720000000000},
		protocol.Op{ID: "0190a6c4-1b2c-7d3e-8f40-0000000000a3", Seq: 3, Type: "work_order", Entity: "wo-seed", Kind: "append", Base: 1,
			Fields: raw(map[string]string{"comments": `"ok"`}), At: 1720000000000},
		protocol.Op{ID: "0190a6c4-1b2c-7d3e-8f40-0000000000a4", Seq: 5, Prev: 4, Type: "work_order", Entity: "wo-seed", Kind: "delete", Base: 1, At: 1720000000000},
	)
	f.Add(good, false, "application/json", "", "1")
	f.Add(good, true, "application/json", "gzip", "1")
	f.Add(good, true, "application/json", "", "1")
	f.Add(good[:len(good)/2], false, "application/json", "", "1")
	f.Add(good, false, "text/plain", "", "1")
	f.Add(good, false, "application/json; charset=utf-8", "br", "1")
	f.Add(good, false, "", "identity", "")
	f.Add(good, false, "application/json", "", "2")
	f.Add([]byte(`{"device":"office","ops":[{"id":"0190a6c4-1b2c-7d3e-8f40-0000000000b1","seq":1,"type":"work_order","entity":"x","kind":"delete","at":0}]}`), false, "application/json", "", "1")
	f.Add([]byte(`{"device":"d","ops":[{"id":"0190a6c4-1b2c-7d3e-8f40-0000000000c1","seq":1,"type":"work_order","entity":"x","kind":"create","fields":{"title":"\u00e9","amount":1e999},"at":0}]}`), false, "application/json", "", "1")
	f.Add(settles, false, "application/json", "", "1")
	f.Add(settles, true, "application/json", "gzip", "1")
	f.Add(twoFields, false, "application/json", "", "1")
	f.Add(clocks, false, "application/json", "", "1")
	f.Add([]byte(`{"device":"d","ops":[{"id":"0190a6c4-1b2c-7d3e-8f40-0000000000c2","seq":1,"type":"work_order","entity":"wo-seed","kind":"update","base":1,"fields":{"title":"x"},"at":0,"hlc":-1}]}`), false, "application/json", "", "1")
	f.Fuzz(func(t *testing.T, body []byte, gz bool, contentType, encoding, version string) {
		before := takeSnapshot(t, st)
		rec := serve(srv, body, gz, contentType, encoding, version)
		after := takeSnapshot(t, st)
		switch {
		case rec.Code == 200:
			checkPushAnswer(t, body, gz, encoding, rec.Body.Bytes(), before, after)
		case rec.Code >= 400 && rec.Code < 500:
			var b protocol.ErrorBody
			dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&b); err != nil {
				t.Fatalf("%d with a body that is not an error body: %v\n%s", rec.Code, err, rec.Body.Bytes())
			}
			code := fieldsync.Code(b.Error.Code)
			if !knownCodes[code] || server.HTTPStatus(code) != rec.Code || b.Error.Message == "" {
				t.Fatalf("%d with error %+v", rec.Code, b.Error)
			}
			if after != before {
				t.Fatalf("refused with %s but the store changed:\nbefore %+v\nafter  %+v", code, before, after)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
	})
}

// seedConflict is the id of the conflict open in FuzzPushHandler's store.
const seedConflict = "0190a6c4-1b2c-7d3e-8f40-0000000000c0"

// serve sends one push through the handler in process.
func serve(srv *server.Server, body []byte, gz bool, contentType, encoding, version string) *httptest.ResponseRecorder {
	if gz {
		body = gzipped(body)
	}
	req := httptest.NewRequest("POST", protocol.PathPush, bytes.NewReader(body))
	for k, v := range map[string]string{"Content-Type": contentType, "Content-Encoding": encoding, protocol.VersionHeader: version} {
		if v != "" {
			req.Header[k] = []string{v}
		}
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	return rec
}

// checkPushAnswer checks a 200 answer against the request that got it.
func checkPushAnswer(t *testing.T, body []byte, gz bool, encoding string, answer []byte, before, after snapshot) {
	t.Helper()
	if gz && encoding != "gzip" || !gz && encoding == "gzip" {
		t.Fatalf("accepted a body whose encoding (gzip %v) is not the one named (%q)", gz, encoding)
	}
	req, err := protocol.DecodePush(body)
	if err != nil {
		t.Fatalf("accepted a body that DecodePush refuses: %v", err)
	}
	var resp protocol.PushResponse
	dec := json.NewDecoder(bytes.NewReader(answer))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&resp); err != nil {
		t.Fatalf("200 with a body that is not a push answer: %v", err)
	}
	if len(resp.Results) != len(req.Ops) {
		t.Fatalf("%d results for %d ops", len(resp.Results), len(req.Ops))
	}
	recorded := int64(0)
	for i, r := range resp.Results {
		if r.Op != req.Ops[i].ID {
			t.Fatalf("result %d is for %s, want %s", i, r.Op, req.Ops[i].ID)
		}
		switch fieldsync.ResultStatus(r.Status) {
		case fieldsync.StatusApplied, fieldsync.StatusConflict:
			recorded++
		case fieldsync.StatusRejected:
			if r.Code == "" || r.Message == "" {
				t.Fatalf("rejection without a reason: %+v", r)
			}
			if r.Code != string(fieldsync.ESeqReused) {
				recorded++
			}
		case fieldsync.StatusDuplicate:
			if r.Recorded == nil {
				t.Fatalf("duplicate without the recorded result: %+v", r)
			}
		case fieldsync.StatusRetry:
			if !fieldsync.Code(r.Code).Retryable() {
				t.Fatalf("retry with a code that is not retryable: %+v", r)
			}
		default:
			t.Fatalf("unknown status %q", r.Status)
		}
		if r.Code != "" && !knownCodes[fieldsync.Code(r.Code)] {
			t.Fatalf("unknown code %q", r.Code)
		}
	}
	if after.Ops-before.Ops != recorded {
		t.Fatalf("%d ops recorded, %d results say so", after.Ops-before.Ops, recorded)
	}
	if after.MaxSeq < before.MaxSeq || after.Records < before.Records {
		t.Fatalf("the feed went back: %+v -> %+v", before, after)
	}
}
