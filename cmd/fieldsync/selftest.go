package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/fieldsync/fieldsync/selftest"
)

const selftestUsage = `Usage: fieldsync selftest --server URL [--json] [--token TOKEN]

Check a running server against the pre-launch checklist, as a device and
the office would use it: /healthz and /v1/info answer; this build's
protocol version is accepted; the schema is readable; a create, update
and append go up and come back identical; a repeated push is answered
duplicate and changes nothing; a cursor of another server history is
refused; an office edit clashing with a device edit on a manual field
becomes a conflict that can be settled; a photo uploads (tus) and
downloads back identical and its record shows it ready. It prints the
round-trip latency and a push throughput figure, one line per check
(✓ passed, ✗ failed, – skipped, with the reason), and exits non-zero when
any check failed.

The records it makes have titles starting "selftest " and are deleted at
the end. Run it against a test organisation once the server has
authentication; --token is sent as "Authorization: Bearer TOKEN" on every
request. docs/selftest.md describes each check.

Example:
  fieldsync selftest --server https://sync.example.com
`

// runSelftest runs `fieldsync selftest`.
func runSelftest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("selftest", selftestUsage)
	serverURL := cmd.String("server", envOr("FIELDSYNC_SERVER", ""), serverURLUsage)
	asJSON := cmd.Bool("json", false, "print the report as one JSON object")
	token := cmd.String("token", envOr("FIELDSYNC_TOKEN", ""), "bearer `TOKEN` sent on every request (env FIELDSYNC_TOKEN)")
	timeout := cmd.Duration("timeout", 5*time.Minute, "give up after `DURATION`")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	if *serverURL == "" {
		return cmd.usageError("name the server with --server URL")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := selftest.Run(ctx, selftest.Config{ServerURL: *serverURL, Token: *token})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		if err := rep.WriteText(stdout); err != nil {
			return err
		}
		if rep.RoundTripMS > 0 {
			fmt.Fprintf(stdout, "round trip %.2f ms (median)\n", rep.RoundTripMS)
		}
		if rep.PushOpsPerS > 0 {
			fmt.Fprintf(stdout, "push %.0f ops/s\n", rep.PushOpsPerS)
		}
	}
	if !rep.OK() {
		failed := 0
		for _, c := range rep.Checks {
			if c.Outcome == selftest.Fail {
				failed++
			}
		}
		return fmt.Errorf("selftest: %d of %d checks failed", failed, len(rep.Checks))
	}
	return nil
}
