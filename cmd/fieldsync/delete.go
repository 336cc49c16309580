package main

import (
	"context"
	"fmt"
	"io"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

const deleteUsage = `Usage: fieldsync delete [--dir DIR] [--type TYPE] --id ID

Delete a record on this device; the deletion goes to the server at the
next sync. The server refuses to delete a record that the office changed
since this device last saw it: that comes back as needing review.

Example:
  fieldsync delete --id WO-1003
`

// runDelete runs `fieldsync delete`.
func runDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("delete", deleteUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	typ := typeFlag(cmd)
	id := cmd.String("id", "", "the record: `ID`, number (WO-1001) or short id")
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
	eng, v, err := openRecord(ctx, *dir, *pin, *typ, *id, "delete")
	if err != nil {
		return err
	}
	defer eng.Close()
	op, err := eng.Save(ctx, client.Change{Kind: fieldsync.KindDelete, Type: *typ, EntityID: v.ID})
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	printSaved(stdout, "delete of "+label(v), op)
	return nil
}
