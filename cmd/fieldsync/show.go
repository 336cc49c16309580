package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

const showUsage = `Usage: fieldsync show [--dir DIR] [--type TYPE] --id ID [--json]

Show one record as this device sees it: the server-confirmed state with
the device's own pending changes on top, its state (ready to send, sent,
needs review, error), how many of its ops are still in the queue, and its
conflicts: the open ones, with the value the server kept and each value
that clashed with it (who, when) and the command that settles them; the
settled ones, with how (choice, value, note) and by whom; and the
settlements made on this device that are not sent yet.

Example:
  fieldsync show --id WO-1001
`

// runShow runs `fieldsync show`.
func runShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("show", showUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
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
	eng, err := openDevice(ctx, *dir, false, client.Config{PIN: *pin})
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
		fmt.Fprintf(stdout, "needs review: %s (changed on both sides, nothing overwritten)\n", strings.Join(v.Review, ", "))
	}
	fmt.Fprintln(stdout, "fields:")
	printFields(stdout, v.Fields, v.Review)
	printAttachments(stdout, v.Attachments)
	pending, err := pendingSettles(ctx, eng, v)
	if err != nil {
		return fmt.Errorf("show: %w", err)
	}
	printDeviceConflicts(stdout, v, pending, eng.DeviceID(), *dir)
	return nil
}

// printDeviceConflicts writes a record's conflicts as the device knows
// them: open, settled on this device and not sent yet, settled.
func printDeviceConflicts(w io.Writer, v client.View, pending []client.OpInfo, self, dir string) {
	if len(v.Conflicts) == 0 && len(pending) == 0 && len(v.Settled) == 0 {
		return
	}
	fmt.Fprintln(w, "conflicts:")
	for _, c := range v.Conflicts {
		fmt.Fprintf(w, "  %s: open, needs review (conflict %s, opened %s)\n", c.Field, c.ID, fmtTime(c.OpenedAt))
		typ := ""
		if v.Type != defaultType {
			typ = " --type " + v.Type
		}
		printConflict(w, "    ", c, self, fmt.Sprintf("fieldsync settle --dir %s%s --id %s --field %s --keep-server | --take-device | --value VALUE [--note TEXT]",
			shellQuote(dir), typ, label(v), c.Field))
	}
	for _, o := range pending {
		fmt.Fprintf(w, "  settled on this device, in the queue until the next sync (op %s): %s\n", o.ID, describeSettle(o.Fields))
	}
	for _, c := range v.Settled {
		printSettled(w, "  ", c, self)
	}
}

// printAttachments lists a record's attachments with their state: only on
// this device, uploading to the server, or ready there.
func printAttachments(w io.Writer, atts []fieldsync.Attachment) {
	if len(atts) == 0 {
		return
	}
	fmt.Fprintln(w, "attachments:")
	for _, a := range atts {
		name := a.Name
		if name == "" {
			name = a.ID
		}
		fmt.Fprintf(w, "  %-9s %-28s %9s  %s  sha256 %s…\n", a.Role, name, client.FormatBytes(a.Size), attachmentState(a.Status), a.SHA256[:min(12, len(a.SHA256))])
	}
}

func attachmentState(s string) string {
	switch s {
	case client.AttachmentOnDevice:
		return "only on this device"
	case fieldsync.AttachmentUploading:
		return "uploading"
	case fieldsync.AttachmentReady:
		return "on the server"
	case client.AttachmentFailed:
		return "failed: see fieldsync status"
	case client.AttachmentRejected:
		return "refused by the server"
	}
	return s
}
