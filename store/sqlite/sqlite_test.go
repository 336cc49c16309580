package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/store/sqlite"
	"github.com/fieldsync/fieldsync/store/storetest"
)

func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestConformance runs the store conformance suite on SQLite files.
func TestConformance(t *testing.T) {
	paths := map[fieldsync.Store]string{}
	storetest.Run(t,
		func(t *testing.T) fieldsync.Store {
			path := filepath.Join(t.TempDir(), "server.db")
			st := open(t, path)
			paths[st] = path
			return st
		},
		storetest.WithReopen(func(t *testing.T, st fieldsync.Store) fieldsync.Store {
			path, ok := paths[st]
			if !ok {
				t.Fatal("reopen of a store this test did not open")
			}
			if err := st.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			again := open(t, path)
			paths[again] = path
			return again
		}),
	)
}
