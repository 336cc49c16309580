package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

const officeUsage = `Usage: fieldsync office create|edit|settle|show|enrol-code --server URL [flags]

What a dispatcher does from the office, over the server's HTTP API:

  office create --type T --set NAME=VALUE...          make a record (POST /v1/records/T)
  office edit   --id ID [--base N] --set NAME=VALUE...  change fields (PATCH /v1/records/T/ID)
  office settle --id ID --field F (--keep-server | --take-device | --value V) [--note TEXT]
                                                      settle a conflict (POST /v1/records/T/ID/settle)
  office show   --id ID                               the record, its conflicts and its op history
  office enrol-code --user USER                       a one-time code to enrol a device of USER (POST /v1/enrolments)

An edit names the version it was based on (--base; default: the server's
current one). A field that a device changed after that version goes to the
field's policy: the office's value wins on server-wins fields (address,
contact; the device's value is kept in the history as overridden), and a
manual field (status, description) opens a conflict that a person settles
with office settle or, on a device, fieldsync settle. Each has --help.
`

// runOffice runs `fieldsync office`.
func runOffice(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("office: name what to do: create, edit, settle or show; see fieldsync office --help")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, officeUsage)
		return nil
	case "create":
		return runOfficeCreate(ctx, args[1:], stdout)
	case "edit":
		return runOfficeEdit(ctx, args[1:], stdout)
	case "settle":
		return runOfficeSettle(ctx, args[1:], stdout)
	case "show":
		return runOfficeShow(ctx, args[1:], stdout)
	case "enrol-code":
		return runOfficeEnrolCode(ctx, args[1:], stdout)
	}
	return fmt.Errorf("office: unknown action %q: want create, edit, settle, show or enrol-code; see fieldsync office --help", args[0])
}

const officeCreateUsage = `Usage: fieldsync office create --server URL [--type TYPE] --set NAME=VALUE [--set NAME=VALUE...]

Make a record on the server as the office. The office may set fields that
devices may not (assignee, amount). Values follow the rule of fieldsync
create. Prints the new record's number and id; devices get it at their
next sync.
`

const officeEditUsage = `Usage: fieldsync office edit --server URL [--type TYPE] --id ID [--base N] --set NAME=VALUE...

Change fields of a record on the server as the office. --base is the
version the change was based on (what the dispatcher saw); without it the
edit is based on the server's current version. A field that a device
changed after --base goes to the field's policy: on a server-wins field
the office's value wins and the device's is recorded as overridden; on a
manual field (status) nothing is overwritten: the answer is "conflict",
both values are kept and the field awaits a person on both sides
(fieldsync office settle settles it).
`

const officeSettleUsage = `Usage: fieldsync office settle --server URL [--type TYPE] --id ID --field FIELD
                              (--keep-server | --take-device [--op OPID] | --value VALUE) [--note TEXT]

Settle, as the office, the open conflict on one field of a record: keep
the value the server kept, take the clashing value (the latest one, or the
one op OPID wrote), or write a new value, with an optional note saying
why. The conflict is found in the server's record (GET
/v1/records/TYPE/ID) unless --conflict names it; the settlement is sent
with POST /v1/records/TYPE/ID/settle. A conflict is settled once: if
someone settled it first, the server refuses (already_settled) and says
who did.

Example:
  fieldsync office settle --server http://127.0.0.1:8080 --id 0193… --field status \
      --value "waiting for parts" --note "completed, but parts required"
`

const officeShowUsage = `Usage: fieldsync office show --server URL [--type TYPE] --id ID [--json]

Show the server's record, its conflicts (open ones with every value and
who wrote it; settled ones with the choice, value, note and who settled
them) and its history: every op that touched it, from which device, with
the server's verdict: applied, overridden (with the values that lost to a
field's policy), conflict (with both values) or rejected (with why).
`

// officeClient talks to the server's /v1 API as the office.
type officeClient struct {
	base  string
	token string // bearer token; empty: none (a server run with --no-auth)
	http  *http.Client
}

func officeFlags(c *command) (server *string, typ *string, timeout *time.Duration) {
	server = c.String("server", envOr("FIELDSYNC_SERVER", ""), serverURLUsage)
	typ = typeFlag(c)
	timeout = c.Duration("timeout", 30*time.Second, "give up on the request after `DURATION`")
	c.String("token", envOr("FIELDSYNC_TOKEN", ""), "the bearer `TOKEN` (env FIELDSYNC_TOKEN; default: the session of fieldsync login)")
	c.String("session", defaultSessionPath(), "the session `FILE` of fieldsync login")
	c.String("tls-pin", envOr("FIELDSYNC_TLS_PIN", ""), "accept only the server certificate with this SHA-256 `FINGERPRINT` (env FIELDSYNC_TLS_PIN)")
	return
}

