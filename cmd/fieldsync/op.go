package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

const opUsage = `Usage: fieldsync op [--dir DIR] [--json] OPID

Show one op of the device's outbox and its whole trail: when it was
created, every attempt to send it (time, outcome, error code, the server's
message), and how it ended: delivered, needs review, rejected or
discarded. A delivered op whose values lost to a field's policy (say, an
address the office changed too: the office's wins) lists each value that
lost; so does one whose values replaced someone else's. OPID is the op id
that create, update, settle and ops print.
`

// runOp runs `fieldsync op`.
func runOp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("op", opUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	asJSON := cmd.Bool("json", false, "print JSON")
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
	o, trail, err := eng.Op(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("op: %w", err)
	}
	nums := numbers(ctx, eng, []client.OpInfo{o})
	if *asJSON {
		out := toOpJSON(o, nums[o.Type+"/"+o.EntityID])
		for _, a := range trail {
			out.Trail = append(out.Trail, attemptJSON{At: a.At, Outcome: a.Outcome, Code: a.Code, Message: a.Message})
		}
		return writeJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "op %s (seq %d)\n", o.ID, o.Seq)
	fmt.Fprintf(stdout, "  %s of %s %s (%s)\n", o.Kind, o.Type, opRecord(o, nums), o.EntityID)
	if o.Kind == string(fieldsync.KindSettle) {
		fmt.Fprintf(stdout, "  settles %s\n", describeSettle(o.Fields))
	} else if len(o.Fields) > 0 {
		fmt.Fprintf(stdout, "  fields: %s\n", fmtFields(o.Fields, 0))
	}
	fmt.Fprintf(stdout, "status: %s", opStatusLabel(o.Status))
	switch o.Status {
	case client.OpDelivered, client.OpConflict:
		fmt.Fprintf(stdout, " (server version %d)", o.Version)
	}
	fmt.Fprintf(stdout, ", sent %s\n", plural(o.Attempts, "time", "times"))
	if o.Message != "" && o.Status != client.OpDelivered {
		fmt.Fprintf(stdout, "last word: %s: %s\n", o.Code, o.Message)
	}
	if len(o.Overridden) > 0 {
		fmt.Fprintln(stdout, "overridden (settled by the field's policy; nothing was dropped silently):")
		for _, ov := range o.Overridden {
			fmt.Fprintf(stdout, "  %s\n", overriddenText(ov, eng.DeviceID(), o.Fields[ov.Field]))
		}
	}
	switch o.Status {
	case client.OpError:
		fmt.Fprintf(stdout, "the server refused it and will not take it as it is: save a corrected change,\n"+
			"then drop this one with: fieldsync discard --dir %s %s --yes\n", shellQuote(*dir), o.ID)
	case client.OpConflict:
		fmt.Fprintln(stdout, "nothing was overwritten: both values are kept and the field is marked for review;\n"+
			"fieldsync status shows the conflict and the command that settles it")
	}
	if o.Status == client.OpError && (o.Code == string(fieldsync.EAlreadySettled) || o.Code == string(fieldsync.ENoConflict)) {
		fmt.Fprintf(stdout, "the conflict was settled before this settlement arrived; fieldsync show --dir %s --id %s says how\n",
			shellQuote(*dir), opRecord(o, nums))
	}
	fmt.Fprintln(stdout, "trail:")
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, a := range trail {
		if detail := strings.TrimSpace(a.Code + "  " + a.Message); detail != "" {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", fmtTime(a.At), a.Outcome, detail)
		} else {
			fmt.Fprintf(tw, "  %s\t%s\n", fmtTime(a.At), a.Outcome)
		}
	}
	tw.Flush()
	if o.Status == client.OpQueued && o.Attempts > 0 {
		fmt.Fprintf(stdout, "still queued: it will be sent again at the next sync (queued %s)\n", fmtAge(time.Now(), o.LocalTime))
	}
	return nil
}
