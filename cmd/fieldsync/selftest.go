package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fieldsync/fieldsync/selftest"
)

const selftestUsage = `Usage: fieldsync selftest --server URL [--json] [--operator-token TOKEN | --office-token TOKEN --worker USER | --token TOKEN]

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

Against a server with authentication, give the operator token made on
the server's host ("fieldsync admin operator-token"): the selftest makes
a temporary test organisation, enrols its devices with one-time codes,
acts as the office with the organisation's dispatcher, and deletes the
organisation with everything in it at the end, also when a check fails
or it is interrupted (the server removes it by itself when it expires,
1 h later, if even that fails). Without operator rights, give an office
token (--office-token, a dispatcher's session of a test organisation)
and --worker, one of its field workers: the selftest enrols devices for
them and deletes the records it made. A server without authentication
(--no-auth) needs neither; --token is one token sent on every request,
for a server behind a gateway that asks for one.

The records it makes have titles starting "selftest ". docs/selftest.md
describes each check.

Example:
  fieldsync selftest --server https://sync.example.com --operator-token "$(cat operator.token)"
`

// runSelftest runs `fieldsync selftest`.
func runSelftest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("selftest", selftestUsage)
	serverURL := cmd.String("server", envOr("FIELDSYNC_SERVER", ""), serverURLUsage)
	asJSON := cmd.Bool("json", false, "print the report as one JSON object")
	token := cmd.String("token", envOr("FIELDSYNC_TOKEN", ""), "one bearer `TOKEN` sent on every request (env FIELDSYNC_TOKEN)")
	opToken := cmd.String("operator-token", envOr("FIELDSYNC_OPERATOR_TOKEN", ""), "the operator `TOKEN`: work in a test organisation made and deleted for the run (env FIELDSYNC_OPERATOR_TOKEN)")
	officeToken := cmd.String("office-token", envOr("FIELDSYNC_OFFICE_TOKEN", ""), "a dispatcher's session `TOKEN` of an existing test organisation (env FIELDSYNC_OFFICE_TOKEN)")
	worker := cmd.String("worker", "", "with --office-token: the field worker `USER` the selftest's devices are enrolled for")
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
	switch {
	case *opToken != "" && (*officeToken != "" || *worker != "" || *token != ""):
		return cmd.usageError("--operator-token goes alone: not with --office-token, --worker or --token")
	case (*officeToken == "") != (*worker == ""):
		return cmd.usageError("--office-token and --worker go together")
	case *officeToken != "" && *token != "":
		return cmd.usageError("--office-token with --worker, or --token, not both")
	}
	rep, err := selftest.Run(ctx, selftest.Config{ServerURL: *serverURL, Token: *token, OperatorToken: *opToken, OfficeToken: *officeToken, Worker: *worker})
	if errors.Is(err, selftest.ErrAuthRequired) && *token == "" {
		return fmt.Errorf("selftest: %s requires a token: give --operator-token (made on the server's host with: fieldsync admin operator-token), "+
			"or --office-token and --worker for an existing test organisation", *serverURL)
	}
	if errors.Is(err, selftest.ErrAuthRequired) {
		return fmt.Errorf("selftest: %s refused --token: against fieldsync's own authentication give --operator-token, or --office-token and --worker", *serverURL)
	}
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