// newOfficeClient makes the office's client from the flags of
// officeFlags. The token is --token, else the session kept by fieldsync
// login for the same server.
func newOfficeClient(c *command, server string, timeout time.Duration) (*officeClient, error) {
	token, pin := c.Lookup("token").Value.String(), c.Lookup("tls-pin").Value.String()
	if token == "" {
		s, ok, err := loadSession(c.Lookup("session").Value.String())
		if err != nil {
			return nil, err
		}
		if ok && s.Server == strings.TrimRight(server, "/") {
			token = s.Token
			if pin == "" {
				pin = s.TLSPin
			}
		}
	}
	return newOfficeHTTP(c, server, token, pin, timeout)
}

// do sends a request and decodes a 200 answer into out; any other answer
// becomes the server's error.
func (o *officeClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, o.base+path, rd)
	if err != nil {
		return fmt.Errorf("server URL: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(protocol.VersionHeader, strconv.Itoa(protocol.Version))
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	resp, err := o.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the server at %s: %v; is fieldsync server running there?", o.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read the server's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return protocol.DecodeErrorBody(resp.StatusCode, data)
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the server's answer is not the JSON expected: %w", err)
	}
	return nil
}

func recordPath(typ, id string) string {
	return protocol.PathRecords + url.PathEscape(typ) + "/" + url.PathEscape(id)
}

// explain turns an error from the server into a sentence.
func explain(action string, err error) error {
	var fe *fieldsync.Error
	if errors.As(err, &fe) {
		if fe.Code == fieldsync.ENotFound {
			return fmt.Errorf("office %s: %s (the server knows records by id: fieldsync show --id WO-… on a device prints it)", action, fe.Message)
		}
		return fmt.Errorf("office %s: the server refused: %s (%s)", action, fe.Message, fe.Code)
	}
	return fmt.Errorf("office %s: %w", action, err)
}

func runOfficeCreate(ctx context.Context, args []string, stdout io.Writer) error {
	cmd := newCommand("office create", officeCreateUsage)
	server, typ, timeout := officeFlags(cmd)
	var set setFlags
	cmd.Var(&set, "set", "a field `NAME=VALUE`; repeat for each field")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	oc, err := newOfficeClient(cmd, *server, *timeout)
	if err != nil {
		return err
	}
	if len(set.names) == 0 {
		return cmd.usageError("name the new record's fields with --set name=value")
	}
	var created protocol.Created
	req := protocol.EditRequest{Fields: set.fields(*typ)}
	if err := oc.do(ctx, http.MethodPost, protocol.PathRecords+url.PathEscape(*typ), &req, &created); err != nil {
		return explain("create", err)
	}
	res := protocol.ToResult(&created.Result)
	if res.Status == fieldsync.StatusRejected {
		return fmt.Errorf("office create: the server refused: %s (%s)", res.Message, res.Code)
	}
	fmt.Fprintf(stdout, "created %s %s (id %s, version %d)\n", *typ, res.Number, created.ID, res.Version)
	return nil
}

