package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSelftestCommand runs `fieldsync selftest` against `fieldsync
// server`, both in-process: every check passes, in text and in JSON.
func TestSelftestCommand(t *testing.T) {
	clearEnv(t)
	url, _ := startServer(t)
	out := mustCLI(t, "selftest", "--server", url)
	contains(t, "selftest output", out, "✓ GET /healthz answers", "✓ attachment", "all checks passed", "round trip", "ops/s")
	if strings.Contains(out, "✗") {
		t.Errorf("a check failed:\n%s", out)
	}

	out = mustCLI(t, "selftest", "--server", url, "--json")
	var rep struct {
		Checks []struct{ Name, Outcome string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if len(rep.Checks) != 16 {
		t.Errorf("%d checks in the JSON report, want 16", len(rep.Checks))
	}
	for _, c := range rep.Checks {
		want := "pass"
		if c.Name == "auth" {
			want = "skip" // --no-auth
		}
		if c.Outcome != want {
			t.Errorf("check %s: %s, want %s", c.Name, c.Outcome, want)
		}
	}
}

func TestSelftestCommandFails(t *testing.T) {
	clearEnv(t)
	msg := cliErr(t, "selftest", "--server", "http://"+closedPort(t))
	if !strings.Contains(msg, "checks failed") {
		t.Errorf("error %q does not say checks failed", msg)
	}
	if msg := cliErr(t, "selftest"); !strings.Contains(msg, "--server") {
		t.Errorf("selftest without a server: %q", msg)
	}
}

// TestSelftestOperator runs the selftest against `fieldsync server
// --data` with authentication, with an operator token made by `fieldsync
// admin operator-token`: every check passes in a test organisation that
// is gone afterwards. Without a token it says which flag is needed.
func TestSelftestOperator(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("a long admin password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, "admin", "init", "--data", data, "--org", "acme", "--admin", "adam", "--password-file", pw)
	out, errOut, err := cli(t, "admin", "operator-token", "--data", data, "--name", "ci")
	if err != nil {
		t.Fatalf("operator-token: %v %s", err, errOut)
	}
	token := strings.TrimSpace(out)
	if !regexp.MustCompile(`^fso_[A-Za-z0-9_-]{43}$`).MatchString(token) || !strings.Contains(errOut, "shown this once") {
		t.Fatalf("operator-token printed %q, %q", out, errOut)
	}
	if msg := cliErr(t, "admin", "operator-token", "--data", data, "--name", "ci"); !strings.Contains(msg, "exists already") {
		t.Errorf("a second token of the same name: %q", msg)
	}
	b := startCommand(t, "server", "--addr", "127.0.0.1:0", "--data", data, "--log-level", "warn")
	url := b.waitOutput(listeningRE)[1]

	if msg := cliErr(t, "selftest", "--server", url); !strings.Contains(msg, "--operator-token") || !strings.Contains(msg, "admin operator-token") {
		t.Errorf("selftest without a token against an authenticated server: %q", msg)
	}
	out = mustCLI(t, "selftest", "--server", url, "--operator-token", token)
	contains(t, "selftest output", out, "✓ test organisation made", "✓ requests without a token", "✓ attachment", "✓ test organisation deleted", "all checks passed")
	if strings.Contains(out, "✗") || strings.Contains(out, "\n– ") {
		t.Errorf("a check failed or was skipped:\n%s", out)
	}
	out = mustCLI(t, "admin", "org", "list", "--data", data)
	if !regexp.MustCompile(`acme\s+real`).MatchString(out) || strings.Contains(out, "selftest-") {
		t.Errorf("org list after the selftest:\n%s", out)
	}
	if left, _ := filepath.Glob(filepath.Join(data, "orgs", "selftest-*")); len(left) > 0 {
		t.Errorf("files left: %v", left)
	}
	// Still one organisation for the admin commands that default to it.
	mustCLI(t, "admin", "user", "list", "--data", data)

	out = mustCLI(t, "admin", "operator-token", "--data", data, "--list")
	if !regexp.MustCompile(`ci\s+\S+`).MatchString(out) {
		t.Errorf("operator-token --list:\n%s", out)
	}
	mustCLI(t, "admin", "operator-token", "--data", data, "--revoke", "ci")
	out, _, err = cli(t, "selftest", "--server", url, "--operator-token", token)
	if err == nil || !strings.Contains(out, "token_revoked") {
		t.Errorf("selftest with a revoked operator token: %v\n%s", err, out)
	}
	if msg := cliErr(t, "selftest", "--server", url, "--operator-token", token, "--worker", "ana"); !strings.Contains(msg, "goes alone") {
		t.Errorf("--operator-token with --worker: %q", msg)
	}
}
