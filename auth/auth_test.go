package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync"
)

// cheap are Argon2 parameters small enough for tests.
var cheap = Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

func wantCode(t *testing.T, err error, code fieldsync.Code) {
	t.Helper()
	var fe *fieldsync.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T): want a *fieldsync.Error with code %s", err, err, code)
	}
	if fe.Code != code {
		t.Fatalf("code %s (%s): want %s", fe.Code, fe.Message, code)
	}
	if fe.Message == "" {
		t.Fatalf("code %s has no message", fe.Code)
	}
}

// TestNoDriver keeps this package importable by the server, which must
// not depend on a database driver: the identity store's driver lives in
// auth/sqlite.
func TestNoDriver(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var p struct{ Deps []string }
	if err := json.NewDecoder(bytes.NewReader(out)).Decode(&p); err != nil {
		t.Fatal(err)
	}
	for _, d := range p.Deps {
		for _, drv := range []string{"github.com/ncruces/go-sqlite3", "github.com/jackc/pgx", "modernc.org/sqlite"} {
			if strings.HasPrefix(d, drv) {
				t.Errorf("package auth depends on the driver %s", d)
			}
		}
	}
}
