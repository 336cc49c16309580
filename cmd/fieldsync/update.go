package main

import (
	"context"
	"fmt"
	"io"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

const updateUsage = `Usage: fieldsync update [--dir DIR] [--type TYPE] --id ID --set NAME=VALUE [--set NAME=VALUE...]

Change some fields of a record on this device. Only the fields named are
sent; the server merges them with what changed meanwhile. A field that
the office changed too goes to the field's policy: on a work order the
office's address and contact win (yours is kept in the op's history as
overridden: see fieldsync op), visit times are the device's, and a status
or description clash waits for a person, with both values kept (fieldsync
status shows it, fieldsync settle settles it).

--id takes the record's id, its server number (WO-1001), or the short id
that fieldsync list shows. Values follow the rule of fieldsync create;
--set NAME=null clears an optional field.

Example:
  fieldsync update --id WO-1001 --set status="in progress"
`

// runUpdate runs `fieldsync update`.
func runUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("update", updateUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	typ := typeFlag(cmd)
	id := cmd.String("id", "", "the record: `ID`, number (WO-1001) or short id")
	var set setFlags
	cmd.Var(&set, "set", "a field `NAME=VALUE`; repeat for each field")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	if *id == "" {
		return cmd.usageError("name the record with --id")
	}
	if len(set.names) == 0 {
		return cmd.usageError("name the fields to change with --set name=value")
	}
	eng, v, err := openRecord(ctx, *dir, *pin, *typ, *id, "update")
	if err != nil {
		return err
	}
	defer eng.Close()
	op, err := eng.Save(ctx, client.Change{Kind: fieldsync.KindUpdate, Type: *typ, EntityID: v.ID, Fields: set.fields(*typ)})
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	printSaved(stdout, "update of "+label(v)+": "+fmtFields(op.Fields, 80), op)
	return nil
}
