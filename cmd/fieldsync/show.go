package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/fieldsync/fieldsync/client"
)

const showUsage = `Usage: fieldsync show [--dir DIR] [--type TYPE] --id ID [--json]

Show one record as this device sees it: the server-confirmed state with
the device's own pending changes on top, its state (ready to send, sent,
needs review, error), how many of its ops are still in the queue, and the
fields that need a person's review.

Example:
  fieldsync show --id WO-1001
`

// runShow runs `fieldsync show`.
func runShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("show", showUsage)
	dir := dirFlag(cmd)
	typ := typeFlag(cmd)
	id := cmd.String("id", "", "the record: `ID`, number (WO-1001) or short id")
	asJSON := cmd.Bool("json", false, "print JSON")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if *id == "" && len(pos) == 1 {
		*id, pos = pos[0], nil
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	if *id == "" {
		return cmd.usageError("name the record with --id")
	}
	eng, err := openDevice(ctx, *dir, false, client.Config{})
	if err != nil {
		return err
	}
	defer eng.Close()
	v, err := resolveRecord(ctx, eng, *typ, *id, *dir, true)
	if err != nil {
		return fmt.Errorf("show: %w", err)
	}
	if *asJSON {
		return writeJSON(stdout, toViewJSON(v))
	}
	title := fmtValue(v.Fields["title"])
	if _, ok := v.Fields["title"]; !ok {
		title = ""
	}
	fmt.Fprintf(stdout, "%s  %s\n", label(v), title)
	fmt.Fprintf(stdout, "  %s %s\n", v.Type, v.ID)
	state := v.State
	if v.Deleted {
		state = "deleted, " + state
	}
	fmt.Fprintf(stdout, "state: %s\n", state)
	if v.OnlyOnDevice {
		fmt.Fprintln(stdout, "server: not there yet (only on this device)")
	} else {
		fmt.Fprintf(stdout, "server: version %d confirmed\n", v.Version)
	}
	fmt.Fprintf(stdout, "pending: %s in the queue\n", plural(v.Pending, "op", "ops"))
	if len(v.Review) > 0 {
		fmt.Fprintf(stdout, "needs review: %s (changed on both sides; see fieldsync status)\n", strings.Join(v.Review, ", "))
	}
	fmt.Fprintln(stdout, "fields:")
	printFields(stdout, v.Fields, v.Review)
	return nil
}
