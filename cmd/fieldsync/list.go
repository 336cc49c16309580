package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/fieldsync/fieldsync/client"
)

const listUsage = `Usage: fieldsync list [--dir DIR] [--type TYPE] [--json]

List the records on this device: the server's number (or a short id while
the server has not numbered it yet), title, status, and the record's sync
state (ready to send, sent, needs review, error). Any of the first column
works as --id in the other commands.
`

// runList runs `fieldsync list`.
func runList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("list", listUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	typ := typeFlag(cmd)
	asJSON := cmd.Bool("json", false, "print JSON")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	eng, err := openDevice(ctx, *dir, false, client.Config{PIN: *pin})
	if err != nil {
		return err
	}
	defer eng.Close()
	views, err := eng.List(ctx, *typ)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if *asJSON {
		out := make([]viewJSON, 0, len(views))
		for _, v := range views {
			out = append(out, toViewJSON(v))
		}
		return writeJSON(stdout, out)
	}
	if len(views) == 0 {
		fmt.Fprintf(stdout, "no %s records on this device yet (fieldsync sync fetches the server's)\n", *typ)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTITLE\tSTATUS\tSTATE")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", label(v), truncate(field(v, "title"), 40), field(v, "status"), v.State)
	}
	return tw.Flush()
}

// field shows one field of a view, "-" when it has none.
func field(v client.View, name string) string {
	raw, ok := v.Fields[name]
	if !ok {
		return "-"
	}
	return fmtValue(raw)
}
