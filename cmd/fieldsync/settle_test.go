package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync"
)

// serverConflicts reads a record's fields, review and conflicts from the
// server's API.
type serverConflicts struct {
	Record struct {
		Version   int64                      `json:"version"`
		Fields    map[string]json.RawMessage `json:"fields"`
		Review    []string                   `json:"review"`
		Conflicts []fieldsync.Conflict       `json:"conflicts"`
	} `json:"record"`
}

func getConflicts(t *testing.T, url, id string) serverConflicts {
	t.Helper()
	var r serverConflicts
	if code := getJSON(t, url+"/v1/records/work_order/"+id, &r); code != 200 {
		t.Fatalf("GET record %s: HTTP %d", id, code)
	}
	return r
}

// TestSettleOnDevice is the basement story on the command line: a
// technician's status clashes with the dispatcher's, the technician
// settles it with a note while offline, the settlement reaches the server
// at the next sync and cannot be settled again; a settlement that arrives
// after the office settled the same conflict is refused, says so, and
// undoes nothing.
func TestSettleOnDevice(t *testing.T) {
	clearEnv(t)
	srv, _ := startServer(t)
	dir := t.TempDir()
	id, _ := create(t, dir, "title=Boiler service", "status=assigned", "address=14 Rue des Tanneurs")
	mustCLI(t, "sync", "--dir", dir, "--server", srv)
	device := statusJSONOf(t, dir).Device

	// In the basement: the job is done. Meanwhile the office changes the
	// address and the status from the version both saw.
	techOp := savedOp(t, mustCLI(t, "update", "--dir", dir, "--id", "WO-1001",
		"--set", "status=completed on site", "--set", "address=15 Rue des Tanneurs"))
	out := mustCLI(t, "office", "edit", "--server", srv, "--id", id,
		"--set", "status=waiting for parts", "--set", "address=3 Quai Saint-Vincent")
	contains(t, "office edit", out, "applied")

	out = mustCLI(t, "sync", "--dir", dir, "--server", srv)
	contains(t, "sync into the clash", out, "sent 1 op, 0 delivered, 1 need review", "needs review: 1 (WO-1001 status)")
	cid := officeConflictID(t, srv, id)
	if c := getConflicts(t, srv, id).Record.Conflicts[0]; len(c.Theirs) != 1 || c.Theirs[0].OpID != techOp {
		t.Errorf("conflict %s does not hold the op that opened it, %s: %+v", cid, techOp, c.Theirs)
	}
	out = mustCLI(t, "status", "--dir", dir)
	contains(t, "status with the clash", out, "needs review: 1\n")
	containsText(t, "status with the clash", out,
		"WO-1001 status: changed on both sides, nothing overwritten; needs review (conflict "+cid,
		`server's value: "waiting for parts" (office, `,
		`clashing value: "completed on site" (this device, `, "op "+techOp+")",
		"settle it: fieldsync settle --dir "+dir+" --id WO-1001 --field status --keep-server | --take-device | --value VALUE [--note TEXT]")
	// The address was settled by its policy: the office's stays, the
	// technician's is kept in the op's result.
	if r := getConflicts(t, srv, id); fieldString(t, r.Record.Fields, "address") != "3 Quai Saint-Vincent" {
		t.Errorf("address on the server: %s", r.Record.Fields["address"])
	}
	contains(t, "op with an overridden address", mustCLI(t, "op", "--dir", dir, techOp),
		"status: needs review", `address: this op's "15 Rue des Tanneurs" lost (server-wins)`)

	// Settle on the device with no server at all.
	out = mustCLI(t, "settle", "--dir", dir, "--id", "WO-1001", "--field", "status",
		"--value", "waiting for parts", "--note", "completed, but parts required")
	contains(t, "settle", out,
		`saved on this device: settlement of WO-1001 status: "waiting for parts" (a new value), note "completed, but parts required"`,
		"in the queue until the next sync", "it settles conflict "+cid, `"completed on site"`)
	settleOp := savedOp(t, out)
	st := statusJSONOf(t, dir)
	if st.NeedsReview != 0 || st.Pending != 1 || len(st.Attention) != 0 {
		t.Errorf("status after settling on the device: needs review %d (want 0), pending %d (want 1), attention %+v",
			st.NeedsReview, st.Pending, st.Attention)
	}
	contains(t, "status after settling on the device", mustCLI(t, "status", "--dir", dir), "in queue: 1 op", "needs attention: nothing")
	out = mustCLI(t, "show", "--dir", dir, "--id", "WO-1001")
	contains(t, "show after settling on the device", out, "state: ready to send",
		"settled on this device, in the queue until the next sync (op "+settleOp+`): status: new value "waiting for parts", note "completed, but parts required"`)
	msg := cliErr(t, "settle", "--dir", dir, "--id", "WO-1001", "--field", "status", "--keep-server")
	contains(t, "a second settlement on the device", msg, "already settled on this device by op "+settleOp, "not sent yet")
	msg = cliErr(t, "sync", "--dir", dir, "--server", "http://"+closedPort(t))
	contains(t, "sync with no server", msg, "Nothing is lost: 1 op is safe on this device")
	if r := getConflicts(t, srv, id); len(r.Record.Conflicts) != 1 || !r.Record.Conflicts[0].Open() {
		t.Fatalf("the server has the settlement before any sync: %+v", r.Record.Conflicts)
	}

	// Back online: the settlement reaches the server, with its note.
	out = mustCLI(t, "sync", "--dir", dir, "--server", srv)
	contains(t, "sync of the settlement", out, "sent 1 op, 1 delivered, 0 need review, 0 rejected")
	r := getConflicts(t, srv, id)
	if len(r.Record.Conflicts) != 1 || r.Record.Conflicts[0].Settled == nil {
		t.Fatalf("conflicts on the server after the sync: %+v", r.Record.Conflicts)
	}
	s := r.Record.Conflicts[0].Settled
	if s.Choice != fieldsync.ChoiceNewValue || string(s.Value) != `"waiting for parts"` || s.Note != "completed, but parts required" ||
		s.By != device || s.OpID != settleOp || len(r.Record.Review) != 0 || fieldString(t, r.Record.Fields, "status") != "waiting for parts" {
		t.Errorf("server after the settlement: settled %+v, review %v, status %s", s, r.Record.Review, r.Record.Fields["status"])
	}
	settledLine := "status: settled (conflict " + cid + `): new value "waiting for parts", note "completed, but parts required"; by `
	out = mustCLI(t, "show", "--dir", dir, "--id", "WO-1001")
	contains(t, "show after the sync", out, "state: sent", settledLine+"this device",
		`the values were: "waiting for parts" by office, "completed on site" by this device`)
	if strings.Contains(out, "open, needs review") || strings.Contains(out, "in the queue until") {
		t.Errorf("show after the sync still shows the conflict as open or queued:\n%s", out)
	}
	out = mustCLI(t, "office", "show", "--server", srv, "--id", id)
	containsText(t, "office show after the settlement", out, settledLine+"device "+shortID(device),
		"settle applied v", settleOp, `settles status: new value "waiting for parts", note "completed, but parts required"`,
		`overridden: address: this op's "15 Rue des Tanneurs" lost (server-wins)`)

	// Settled once: neither side can settle it again.
	msg = cliErr(t, "settle", "--dir", dir, "--id", "WO-1001", "--field", "status", "--keep-server")
	contains(t, "device settle of a settled conflict", msg, "WO-1001 status has no open conflict: conflict "+cid+" was already settled", "by this device")
	msg = cliErr(t, "office", "settle", "--server", srv, "--id", id, "--field", "status", "--keep-server")
	contains(t, "office settle with no open conflict", msg, "WO-1001 has no open conflict on status", "already settled", `new value "waiting for parts"`)
	msg = cliErr(t, "office", "settle", "--server", srv, "--id", id, "--field", "status", "--conflict", cid, "--keep-server")
	contains(t, "office settle of a settled conflict", msg, "office settle: already settled:",
		"this conflict on status was already settled by "+device+" (new_value)", "(already_settled)")

	// A new clash; the technician settles it offline, but the office
	// settles it first: the late settlement is refused and undoes nothing.
	mustCLI(t, "update", "--dir", dir, "--id", "WO-1001", "--set", "status=completed on site")
	mustCLI(t, "office", "edit", "--server", srv, "--id", id, "--set", "status=closed")
	mustCLI(t, "sync", "--dir", dir, "--server", srv)
	if n := statusJSONOf(t, dir).NeedsReview; n != 1 {
		t.Fatalf("needs review after the second clash: %d, want 1", n)
	}
	lateOp := savedOp(t, mustCLI(t, "settle", "--dir", dir, "--id", "WO-1001", "--field", "status", "--keep-server"))
	out = mustCLI(t, "office", "settle", "--server", srv, "--id", id, "--field", "status", "--take-device", "--note", "the technician was there")
	contains(t, "office settle", out, `settled: WO-1001 status is now "completed on site"`,
		`took the clashing value "completed on site", note "the technician was there"; by office`, "devices get the settlement at their next sync")
	out = mustCLI(t, "sync", "--dir", dir, "--server", srv)
	contains(t, "sync of the late settlement", out, "sent 1 op, 0 delivered, 0 need review, 1 rejected", "needs attention: 1 op")
	out = mustCLI(t, "status", "--dir", dir)
	contains(t, "status with the late settlement", out, "rejected: 1 op",
		"rejected: settle of WO-1001 (op "+lateOp+"): already_settled: this conflict on status was already settled by office (take_device)",
		"the conflict was settled before this settlement arrived", "fieldsync discard --dir "+dir+" "+lateOp+" --yes")
	if strings.Contains(out, "needs review:") {
		t.Errorf("status lists a settled conflict as needing review:\n%s", out)
	}
	contains(t, "op of the late settlement", mustCLI(t, "op", "--dir", dir, lateOp), "status: error", "already_settled",
		"settles status: keep the server's value", "the conflict was settled before this settlement arrived")
	r = getConflicts(t, srv, id)
	if fieldString(t, r.Record.Fields, "status") != "completed on site" || len(r.Record.Conflicts) != 2 ||
		r.Record.Conflicts[1].Settled == nil || r.Record.Conflicts[1].Settled.By != "office" || r.Record.Conflicts[1].Settled.Choice != fieldsync.ChoiceTakeDevice {
		t.Errorf("the refused settlement changed the server: status %s, conflicts %+v", r.Record.Fields["status"], r.Record.Conflicts)
	}
	contains(t, "show after the office settled", mustCLI(t, "show", "--dir", dir, "--id", "WO-1001"),
		`took the clashing value "completed on site", note "the technician was there"; by office`)
}

