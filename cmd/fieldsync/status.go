package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

const statusUsage = `Usage: fieldsync status [--dir DIR] [--json]

Say where this device stands: how many ops are in the queue and since
when, how many were delivered, the last successful sync (or never), the
last error, what the device's data takes on disk (database, photos and
scans, thumbnails, signatures; what can be freed; attachments not yet on
the server, and any that cannot be sent or keep failing, with why), and
what needs a person: conflicts to settle ("needs review":
per field, the value the server kept and each value that clashed with it,
who wrote each and when, and the fieldsync settle command that settles
it), ops the server rejected (with its reason). Works with no network at
all.
`

// statusJSON is the --json form of the device's status, also served by
// the agent at /status.
type statusJSON struct {
	Device        string         `json:"device"`
	Counts        map[string]int `json:"counts"`
	Pending       int            `json:"pending"`
	NeedsReview   int            `json:"needs_review"`
	OldestPending *time.Time     `json:"oldest_pending,omitempty"`
	LastSync      *time.Time     `json:"last_sync,omitempty"`
	LastAttempt   *time.Time     `json:"last_attempt,omitempty"`
	LastError     string         `json:"last_error,omitempty"`
	Resynced      string         `json:"resynced,omitempty"`
	Attention     []opJSON       `json:"attention"`
	Review        []reviewJSON   `json:"review"`
	Failing       []opJSON       `json:"failing"`
	Storage       storageJSON    `json:"storage"`
	// Auth is the device's standing with the server: ok, not_enrolled or
	// revoked; AuthMessage says what to do about it.
	Auth        string `json:"auth"`
	AuthMessage string `json:"auth_message,omitempty"`
	Server      string `json:"server,omitempty"` // the server it enrolled with
	User        string `json:"user,omitempty"`   // the person the device is enrolled for
}

// storageJSON is what the device's data takes on disk.
type storageJSON struct {
	Database    int64             `json:"database"`
	Originals   int64             `json:"originals"`
	Thumbnails  int64             `json:"thumbnails"`
	Signatures  int64             `json:"signatures"`
	Total       int64             `json:"total"`
	Limit       int64             `json:"limit"`
	Reclaimable int64             `json:"reclaimable"`
	Pending     int               `json:"pending_attachments"`
	Failed      []attachIssueJSON `json:"failed_attachments"`
	Failing     []attachIssueJSON `json:"failing_attachments"`
}

// attachIssueJSON is an attachment whose upload needs a look.
type attachIssueJSON struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Entity    string `json:"entity"`
	Role      string `json:"role"`
	Name      string `json:"name,omitempty"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	Sent      int64  `json:"sent"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
}

func toStorageJSON(s client.Storage) storageJSON {
	out := storageJSON{Database: s.Database, Originals: s.Originals, Thumbnails: s.Thumbnails, Signatures: s.Signatures,
		Total: s.Total(), Limit: s.Limits.MaxStoreBytes, Reclaimable: s.Reclaimable, Pending: s.Pending,
		Failed: []attachIssueJSON{}, Failing: []attachIssueJSON{}}
	conv := func(a client.AttachmentIssue) attachIssueJSON {
		return attachIssueJSON{ID: a.ID, Type: a.Type, Entity: a.EntityID, Role: a.Role, Name: a.Name, SHA256: a.SHA256,
			Size: a.Size, Sent: a.Sent, Attempts: a.Attempts, LastError: a.LastError}
	}
	for _, a := range s.Failed {
		out.Failed = append(out.Failed, conv(a))
	}
	for _, a := range s.Failing {
		out.Failing = append(out.Failing, conv(a))
	}
	return out
}

// reviewJSON is a record with fields that need a person's review, and
// its open conflicts.
type reviewJSON struct {
	Type      string               `json:"type"`
	ID        string               `json:"id"`
	Number    string               `json:"number,omitempty"`
	Fields    []string             `json:"fields"`
	Conflicts []fieldsync.Conflict `json:"conflicts,omitempty"`
}

