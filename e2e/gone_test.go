package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/protocol"
)

// TestReassignedRecordLeavesTheDevice runs a field worker's real device
// engine against the authenticated front: a work order assigned to her
// arrives; the office assigns it to someone else and her device drops its
// copy at the next sync, while an op she queued on it meanwhile stays in
// her outbox and is refused by the server with a reason; assigned back,
// the record returns whole.
func TestReassignedRecordLeavesTheDevice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := newAccessWorld(t)
	ids := w.front.Identity()
	if _, err := ids.CreateOrg(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct {
		name string
		role auth.Role
		pw   string
	}{{"ana", auth.RoleFieldWorker, ""}, {"bob", auth.RoleFieldWorker, ""}, {"dora", auth.RoleDispatcher, "dora-password-1"}} {
		if _, err := ids.CreateUser(ctx, "acme", u.name, u.role, u.pw); err != nil {
			t.Fatal(err)
		}
	}
	var login protocol.LoginResponse
	w.call("", http.MethodPost, protocol.PathLogin, protocol.LoginRequest{Org: "acme", User: "dora", Password: "dora-password-1"}, http.StatusOK, "", &login)
	dora := login.Token
	assign := func(id, to string) {
		t.Helper()
		rec, _ := w.record("acme", "work_order", id)
		var res protocol.Result
		w.call(dora, http.MethodPatch, protocol.PathRecords+"work_order/"+id,
			protocol.EditRequest{Base: rec.Version, Fields: rawFields(t, map[string]any{"assignee": to})}, http.StatusOK, "", &res)
		if res.Status != string(fieldsync.StatusApplied) {
			t.Fatalf("assign to %s: %+v", to, res)
		}
	}
	create := func(title string) string {
		t.Helper()
		var c protocol.Created
		w.call(dora, http.MethodPost, protocol.PathRecords+"work_order",
			protocol.EditRequest{Fields: rawFields(t, map[string]any{"title": title, "assignee": "ana"})}, http.StatusOK, "", &c)
		return c.ID
	}
	id, other := create("Boiler"), create("Pump")

	e, err := client.Open(ctx, client.Config{Dir: t.TempDir(), ServerURL: w.url})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	code, err := ids.IssueEnrolment(ctx, "acme", "ana", "dora")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Enroll(ctx, code.Code, "ana's tablet"); err != nil {
		t.Fatal(err)
	}
	sync := func() client.Report {
		t.Helper()
		rep, err := e.Sync(ctx)
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		return rep
	}
	sync()
	if v, err := e.Get(ctx, "work_order", id); err != nil || string(v.Fields["title"]) != `"Boiler"` {
		t.Fatalf("ana's device before reassignment: %+v, %v", v, err)
	}

	if _, err := e.Get(ctx, "work_order", other); err != nil {
		t.Fatalf("ana's device before reassignment: %v", err)
	}

	assign(id, "bob")
	assign(other, "bob")
	// Offline, she notes something on it before her next sync.
	if _, err := e.Update(ctx, "work_order", id, map[string]any{"title": "Boiler, valve replaced"}); err != nil {
		t.Fatal(err)
	}
	sync()
	if v, err := e.Get(ctx, "work_order", other); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Fatalf("the device still shows a record assigned to someone else: %+v, %v", v, err)
	}
	// What she saved on the other one is kept and shown as refused; the
	// server's copy is no longer on the device.
	v, err := e.Get(ctx, "work_order", id)
	if err != nil || v.Version != 0 || len(v.Fields) != 0 || !v.OnlyOnDevice || v.State != client.RecordError {
		t.Fatalf("the reassigned record she edited: %+v, %v; want only her refused op, no server copy", v, err)
	}
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts[client.OpError] != 1 {
		t.Fatalf("her update on the reassigned record: status %+v, want one rejected op kept for her to see", st.Counts)
	}

	assign(id, "ana")
	sync()
	v, err = e.Get(ctx, "work_order", id)
	if err != nil || string(v.Fields["assignee"]) != `"ana"` || string(v.Fields["title"]) != `"Boiler"` {
		t.Fatalf("ana's device after assigning back: %+v, %v", v, err)
	}
}
