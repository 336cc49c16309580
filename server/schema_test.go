package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/schema"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/store/sqlite"
)

// TestSchemaChangeOnARunningServer: an additive change is accepted live
// and kept across a restart; a breaking one is refused with its reasons,
// at run time and at start, and changes nothing.
func TestSchemaChangeOnARunningServer(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "server.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()

	put := func(doc string) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, hs.URL+"/v1/schema", strings.NewReader(doc))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		return resp.StatusCode, buf.String()
	}
	cur := string(schema.Default().JSON())
	added := strings.Replace(cur, `"fields": {`, `"fields": {"priority": {"type": "enum", "values": ["low", "high"], "policy": "last-writer-wins"},`, 1)
	if code, body := put(added); code != http.StatusOK || !strings.Contains(body, `"priority"`) {
		t.Fatalf("additive change: HTTP %d %s", code, body)
	}
	if _, ok := srv.Schema().Types["work_order"].Fields["priority"]; !ok {
		t.Fatal("the running server does not use the new field")
	}
	broken := strings.Replace(added, `"values": ["low", "high"]`, `"values": ["low"]`, 1)
	code, body := put(broken)
	var e struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal([]byte(body), &e)
	if code != http.StatusBadRequest || e.Error.Code != "invalid_request" || !strings.Contains(e.Error.Message, `enum value "high" is removed`) {
		t.Fatalf("breaking change: HTTP %d %s", code, body)
	}
	if len(srv.Schema().Types["work_order"].Fields["priority"].Values) != 2 {
		t.Fatal("a refused change altered the schema")
	}
	hs.Close()
	st.Close()

	// After a restart with no schema given, the stored one is used; one that
	// breaks it is refused at start.
	st, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv2, err := server.New(server.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := srv2.Schema().Types["work_order"].Fields["priority"]; !ok {
		t.Fatal("the schema change did not survive a restart")
	}
	if _, err := server.New(server.Config{Store: st, Schema: schema.Default()}); err == nil || !strings.Contains(err.Error(), "work_order.priority is removed") {
		t.Fatalf("a breaking schema at start: %v", err)
	}
}