// reviewRecords lists the records of type typ with fields to review.
func reviewRecords(ctx context.Context, eng *client.Engine, typ string) ([]reviewJSON, error) {
	views, err := eng.List(ctx, typ)
	if err != nil {
		return nil, err
	}
	out := []reviewJSON{}
	for _, v := range views {
		if len(v.Review) > 0 || len(v.Conflicts) > 0 {
			out = append(out, reviewJSON{Type: v.Type, ID: v.ID, Number: v.Number, Fields: v.Review, Conflicts: v.Conflicts})
		}
	}
	return out, nil
}

// statusOf is the --json form of the device's status: what needs
// attention as the text shows it, open conflicts with their values.
func statusOf(ctx context.Context, eng *client.Engine, s client.Status, typ string) (statusJSON, error) {
	review, err := reviewRecords(ctx, eng, typ)
	if err != nil {
		return statusJSON{}, err
	}
	a := needsAttention(ctx, eng, s, review)
	out := statusJSON{
		Device: s.DeviceID, Counts: s.Counts, Pending: s.Pending(), NeedsReview: a.needsReview(), OldestPending: timePtr(s.OldestPending),
		LastSync: timePtr(s.LastSync), LastAttempt: timePtr(s.LastAttempt), LastError: s.LastError, Resynced: s.Resynced,
		Attention: []opJSON{}, Review: review, Failing: []opJSON{}, Storage: toStorageJSON(s.Storage),
		Auth: s.Auth, AuthMessage: s.AuthMessage, Server: s.Enrolment.Server, User: s.Enrolment.User,
	}
	for _, o := range a.ops {
		out.Attention = append(out.Attention, toOpJSON(o, ""))
	}
	for _, o := range s.Failing {
		out.Failing = append(out.Failing, toOpJSON(o, ""))
	}
	return out, nil
}

// attention is what needs a person on the device: open conflicts, fields
// marked for review whose conflict the device has not pulled yet, and the
// ops that need a look (rejected ones, refused deletes).
type attention struct {
	reviews []client.Review
	waiting []reviewJSON // review fields with no conflict on the device yet
	ops     []client.OpInfo
}

func (a attention) needsReview() int {
	n := len(a.reviews)
	for _, r := range a.waiting {
		n += len(r.Fields)
	}
	return n
}

