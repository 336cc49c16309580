package client_test

import (
	"net/http/httptest"
	"path/filepath"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
	"context"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"
)

func TestScratchPushProfile(t *testing.T) {
	if os.Getenv("SCRATCH") == "" {
		return
	}
	b := &testing.B{}
	_ = b
	ctx := context.Background()
	_, url := benchServerT(t)
	e := benchEngineT(t, url)
	n := 20000
	nrec := 1000
	ids := make([]string, nrec)
	for i := range ids {
		op, err := e.Create(ctx, "work_order", map[string]any{"title": "Boiler " + strconv.Itoa(i), "status": "new"})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = op.EntityID
	}
	if _, err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		var err error
		if i%10 == 9 {
			_, err = e.Append(ctx, "work_order", ids[i%nrec], "comments", "checked valve "+strconv.Itoa(i))
		} else {
			_, err = e.Update(ctx, "work_order", ids[i%nrec], map[string]any{"status": benchStatuses[(i/nrec)%len(benchStatuses)]})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f, _ := os.Create(os.Getenv("SCRATCH"))
	pprof.StartCPUProfile(f)
	start := time.Now()
	rep, err := e.Sync(ctx)
	el := time.Since(start)
	pprof.StopCPUProfile()
	f.Close()
	t.Logf("%v %+v %.0f ops/s", err, rep, float64(n)/el.Seconds())
}

func benchServerT(t *testing.T) (any, string) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "server.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, _ := server.New(server.Config{Store: st})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return srv, hs.URL
}

func benchEngineT(t *testing.T, url string) *client.Engine {
	e, err := client.Open(context.Background(), client.Config{Dir: t.TempDir(), ServerURL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}