func runOfficeEdit(ctx context.Context, args []string, stdout io.Writer) error {
	cmd := newCommand("office edit", officeEditUsage)
	server, typ, timeout := officeFlags(cmd)
	id := cmd.String("id", "", "the record's id `ID`")
	base := cmd.Int64("base", 0, "the version `N` the edit is based on (default: the server's current one)")
	var set setFlags
	cmd.Var(&set, "set", "a field `NAME=VALUE`; repeat for each field")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	oc, err := newOfficeClient(cmd, *server, *timeout)
	if err != nil {
		return err
	}
	if *id == "" {
		return cmd.usageError("name the record with --id")
	}
	if len(set.names) == 0 {
		return cmd.usageError("name the fields to change with --set name=value")
	}
	baseSet := false
	cmd.Visit(func(f *flag.Flag) { baseSet = baseSet || f.Name == "base" })
	if baseSet && *base < 0 {
		return cmd.usageError("--base must be 0 or more")
	}
	if !baseSet {
		var h protocol.RecordHistory
		if err := oc.do(ctx, http.MethodGet, recordPath(*typ, *id), nil, &h); err != nil {
			return explain("edit", err)
		}
		*base = h.Record.Version
		fmt.Fprintf(stdout, "based on the server's current version, %d\n", *base)
	}
	var w protocol.Result
	req := protocol.EditRequest{Base: *base, Fields: set.fields(*typ)}
	if err := oc.do(ctx, http.MethodPatch, recordPath(*typ, *id), &req, &w); err != nil {
		return explain("edit", err)
	}
	res := protocol.ToResult(&w)
	name := res.Number
	if name == "" {
		name = *id
	}
	switch res.Status {
	case fieldsync.StatusApplied:
		fmt.Fprintf(stdout, "applied: %s is now at version %d\n", name, res.Version)
	case fieldsync.StatusConflict:
		fmt.Fprintf(stdout, "conflict: %s is at version %d; nothing was overwritten\n", name, res.Version)
		for _, c := range res.Conflicts {
			fmt.Fprintf(stdout, "  %s: kept %s (set by %s at version %d), yours %s: needs review\n",
				c.Field, fmtValue(c.ServerValue), who(c.ServerBy, ""), c.ServerVersion, fmtValue(c.DeviceValue))
			fmt.Fprintf(stdout, "    settle it: fieldsync office settle --server %s%s --id %s --field %s --keep-server | --take-device | --value VALUE [--note TEXT]\n",
				oc.base, typeArg(*typ), *id, c.Field)
		}
		if len(res.Conflicts) == 0 && res.Message != "" {
			fmt.Fprintf(stdout, "  %s\n", res.Message)
		}
	case fieldsync.StatusRejected:
		return fmt.Errorf("office edit: the server refused: %s (%s)", res.Message, res.Code)
	default:
		fmt.Fprintf(stdout, "%s: %s\n", res.Status, res.Message)
	}
	for _, o := range res.Overridden {
		fmt.Fprintf(stdout, "  overridden: %s\n", overriddenText(o, "office", req.Fields[o.Field]))
	}
	return nil
}

// typeArg is the --type argument of a printed command, "" for the
// default type.
func typeArg(typ string) string {
	if typ == defaultType {
		return ""
	}
	return " --type " + typ
}

