package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/media"
)

const attachUsage = `Usage: fieldsync attach [--dir DIR] [--type TYPE] --id ID [--role photo|scan] [--name NAME] FILE
       fieldsync attach [--dir DIR] [--type TYPE] --id ID --role signature FILE
       fieldsync attach [--dir DIR] [--type TYPE] --id ID --strokes FILE.json

Attach a photo, a document scan or a signature to a record. The file is
prepared on this device first: a photo or scan (JPEG or PNG) is turned
upright, downsized and re-encoded as a JPEG without its metadata
(location, camera), with a thumbnail kept beside it; a signature becomes a
small black-and-white PNG. The prepared file and its attach op are saved
on this device at once; the op goes with the next sync, and the file's
bytes are uploaded after it, resumably: a cut link re-sends at most one
chunk.

Limits are checked before anything is written: one file, one record's
attachments and the whole device store each have a cap (see fieldsync
status). Over a limit the attachment is refused with the reason; text can
always be saved.

A signature drawn on a pad is given as strokes in JSON:
  {"w": 400, "h": 150, "strokes": [[[10,10],[200,80]], [[50,100]]]}
(the pad's width and height, then each stroke as a list of [x, y] points).

Examples:
  fieldsync attach --id WO-1001 boiler.jpg
  fieldsync attach --id WO-1001 --role scan delivery-note.png
  fieldsync attach --id WO-1001 --strokes signature.json
`

// runAttach runs `fieldsync attach`.
func runAttach(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("attach", attachUsage)
	dir, pin := dirFlag(cmd), pinFlag(cmd)
	typ := typeFlag(cmd)
	id := cmd.String("id", "", "the record: `ID`, number (WO-1001) or short id")
	role := cmd.String("role", "", "photo, scan or signature (default photo; signature with --strokes)")
	name := cmd.String("name", "", "the attachment's name (default: the file's name)")
	strokes := cmd.String("strokes", "", "a signature's pen strokes: a JSON `FILE`")
	asJSON := cmd.Bool("json", false, "print JSON")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	in := client.AttachInput{Role: *role, Name: *name}
	var input string // the file read, for its size
	switch {
	case *id == "":
		return cmd.usageError("name the record with --id")
	case *strokes != "" && len(pos) > 0:
		return cmd.usageError("give either --strokes or a FILE, not both")
	case *strokes != "":
		if in.Role == "" {
			in.Role = fieldsync.RoleSignature
		}
		if in.Role != fieldsync.RoleSignature {
			return cmd.usageError("--strokes makes a signature: leave out --role or say --role signature")
		}
		data, err := os.ReadFile(*strokes)
		if err != nil {
			return fmt.Errorf("attach: %w", err)
		}
		s, w, h, err := media.DecodeStrokes(data)
		if err != nil {
			return fmt.Errorf("attach: %s: %w", *strokes, err)
		}
		in.Strokes, in.Width, in.Height = s, w, h
		input = *strokes
	case len(pos) == 1:
		if in.Role == "" {
			in.Role = fieldsync.RolePhoto
		}
		in.Path, input = pos[0], pos[0]
	case len(pos) == 0:
		return cmd.usageError("name the FILE to attach (or --strokes FILE.json for a signature)")
	default:
		return cmd.usageError(fmt.Sprintf("attach one file at a time (got %d)", len(pos)))
	}
	if !fieldsync.ValidRole(in.Role) {
		return cmd.usageError(fmt.Sprintf("--role %q: want photo, scan or signature", in.Role))
	}
	eng, v, err := openRecord(ctx, *dir, *pin, *typ, *id, "attach")
	if err != nil {
		return err
	}
	defer eng.Close()
	a, op, err := eng.Attach(ctx, *typ, v.ID, in)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	var before int64
	if fi, err := os.Stat(input); err == nil {
		before = fi.Size()
	}
	if *asJSON {
		return writeJSON(stdout, attachJSON{Attachment: a, Op: op.ID, Seq: op.Seq, InputBytes: before})
	}
	what := a.Role
	if a.Name != "" {
		what += " " + a.Name
	}
	fmt.Fprintf(stdout, "saved on this device: %s attached to %s\n", what, label(v))
	fmt.Fprintf(stdout, "attachment %s (%s): %s before, %s after preparation\n", a.ID, a.ContentType,
		client.FormatBytes(before), client.FormatBytes(a.Size))
	fmt.Fprintf(stdout, "op %s (seq %d)\n", op.ID, op.Seq)
	fmt.Fprintln(stdout, "saved on this device; will upload when online")
	return nil
}

// attachJSON is the --json answer of `fieldsync attach`.
type attachJSON struct {
	Attachment fieldsync.Attachment `json:"attachment"`
	Op         string               `json:"op"`
	Seq        int64                `json:"seq"`
	InputBytes int64                `json:"input_bytes"`
}
