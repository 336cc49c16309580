package main

import (
	"encoding/json"
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
	if len(rep.Checks) != 12 {
		t.Errorf("%d checks in the JSON report, want 12", len(rep.Checks))
	}
	for _, c := range rep.Checks {
		if c.Outcome != "pass" {
			t.Errorf("check %s: %s", c.Name, c.Outcome)
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