func runOfficeSettle(ctx context.Context, args []string, stdout io.Writer) error {
	cmd := newCommand("office settle", officeSettleUsage)
	server, typ, timeout := officeFlags(cmd)
	id := cmd.String("id", "", "the record's id `ID`")
	field := cmd.String("field", "", "the `FIELD` in conflict, e.g. status")
	choice := settleFlags(cmd)
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	oc, err := newOfficeClient(cmd, *server, *timeout)
	if err != nil {
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
	var h protocol.RecordHistory
	if err := oc.do(ctx, http.MethodGet, recordPath(*typ, *id), nil, &h); err != nil {
		return explain("settle", err)
	}
	name := h.Record.Number
	if name == "" {
		name = *id
	}
	c, err := officeConflict(h.Record, name, *field, choice.conflict)
	if err != nil {
		return fmt.Errorf("office settle: %w", err)
	}
	st, err := choice.settle(*typ, *field, c)
	if err != nil {
		return fmt.Errorf("office settle: %w", err)
	}
	req := protocol.SettleRequest{Field: *field, Conflict: st.Conflict, Choice: st.Choice, Value: st.Value, Op: st.Op, Note: st.Note}
	var w protocol.Result
	if err := oc.do(ctx, http.MethodPost, recordPath(*typ, *id)+"/settle", &req, &w); err != nil {
		return explain("settle", err)
	}
	res := protocol.ToResult(&w)
	switch res.Status {
	case fieldsync.StatusApplied:
	case fieldsync.StatusRejected:
		if res.Code == fieldsync.EAlreadySettled {
			return fmt.Errorf("office settle: already settled: %s (%s); see fieldsync office show --server %s%s --id %s",
				res.Message, res.Code, oc.base, typeArg(*typ), *id)
		}
		return fmt.Errorf("office settle: the server refused: %s (%s)", res.Message, res.Code)
	default:
		return fmt.Errorf("office settle: the server answered %s: %s (%s)", res.Status, res.Message, res.Code)
	}
	// Read back what the server recorded: the settlement as it stands.
	settled := &fieldsync.ConflictSettled{Choice: st.Choice, Value: decided(c, st), Note: st.Note, By: "office", Version: res.Version}
	if err := oc.do(ctx, http.MethodGet, recordPath(*typ, *id), nil, &h); err == nil {
		for _, rc := range h.Record.Conflicts {
			if rc.ID == c.ID && rc.Settled != nil {
				settled = rc.Settled
			}
		}
	}
	fmt.Fprintf(stdout, "settled: %s %s is now %s at version %d\n", name, *field, fmtJSON(settled.Value), res.Version)
	fmt.Fprintf(stdout, "  %s\n", settlementText(settled, ""))
	fmt.Fprintf(stdout, "  conflict %s had:\n", c.ID)
	printConflict(stdout, "    ", c, "", "")
	fmt.Fprintln(stdout, "devices get the settlement at their next sync")
	return nil
}

// officeConflict finds the conflict to settle on field of the server's
// record: the one named by ref (open or not: the server has the last
// word), else the field's open one.
func officeConflict(r protocol.Record, name, field, ref string) (fieldsync.Conflict, error) {
	var ids []string
	for _, c := range r.Conflicts {
		if c.Field == field {
			ids = append(ids, c.ID)
		}
	}
	if ref != "" {
		if id, ok := matchID(ref, ids); ok {
			for _, c := range r.Conflicts {
				if c.ID == id {
					return c, nil
				}
			}
		}
		return fieldsync.Conflict{ID: ref, Field: field}, nil // the server says what it makes of it
	}
	var last *fieldsync.Conflict
	for i := range r.Conflicts {
		c := &r.Conflicts[i]
		if c.Field != field {
			continue
		}
		if c.Open() {
			return *c, nil
		}
		last = c
	}
	if last != nil {
		return fieldsync.Conflict{}, fmt.Errorf("%s has no open conflict on %s: conflict %s was already settled: %s",
			name, field, last.ID, settlementText(last.Settled, ""))
	}
	return fieldsync.Conflict{}, fmt.Errorf("%s has no open conflict on %s: nothing to settle", name, field)
}

func runOfficeShow(ctx context.Context, args []string, stdout io.Writer) error {
	cmd := newCommand("office show", officeShowUsage)
	server, typ, timeout := officeFlags(cmd)
	id := cmd.String("id", "", "the record's id `ID`")
	asJSON := cmd.Bool("json", false, "print the server's JSON")
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
	oc, err := newOfficeClient(cmd, *server, *timeout)
	if err != nil {
		return err
	}
	if *id == "" {
		return cmd.usageError("name the record with --id")
	}
	var raw json.RawMessage
	if err := oc.do(ctx, http.MethodGet, recordPath(*typ, *id), nil, &raw); err != nil {
		return explain("show", err)
	}
	var h protocol.RecordHistory
	if err := json.Unmarshal(raw, &h); err != nil {
		return fmt.Errorf("office show: the server's answer is not the JSON expected: %w", err)
	}
	if *asJSON {
		return writeJSON(stdout, json.RawMessage(raw))
	}
	r := h.Record
	name := r.Number
	if name == "" {
		name = shortID(r.ID)
	}
	title := ""
	if t, ok := r.Fields["title"]; ok {
		title = fmtValue(t)
	}
	fmt.Fprintf(stdout, "%s  %s\n", name, title)
	fmt.Fprintf(stdout, "  %s %s\n", r.Type, r.ID)
	state := fmt.Sprintf("version %d, updated %s", r.Version, fmtTime(r.Updated))
	if r.Deleted {
		state = "deleted, " + state
	}
	fmt.Fprintln(stdout, state)
	if len(r.Review) > 0 {
		fmt.Fprintf(stdout, "needs review: %s\n", strings.Join(r.Review, ", "))
	}
	fmt.Fprintln(stdout, "fields:")
	printFields(stdout, r.Fields, r.Review)
	if len(r.Conflicts) > 0 {
		fmt.Fprintln(stdout, "conflicts:")
		for _, c := range r.Conflicts {
			if c.Open() {
				fmt.Fprintf(stdout, "  %s: open, needs review (conflict %s, opened %s)\n", c.Field, c.ID, fmtTime(c.OpenedAt))
				printConflict(stdout, "    ", c, "", fmt.Sprintf(
					"fieldsync office settle --server %s%s --id %s --field %s --keep-server | --take-device | --value VALUE [--note TEXT]",
					oc.base, typeArg(r.Type), r.ID, c.Field))
			}
		}
		for _, c := range r.Conflicts {
			if !c.Open() {
				printSettled(stdout, "  ", c, "")
			}
		}
	}
	fmt.Fprintf(stdout, "history (%s, in the order the server decided them):\n", plural(len(h.Ops), "op", "ops"))
	printHistory(stdout, h.Ops)
	return nil
}

// printHistory writes a record's op history: one line per op (when, who,
// what, the verdict), then what it changed and, for an op that did not
// simply apply, why: the values that lost to a policy, the values in
// conflict, the reason for a rejection.
func printHistory(w io.Writer, ops []protocol.OpEntry) {
	rows := make([][]string, len(ops))
	var width [5]int
	for i, e := range ops {
		by := e.Op.Device
		if by != "office" {
			by = "device " + shortID(by)
		}
		res := protocol.ToResult(&e.Result).Effective()
		verdict := string(res.Status)
		if res.Status == fieldsync.StatusApplied && len(res.Overridden) > 0 {
			verdict = "applied, overridden"
		}
		if res.Version > 0 && res.Status != fieldsync.StatusRejected {
			verdict += fmt.Sprintf(" v%d", res.Version)
		}
		rows[i] = []string{fmtTime(e.Received), fmt.Sprintf("%s #%d", by, e.Op.Seq), e.Op.Kind, verdict, e.Op.ID}
		for j, cell := range rows[i] {
			width[j] = max(width[j], len(cell))
		}
	}
	for i, e := range ops {
		line := ""
		for j, cell := range rows[i] {
			line += fmt.Sprintf("  %-*s", width[j], cell)
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		const indent = "      "
		if e.Op.Kind == string(fieldsync.KindSettle) {
			fmt.Fprintf(w, "%ssettles %s\n", indent, describeSettle(e.Op.Fields))
		} else if len(e.Op.Fields) > 0 {
			fmt.Fprintf(w, "%s%s\n", indent, fmtFields(e.Op.Fields, 100))
		}
		res := protocol.ToResult(&e.Result).Effective()
		switch res.Status {
		case fieldsync.StatusRejected:
			fmt.Fprintf(w, "%srejected: %s (%s)\n", indent, res.Message, res.Code)
		case fieldsync.StatusConflict:
			if len(res.Conflicts) == 0 {
				fmt.Fprintf(w, "%sconflict: %s\n", indent, res.Message)
			}
			for _, c := range res.Conflicts {
				fmt.Fprintf(w, "%sconflict: %s kept %s (set by %s at version %d), this op's %s: needs review\n",
					indent, c.Field, fmtJSON(c.ServerValue), who(c.ServerBy, ""), c.ServerVersion, fmtJSON(c.DeviceValue))
			}
		default:
			if res.Message != "" && len(res.Overridden) == 0 {
				fmt.Fprintf(w, "%snote: %s\n", indent, res.Message)
			}
		}
		for _, o := range res.Overridden {
			fmt.Fprintf(w, "%soverridden: %s\n", indent, overriddenText(o, e.Op.Device, e.Op.Fields[o.Field]))
		}
	}
}

const officeEnrolCodeUsage = `Usage: fieldsync office enrol-code --server URL --user USER

Ask the server for a one-time code that enrols one device of USER, a user of
the dispatcher's own organisation. Give the code to the person; on the
device: fieldsync enroll --server URL --code CODE. The code works once and
expires (24 hours by default); the server keeps only its hash. Needs a
dispatcher's or an admin's session (fieldsync login) or --token.
`

func runOfficeEnrolCode(ctx context.Context, args []string, stdout io.Writer) error {
	cmd := newCommand("office enrol-code", officeEnrolCodeUsage)
	server, _, timeout := officeFlags(cmd)
	user := cmd.String("user", "", "the `USER` whose device the code enrols")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	if *user == "" {
		return cmd.usageError("name the user with --user")
	}
	oc, err := newOfficeClient(cmd, *server, *timeout)
	if err != nil {
		return err
	}
	var out protocol.EnrolmentResponse
	if err := oc.do(ctx, http.MethodPost, protocol.PathEnrolments, &protocol.EnrolmentRequest{User: *user}, &out); err != nil {
		var fe *fieldsync.Error
		if errors.As(err, &fe) {
			return fmt.Errorf("office enrol-code: the server refused: %s (%s)", fe.Message, fe.Code)
		}
		return fmt.Errorf("office enrol-code: %w", err)
	}
	fmt.Fprintf(stdout, "enrolment code for %s (%s): %s\nworks once, until %s\non the device: fieldsync enroll --server %s --code %s\n",
		out.User, out.Org, out.Code, out.Expires.Local().Format("2006-01-02 15:04"), oc.base, out.Code)
	return nil
}
