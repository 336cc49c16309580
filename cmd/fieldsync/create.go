package main

import (
	"context"
	"fmt"
	"io"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

const createUsage = `Usage: fieldsync create [--dir DIR] [--type TYPE] --set NAME=VALUE [--set NAME=VALUE...]

Save a new record on this device. It is on disk when the command returns,
with or without a network, and goes to the server at the next sync. Prints
the new record's id and the op that carries it.

A value that parses as JSON is taken as JSON (--set amount=3, --set ok=true),
anything else as text (--set status="in progress"); a text field of the
bundled schema always takes text.

Example:
  fieldsync create --set title="Boiler service" --set status=new \
      --set address="14 Rue des Tanneurs, Lyon"
`

// runCreate runs `fieldsync create`.
func runCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("create", createUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	typ := typeFlag(cmd)
	var set setFlags
	cmd.Var(&set, "set", "a field `NAME=VALUE`; repeat for each field")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	if len(set.names) == 0 {
		return cmd.usageError("name the new record's fields with --set name=value")
	}
	eng, err := openDevice(ctx, *dir, true, client.Config{PIN: *pin})
	if err != nil {
		return err
	}
	defer eng.Close()
	op, err := eng.Save(ctx, client.Change{Kind: fieldsync.KindCreate, Type: *typ, Fields: set.fields(*typ)})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	fmt.Fprintf(stdout, "created %s %s\n", *typ, op.EntityID)
	printSaved(stdout, "create of "+*typ+" "+shortID(op.EntityID), op)
	return nil
}
