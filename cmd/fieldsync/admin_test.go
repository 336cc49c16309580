package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	authsqlite "github.com/fieldsync/fieldsync/auth/sqlite"
)

// TestAdminCommands walks an operator's day: create the organisation,
// add people, issue a code that a device redeems, see the device, revoke
// it, revoke a user.
func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("a long admin password\r\nignored second line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mustCLI(t, "admin", "init", "--data", data, "--org", "acme", "--admin", "adam", "--password-file", pw)
	if !strings.Contains(out, "organisation acme created") {
		t.Fatalf("init: %s", out)
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data directory: %v %v", fi, err)
	}
	mustCLI(t, "admin", "user", "add", "--data", data, "--user", "ana", "--role", "field_worker")
	mustCLI(t, "admin", "user", "add", "--data", data, "--user", "dora", "--role", "dispatcher", "--password-file", pw)
	out = mustCLI(t, "admin", "user", "list", "--data", data)
	for _, re := range []string{`adam\s+admin\s+password`, `ana\s+field_worker\s+no`, `dora\s+dispatcher\s+password`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Fatalf("user list lacks %s:\n%s", re, out)
		}
	}

	out = mustCLI(t, "admin", "enrol-code", "--data", data, "--user", "ana")
	m := regexp.MustCompile(`: ([0-9A-Z]{5}-[0-9A-Z]{5})\n`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "valid once, until") {
		t.Fatalf("enrol-code printed:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := authsqlite.Open(ctx, filepath.Join(data, "identity.db"), authsqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	iss, err := st.Enroll(ctx, m[1], "Ana's tablet", "ana-tablet-1")
	if err != nil {
		t.Fatalf("redeem the printed code: %v", err)
	}
	if _, err := st.Login(ctx, "acme", "dora", "a long admin password"); err != nil {
		t.Fatalf("dora logs in with the password file's first line: %v", err)
	}

	out = mustCLI(t, "admin", "device", "list", "--data", data)
	if !regexp.MustCompile(`ana-tablet-1\s+ana\s+Ana's tablet`).MatchString(out) {
		t.Fatalf("device list:\n%s", out)
	}
	mustCLI(t, "admin", "device", "revoke", "--data", data, "--device", "ana-tablet-1")
	if _, err := st.Authenticate(ctx, iss.Token); fieldsync.ErrorCode(err) != fieldsync.ETokenRevoked {
		t.Fatalf("after device revoke: %v", err)
	}
	mustCLI(t, "admin", "user", "revoke", "--data", data, "--user", "dora")
	if _, err := st.Login(ctx, "acme", "dora", "a long admin password"); fieldsync.ErrorCode(err) != fieldsync.ELoginFailed {
		t.Fatalf("revoked dora logs in: %v", err)
	}

	// A second organisation: --org is then needed.
	mustCLI(t, "admin", "init", "--data", data, "--org", "globex", "--admin", "gil", "--password-file", pw)
	if msg := cliErr(t, "admin", "user", "list", "--data", data); !strings.Contains(msg, "acme, globex") {
		t.Fatalf("ambiguous organisation: %s", msg)
	}
	mustCLI(t, "admin", "user", "list", "--data", data, "--org", "globex")
}

func TestAdminRefusals(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("short\n"), 0o600)
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("a long admin password\n"), 0o600)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"admin", "user", "list", "--data", data}, "no identity database"},
		{[]string{"admin", "init", "--data", data, "--org", "acme", "--admin", "adam", "--password-file", short}, "at least 10"},
		{[]string{"admin", "init", "--data", data, "--admin", "adam", "--password-file", pw}, "--org is required"},
		{[]string{"admin", "frobnicate"}, "unknown action"},
		{[]string{"admin", "user"}, "name what to do"},
		{[]string{"admin"}, "name what to do"},
	}
	for _, c := range cases {
		if msg := cliErr(t, c.args...); !strings.Contains(msg, c.want) {
			t.Errorf("%v: %q, want %q", c.args, msg, c.want)
		}
	}
	mustCLI(t, "admin", "init", "--data", data, "--org", "acme", "--admin", "adam", "--password-file", pw)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"admin", "init", "--data", data, "--org", "acme", "--admin", "x", "--password-file", pw}, "exists already"},
		{[]string{"admin", "user", "add", "--data", data, "--user", "ana", "--role", "root"}, "--role"},
		{[]string{"admin", "user", "add", "--data", data, "--user", "Ana", "--role", "field_worker"}, "lowercase"},
		{[]string{"admin", "device", "revoke", "--data", data, "--device", "nope"}, "no device"},
		{[]string{"admin", "enrol-code", "--data", data, "--user", "nobody"}, "no user"},
		{[]string{"admin", "user", "list", "--data", data, "--org", "globex"}, "no organisation"},
	} {
		if msg := cliErr(t, c.args...); !strings.Contains(msg, c.want) {
			t.Errorf("%v: %q, want %q", c.args, msg, c.want)
		}
	}
	out := mustCLI(t, "admin", "--help")
	if !strings.Contains(out, "enrol-code") {
		t.Fatalf("help: %s", out)
	}
	out = mustCLI(t, "admin", "user", "add", "--help")
	if !strings.Contains(out, "--password-file") {
		t.Fatalf("user add help: %s", out)
	}
}
