package client_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

func newServer(t *testing.T) (*server.Server, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := server.New(server.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return srv, hs
}

func openEngine(t *testing.T, url string) *client.Engine {
	t.Helper()
	e, err := client.Open(context.Background(), client.Config{Dir: t.TempDir(), ServerURL: url, BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestCreateUpdateSyncPull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, hs := newServer(t)
	a := openEngine(t, hs.URL)
	b := openEngine(t, hs.URL)

	op, err := a.Create(ctx, "work_order", map[string]any{"title": "Boiler", "status": "new"})
	if err != nil {
		t.Fatal(err)
	}
	id := op.EntityID
	if _, err := a.Update(ctx, "work_order", id, map[string]any{"status": "in progress"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, "work_order", id, "comments", "pressure ok"); err != nil {
		t.Fatal(err)
	}
	v, err := a.Get(ctx, "work_order", id)
	if err != nil {
		t.Fatal(err)
	}
	if v.State != client.RecordReady || v.Pending != 3 || string(v.Fields["status"]) != `"in progress"` {
		t.Fatalf("view before sync = %+v", v)
	}
	rep, err := a.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Delivered != 3 {
		t.Fatalf("report = %+v", rep)
	}
	v, err = a.Get(ctx, "work_order", id)
	if err != nil {
		t.Fatal(err)
	}
	if v.State != client.RecordSent || v.Number != "WO-1001" || v.Version != 3 {
		t.Fatalf("view after sync = %+v", v)
	}
	if _, err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	vb, err := b.Get(ctx, "work_order", id)
	if err != nil {
		t.Fatal(err)
	}
	var comments []fieldsync.AppendItem
	json.Unmarshal(vb.Fields["comments"], &comments)
	if len(comments) != 1 || string(comments[0].Value) != `"pressure ok"` || string(vb.Fields["status"]) != `"in progress"` {
		t.Fatalf("other device sees %+v", vb)
	}
}
