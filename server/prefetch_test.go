package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// TestPrefetchedPageNeverStale pulls in pages while records change between
// pages: each page served is what a fresh read gives at that moment (a
// page read ahead is served only while nothing changed since), and the
// device ends up with every record at its latest version.
func TestPrefetchedPageNeverStale(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()

	const n = 40
	seq := int64(0)
	op := func(id string, kind fieldsync.OpKind, prev int64, fields string) fieldsync.Op {
		seq++
		o := fieldsync.Op{
			ID: fmt.Sprintf("0190a6c4-1b2c-7d3e-8f40-%012d", seq), DeviceID: "dev", Seq: seq, PrevSeq: prev,
			EntityType: "work_order", EntityID: id, Kind: kind, LocalTime: time.Now().UTC(),
		}
		if err := json.Unmarshal([]byte(fields), &o.Fields); err != nil {
			t.Fatal(err)
		}
		if kind != fieldsync.KindCreate {
			o.BaseVersion = 1
		}
		return o
	}
	created := map[string]int64{} // id -> seq of its create
	var ops []fieldsync.Op
	for i := range n {
		id := "wo-" + strconv.Itoa(i)
		ops = append(ops, op(id, fieldsync.KindCreate, 0, `{"title":"Boiler `+strconv.Itoa(i)+`","status":"new"}`))
		created[id] = seq
	}
	apply := func(ops []fieldsync.Op) {
		t.Helper()
		res, err := srv.Apply(ctx, ops)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Status != fieldsync.StatusApplied {
				t.Fatalf("op %s: %s %s", r.OpID, r.Status, r.Message)
			}
		}
	}
	apply(ops)

	get := func(cursor string) protocol.ChangesResponse {
		t.Helper()
		u := hs.URL + protocol.PathChanges + "?limit=10"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		req.Header.Set(protocol.VersionHeader, strconv.Itoa(protocol.Version))
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var page protocol.ChangesResponse
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("changes: HTTP %d, %v", resp.StatusCode, err)
		}
		return page
	}
	// waitPrefetched waits until the page read ahead is ready, so that the
	// change that follows lands after it was read.
	waitPrefetched := func() {
		t.Helper()
		srv.prefetchMu.Lock()
		var p *prefetchedPage
		if len(srv.prefetched) > 0 {
			p = srv.prefetched[len(srv.prefetched)-1]
		}
		srv.prefetchMu.Unlock()
		if p == nil {
			t.Fatal("no page was read ahead after a page with more to come")
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			t.Fatal("the page read ahead never arrived")
		}
	}

	seen := map[string]protocol.Record{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("the pull does not end")
		}
		// What a fresh read gives now; nothing changes until the GET.
		cur, err := protocol.ParseCursor(cursor)
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := st.Changes(ctx, cur.Seq, 10)
		if err != nil {
			t.Fatal(err)
		}
		page := get(cursor)
		if len(page.Changes) != len(want) {
			t.Fatalf("page %d: %d records, a fresh read gives %d", pages, len(page.Changes), len(want))
		}
		for i, r := range page.Changes {
			if r.ID != want[i].ID || r.Seq != want[i].Seq || r.Version != want[i].Version {
				t.Errorf("page %d item %d: %s at seq %d version %d; a fresh read gives %s at seq %d version %d",
					pages, i, r.ID, r.Seq, r.Version, want[i].ID, want[i].Seq, want[i].Version)
			}
			seen[r.ID] = r
		}
		if !page.More {
			break
		}
		if pages < 2 {
			// Change records of the next page and beyond after it was
			// read ahead: the page read ahead is stale now.
			waitPrefetched()
			id := "wo-" + strconv.Itoa(10*(pages+1)+3)
			apply([]fieldsync.Op{op(id, fieldsync.KindUpdate, created[id], `{"status":"in progress"}`)})
		}
		cursor = page.Cursor
	}
	recs, _, err := st.Changes(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(recs) {
		t.Fatalf("pulled %d records, the server has %d", len(seen), len(recs))
	}
	for _, want := range recs {
		got := seen[want.ID]
		if got.Version != want.Version || got.Seq != want.Seq || string(got.Fields["status"]) != string(want.Fields["status"]) {
			t.Errorf("%s: pulled version %d seq %d status %s; server has version %d seq %d status %s",
				want.ID, got.Version, got.Seq, got.Fields["status"], want.Version, want.Seq, want.Fields["status"])
		}
	}
}
