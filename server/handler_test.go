package server_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/schema"
	"github.com/fieldsync/fieldsync/server"
)

// seeded returns an env whose store holds one work order (id "wo-1",
// made by device "dev-a" with seq 1) and some history, so a refused
// request has something it could have changed.
func seeded(t *testing.T, cfg server.Config) *env {
	t.Helper()
	e := newEnv(t, cfg)
	res := e.push(t, "dev-a",
		createOp(1, "wo-1", map[string]string{"title": `"Boiler"`, "status": `"new"`}),
		updateOp(2, 1, 1, "wo-1", map[string]string{"status": `"assigned"`}),
	)
	for _, r := range res {
		if r.Status != "applied" {
			t.Fatalf("seed: %+v", r)
		}
	}
	return e
}

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestBadRequests: every malformed, oversized, truncated or misdirected
// request gets its 4xx status and stable code in a JSON error body, and
// the store is left exactly as it was.
func TestBadRequests(t *testing.T) {
	e := seeded(t, server.Config{})
	h := apiHeaders()
	good := updateOp(3, 2, 2, "wo-1", map[string]string{"status": `"in progress"`})
	goodBody := pushBody(t, "dev-a", good)
	// withOp is a push body of the good op plus one op changed by fn: the
	// good op would apply if the batch were accepted.
	withOp := func(fn func(o *wop)) []byte {
		o := updateOp(4, 0, 2, "wo-1", map[string]string{"title": `"Boiler room"`})
		fn(&o)
		return pushBody(t, "dev-b", good, o)
	}
	var many []wop
	for i := range protocol.MaxBatchOps + 1 {
		many = append(many, updateOp(int64(100+i), 0, 2, "wo-1", map[string]string{"title": fmt.Sprintf(`"t%d"`, i)}))
	}
	bomb := func() []byte {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write([]byte(`{"device":"dev-a","ops":[`))
		chunk := bytes.Repeat([]byte(" "), 1<<20)
		for range 32 {
			zw.Write(chunk)
		}
		zw.Close()
		return b.Bytes()
	}()
	gz := gzipped(goodBody)
	epoch := e.st.Epoch()
	top := e.changes(t, "", 0).Cursor
	topCur, _ := protocol.ParseCursor(top)
	otherEpoch := "0123456789abcdef"
	if otherEpoch == epoch {
		otherEpoch = "fedcba9876543210"
	}
	cases := []struct {
		name   string
		method string
		path   string
		header map[string]string
		body   []byte
		status int
		code   fieldsync.Code
	}{
		// Push: the body.
		{"malformed JSON", "POST", protocol.PathPush, h, []byte(`{"device":"dev-a","ops":[`), 400, fieldsync.EInvalidJSON},
		{"truncated body", "POST", protocol.PathPush, h, goodBody[:len(goodBody)/2], 400, fieldsync.EInvalidJSON},
		{"empty body", "POST", protocol.PathPush, h, nil, 400, fieldsync.EInvalidJSON},
		{"trailing data", "POST", protocol.PathPush, h, append(slices.Clone(goodBody), goodBody...), 400, fieldsync.EInvalidJSON},
		{"truncated gzip", "POST", protocol.PathPush, with(h, "Content-Encoding", "gzip"), gz[:len(gz)-6], 400, fieldsync.EInvalidJSON},
		{"gzip label on plain body", "POST", protocol.PathPush, with(h, "Content-Encoding", "gzip"), goodBody, 400, fieldsync.EInvalidJSON},
		{"gzip bomb", "POST", protocol.PathPush, with(h, "Content-Encoding", "gzip"), bomb, 413, fieldsync.ETooLarge},
		{"invalid UTF-8", "POST", protocol.PathPush, h, bytes.Replace(goodBody, []byte("in progress"), []byte("in \xff\xfe"), 1), 400, fieldsync.EInvalidJSON},
		{"unknown JSON member", "POST", protocol.PathPush, h, bytes.Replace(goodBody, []byte(`{"device"`), []byte(`{"token":"x","device"`), 1), 400, fieldsync.EInvalidJSON},
		{"unknown op member", "POST", protocol.PathPush, h, bytes.Replace(goodBody, []byte(`"kind"`), []byte(`"colour":"red","kind"`), 1), 400, fieldsync.EInvalidJSON},
		{"wrong type", "POST", protocol.PathPush, h, bytes.Replace(goodBody, []byte(`"seq":3`), []byte(`"seq":"3"`), 1), 400, fieldsync.EInvalidJSON},
		{"ops not a list", "POST", protocol.PathPush, h, []byte(`{"device":"dev-a","ops":{}}`), 400, fieldsync.EInvalidJSON},
		{"empty batch", "POST", protocol.PathPush, h, []byte(`{"device":"dev-a","ops":[]}`), 400, fieldsync.EInvalidRequest},
		{"too many ops", "POST", protocol.PathPush, h, pushBody(t, "dev-a", many...), 413, fieldsync.ETooLarge},
		{"duplicate op id", "POST", protocol.PathPush, h, withOp(func(o *wop) { o.ID = good.ID }), 400, fieldsync.EInvalidRequest},
		{"bad op id", "POST", protocol.PathPush, h, withOp(func(o *wop) { o.ID = "op-1" }), 400, fieldsync.EInvalidRequest},
		{"seq 0", "POST", protocol.PathPush, h, withOp(func(o *wop) { o.Seq, o.Prev = 0, 0 }), 400, fieldsync.EInvalidRequest},
		{"prev equal to seq", "POST", protocol.PathPush, h, withOp(func(o *wop) { o.Prev = o.Seq }), 400, fieldsync.EInvalidRequest},
		{"prev above seq", "POST", protocol.PathPush, h, withOp(func(o *wop) { o.Prev = o.Seq + 1 }), 400, fieldsync.EInvalidRequest},
		{"unknown kind", "POST", protocol.PathPush, h, withOp(func(o *wop) { o.Kind = "upsert" }), 400, fieldsync.EInvalidRequest},
		{"bad entity id", "POST", protocol.PathPush, h, withOp(func(o *wop) { o.Entity = "a/b" }), 400, fieldsync.EInvalidRequest},
		{"field too large", "POST", protocol.PathPush, h, withOp(func(o *wop) {
			o.Fields = raw(map[string]string{"description": `"` + strings.Repeat("x", protocol.MaxFieldBytes) + `"`})
		}), 413, fieldsync.ETooLarge},
		{"op of another device", "POST", protocol.PathPush, h, withOp(func(o *wop) { o.Device = "dev-c" }), 400, fieldsync.EInvalidRequest},
		{"reserved device id", "POST", protocol.PathPush, h, pushBody(t, server.OfficeDevice, good), 400, fieldsync.EInvalidRequest},
		// Push: the headers.
		{"missing protocol header", "POST", protocol.PathPush, with(h, protocol.VersionHeader, ""), goodBody, 400, fieldsync.EUnsupportedVersion},
		{"protocol too new", "POST", protocol.PathPush, with(h, protocol.VersionHeader, "2"), goodBody, 400, fieldsync.EUnsupportedVersion},
		{"protocol 0", "POST", protocol.PathPush, with(h, protocol.VersionHeader, "0"), goodBody, 400, fieldsync.EUnsupportedVersion},
		{"protocol not a number", "POST", protocol.PathPush, with(h, protocol.VersionHeader, "v1"), goodBody, 400, fieldsync.EUnsupportedVersion},
		{"wrong content type", "POST", protocol.PathPush, with(h, "Content-Type", "text/plain"), goodBody, 415, fieldsync.EUnsupportedMedia},
		{"form content type", "POST", protocol.PathPush, with(h, "Content-Type", "application/x-www-form-urlencoded"), goodBody, 415, fieldsync.EUnsupportedMedia},
		{"unknown content encoding", "POST", protocol.PathPush, with(h, "Content-Encoding", "br"), goodBody, 415, fieldsync.EUnsupportedMedia},
		// Changes.
		{"bad cursor", "GET", protocol.PathChanges + "?cursor=hello", h, nil, 400, fieldsync.EInvalidRequest},
		{"cursor from another epoch", "GET", protocol.PathChanges + "?cursor=" + protocol.Cursor{Epoch: otherEpoch, Seq: 1}.String(), h, nil, 409, fieldsync.ECursorInvalid},
		{"cursor ahead of the server", "GET", protocol.PathChanges + "?cursor=" + protocol.Cursor{Epoch: epoch, Seq: topCur.Seq + 5}.String(), h, nil, 409, fieldsync.ECursorInvalid},
		{"cursor with a wrong tag", "GET", protocol.PathChanges + "?cursor=" + protocol.Cursor{Epoch: epoch, Seq: topCur.Seq, Tag: "deadbeef"}.String(), h, nil, 409, fieldsync.ECursorInvalid},
		{"limit 0", "GET", protocol.PathChanges + "?limit=0", h, nil, 400, fieldsync.EInvalidRequest},
		{"limit negative", "GET", protocol.PathChanges + "?limit=-1", h, nil, 400, fieldsync.EInvalidRequest},
		{"limit too high", "GET", protocol.PathChanges + fmt.Sprintf("?limit=%d", protocol.MaxPullLimit+1), h, nil, 400, fieldsync.EInvalidRequest},
		{"limit not a number", "GET", protocol.PathChanges + "?limit=ten", h, nil, 400, fieldsync.EInvalidRequest},
		{"changes without protocol header", "GET", protocol.PathChanges, with(h, protocol.VersionHeader, ""), nil, 400, fieldsync.EUnsupportedVersion},
		// Routes and methods.
		{"unknown route", "GET", "/v1/nothing", h, nil, 404, fieldsync.ENotFound},
		{"unknown version prefix", "POST", "/v2/push", h, goodBody, 404, fieldsync.ENotFound},
		{"root", "GET", "/", h, nil, 404, fieldsync.ENotFound},
		{"record path too deep", "GET", protocol.PathRecords + "work_order/wo-1/x", h, nil, 404, fieldsync.ENotFound},
		{"GET a record type", "GET", protocol.PathRecords + "work_order", h, nil, 405, fieldsync.EMethodNotAllowed},
		{"GET push", "GET", protocol.PathPush, h, nil, 405, fieldsync.EMethodNotAllowed},
		{"PUT push", "PUT", protocol.PathPush, h, goodBody, 405, fieldsync.EMethodNotAllowed},
		{"POST changes", "POST", protocol.PathChanges, h, nil, 405, fieldsync.EMethodNotAllowed},
		{"DELETE record", "DELETE", protocol.PathRecords + "work_order/wo-1", h, nil, 405, fieldsync.EMethodNotAllowed},
		{"PATCH op", "PATCH", protocol.PathOps + good.ID, h, []byte(`{}`), 405, fieldsync.EMethodNotAllowed},
		{"unknown op", "GET", protocol.PathOps + newOpID(), h, nil, 404, fieldsync.ENotFound},
		{"unknown record", "GET", protocol.PathRecords + "work_order/nope", h, nil, 404, fieldsync.ENotFound},
		{"unknown record type", "GET", protocol.PathRecords + "invoice/wo-1", h, nil, 404, fieldsync.ENotFound},
		// Office edits and creates.
		{"edit malformed", "PATCH", protocol.PathRecords + "work_order/wo-1", h, []byte(`{"base":2,"fields":`), 400, fieldsync.EInvalidJSON},
		{"edit unknown member", "PATCH", protocol.PathRecords + "work_order/wo-1", h, []byte(`{"base":2,"fields":{"status":"closed"},"by":"me"}`), 400, fieldsync.EInvalidJSON},
		{"edit without fields", "PATCH", protocol.PathRecords + "work_order/wo-1", h, []byte(`{"base":2,"fields":{}}`), 400, fieldsync.EInvalidRequest},
		{"edit wrong content type", "PATCH", protocol.PathRecords + "work_order/wo-1", with(h, "Content-Type", "text/csv"), []byte(`{"base":2,"fields":{"status":"closed"}}`), 415, fieldsync.EUnsupportedMedia},
		{"edit protocol too new", "PATCH", protocol.PathRecords + "work_order/wo-1", with(h, protocol.VersionHeader, "9"), []byte(`{"base":2,"fields":{"status":"closed"}}`), 400, fieldsync.EUnsupportedVersion},
		{"create with a base", "POST", protocol.PathRecords + "work_order", h, []byte(`{"base":1,"fields":{"title":"x"}}`), 400, fieldsync.EInvalidRequest},
		{"create truncated", "POST", protocol.PathRecords + "work_order", h, []byte(`{"base":0,"fields":{"title":"x"`), 400, fieldsync.EInvalidJSON},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := takeSnapshot(t, e.st)
			r := e.request(t, c.method, c.path, c.header, c.body)
			checkError(t, r, c.status, c.code)
			if c.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
			if after := takeSnapshot(t, e.st); after != before {
				t.Fatalf("the store changed:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
	// After all that, the good op still applies as version 3.
	res := e.push(t, "dev-a", good)
	if res[0].Status != "applied" || res[0].Version != 3 {
		t.Fatalf("good op after the refusals: %+v", res[0])
	}
}

// TestBodyLimit: a body one byte over the configured limit is refused
// whole, plain or gzipped; one at the limit is read.
func TestBodyLimit(t *testing.T) {
	const limit = 4096
	e := seeded(t, server.Config{MaxBodyBytes: limit})
	body := pushBody(t, "dev-a", updateOp(3, 2, 2, "wo-1", map[string]string{"description": `"x"`}))
	pad := func(n int) []byte { // body padded with spaces to n bytes
		return append(slices.Clone(body), bytes.Repeat([]byte(" "), n-len(body))...)
	}
	for _, c := range []struct {
		name string
		body []byte
		gz   bool
	}{{"plain", pad(limit + 1), false}, {"gzip", gzipped(pad(limit + 1)), true}} {
		t.Run(c.name, func(t *testing.T) {
			before := takeSnapshot(t, e.st)
			h := apiHeaders()
			if c.gz {
				h["Content-Encoding"] = "gzip"
			}
			checkError(t, e.request(t, "POST", protocol.PathPush, h, c.body), 413, fieldsync.ETooLarge)
			if after := takeSnapshot(t, e.st); after != before {
				t.Fatalf("the store changed: %+v -> %+v", before, after)
			}
		})
	}
	r := e.request(t, "POST", protocol.PathPush, apiHeaders(), pad(limit))
	if r.status != 200 {
		t.Fatalf("body at the limit: %d %s", r.status, r.body)
	}
}

// TestDefaultBodyLimit sends a body one byte over protocol.MaxBodyBytes
// through the handler in process.
func TestDefaultBodyLimit(t *testing.T) {
	e := seeded(t, server.Config{})
	before := takeSnapshot(t, e.st)
	body := pushBody(t, "dev-a", updateOp(3, 2, 2, "wo-1", map[string]string{"description": `"x"`}))
	body = append(body, bytes.Repeat([]byte(" "), protocol.MaxBodyBytes+1-len(body))...)
	req := httptest.NewRequest("POST", protocol.PathPush, bytes.NewReader(body))
	for k, v := range apiHeaders() {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.srv.ServeHTTP(rec, req)
	checkError(t, response{rec.Code, rec.Header(), rec.Body.Bytes()}, 413, fieldsync.ETooLarge)
	if after := takeSnapshot(t, e.st); after != before {
		t.Fatalf("the store changed: %+v -> %+v", before, after)
	}
}

func TestPushResults(t *testing.T) {
	e := newEnv(t, server.Config{})
	c1 := createOp(1, "wo-1", map[string]string{"title": `"Boiler"`, "status": `"new"`})
	c2 := createOp(2, "wo-2", map[string]string{"title": `"Pump"`})
	bad := createOp(3, "wo-3", map[string]string{"title": `"Sink"`, "amount": `12`})
	unknownType := createOp(4, "x-1", map[string]string{"title": `"x"`})
	unknownType.Type = "invoice"
	res := e.push(t, "dev-a", c1, c2, bad, unknownType)

	t.Run("applied with version and number", func(t *testing.T) {
		for i, want := range []string{"WO-1001", "WO-1002"} {
			if r := res[i]; r.Status != "applied" || r.Version != 1 || r.Number != want || r.Code != "" {
				t.Errorf("result %d: %+v, want applied v1 %s", i, r, want)
			}
		}
	})
	t.Run("rejected with a code and a reason", func(t *testing.T) {
		for i, code := range map[int]fieldsync.Code{2: fieldsync.EServerOwned, 3: fieldsync.EUnknownEntityType} {
			if r := res[i]; r.Status != "rejected" || r.Code != string(code) || r.Message == "" || r.Version != 0 {
				t.Errorf("result %d: %+v, want rejected %s", i, r, code)
			}
		}
		if got := e.get(t, protocol.PathRecords+"work_order/wo-3"); got.status != 404 {
			t.Errorf("a rejected create made a record: %d", got.status)
		}
	})
	t.Run("duplicate carries the recorded result", func(t *testing.T) {
		before := takeSnapshot(t, e.st)
		again := e.push(t, "dev-a", c1, c2, bad, unknownType)
		for i, r := range again {
			if r.Status != "duplicate" || r.Recorded == nil {
				t.Fatalf("result %d: %+v, want duplicate", i, r)
			}
			if fmt.Sprint(*r.Recorded) != fmt.Sprint(res[i]) {
				t.Errorf("recorded %+v, first answer %+v", *r.Recorded, res[i])
			}
		}
		if after := takeSnapshot(t, e.st); after != before {
			t.Fatalf("a repeated batch changed the store: %+v -> %+v", before, after)
		}
	})
	t.Run("conflict keeps both values", func(t *testing.T) {
		// The office moves wo-1 on; dev-b, from version 1, changes the
		// same field.
		edit := e.request(t, "PATCH", protocol.PathRecords+"work_order/wo-1", apiHeaders(), []byte(`{"base":1,"fields":{"status":"cancelled"}}`))
		var er protocol.Result
		decodeJSON(t, edit.body, &er)
		if edit.status != 200 || er.Status != "applied" || er.Version != 2 {
			t.Fatalf("office edit: %d %+v", edit.status, er)
		}
		r := e.push(t, "dev-b", updateOp(1, 0, 1, "wo-1", map[string]string{"status": `"in progress"`, "description": `"noisy"`}))[0]
		if r.Status != "conflict" || r.Code != string(fieldsync.EFieldConflict) || len(r.Conflicts) != 1 || r.Version != 3 {
			t.Fatalf("result %+v", r)
		}
		c := r.Conflicts[0]
		if c.Field != "status" || string(c.ServerValue) != `"cancelled"` || string(c.DeviceValue) != `"in progress"` || c.ServerBy != server.OfficeDevice || c.ServerVersion != 2 {
			t.Errorf("conflict %+v", c)
		}
		rec := e.history(t, "work_order", "wo-1").Record
		if string(rec.Fields["status"]) != `"cancelled"` || string(rec.Fields["description"]) != `"noisy"` || !slices.Equal(rec.Review, []string{"status"}) {
			t.Errorf("record after the conflict: %s review %v", rec.Fields, rec.Review)
		}
	})
	t.Run("retry while an earlier op is missing", func(t *testing.T) {
		before := takeSnapshot(t, e.st)
		late := updateOp(11, 10, 1, "wo-2", map[string]string{"description": `"second"`})
		r := e.push(t, "dev-a", late)[0]
		if r.Status != "retry" || r.Code != string(fieldsync.EWaitingForEarlier) || r.Message == "" {
			t.Fatalf("result %+v", r)
		}
		if !fieldsync.EWaitingForEarlier.Retryable() {
			t.Error("waiting_for_earlier is not retryable")
		}
		if after := takeSnapshot(t, e.st); after != before {
			t.Fatalf("a retry result changed the store: %+v -> %+v", before, after)
		}
		// Once the earlier op arrives (even in the same batch, before it),
		// both apply in order.
		early := updateOp(10, 0, 1, "wo-2", map[string]string{"description": `"first"`})
		rs := e.push(t, "dev-a", early, late)
		if rs[0].Status != "applied" || rs[1].Status != "applied" || rs[1].Version != 3 {
			t.Fatalf("results %+v", rs)
		}
		if rec := e.history(t, "work_order", "wo-2").Record; string(rec.Fields["description"]) != `"second"` {
			t.Errorf("description %s", rec.Fields["description"])
		}
	})
	t.Run("seq reused", func(t *testing.T) {
		before := takeSnapshot(t, e.st)
		o := updateOp(1, 0, 1, "wo-2", map[string]string{"description": `"again"`}) // dev-a's seq 1 is c1
		r := e.push(t, "dev-a", o)[0]
		if r.Status != "rejected" || r.Code != string(fieldsync.ESeqReused) || !strings.Contains(r.Message, c1.ID) {
			t.Fatalf("result %+v", r)
		}
		if after := takeSnapshot(t, e.st); after != before {
			t.Fatalf("a reused seq changed the store: %+v -> %+v", before, after)
		}
	})
	t.Run("gzip request", func(t *testing.T) {
		h := apiHeaders()
		h["Content-Encoding"] = "gzip"
		o := updateOp(20, 0, 3, "wo-2", map[string]string{"description": `"zipped"`})
		r := e.request(t, "POST", protocol.PathPush, h, gzipped(pushBody(t, "dev-a", o)))
		var resp protocol.PushResponse
		decodeJSON(t, r.body, &resp)
		if r.status != 200 || resp.Results[0].Status != "applied" {
			t.Fatalf("%d %+v", r.status, resp)
		}
	})
}

func TestGzipResponse(t *testing.T) {
	e := seeded(t, server.Config{})
	for _, accept := range []string{"gzip", "deflate, gzip;q=0.9", ""} {
		t.Run("accept "+accept, func(t *testing.T) {
			h := apiHeaders()
			h["Accept-Encoding"] = accept
			r := e.request(t, "GET", protocol.PathChanges, h, nil)
			if r.status != 200 {
				t.Fatalf("status %d", r.status)
			}
			body := r.body
			if accept != "" {
				if r.header.Get("Content-Encoding") != "gzip" {
					t.Fatalf("Content-Encoding %q", r.header.Get("Content-Encoding"))
				}
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			} else if r.header.Get("Content-Encoding") != "" {
				t.Fatalf("gzip without asking: %q", r.header.Get("Content-Encoding"))
			}
			var resp protocol.ChangesResponse
			decodeJSON(t, body, &resp)
			if len(resp.Changes) != 1 || resp.Changes[0].ID != "wo-1" {
				t.Fatalf("changes %+v", resp)
			}
		})
	}
}

func TestChangesPaging(t *testing.T) {
	e := newEnv(t, server.Config{})
	empty := e.changes(t, "", 0)
	if len(empty.Changes) != 0 || empty.More {
		t.Fatalf("empty server: %+v", empty)
	}
	if c, err := protocol.ParseCursor(empty.Cursor); err != nil || c.Epoch != e.st.Epoch() || c.Seq != 0 {
		t.Fatalf("cursor of an empty server %q: %+v, %v", empty.Cursor, c, err)
	}
	var ops []wop
	for i := range 5 {
		ops = append(ops, createOp(int64(i+1), fmt.Sprint("wo-", i), map[string]string{"title": fmt.Sprintf(`"t%d"`, i)}))
	}
	e.push(t, "dev-a", ops...)

	var ids []string
	var mores []bool
	cursor := empty.Cursor
	for range 10 {
		page := e.changes(t, cursor, 2)
		for _, r := range page.Changes {
			ids = append(ids, r.ID)
		}
		mores = append(mores, page.More)
		c, err := protocol.ParseCursor(page.Cursor)
		if err != nil || c.Epoch != e.st.Epoch() {
			t.Fatalf("cursor %q: %v", page.Cursor, err)
		}
		if len(page.Changes) > 0 {
			last := page.Changes[len(page.Changes)-1]
			if c.Seq != last.Seq || c.Tag == "" {
				t.Fatalf("cursor %+v after record at %d", c, last.Seq)
			}
		}
		cursor = page.Cursor
		if !page.More {
			break
		}
	}
	if want := []string{"wo-0", "wo-1", "wo-2", "wo-3", "wo-4"}; !slices.Equal(ids, want) {
		t.Fatalf("paged ids %v, want %v", ids, want)
	}
	if !slices.Equal(mores, []bool{true, true, false}) {
		t.Fatalf("more flags %v", mores)
	}
	// At the end: nothing new, the same cursor back.
	end := e.changes(t, cursor, 2)
	if len(end.Changes) != 0 || end.More || end.Cursor != cursor {
		t.Fatalf("at the end: %+v (cursor was %s)", end, cursor)
	}
	// A changed record moves to the end of the feed.
	e.push(t, "dev-a", updateOp(6, 2, 1, "wo-1", map[string]string{"status": `"assigned"`}))
	next := e.changes(t, cursor, 0)
	if len(next.Changes) != 1 || next.Changes[0].ID != "wo-1" || next.Changes[0].Version != 2 || next.More {
		t.Fatalf("after an update: %+v", next)
	}
	// The cursor's tag names the change it stopped at; the right tag is
	// accepted, a wrong one for an existing change is refused.
	c, _ := protocol.ParseCursor(next.Cursor)
	if got := e.changes(t, next.Cursor, 0); len(got.Changes) != 0 {
		t.Fatalf("cursor with its own tag: %+v", got)
	}
	c.Tag = strings.Repeat("0", 8)
	checkError(t, e.get(t, protocol.PathChanges+"?cursor="+c.String()), 409, fieldsync.ECursorInvalid)
	// A cursor without a tag is taken at its word.
	c.Tag = ""
	if got := e.changes(t, c.String(), 0); len(got.Changes) != 0 {
		t.Fatalf("cursor without a tag: %+v", got)
	}
}

func TestOfficeEditAndCreate(t *testing.T) {
	e := seeded(t, server.Config{})
	// Create: the server makes the id and the number.
	r := e.request(t, "POST", protocol.PathRecords+"work_order", apiHeaders(), []byte(`{"base":0,"fields":{"title":"Leak","assignee":"ana"}}`))
	if r.status != 200 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var created protocol.Created
	decodeJSON(t, r.body, &created)
	if !protocol.ValidID(created.ID) || created.Result.Status != "applied" || created.Result.Number != "WO-1002" || created.Result.Version != 1 {
		t.Fatalf("created %+v", created)
	}
	h := e.history(t, "work_order", created.ID)
	if string(h.Record.Fields["assignee"]) != `"ana"` || len(h.Ops) != 1 || h.Ops[0].Op.Device != server.OfficeDevice {
		t.Fatalf("history %+v", h)
	}
	// Create refused by the schema: answered as a rejected result.
	r = e.request(t, "POST", protocol.PathRecords+"work_order", apiHeaders(), []byte(`{"base":0,"fields":{"status":"new"}}`))
	decodeJSON(t, r.body, &created)
	if r.status != 200 || created.Result.Status != "rejected" || created.Result.Code != string(fieldsync.ERequiredField) {
		t.Fatalf("create without a title: %d %+v", r.status, created)
	}
	// Edit: the office may write server-owned fields; a device may not.
	edit := func(base int64, fields string) protocol.Result {
		t.Helper()
		r := e.request(t, "PATCH", protocol.PathRecords+"work_order/wo-1", apiHeaders(), []byte(fmt.Sprintf(`{"base":%d,"fields":%s}`, base, fields)))
		if r.status != 200 {
			t.Fatalf("edit: %d %s", r.status, r.body)
		}
		var res protocol.Result
		decodeJSON(t, r.body, &res)
		return res
	}
	if res := edit(2, `{"assignee":"ana","status":"in progress"}`); res.Status != "applied" || res.Version != 3 || res.Number != "WO-1001" {
		t.Fatalf("edit: %+v", res)
	}
	if res := e.push(t, "dev-a", updateOp(3, 2, 3, "wo-1", map[string]string{"assignee": `"bob"`}))[0]; res.Code != string(fieldsync.EServerOwned) {
		t.Fatalf("device writing assignee: %+v", res)
	}
	// A device changes the status; an office edit from before that is a
	// conflict, and so is a second office edit from the same stale base.
	if res := e.push(t, "dev-a", updateOp(4, 2, 3, "wo-1", map[string]string{"status": `"waiting for parts"`}))[0]; res.Status != "applied" {
		t.Fatalf("device update: %+v", res)
	}
	if res := edit(3, `{"status":"closed"}`); res.Status != "conflict" || len(res.Conflicts) != 1 || res.Conflicts[0].ServerBy != "dev-a" {
		t.Fatalf("stale office edit: %+v", res)
	}
	if res := edit(5, `{"address":"1 Main St"}`); res.Status != "applied" || res.Version != 6 {
		t.Fatalf("fresh office edit: %+v", res)
	}
	// The address is server-wins: between two office edits from the same
	// base the later one wins, and the value it replaced is reported.
	res := edit(5, `{"address":"2 Side St"}`)
	wantO := []protocol.Overridden{{Field: "address", Value: json.RawMessage(`"1 Main St"`), By: server.OfficeDevice, Policy: "server-wins"}}
	if res.Status != "applied" || res.Version != 7 || len(res.Conflicts) != 0 || !reflect.DeepEqual(res.Overridden, wantO) || !strings.Contains(res.Message, "address") {
		t.Fatalf("second office edit from the same base: %+v", res)
	}
	// A device that had not seen either edit loses to the office.
	dres := e.push(t, "dev-a", updateOp(5, 4, 3, "wo-1", map[string]string{"address": `"9 Old Rd"`}))[0]
	wantO = []protocol.Overridden{{Field: "address", Value: json.RawMessage(`"9 Old Rd"`), By: "dev-a", Policy: "server-wins"}}
	if dres.Status != "applied" || dres.Version != 7 || !reflect.DeepEqual(dres.Overridden, wantO) || !strings.Contains(dres.Message, "lost") {
		t.Fatalf("device address from an old base: %+v", dres)
	}
	if rec := e.history(t, "work_order", "wo-1").Record; string(rec.Fields["address"]) != `"2 Side St"` || rec.Version != 7 {
		t.Fatalf("address %s at version %d", rec.Fields["address"], rec.Version)
	}
	// Edits of a missing record or an unknown type are rejected results.
	r = e.request(t, "PATCH", protocol.PathRecords+"work_order/nope", apiHeaders(), []byte(`{"base":1,"fields":{"status":"closed"}}`))
	decodeJSON(t, r.body, &res)
	if res.Status != "rejected" || res.Code != string(fieldsync.ERecordMissing) {
		t.Fatalf("edit of a missing record: %+v", res)
	}
	r = e.request(t, "PATCH", protocol.PathRecords+"invoice/wo-1", apiHeaders(), []byte(`{"base":1,"fields":{"status":"closed"}}`))
	decodeJSON(t, r.body, &res)
	if res.Status != "rejected" || res.Code != string(fieldsync.EUnknownEntityType) {
		t.Fatalf("edit of an unknown type: %+v", res)
	}
}

func TestOpAndRecordLookups(t *testing.T) {
	e := newEnv(t, server.Config{})
	c := createOp(1, "wo-1", map[string]string{"title": `"Boiler"`})
	u := updateOp(2, 1, 1, "wo-1", map[string]string{"status": `"assigned"`})
	a := wop{ID: newOpID(), Seq: 3, Prev: 2, Type: "work_order", Entity: "wo-1", Kind: "append", Base: 2, Fields: raw(map[string]string{"comments": `"pressure ok"`}), At: 1720000005000}
	other := createOp(4, "wo-2", map[string]string{"title": `"Pump"`})
	bad := updateOp(5, 3, 3, "wo-1", map[string]string{"amount": `1`})
	e.push(t, "dev-a", c, u)
	e.push(t, "dev-a", other, a, bad)
	edit := e.request(t, "PATCH", protocol.PathRecords+"work_order/wo-1", apiHeaders(), []byte(`{"base":3,"fields":{"status":"closed"}}`))
	if edit.status != 200 {
		t.Fatal(edit.status)
	}

	t.Run("op", func(t *testing.T) {
		r := e.get(t, protocol.PathOps+u.ID)
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		var got protocol.OpEntry
		decodeJSON(t, r.body, &got)
		if got.Op.ID != u.ID || got.Op.Device != "dev-a" || got.Op.Seq != 2 || got.Op.Prev != 1 || got.Op.Kind != "update" ||
			got.Op.Base != 1 || got.Op.At != u.At || string(got.Op.Fields["status"]) != `"assigned"` {
			t.Errorf("op %+v", got.Op)
		}
		if got.Result.Op != u.ID || got.Result.Status != "applied" || got.Result.Version != 2 || got.Result.Number != "WO-1001" || got.Received.IsZero() {
			t.Errorf("result %+v received %v", got.Result, got.Received)
		}
		r = e.get(t, protocol.PathOps+bad.ID)
		decodeJSON(t, r.body, &got)
		if got.Result.Status != "rejected" || got.Result.Code != string(fieldsync.EServerOwned) {
			t.Errorf("rejected op: %+v", got.Result)
		}
	})
	t.Run("record history in decision order", func(t *testing.T) {
		h := e.history(t, "work_order", "wo-1")
		var ids []string
		for _, o := range h.Ops {
			ids = append(ids, o.Op.ID)
		}
		if len(ids) != 5 || !slices.Equal(ids[:4], []string{c.ID, u.ID, a.ID, bad.ID}) || h.Ops[4].Op.Device != server.OfficeDevice {
			t.Fatalf("history %v", ids)
		}
		if h.Record.Version != 4 || h.Record.Number != "WO-1001" || string(h.Record.Fields["status"]) != `"closed"` {
			t.Errorf("record %+v", h.Record)
		}
		var items []fieldsync.AppendItem
		if err := json.Unmarshal(h.Record.Fields["comments"], &items); err != nil || len(items) != 1 || items[0].ID != a.ID || items[0].By != "dev-a" {
			t.Errorf("comments %s: %v", h.Record.Fields["comments"], err)
		}
	})
	t.Run("info", func(t *testing.T) {
		r := e.get(t, protocol.PathInfo)
		var info protocol.Info
		decodeJSON(t, r.body, &info)
		if info.Protocol != protocol.Version || info.MinProtocol != protocol.MinVersion || info.Epoch != e.st.Epoch() || !slices.Equal(info.Types, []string{"work_order"}) {
			t.Errorf("info %+v", info)
		}
		if r := e.request(t, "GET", "/healthz", nil, nil); r.status != 200 {
			t.Errorf("healthz %d", r.status)
		}
	})
}

// TestRecordRules: the rules of docs/conflicts.md for deletes, deleted
// records, existing ids, missing records and server-owned fields, over
// HTTP on a real store.
func TestRecordRules(t *testing.T) {
	e := seeded(t, server.Config{}) // wo-1 at version 2, status "assigned" by dev-a
	t.Run("a device may not write a server-owned field", func(t *testing.T) {
		before := e.history(t, "work_order", "wo-1").Record
		r := e.push(t, "dev-b", updateOp(1, 0, 2, "wo-1", map[string]string{"amount": `120`, "description": `"x"`}))[0]
		if r.Status != "rejected" || r.Code != string(fieldsync.EServerOwned) || !strings.Contains(r.Message, `"amount"`) {
			t.Fatalf("result %+v", r)
		}
		if after := e.history(t, "work_order", "wo-1").Record; !reflect.DeepEqual(after, before) {
			t.Fatalf("a rejected op changed the record: %+v", after)
		}
		// The office may, and a later office edit from the same base wins.
		if res := e.edit(t, "work_order", "wo-1", 2, map[string]string{"amount": `120`}); res.Status != "applied" || res.Version != 3 {
			t.Fatalf("office amount: %+v", res)
		}
		res := e.edit(t, "work_order", "wo-1", 2, map[string]string{"amount": `95.5`})
		if res.Status != "applied" || res.Version != 4 || len(res.Overridden) != 1 || string(res.Overridden[0].Value) != `120` || res.Overridden[0].Policy != "server-owned" {
			t.Fatalf("second office amount: %+v", res)
		}
	})
	t.Run("create with an id that exists", func(t *testing.T) {
		c := createOp(1, "wo-9", map[string]string{"title": `"Pump"`})
		if r := e.push(t, "dev-c", c)[0]; r.Status != "applied" {
			t.Fatalf("create: %+v", r)
		}
		before := takeSnapshot(t, e.st)
		again := e.push(t, "dev-c", c)[0]
		if again.Status != "duplicate" || again.Recorded == nil || again.Recorded.Status != "applied" || again.Recorded.Number != "WO-1002" {
			t.Fatalf("the same create again: %+v", again)
		}
		if after := takeSnapshot(t, e.st); after != before {
			t.Fatalf("a duplicate changed the store: %+v -> %+v", before, after)
		}
		other := e.push(t, "dev-d", createOp(1, "wo-9", map[string]string{"title": `"Other pump"`}))[0]
		if other.Status != "rejected" || other.Code != string(fieldsync.EAlreadyExists) || other.Message == "" {
			t.Fatalf("another create with the id: %+v", other)
		}
		if rec := e.history(t, "work_order", "wo-9").Record; string(rec.Fields["title"]) != `"Pump"` || rec.Version != 1 {
			t.Fatalf("record %+v", rec)
		}
	})
	t.Run("delete, deleted record, append to it", func(t *testing.T) {
		// dev-c deletes wo-9 from version 1 after the office edited it:
		// a conflict, and the record is not deleted.
		if res := e.edit(t, "work_order", "wo-9", 1, map[string]string{"description": `"customer called"`}); res.Status != "applied" {
			t.Fatalf("office edit: %+v", res)
		}
		del := wop{ID: newOpID(), Seq: 2, Prev: 1, Type: "work_order", Entity: "wo-9", Kind: "delete", Base: 1, At: 1720000000000}
		r := e.push(t, "dev-c", del)[0]
		if r.Status != "conflict" || r.Code != string(fieldsync.EFieldConflict) || r.Version != 2 || !strings.Contains(r.Message, "description") {
			t.Fatalf("delete of an edited record: %+v", r)
		}
		if rec := e.history(t, "work_order", "wo-9").Record; rec.Deleted || rec.Version != 2 {
			t.Fatalf("record after the refused delete: %+v", rec)
		}
		// Having looked, the device deletes again.
		del2 := wop{ID: newOpID(), Seq: 3, Prev: 2, Type: "work_order", Entity: "wo-9", Kind: "delete", Base: 2, At: 1720000000000}
		if r := e.push(t, "dev-c", del2)[0]; r.Status != "applied" || r.Version != 3 {
			t.Fatalf("delete after looking: %+v", r)
		}
		// Another delete of the deleted record: applied, nothing changes.
		before := e.history(t, "work_order", "wo-9").Record
		del3 := wop{ID: newOpID(), Seq: 2, Type: "work_order", Entity: "wo-9", Kind: "delete", Base: 1, At: 1720000000000}
		if r := e.push(t, "dev-d", del3)[0]; r.Status != "applied" || r.Version != 3 {
			t.Fatalf("second delete: %+v", r)
		}
		if after := e.history(t, "work_order", "wo-9").Record; !reflect.DeepEqual(after, before) {
			t.Fatalf("a repeated delete changed the record")
		}
		// An update of the deleted record is rejected; its value stays
		// visible in the record's history.
		up := updateOp(3, 0, 2, "wo-9", map[string]string{"description": `"valve replaced"`})
		if r := e.push(t, "dev-d", up)[0]; r.Status != "rejected" || r.Code != string(fieldsync.ERecordDeleted) {
			t.Fatalf("update of a deleted record: %+v", r)
		}
		// A photo taken on site is kept with the tombstone.
		ap := wop{ID: newOpID(), Seq: 4, Prev: 3, Type: "work_order", Entity: "wo-9", Kind: "append", Base: 2,
			Fields: raw(map[string]string{"photos": `{"sha256":"ab12","size":2048}`}), At: 1720000000000}
		if r := e.push(t, "dev-d", ap)[0]; r.Status != "applied" || r.Version != 4 || !strings.Contains(r.Message, "deleted") {
			t.Fatalf("append to a deleted record: %+v", r)
		}
		h := e.history(t, "work_order", "wo-9")
		var photos []fieldsync.AppendItem
		if err := json.Unmarshal(h.Record.Fields["photos"], &photos); err != nil || len(photos) != 1 || photos[0].ID != ap.ID || !h.Record.Deleted {
			t.Fatalf("record %+v: %v", h.Record, err)
		}
		var seen bool
		for _, o := range h.Ops {
			if o.Op.ID == up.ID {
				seen = string(o.Op.Fields["description"]) == `"valve replaced"` && o.Result.Code == string(fieldsync.ERecordDeleted)
			}
		}
		if !seen {
			t.Fatalf("the rejected update is not in the history with its value: %+v", h.Ops)
		}
	})
	t.Run("update or append of a missing record", func(t *testing.T) {
		before := takeSnapshot(t, e.st)
		ap := wop{ID: newOpID(), Seq: 1, Type: "work_order", Entity: "wo-none", Kind: "append", Base: 1,
			Fields: raw(map[string]string{"comments": `"hello"`}), At: 1720000000000}
		rs := e.push(t, "dev-e", updateOp(2, 0, 1, "wo-none", map[string]string{"title": `"x"`}), ap)
		for _, r := range rs {
			if r.Status != "rejected" || r.Code != string(fieldsync.ERecordMissing) {
				t.Fatalf("result %+v", r)
			}
		}
		if after := takeSnapshot(t, e.st); after.Records != before.Records || after.MaxSeq != before.MaxSeq || after.Ops != before.Ops+2 {
			t.Fatalf("store %+v -> %+v", before, after)
		}
	})
}

// TestRolePriorityOverHTTP: a role-priority field of a custom schema,
// dispatcher before field worker, settled over HTTP both ways round.
func TestRolePriorityOverHTTP(t *testing.T) {
	data, err := os.ReadFile("testdata/policies.json")
	if err != nil {
		t.Fatal(err)
	}
	sch, err := schema.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, server.Config{Schema: sch})
	job := func(seq, prev, base int64, kind, id string, f map[string]string) wop {
		return wop{ID: newOpID(), Seq: seq, Prev: prev, Type: "job", Entity: id, Kind: kind, Base: base, Fields: raw(f), At: 1720000000000, HLC: 1 << 62}
	}
	for _, id := range []string{"job-1", "job-2"} {
		if r := e.push(t, "dev-a", job(map[string]int64{"job-1": 1, "job-2": 2}[id], 0, 0, "create", id, map[string]string{"title": `"Pump"`, "priority": `"normal"`}))[0]; r.Status != "applied" || r.Number == "" {
			t.Fatalf("create %s: %+v", id, r)
		}
	}
	// job-1: the office first, then a device from the old base whose
	// clock reads far in the future: the dispatcher's value stays.
	if r := e.edit(t, "job", "job-1", 1, map[string]string{"priority": `"urgent"`}); r.Status != "applied" {
		t.Fatalf("office: %+v", r)
	}
	r := e.push(t, "dev-b", job(1, 0, 1, "update", "job-1", map[string]string{"priority": `"low"`}))[0]
	if r.Status != "applied" || len(r.Overridden) != 1 || r.Overridden[0].By != "dev-b" || string(r.Overridden[0].Value) != `"low"` || r.Overridden[0].Policy != "role-priority" {
		t.Fatalf("device after office: %+v", r)
	}
	// job-2: the device first, then the office from the old base: the
	// dispatcher's value replaces the device's.
	if r := e.push(t, "dev-b", job(2, 0, 1, "update", "job-2", map[string]string{"priority": `"low"`}))[0]; r.Status != "applied" {
		t.Fatalf("device: %+v", r)
	}
	r = e.edit(t, "job", "job-2", 1, map[string]string{"priority": `"urgent"`})
	if r.Status != "applied" || len(r.Overridden) != 1 || r.Overridden[0].By != "dev-b" || string(r.Overridden[0].Value) != `"low"` {
		t.Fatalf("office after device: %+v", r)
	}
	for _, id := range []string{"job-1", "job-2"} {
		if rec := e.history(t, "job", id).Record; string(rec.Fields["priority"]) != `"urgent"` || len(rec.Review) != 0 {
			t.Errorf("%s: priority %s review %v", id, rec.Fields["priority"], rec.Review)
		}
	}
}