// TestSettleFromOffice settles from the office a conflict the office ran
// into, with a new value and a note; the device gets the settlement at
// its next sync. Bad requests are refused with what to do.
func TestSettleFromOffice(t *testing.T) {
	clearEnv(t)
	srv, _ := startServer(t)
	dir := t.TempDir()
	id, _ := create(t, dir, "title=Leaking valve", "status=assigned")
	mustCLI(t, "sync", "--dir", dir, "--server", srv)
	mustCLI(t, "update", "--dir", dir, "--id", "WO-1001", "--set", "status=in progress", "--set", "visit_start=2026-03-02T09:00:00Z")
	mustCLI(t, "sync", "--dir", dir, "--server", srv)

	// The dispatcher, from version 1: the status clashes (a conflict), the
	// visit time is the device's (device-wins: the office's is overridden).
	out := mustCLI(t, "office", "edit", "--server", srv, "--id", id, "--base", "1",
		"--set", "status=cancelled", "--set", "visit_start=2026-03-02T14:00:00Z")
	contains(t, "office edit into a conflict", out, "conflict", "kept in progress", "yours cancelled",
		`overridden: visit_start: this op's "2026-03-02T14:00:00Z" lost (device-wins)`)
	cid := officeConflictID(t, srv, id)
	clashing := getConflicts(t, srv, id).Record.Conflicts[0].Theirs[0].OpID
	mustCLI(t, "sync", "--dir", dir, "--server", srv)
	if n := statusJSONOf(t, dir).NeedsReview; n != 1 {
		t.Fatalf("the device sees %d conflicts, want 1", n)
	}

	for _, c := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"--field", "status"}, []string{"choose one of --keep-server, --take-device or --value VALUE"}},
		{[]string{"--field", "status", "--keep-server", "--value", "closed"}, []string{"choose one of"}},
		{[]string{"--field", "status", "--keep-server", "--op", cid}, []string{"--op goes with --take-device"}},
		{[]string{"--keep-server"}, []string{"--field"}},
		{[]string{"--field", "status", "--take-device", "--op", "00000000-0000-7000-8000-000000000000"}, []string{"is not one of the conflict's clashing values", clashing}},
		{[]string{"--field", "title", "--keep-server"}, []string{"WO-1001 has no open conflict on title: nothing to settle"}},
		{[]string{"--field", "status", "--value", "maybe"}, []string{"the server refused", "invalid_field"}},
	} {
		args := append([]string{"office", "settle", "--server", srv, "--id", id}, c.args...)
		contains(t, "fieldsync "+strings.Join(c.args, " "), cliErr(t, args...), c.wants...)
	}
	msg := cliErr(t, "office", "settle", "--server", srv, "--id", "nope", "--field", "status", "--keep-server")
	contains(t, "office settle of an unknown record", msg, "nope")
	if r := getConflicts(t, srv, id); r.Record.Conflicts[0].Settled != nil {
		t.Fatalf("a refused settlement settled the conflict: %+v", r.Record.Conflicts[0])
	}

	out = mustCLI(t, "office", "settle", "--server", srv, "--id", id, "--field", "status",
		"--value", "waiting for parts", "--note", "valve on order")
	contains(t, "office settle --value", out, `settled: WO-1001 status is now "waiting for parts"`,
		`new value "waiting for parts", note "valve on order"; by office`, "conflict "+cid+" had:", `"in progress"`, `"cancelled"`)
	r := getConflicts(t, srv, id)
	if s := r.Record.Conflicts[0].Settled; s == nil || s.Choice != fieldsync.ChoiceNewValue || s.Note != "valve on order" || s.By != "office" ||
		fieldString(t, r.Record.Fields, "status") != "waiting for parts" || len(r.Record.Review) != 0 {
		t.Errorf("server after the office settled: %+v", r.Record)
	}
	out = mustCLI(t, "office", "show", "--server", srv, "--id", id)
	containsText(t, "office show", out, "status: settled (conflict "+cid+`): new value "waiting for parts", note "valve on order"; by office`,
		"office #2", "settle applied", `overridden: visit_start: this op's "2026-03-02T14:00:00Z" lost (device-wins)`)

	// The device gets the settlement at its next sync.
	mustCLI(t, "sync", "--dir", dir, "--server", srv)
	out = mustCLI(t, "show", "--dir", dir, "--id", "WO-1001")
	contains(t, "device show after the office settled", out, "state: sent", "waiting for parts",
		"status: settled (conflict "+cid+`): new value "waiting for parts", note "valve on order"; by office`)
	var v viewJSON
	json.Unmarshal([]byte(mustCLI(t, "show", "--dir", dir, "--id", "WO-1001", "--json")), &v)
	if len(v.Conflicts) != 0 || len(v.Settled) != 1 || v.Settled[0].Settled.Note != "valve on order" {
		t.Errorf("show --json after the office settled: conflicts %+v, settled %+v", v.Conflicts, v.Settled)
	}
	contains(t, "status after the office settled", mustCLI(t, "status", "--dir", dir), "needs attention: nothing")
}