// needsAttention sorts the status's lists into what a person must look at.
// An op answered "conflict" is shown with its open conflict, and no more
// once that conflict is settled.
func needsAttention(ctx context.Context, eng *client.Engine, st client.Status, review []reviewJSON) attention {
	a := attention{reviews: st.Reviews}
	for _, r := range review {
		var missing []string
		for _, f := range r.Fields {
			if !slices.ContainsFunc(r.Conflicts, func(c fieldsync.Conflict) bool { return c.Field == f }) {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			a.waiting = append(a.waiting, reviewJSON{Type: r.Type, ID: r.ID, Number: r.Number, Fields: missing})
		}
	}
	for _, o := range st.Attention {
		if o.Status == client.OpConflict {
			v, err := eng.Get(ctx, o.Type, o.EntityID)
			if err == nil && !conflictOpShown(o, v) {
				continue
			}
		}
		a.ops = append(a.ops, o)
	}
	return a
}

// runStatus runs `fieldsync status`.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("status", statusUsage)
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
	st, err := eng.Status(ctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if *asJSON {
		out, err := statusOf(ctx, eng, st, *typ)
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		return writeJSON(stdout, out)
	}
	review, err := reviewRecords(ctx, eng, *typ)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	printStatus(ctx, stdout, eng, st, review, *dir, time.Now())
	return nil
}

func printStatus(ctx context.Context, w io.Writer, eng *client.Engine, st client.Status, review []reviewJSON, dir string, now time.Time) {
	a := needsAttention(ctx, eng, st, review)
	fmt.Fprintf(w, "device %s (%s)\n", st.DeviceID, dir)
	switch {
	case st.Auth != "" && st.Auth != client.AuthOK:
		fmt.Fprintf(w, "access: %s: %s\n", strings.ReplaceAll(st.Auth, "_", " "), st.AuthMessage)
	case !st.Enrolment.Enrolled.IsZero():
		fmt.Fprintf(w, "enrolled: %s as %s (%s) since %s\n", st.Enrolment.Server, st.Enrolment.User, st.Enrolment.Org, fmtTime(st.Enrolment.Enrolled))
	}
	line := fmt.Sprintf("in queue: %s", plural(st.Pending(), "op", "ops"))
	if !st.OldestPending.IsZero() {
		line += fmt.Sprintf(", oldest saved %s (%s)", fmtAge(now, st.OldestPending), fmtTime(st.OldestPending))
	}
	fmt.Fprintln(w, line)
	if n := st.Counts[client.OpSending]; n > 0 {
		fmt.Fprintf(w, "being sent: %s\n", plural(n, "op", "ops"))
	}
	fmt.Fprintf(w, "delivered: %s\n", plural(st.Counts[client.OpDelivered], "op", "ops"))
	if n := a.needsReview(); n > 0 {
		fmt.Fprintf(w, "needs review: %d\n", n)
	}
	if n := st.Counts[client.OpError]; n > 0 {
		fmt.Fprintf(w, "rejected: %s\n", plural(n, "op", "ops"))
	}
	if n := st.Counts[client.OpDiscarded]; n > 0 {
		fmt.Fprintf(w, "discarded: %s\n", plural(n, "op", "ops"))
	}
	if st.LastSync.IsZero() {
		fmt.Fprintln(w, "last successful sync: never")
	} else {
		fmt.Fprintf(w, "last successful sync: %s (%s)\n", fmtAge(now, st.LastSync), fmtTime(st.LastSync))
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "last error: %s", st.LastError)
		if !st.LastAttempt.IsZero() {
			fmt.Fprintf(w, " (%s)", fmtAge(now, st.LastAttempt))
		}
		fmt.Fprintln(w)
	}
	if st.Resynced != "" {
		fmt.Fprintf(w, "started over with the server: %s\n", st.Resynced)
	}
	printStorage(w, st.Storage, now)
	if len(a.reviews) == 0 && len(a.waiting) == 0 && len(a.ops) == 0 && len(st.Failing) == 0 {
		fmt.Fprintln(w, "needs attention: nothing")
		return
	}
	self := eng.DeviceID()
	nums := numbers(ctx, eng, append(append([]client.OpInfo(nil), a.ops...), st.Failing...))
	if len(a.reviews) > 0 || len(a.waiting) > 0 || len(a.ops) > 0 {
		fmt.Fprintln(w, "needs attention:")
		for _, r := range a.reviews {
			name := r.Number
			if name == "" {
				name = shortID(r.ID)
			}
			c := r.Conflict
			fmt.Fprintf(w, "  %s %s: changed on both sides, nothing overwritten; needs review (conflict %s, opened %s)\n",
				name, c.Field, c.ID, fmtTime(c.OpenedAt))
			typ := ""
			if r.Type != defaultType {
				typ = " --type " + r.Type
			}
			settle := fmt.Sprintf("fieldsync settle --dir %s%s --id %s --field %s --keep-server | --take-device | --value VALUE [--note TEXT]",
				shellQuote(dir), typ, name, c.Field)
			printConflict(w, "    ", c, self, settle)
		}
		for _, r := range a.waiting {
			name := r.Number
			if name == "" {
				name = shortID(r.ID)
			}
			fmt.Fprintf(w, "  %s %s: changed on both sides, both values kept; the next sync brings the conflict to settle (fieldsync sync --dir %s)\n",
				name, strings.Join(r.Fields, ", "), shellQuote(dir))
		}
		for _, o := range a.ops {
			rec := opRecord(o, nums)
			switch o.Status {
			case client.OpError:
				fmt.Fprintf(w, "  rejected: %s of %s (op %s): %s: %s\n", o.Kind, rec, o.ID, o.Code, o.Message)
				switch fieldsync.Code(o.Code) {
				case fieldsync.EAlreadySettled, fieldsync.ENoConflict:
					fmt.Fprintf(w, "    the conflict was settled before this settlement arrived: see fieldsync show --dir %s --id %s;\n"+
						"    then drop this op: fieldsync discard --dir %s %s --yes\n", shellQuote(dir), rec, shellQuote(dir), o.ID)
				default:
					fmt.Fprintf(w, "    save a corrected change, then: fieldsync discard --dir %s %s --yes\n", shellQuote(dir), o.ID)
				}
			case client.OpConflict:
				fields := reviewFields(ctx, eng, o)
				fmt.Fprintf(w, "  needs review: %s of %s (op %s), fields %s: %s\n", o.Kind, rec, o.ID, fields, o.Message)
			}
		}
	}
	if len(st.Failing) > 0 {
		fmt.Fprintln(w, "failing for long (still queued, retried with backoff):")
		for _, o := range st.Failing {
			fmt.Fprintf(w, "  %s of %s (op %s): %s, queued %s; last: %s\n", o.Kind, opRecord(o, nums), o.ID,
				plural(o.Attempts, "attempt", "attempts"), fmtAge(now, o.LocalTime), o.Message)
		}
	}
}

