package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

const settleUsage = `Usage: fieldsync settle [--dir DIR] [--type TYPE] --id ID --field FIELD
                       (--keep-server | --take-device [--op OPID] | --value VALUE) [--note TEXT]

Settle a conflict on this device: a field that was changed on both sides
and awaits a person (fieldsync status lists them, with this command). The
choice is one of:

  --keep-server        the value the server kept stays
  --take-device        the clashing value wins (the latest one, or the one
                       that op OPID wrote, with --op)
  --value VALUE        a new value, e.g. "waiting for parts"

with an optional --note saying why. The settlement is saved on the device
at once and queued like any change, so it works offline; the next sync
sends it. A conflict is settled once: if someone settled it first, the
server refuses this one (already_settled) and fieldsync status says who
did. --conflict ID names the conflict when the field's open one is not
meant.

Example:
  fieldsync settle --id WO-1001 --field status --value "waiting for parts" --note "completed, but parts required"
`

// runSettle runs `fieldsync settle`.
func runSettle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("settle", settleUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	typ := typeFlag(cmd)
	id := cmd.String("id", "", "the record: `ID`, number (WO-1001) or short id")
	field := cmd.String("field", "", "the `FIELD` in conflict, e.g. status")
	choice := settleFlags(cmd)
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
	if *field == "" {
		return cmd.usageError("name the field in conflict with --field")
	}
	if err := choice.check(cmd); err != nil {
		return err
	}
	eng, v, err := openRecord(ctx, *dir, *pin, *typ, *id, "settle")
	if err != nil {
		return err
	}
	defer eng.Close()
	c, err := deviceConflict(ctx, eng, v, *field, choice.conflict, *dir)
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	st, err := choice.settle(*typ, *field, c)
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	op, err := eng.Settle(ctx, *typ, v.ID, *field, st)
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	self := eng.DeviceID()
	what := fmt.Sprintf("settlement of %s %s: %s", label(v), *field, fmtJSON(decided(c, st)))
	switch st.Choice {
	case fieldsync.ChoiceKeepServer:
		what += " (the server's value stays)"
	case fieldsync.ChoiceTakeDevice:
		what += " (the clashing value)"
	default:
		what += " (a new value)"
	}
	if st.Note != "" {
		what += fmt.Sprintf(", note %q", st.Note)
	}
	printSaved(stdout, what, op)
	fmt.Fprintf(stdout, "it settles conflict %s:\n", c.ID)
	printConflict(stdout, "  ", c, self, "")
	return nil
}

// deviceConflict finds the open conflict to settle on field of v: the one
// named by ref, else the field's open one. When there is none it says
// why: settled on the server (by whom), settled on this device and not
// sent yet, or not known on this device.
func deviceConflict(ctx context.Context, eng *client.Engine, v client.View, field, ref, dir string) (fieldsync.Conflict, error) {
	var open []fieldsync.Conflict
	for _, c := range v.Conflicts {
		if c.Field == field {
			open = append(open, c)
		}
	}
	if ref != "" {
		ids := make([]string, 0, len(open))
		for _, c := range open {
			ids = append(ids, c.ID)
		}
		if id, ok := matchID(ref, ids); ok {
			for _, c := range open {
				if c.ID == id {
					return c, nil
				}
			}
		}
	} else if len(open) > 0 {
		return open[len(open)-1], nil
	}
	// Nothing open to settle: say why.
	pending, err := pendingSettles(ctx, eng, v)
	if err != nil {
		return fieldsync.Conflict{}, err
	}
	for _, o := range pending {
		var st fieldsync.Settle
		if json.Unmarshal(o.Fields[field], &st) != nil {
			continue
		}
		if _, ok := matchID(ref, []string{st.Conflict}); ref == "" || ok {
			return fieldsync.Conflict{}, fmt.Errorf("%s %s is already settled on this device by op %s (%s), not sent yet: the next sync sends it",
				label(v), field, o.ID, describeSettle(o.Fields))
		}
	}
	for i := len(v.Settled) - 1; i >= 0; i-- {
		c := v.Settled[i]
		if c.Field != field {
			continue
		}
		if _, ok := matchID(ref, []string{c.ID}); ref == "" || ok {
			return fieldsync.Conflict{}, fmt.Errorf("%s %s has no open conflict: conflict %s was already settled: %s",
				label(v), field, c.ID, settlementText(c.Settled, eng.DeviceID()))
		}
	}
	if ref != "" {
		return fieldsync.Conflict{}, fmt.Errorf("%s has no open conflict %s on %s; see fieldsync show --dir %s --id %s",
			label(v), ref, field, shellQuote(dir), label(v))
	}
	if slices.Contains(v.Review, field) {
		return fieldsync.Conflict{}, fmt.Errorf("%s %s needs review, but this device has not pulled the conflict yet: run fieldsync sync --dir %s, then settle it",
			label(v), field, shellQuote(dir))
	}
	return fieldsync.Conflict{}, fmt.Errorf("%s has no open conflict on %s: nothing to settle; fieldsync status --dir %s lists what needs review",
		label(v), field, shellQuote(dir))
}

// pendingSettles lists the settle ops of v's record not yet delivered.
func pendingSettles(ctx context.Context, eng *client.Engine, v client.View) ([]client.OpInfo, error) {
	var out []client.OpInfo
	for _, status := range []string{client.OpQueued, client.OpSending} {
		ops, err := eng.Ops(ctx, status, 1<<30)
		if err != nil {
			return nil, err
		}
		for _, o := range ops {
			if o.Kind == string(fieldsync.KindSettle) && o.Type == v.Type && o.EntityID == v.ID {
				out = append(out, o)
			}
		}
	}
	return out, nil
}
