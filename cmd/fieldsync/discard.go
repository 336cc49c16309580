package main

import (
	"context"
	"fmt"
	"io"

	"github.com/fieldsync/fieldsync/client"
)

const discardUsage = `Usage: fieldsync discard [--dir DIR] OPID --yes

Give up an op that the server rejected (status error): it stays in the
outbox's history as discarded and is never sent. Only rejected ops can be
discarded: an op still queued may yet be delivered. Because this drops a
change for good, it asks for --yes.
`

// runDiscard runs `fieldsync discard`.
func runDiscard(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("discard", discardUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	yes := cmd.Bool("yes", false, "confirm: drop the op for good")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cmd.usageError("name one op id")
	}
	eng, err := openDevice(ctx, *dir, false, client.Config{PIN: *pin})
	if err != nil {
		return err
	}
	defer eng.Close()
	o, _, err := eng.Op(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("discard: %w", err)
	}
	what := fmt.Sprintf("%s of %s %s", o.Kind, o.Type, opRecord(o, numbers(ctx, eng, []client.OpInfo{o})))
	if o.Status != client.OpError {
		return fmt.Errorf("discard: op %s (%s) is %s, not rejected: only an op the server refused can be discarded",
			o.ID, what, opStatusLabel(o.Status))
	}
	if !*yes {
		fmt.Fprintf(stdout, "op %s: %s, %s\n  refused by the server: %s: %s\n", o.ID, what, fmtFields(o.Fields, 60), o.Code, o.Message)
		return fmt.Errorf("discard: this drops the change for good and it will never be sent; run again with --yes to confirm")
	}
	if err := eng.Discard(ctx, o.ID); err != nil {
		return fmt.Errorf("discard: %w", err)
	}
	fmt.Fprintf(stdout, "discarded op %s (%s): it will not be sent\n", o.ID, what)
	return nil
}
