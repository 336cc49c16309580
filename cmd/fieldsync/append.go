package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

const appendUsage = `Usage: fieldsync append [--dir DIR] [--type TYPE] --id ID --field NAME --value VALUE

Add one item to a list field of a record (a comment, a reading, a checklist
tick). Items are only ever added: both sides' items are kept, so this never
conflicts. The value follows the rule of fieldsync create: JSON if it
parses as JSON, text otherwise (text always for a list of text).

Example:
  fieldsync append --id WO-1001 --field comments --value "Pressure ok, 1.4 bar"
  fieldsync append --id WO-1001 --field readings --value '{"meter":"boiler","bar":1.4}'
`

// runAppend runs `fieldsync append`.
func runAppend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("append", appendUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	typ := typeFlag(cmd)
	id := cmd.String("id", "", "the record: `ID`, number (WO-1001) or short id")
	field := cmd.String("field", "", "the list field, e.g. comments")
	value := cmd.String("value", "", "the item to add")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	switch {
	case *id == "":
		return cmd.usageError("name the record with --id")
	case *field == "":
		return cmd.usageError("name the list field with --field, e.g. --field comments")
	case *value == "":
		return cmd.usageError("give the item with --value")
	}
	eng, v, err := openRecord(ctx, *dir, *pin, *typ, *id, "append")
	if err != nil {
		return err
	}
	defer eng.Close()
	item := fieldValue(*typ, *field, *value)
	op, err := eng.Save(ctx, client.Change{Kind: fieldsync.KindAppend, Type: *typ, EntityID: v.ID,
		Fields: map[string]json.RawMessage{*field: item}})
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	printSaved(stdout, fmt.Sprintf("%s added to %s of %s", truncate(fmtValue(item), 60), *field, label(v)), op)
	return nil
}
