package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync/auth"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
	"github.com/fieldsync/fieldsync/tenant"
)

// TestEnrollSyncRevokeEnrollAgain drives the device commands against the
// multi-organisation front over TLS: enrol with the pinned fingerprint,
// sync with no --server (the enrolment names it), be revoked (sync says
// so, the queue is kept), enrol again with a new code, and deliver.
func TestEnrollSyncRevokeEnrollAgain(t *testing.T) {
	clearEnv(t)
	t.Setenv("FIELDSYNC_TLS_PIN", "")
	ctx := context.Background()
	cheap := auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}
	front, err := tenant.Open(ctx, tenant.Config{Dir: t.TempDir(), Identity: authsqlite.Config{PasswordParams: cheap, CodeParams: cheap}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { front.Close() })
	ids := front.Identity()
	if _, err := ids.CreateOrg(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := ids.CreateUser(ctx, "acme", "ana", auth.RoleFieldWorker, ""); err != nil {
		t.Fatal(err)
	}
	code := func() string {
		e, err := ids.IssueEnrolment(ctx, "acme", "ana", "dora")
		if err != nil {
			t.Fatal(err)
		}
		return e.Code
	}
	hs := httptest.NewUnstartedServer(front)
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	hs.StartTLS()
	t.Cleanup(hs.Close)
	sum := sha256.Sum256(hs.Certificate().Raw)
	pin := fmt.Sprintf("%x", sum[:])
	dir := filepath.Join(t.TempDir(), "tablet")

	msg := cliErr(t, "sync", "--dir", dir)
	contains(t, "sync of a device that does not exist", msg, "--server URL or FIELDSYNC_SERVER")
	msg = cliErr(t, "enroll", "--dir", dir, "--server", hs.URL, "--code", code(), "--tls-pin", "abc")
	contains(t, "enroll with a malformed pin", msg, "64 hex digits")
	msg = cliErr(t, "enroll", "--dir", dir, "--server", hs.URL, "--code", code(), "--tls-pin", strings.Repeat("0", 64))
	contains(t, "enroll with a wrong pin", msg, "certificate does not match the pinned fingerprint", "nothing was stored")
	msg = cliErr(t, "enroll", "--dir", dir, "--server", hs.URL, "--code", "AAAAA-AAAAA", "--pin-sha256", pin)
	contains(t, "enroll with a wrong code", msg, "refused the code", "enrol-code")

	out := mustCLI(t, "enroll", "--dir", dir, "--server", hs.URL, "--code", code(), "--name", "Ana's tablet", "--pin-sha256", pin)
	contains(t, "enroll", out, "enrolled device", `"Ana's tablet"`, "for ana in acme", "pinned", "not shown")
	create(t, dir, "title=Boiler", "status=new")
	out = mustCLI(t, "sync", "--dir", dir)
	contains(t, "sync after enrolment", out, "synced with "+hs.URL, "1 delivered")

	devs, err := ids.ListDevices(ctx, "acme")
	if err != nil || len(devs) != 1 {
		t.Fatalf("devices: %+v, %v", devs, err)
	}
	if err := ids.RevokeDevice(ctx, "acme", devs[0].ID); err != nil {
		t.Fatal(err)
	}
	create(t, dir, "title=Pump", "status=new")
	msg = cliErr(t, "sync", "--dir", dir)
	contains(t, "sync of a revoked device", msg, "revoked by the office", "1 op is safe on this device", "fieldsync enroll --dir")

	out = mustCLI(t, "enroll", "--dir", dir, "--code", code(), "--server", hs.URL, "--name", "Ana's tablet")
	contains(t, "enroll again (the pin is kept)", out, "enrolled device "+devs[0].ID, "pinned", "in queue: 1 op")
	out = mustCLI(t, "sync", "--dir", dir)
	contains(t, "sync after enrolling again", out, "1 delivered", "in queue: 0 ops")

	// The agent needs no --server either.
	agent := startCommand(t, "agent", "--dir", dir, "--status-addr", "127.0.0.1:0", "--interval", "1h", "--log-level", "warn")
	agent.waitOutput(regexp.MustCompile(`syncing with ` + regexp.QuoteMeta(hs.URL)))
	if err := agent.stop(); err != nil {
		t.Fatal(err)
	}
}
