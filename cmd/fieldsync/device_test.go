package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync"
)

var (
	createdRE = regexp.MustCompile(`created work_order (\S+)\n`)
	savedOpRE = regexp.MustCompile(`op ([0-9a-f-]{36}) \(seq (\d+)\)`)
)

// create makes a record on the device and returns its id and op id.
func create(t *testing.T, dir string, sets ...string) (string, string) {
	t.Helper()
	args := []string{"create", "--dir", dir}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out := mustCLI(t, args...)
	id, op := createdRE.FindStringSubmatch(out), savedOpRE.FindStringSubmatch(out)
	if id == nil || op == nil {
		t.Fatalf("create printed no record id and op id:\n%s", out)
	}
	return id[1], op[1]
}

// savedOp returns the op id a device command printed.
func savedOp(t *testing.T, out string) string {
	t.Helper()
	m := savedOpRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no op id in:\n%s", out)
	}
	return m[1]
}

// serverRecord reads a record and its history from the server's API.
type serverRecord struct {
	Record struct {
		ID      string                     `json:"id"`
		Number  string                     `json:"number"`
		Version int64                      `json:"version"`
		Deleted bool                       `json:"deleted"`
		Fields  map[string]json.RawMessage `json:"fields"`
		Review  []string                   `json:"review"`
	} `json:"record"`
	Ops []struct {
		Op struct {
			ID     string `json:"id"`
			Device string `json:"device"`
			Kind   string `json:"kind"`
		} `json:"op"`
		Result struct {
			Status string `json:"status"`
		} `json:"result"`
	} `json:"ops"`
}

func getRecord(t *testing.T, url, id string) (serverRecord, int) {
	t.Helper()
	var r serverRecord
	code := getJSON(t, url+"/v1/records/work_order/"+id, &r)
	return r, code
}

func fieldString(t *testing.T, fields map[string]json.RawMessage, name string) string {
	t.Helper()
	var s string
	if raw, ok := fields[name]; !ok || json.Unmarshal(raw, &s) != nil {
		t.Fatalf("field %s: want a string, got %s", name, fields[name])
	}
	return s
}

// officeConflictID returns the id of the first conflict of a record on
// the server.
func officeConflictID(t *testing.T, url, id string) string {
	t.Helper()
	var h struct {
		Record struct {
			Conflicts []fieldsync.Conflict `json:"conflicts"`
		} `json:"record"`
	}
	getJSON(t, url+"/v1/records/work_order/"+id, &h)
	if len(h.Record.Conflicts) == 0 {
		t.Fatalf("record %s has no conflict on the server", id)
	}
	return h.Record.Conflicts[0].ID
}