// reviewFields names the fields of a conflicting op that await review.
func reviewFields(ctx context.Context, eng *client.Engine, o client.OpInfo) string {
	v, err := eng.Get(ctx, o.Type, o.EntityID)
	var names []string
	if err == nil {
		for _, f := range v.Review {
			if _, ok := o.Fields[f]; ok || o.Kind == "delete" {
				names = append(names, f)
			}
		}
	}
	if len(names) == 0 {
		names = sortedFieldNames(o.Fields)
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ", ")
}

// printStorage writes what the device's data takes and the attachments
// that are not on the server yet.
func printStorage(w io.Writer, s client.Storage, now time.Time) {
	fmt.Fprintf(w, "storage: %s of %s (database %s, photos and scans %s, thumbnails %s, signatures %s)\n",
		client.FormatBytes(s.Total()), client.FormatBytes(s.Limits.MaxStoreBytes), client.FormatBytes(s.Database),
		client.FormatBytes(s.Originals), client.FormatBytes(s.Thumbnails), client.FormatBytes(s.Signatures))
	if s.Reclaimable > 0 {
		fmt.Fprintf(w, "reclaimable: %s of originals the server holds (removed automatically; thumbnails stay)\n", client.FormatBytes(s.Reclaimable))
	}
	if s.Pending > 0 {
		fmt.Fprintf(w, "attachments not yet on the server: %d\n", s.Pending)
	}
	issue := func(a client.AttachmentIssue) string {
		what := a.Role
		if a.Name != "" {
			what += " " + a.Name
		}
		return fmt.Sprintf("%s of %s (attachment %s, %s)", what, shortID(a.EntityID), a.ID, client.FormatBytes(a.Size))
	}
	if len(s.Failed) > 0 {
		fmt.Fprintln(w, "attachments that cannot be sent:")
		for _, a := range s.Failed {
			fmt.Fprintf(w, "  %s: %s\n", issue(a), a.LastError)
		}
	}
	if len(s.Failing) > 0 {
		fmt.Fprintln(w, "attachments failing for long (still retried):")
		for _, a := range s.Failing {
			last := ""
			if !a.LastAttempt.IsZero() {
				last = ", last " + fmtAge(now, a.LastAttempt)
			}
			fmt.Fprintf(w, "  %s: %s, %s of %s sent%s: %s\n", issue(a), plural(a.Attempts, "attempt", "attempts"),
				client.FormatBytes(a.Sent), client.FormatBytes(a.Size), last, a.LastError)
		}
	}
}
