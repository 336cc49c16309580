package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fieldsync/fieldsync/client"
)

const pinUsage = `Usage: fieldsync pin change [--dir DIR] [--pin OLD] [--new-pin NEW]

Change the PIN that unlocks the device's encrypted data. Only the wrapped
data key in DIR/keys.json changes: nothing else is re-encrypted, and the
device may be in use meanwhile. The old PIN is checked like any other
try: after 3 wrong PINs in a row each further try must wait (30 s, then
doubling).

The PINs may come from the environment instead of the command line,
where other users of the machine cannot see them: FIELDSYNC_PIN (the
current PIN) and FIELDSYNC_NEW_PIN.

A device is encrypted the first time any device command opens it with a
PIN (--pin or FIELDSYNC_PIN); see docs/security.md.
`

// runPin runs `fieldsync pin`.
func runPin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("pin", pinUsage)
	dir := dirFlag(cmd)
	oldPIN := cmd.String("pin", "", "the current `PIN` (env FIELDSYNC_PIN)")
	newPIN := cmd.String("new-pin", "", "the new `PIN` (env FIELDSYNC_NEW_PIN)")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "change" {
		return cmd.usageError("the one subcommand is: pin change")
	}
	if *dir == "" {
		return errors.New("name the device directory with --dir or FIELDSYNC_DIR")
	}
	old := *oldPIN
	if old == "" {
		old = os.Getenv("FIELDSYNC_PIN")
	}
	next := *newPIN
	if next == "" {
		next = os.Getenv("FIELDSYNC_NEW_PIN")
	}
	if old == "" || next == "" {
		return cmd.usageError("give the current PIN (--pin or FIELDSYNC_PIN) and the new one (--new-pin or FIELDSYNC_NEW_PIN)")
	}
	if err := client.ChangePIN(ctx, client.Config{Dir: *dir, PIN: old}, next); err != nil {
		return fmt.Errorf("pin change: %w", err)
	}
	fmt.Fprintf(stdout, "the PIN of the device in %s is changed: use the new one from now on\n", *dir)
	return nil
}