func statusJSONOf(t *testing.T, dir string) statusJSON {
	t.Helper()
	var st statusJSON
	if err := json.Unmarshal([]byte(mustCLI(t, "status", "--dir", dir, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestOffline works on a device with no server at all, then syncs to a
// closed port (a clear, retryable failure that loses nothing), then to a
// real server that gets every op.
func TestOffline(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	id1, op1 := create(t, dir, "title=Boiler service", "status=new", "address=14 Rue des Tanneurs")
	id2, _ := create(t, dir, "title=Fix tap", `status="in progress"`)
	out := mustCLI(t, "update", "--dir", dir, "--id", shortID(id1), "--set", "status=in progress")
	contains(t, "update by short id", out, "saved on this device", `status="in progress"`)

	out = mustCLI(t, "status", "--dir", dir)
	contains(t, "status offline", out, "in queue: 3 ops", "oldest saved", "last successful sync: never", "needs attention: nothing")
	out = mustCLI(t, "list", "--dir", dir)
	contains(t, "list offline", out, "Boiler service", "Fix tap", "ready to send", shortID(id1), shortID(id2))
	out = mustCLI(t, "show", "--dir", dir, "--id", id1)
	contains(t, "show offline", out, "only on this device", "pending: 2 ops", "in progress", "14 Rue des Tanneurs")

	url := "http://" + closedPort(t)
	out, errOut, err := cli(t, "sync", "--dir", dir, "--server", url)
	if err == nil {
		t.Fatalf("sync to a closed port succeeded:\n%s", out)
	}
	contains(t, "sync to a closed port", err.Error(), "cannot reach the server", url,
		"Nothing is lost: 3 ops are safe on this device and queued", "run fieldsync sync again")
	contains(t, "sync progress", errOut, "push 0/3 ops")

	st := statusJSONOf(t, dir)
	if st.Pending != 3 || st.LastSync != nil || !strings.Contains(st.LastError, "cannot reach the server") {
		t.Errorf("after the failed sync: pending %d (want 3), last sync %v (want none), last error %q", st.Pending, st.LastSync, st.LastError)
	}
	out = mustCLI(t, "op", "--dir", dir, op1)
	contains(t, "trail after a failed send", out, "created", "failed", "unavailable", "cannot reach the server", "still queued")

	// Ops that keep failing are shown as such, still queued.
	for range 4 {
		cliErr(t, "sync", "--dir", dir, "--server", url)
	}
	out = mustCLI(t, "status", "--dir", dir)
	contains(t, "status after 5 failed syncs", out, "in queue: 3 ops", "failing for long", "5 attempts", op1, "last error: cannot reach the server")

	srv, _ := startServer(t)
	msg := cliErr(t, "sync", "--dir", dir, "--server", srv+"/wrong/path")
	contains(t, "sync to a wrong URL", msg, "refused", "no such endpoint", "3 ops are still saved on this device and queued")
	out, errOut, err = cli(t, "sync", "--dir", dir, "--server", srv)
	if err != nil {
		t.Fatalf("sync: %v\n%s", err, errOut)
	}
	contains(t, "sync", out, "sent 3 ops, 3 delivered", "pulled 2 records", "in queue: 0 ops")
	contains(t, "sync progress", errOut, "push 3/3 ops", "pull 2 records")
	rec, code := getRecord(t, srv, id1)
	if code != 200 || fieldString(t, rec.Record.Fields, "status") != "in progress" || rec.Record.Version != 2 {
		t.Errorf("server record %s: HTTP %d, %+v; want status in progress at version 2", id1, code, rec.Record)
	}
	if _, code := getRecord(t, srv, id2); code != 200 {
		t.Errorf("server record %s: HTTP %d", id2, code)
	}
	st = statusJSONOf(t, dir)
	if st.Pending != 0 || st.Counts["delivered"] != 3 || st.LastSync == nil || st.LastError != "" {
		t.Errorf("after the sync: %+v", st)
	}
}

// TestDeviceAndOffice drives every device and office command against a
// server started by `fieldsync server`, checking the server's state.
func TestDeviceAndOffice(t *testing.T) {
	clearEnv(t)
	srv, _ := startServer(t)
	dir := t.TempDir()
	id, _ := create(t, dir, "title=Boiler service", "status=new")
	badID, badOp := create(t, dir, "title=Meter", "amount=3") // amount is server-owned

	out, errOut, err := cli(t, "sync", "--dir", dir, "--server", srv)
	if err != nil {
		t.Fatalf("sync: %v\n%s", err, errOut)
	}
	contains(t, "first sync", out, "sent 2 ops, 1 delivered, 0 need review, 1 rejected", "needs attention: 1 op")
	rec, _ := getRecord(t, srv, id)
	if rec.Record.Number != "WO-1001" || fieldString(t, rec.Record.Fields, "status") != "new" {
		t.Fatalf("server record: %+v", rec.Record)
	}
	if _, code := getRecord(t, srv, badID); code != 404 {
		t.Errorf("the rejected create reached the server: HTTP %d", code)
	}
	out = mustCLI(t, "list", "--dir", dir)
	if !regexp.MustCompile(`WO-1001 +Boiler service +new +sent`).MatchString(out) ||
		!regexp.MustCompile(shortID(badID)+` +- +- +error`).MatchString(out) {
		t.Errorf("list:\n%s", out)
	}

	// Work on the record by its server number.
	upd := savedOp(t, mustCLI(t, "update", "--dir", dir, "--id", "WO-1001", "--set", "status=in progress"))
	mustCLI(t, "append", "--dir", dir, "--id", "wo-1001", "--field", "comments", "--value", "Pressure ok")
	out = mustCLI(t, "ops", "--dir", dir, "--status", "queued")
	contains(t, "ops --status queued", out, upd, "WO-1001", `status="in progress"`, `comments="Pressure ok"`)
	if strings.Contains(out, badOp) {
		t.Errorf("ops --status queued lists the rejected op:\n%s", out)
	}
	mustCLI(t, "sync", "--dir", dir, "--server", srv)
	rec, _ = getRecord(t, srv, id)
	var comments []struct{ Value string }
	json.Unmarshal(rec.Record.Fields["comments"], &comments)
	if fieldString(t, rec.Record.Fields, "status") != "in progress" || len(comments) != 1 || comments[0].Value != "Pressure ok" {
		t.Errorf("server record after update and append: %+v", rec.Record)
	}
	var ops []opJSON
	json.Unmarshal([]byte(mustCLI(t, "ops", "--dir", dir, "--json")), &ops)
	want := []string{"delivered", "error", "delivered", "delivered"}
	if len(ops) != len(want) {
		t.Fatalf("ops --json: %d ops, want %d", len(ops), len(want))
	}
	for i, o := range ops {
		if o.Status != want[i] || o.Seq != int64(i+1) {
			t.Errorf("op %d: seq %d status %s; want seq %d status %s", i, o.Seq, o.Status, i+1, want[i])
		}
	}

	// The rejection is explained, and discarding it asks for confirmation.
	out = mustCLI(t, "status", "--dir", dir)
	contains(t, "status", out, "in queue: 0 ops", "delivered: 3 ops", "rejected: 1 op", badOp,
		`server_owned_field: field "amount" is set by the server only`, "discard --dir")
	out = mustCLI(t, "op", "--dir", dir, badOp)
	contains(t, "op of the rejected create", out, "status: error", "created", "rejected", "server_owned_field")
	msg := cliErr(t, "discard", "--dir", dir, badOp)
	contains(t, "discard without --yes", msg, "for good", "--yes")
	if st := statusJSONOf(t, dir); st.Counts["error"] != 1 {
		t.Errorf("discard without --yes changed the op: %+v", st.Counts)
	}
	msg = cliErr(t, "discard", "--dir", dir, upd, "--yes")
	contains(t, "discard of a delivered op", msg, "delivered, not rejected")
	out = mustCLI(t, "discard", "--dir", dir, badOp, "--yes")
	contains(t, "discard --yes", out, "discarded op "+badOp)
	if st := statusJSONOf(t, dir); st.Counts["error"] != 0 || st.Counts["discarded"] != 1 || len(st.Attention) != 0 {
		t.Errorf("after discard: %+v", st)
	}
	contains(t, "op after discard", mustCLI(t, "op", "--dir", dir, badOp), "discarded by the user")

	// The office sets the status from a stale version: status is settled
	// by a person, so nothing is overwritten and a conflict opens.
	out = mustCLI(t, "office", "edit", "--server", srv, "--id", id, "--base", "1", "--set", "status=closed")
	contains(t, "office edit of status from version 1", out, "conflict", "nothing was overwritten", "kept in progress",
		"yours closed", "settle it: fieldsync office settle --server "+srv+" --id "+id+" --field status")
	out = mustCLI(t, "office", "edit", "--server", srv, "--id", id, "--set", "address=Quai 3", "--set", "assignee=Sam")
	contains(t, "office edit on the current version", out, "based on the server's current version", "applied")
	if strings.Contains(out, "overridden") {
		t.Errorf("an edit on the current version overrode something:\n%s", out)
	}
	rec, _ = getRecord(t, srv, id)
	if fieldString(t, rec.Record.Fields, "status") != "in progress" || fieldString(t, rec.Record.Fields, "address") != "Quai 3" {
		t.Errorf("server record after office edits: %+v", rec.Record)
	}
	// The device, not having seen the office's address, changes it too:
	// address is server-wins, so the office's stays and the device's is
	// recorded as overridden. Its status corrects its own side of the open
	// conflict, and a second office status joins the conflict.
	addrOp := savedOp(t, mustCLI(t, "update", "--dir", dir, "--id", "WO-1001", "--set", "address=Quai 4"))
	statusOp := savedOp(t, mustCLI(t, "update", "--dir", dir, "--id", "WO-1001", "--set", "status=completed on site"))
	out = mustCLI(t, "sync", "--dir", dir, "--server", srv)
	contains(t, "sync into a conflict", out, "sent 2 ops, 1 delivered, 1 need review", "needs review: 1 (WO-1001 status)")
	if strings.Contains(out, "needs attention") {
		t.Errorf("sync: an op in an open conflict is listed besides the conflict:\n%s", out)
	}
	out = mustCLI(t, "office", "edit", "--server", srv, "--id", id, "--set", "status=cancelled")
	contains(t, "office edit of a status under review", out, "conflict", "kept completed on site", "yours cancelled")
	mustCLI(t, "sync", "--dir", dir, "--server", srv)
	out = mustCLI(t, "op", "--dir", dir, addrOp)
	contains(t, "op of the overridden address", out, "status: delivered", "overridden", `address: this op's "Quai 4" lost (server-wins)`)
	var opj opJSON
	json.Unmarshal([]byte(mustCLI(t, "op", "--dir", dir, addrOp, "--json")), &opj)
	if len(opj.Overridden) != 1 || opj.Overridden[0].Field != "address" || string(opj.Overridden[0].Value) != `"Quai 4"` || opj.Overridden[0].Policy != "server-wins" {
		t.Errorf("op --json of the overridden address: %+v", opj.Overridden)
	}
	contains(t, "ops", mustCLI(t, "ops", "--dir", dir), `overridden: address: your "Quai 4" lost (server-wins)`)

	out = mustCLI(t, "status", "--dir", dir)
	contains(t, "status with a conflict", out, "needs review: 1\n")
	containsText(t, "status with a conflict", out,
		"WO-1001 status: changed on both sides, nothing overwritten; needs review (conflict "+officeConflictID(t, srv, id),
		`server's value: "completed on site"`, "this device, ", "op "+statusOp,
		`clashing value: "closed"`, "office, ",
		`clashing value: "cancelled"`,
		"settle it: fieldsync settle --dir "+dir+" --id WO-1001 --field status --keep-server | --take-device | --value VALUE",
		"add --op OPID")
	for _, bad := range []string{"needs review: update", "address"} {
		if strings.Contains(out, bad) {
			t.Errorf("status with a conflict: %q should not be there (settled by policy, or shown with its conflict):\n%s", bad, out)
		}
	}
	st := statusJSONOf(t, dir)
	if st.NeedsReview != 1 || len(st.Review) != 1 || len(st.Review[0].Conflicts) != 1 || len(st.Review[0].Conflicts[0].Theirs) != 2 ||
		len(st.Attention) != 0 {
		t.Errorf("status --json with a conflict: %+v", st)
	}
	out = mustCLI(t, "show", "--dir", dir, "--id", "WO-1001")
	contains(t, "show with a conflict", out, "state: needs review", "needs review: status", "Quai 3", "Pressure ok", "Sam",
		"conflicts:", "status: open, needs review", `"completed on site"`, `"closed"`, `"cancelled"`, "fieldsync settle --dir "+dir+" --id WO-1001 --field status")
	var v viewJSON
	json.Unmarshal([]byte(mustCLI(t, "show", "--dir", dir, "--id", "WO-1001", "--json")), &v)
	if v.ID != id || v.State != "needs review" || len(v.Review) != 1 || v.Review[0] != "status" || len(v.Conflicts) != 1 || len(v.Settled) != 0 {
		t.Errorf("show --json: %+v", v)
	}
	out = mustCLI(t, "office", "show", "--server", srv, "--id", id)
	contains(t, "office show", out, "WO-1001  Boiler service", "needs review: status", "conflicts:", "status: open, needs review",
		"fieldsync office settle --server "+srv+" --id "+id+" --field status",
		"history (8 ops", "office #1", "conflict v4", `conflict: status kept "in progress"`, `this op's "closed": needs review`,
		"applied, overridden v5", `overridden: address: this op's "Quai 4" lost (server-wins)`,
		"office #3", `this op's "cancelled": needs review`, "Pressure ok")

	// Settle on the device, taking one of the two clashing values by its op.
	c := v.Conflicts[0]
	msg = cliErr(t, "settle", "--dir", dir, "--id", "WO-1001", "--field", "status", "--take-device", "--op", upd)
	contains(t, "settle --op of an op outside the conflict", msg, "is not one of the conflict's clashing values", c.Theirs[0].OpID)
	out = mustCLI(t, "settle", "--dir", dir, "--id", "WO-1001", "--field", "status", "--take-device", "--op", shortID(c.Theirs[0].OpID))
	contains(t, "settle --take-device --op", out, `settlement of WO-1001 status: "closed" (the clashing value)`, "in the queue until the next sync")
	if st := statusJSONOf(t, dir); st.NeedsReview != 0 || st.Pending != 1 {
		t.Errorf("status after the settlement saved on the device: %+v", st)
	}
	mustCLI(t, "sync", "--dir", dir, "--server", srv)
	rec, _ = getRecord(t, srv, id)
	if fieldString(t, rec.Record.Fields, "status") != "closed" || len(rec.Record.Review) != 0 {
		t.Errorf("server record after the settlement: %+v", rec.Record)
	}
	contains(t, "status after the settlement", mustCLI(t, "status", "--dir", dir), "needs attention: nothing")

	// An office create reaches the device at its next sync.
	out = mustCLI(t, "office", "create", "--server", srv, "--set", "title=Replace meter", "--set", "amount=120")
	contains(t, "office create", out, "created work_order WO-1002")
	msg = cliErr(t, "office", "create", "--server", srv, "--set", "colour=red")
	contains(t, "office create of an unknown field", msg, "the server refused", "colour")
	mustCLI(t, "sync", "--dir", dir, "--server", srv)
	contains(t, "list after office create", mustCLI(t, "list", "--dir", dir), "WO-1002", "Replace meter")

	// A delete goes through too; the record leaves the list.
	mustCLI(t, "delete", "--dir", dir, "--id", "WO-1002")
	mustCLI(t, "sync", "--dir", dir, "--server", srv)
	if out := mustCLI(t, "list", "--dir", dir); strings.Contains(out, "WO-1002") {
		t.Errorf("list after delete still shows WO-1002:\n%s", out)
	}
	msg = cliErr(t, "update", "--dir", dir, "--id", "WO-1002", "--set", "status=closed")
	contains(t, "update of a deleted record", msg, `no work_order "WO-1002"`)

	msg = cliErr(t, "office", "show", "--server", srv, "--id", "nope")
	contains(t, "office show of an unknown id", msg, "nope")
	msg = cliErr(t, "office", "show", "--server", "http://"+closedPort(t), "--id", id)
	contains(t, "office show of a closed port", msg, "cannot reach the server", "is fieldsync server running")
}

// TestServerPortTaken: a second server on the same address says so.
func TestServerPortTaken(t *testing.T) {
	clearEnv(t)
	srv, b := startServer(t)
	addr := strings.TrimPrefix(srv, "http://")
	msg := cliErr(t, "server", "--no-auth", "--addr", addr, "--db", t.TempDir()+"/other.db")
	contains(t, "server on a taken port", msg, addr, "already in use", "--addr")
	if err := b.stop(); err != nil {
		t.Fatalf("server stopped with %v", err)
	}
	// Stopped cleanly, it released the address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the stopped server still holds %s: %v", addr, err)
	}
	ln.Close()
}

// TestServerSchema serves a schema from a file: its types are accepted,
// and a broken file is refused with its name.
func TestServerSchema(t *testing.T) {
	clearEnv(t)
	tmp := t.TempDir()
	schemaFile := filepath.Join(tmp, "visits.json")
	os.WriteFile(schemaFile, []byte(`{"version": 1, "types": {"visit": {"number_prefix": "V-", "number_start": 1,
		"fields": {"patient": {"type": "string", "required": true}, "pulse": {"type": "int"}}}}}`), 0o600)
	b := startCommand(t, "server", "--no-auth", "--addr", "127.0.0.1:0", "--db", filepath.Join(tmp, "s.db"), "--schema", schemaFile)
	srv := b.waitOutput(listeningRE)[1]
	dir := t.TempDir()
	mustCLI(t, "create", "--dir", dir, "--type", "visit", "--set", "patient=Ada", "--set", "pulse=72")
	mustCLI(t, "create", "--dir", dir, "--set", "title=A work order")
	out := mustCLI(t, "sync", "--dir", dir, "--server", srv)
	contains(t, "sync with a custom schema", out, "1 delivered", "1 rejected")
	contains(t, "list of visits", mustCLI(t, "list", "--dir", dir, "--type", "visit"), "V-1")
	contains(t, "status", mustCLI(t, "status", "--dir", dir), `unknown entity type "work_order"`)

	broken := filepath.Join(tmp, "broken.json")
	os.WriteFile(broken, []byte(`{"version": 1, "types": {}}`), 0o600)
	msg := cliErr(t, "server", "--no-auth", "--addr", "127.0.0.1:0", "--db", filepath.Join(tmp, "t.db"), "--schema", broken)
	contains(t, "server with a broken schema", msg, broken, "no types")
}
