package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/fieldsync/fieldsync/client"
)

const opsUsage = `Usage: fieldsync ops [--dir DIR] [--status STATUS] [--limit N] [--json]

List the device's outbox in device order: every user action as one op,
with its status (queued, sending, delivered, conflict = needs review,
error = rejected by the server, discarded), how many times it was sent,
and the server's last word on it. fieldsync op OPID shows one op's trail.
`

// runOps runs `fieldsync ops`.
func runOps(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("ops", opsUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	status := cmd.String("status", "", "only ops in `STATUS`: queued, sending, delivered, conflict, error, discarded")
	limit := cmd.Int("limit", 1000, "list at most `N` ops")
	asJSON := cmd.Bool("json", false, "print JSON")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	if *status == "needs review" {
		*status = client.OpConflict
	}
	known := []string{client.OpQueued, client.OpSending, client.OpDelivered, client.OpConflict, client.OpError, client.OpDiscarded}
	if *status != "" && !slices.Contains(known, *status) {
		return cmd.usageError(fmt.Sprintf("unknown status %q: want one of %v", *status, known))
	}
	if *limit < 1 {
		return cmd.usageError("--limit must be 1 or more")
	}
	eng, err := openDevice(ctx, *dir, false, client.Config{PIN: *pin})
	if err != nil {
		return err
	}
	defer eng.Close()
	ops, err := eng.Ops(ctx, *status, *limit)
	if err != nil {
		return fmt.Errorf("ops: %w", err)
	}
	nums := numbers(ctx, eng, ops)
	if *asJSON {
		out := make([]opJSON, 0, len(ops))
		for _, o := range ops {
			out = append(out, toOpJSON(o, nums[o.Type+"/"+o.EntityID]))
		}
		return writeJSON(stdout, out)
	}
	if len(ops) == 0 {
		if *status != "" {
			fmt.Fprintf(stdout, "no %s ops on this device\n", *status)
		} else {
			fmt.Fprintln(stdout, "no ops on this device yet")
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tOP\tKIND\tRECORD\tSTATUS\tSENT\tDETAIL")
	for _, o := range ops {
		detail := opDetail(o, 50)
		if len(o.Overridden) > 0 && o.Message != "" {
			detail = "overridden: " + o.Message
		}
		if o.Message != "" && o.Status != client.OpDelivered {
			detail = o.Message
			if o.Code != "" {
				detail = o.Code + ": " + o.Message
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", o.Seq, o.ID, o.Kind, opRecord(o, nums), opStatusLabel(o.Status),
			o.Attempts, truncate(detail, 70))
	}
	return tw.Flush()
}
