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
	"text/tabwriter"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

const officeUsage = `Usage: fieldsync office create|edit|show --server URL [flags]

What a dispatcher does from the office, over the server's HTTP API:

  office create --type T --set NAME=VALUE...        make a record (POST /v1/records/T)
  office edit   --id ID [--base N] --set NAME=VALUE... change fields (PATCH /v1/records/T/ID)
  office show   --id ID                             the record and its op history

An edit names the version it was based on (--base; default: the server's
current one). A field that a device changed after that version is not
overwritten: both values are kept and the field is marked for review.
Each has --help.
`

// runOffice runs `fieldsync office`.
func runOffice(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("office: name what to do: create, edit or show; see fieldsync office --help")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, officeUsage)
		return nil
	case "create":
		return runOfficeCreate(ctx, args[1:], stdout)
	case "edit":
		return runOfficeEdit(ctx, args[1:], stdout)
	case "show":
		return runOfficeShow(ctx, args[1:], stdout)
	}
	return fmt.Errorf("office: unknown action %q: want create, edit or show; see fieldsync office --help", args[0])
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
changed after --base is not overwritten: the answer is "conflict", both
values are kept and the field is marked for review on both sides.
`

const officeShowUsage = `Usage: fieldsync office show --server URL [--type TYPE] --id ID [--json]

Show the server's record and its history: every op that touched it, from
which device, with the server's verdict (applied, conflict, rejected).
`

// officeClient talks to the server's /v1 API as the office.
type officeClient struct {
	base string
	http *http.Client
}

func officeFlags(c *command) (server *string, typ *string, timeout *time.Duration) {
	server = c.String("server", envOr("FIELDSYNC_SERVER", ""), serverURLUsage)
	typ = typeFlag(c)
	timeout = c.Duration("timeout", 30*time.Second, "give up on the request after `DURATION`")
	return
}

func newOfficeClient(c *command, server string, timeout time.Duration) (*officeClient, error) {
	if server == "" {
		return nil, c.usageError("name the server with --server URL or FIELDSYNC_SERVER")
	}
	u := strings.TrimRight(server, "/")
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return nil, c.usageError(fmt.Sprintf("server URL %q: want http://host:port or https://…", server))
	}
	return &officeClient{base: u, http: &http.Client{Timeout: timeout}}, nil
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
			by := c.ServerBy
			if by != "" && by != "office" {
				by = "device " + shortID(by)
			}
			fmt.Fprintf(stdout, "  %s: kept %s (set by %s at version %d), yours %s: needs review\n",
				c.Field, fmtValue(c.ServerValue), by, c.ServerVersion, fmtValue(c.DeviceValue))
		}
		if len(res.Conflicts) == 0 && res.Message != "" {
			fmt.Fprintf(stdout, "  %s\n", res.Message)
		}
	case fieldsync.StatusRejected:
		return fmt.Errorf("office edit: the server refused: %s (%s)", res.Message, res.Code)
	default:
		fmt.Fprintf(stdout, "%s: %s\n", res.Status, res.Message)
	}
	return nil
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
	fmt.Fprintf(stdout, "history (%s, in the order the server decided them):\n", plural(len(h.Ops), "op", "ops"))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, e := range h.Ops {
		by := e.Op.Device
		if by != "office" {
			by = "device " + shortID(by)
		}
		verdict := e.Result.Status
		if e.Result.Version > 0 {
			verdict += fmt.Sprintf(" v%d", e.Result.Version)
		}
		detail := fmtFields(e.Op.Fields, 60)
		if e.Result.Message != "" {
			detail += "  " + e.Result.Message
		}
		fmt.Fprintf(tw, "  %s\t%s #%d\t%s\t%s\t%s\t%s\n", fmtTime(e.Received), by, e.Op.Seq, e.Op.Kind, verdict, e.Op.ID, detail)
	}
	return tw.Flush()
}
