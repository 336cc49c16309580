package auth

import (
	"net/http"
	"testing"

	"github.com/fieldsync/fieldsync"
)

// TestDecideRoles checks every action for every role and token kind
// against the table in docs/security.md, on a record the principal may
// reach: only the role and the token decide here.
func TestDecideRoles(t *testing.T) {
	want := map[Action][3]bool{ // field worker, dispatcher, admin
		ActionPush:           {true, true, true},
		ActionPull:           {true, true, true},
		ActionReadRecord:     {true, true, true},
		ActionReadOp:         {true, true, true},
		ActionDownload:       {true, true, true},
		ActionUpload:         {true, true, true},
		ActionReadSchema:     {true, true, true},
		ActionInfo:           {true, true, true},
		ActionOfficeEdit:     {false, true, true},
		ActionOfficeCreate:   {false, true, true},
		ActionSettle:         {false, true, true},
		ActionIssueEnrolment: {false, true, true},
		ActionWriteSchema:    {false, false, true},
		ActionAdminUsers:     {false, false, true},
		ActionAdminDevices:   {false, false, true},
		ActionCreateTestOrg:  {false, false, false}, // an operator's only: TestDecideOperator
		ActionDeleteTestOrg:  {false, false, false},
	}
	if len(want) != len(rules) {
		t.Fatalf("%d actions in the rules, %d in this test", len(rules), len(want))
	}
	for action, allowed := range want {
		for i, role := range []Role{RoleFieldWorker, RoleDispatcher, RoleAdmin} {
			for _, kind := range []TokenKind{TokenDevice, TokenUser} {
				p := Principal{Org: "acme", User: "ana", Role: role, TokenKind: kind}
				if kind == TokenDevice {
					p.DeviceID = "dev1"
				}
				req := Request{Action: action, Org: "acme", DeviceID: p.DeviceID, RecordExists: true, RecordAssignee: "ana"}
				d := Decide(p, req)
				ok := allowed[i] && (action != ActionPush || kind == TokenDevice)
				if d.Allow != ok {
					t.Errorf("%s by %s with a %s token: allow=%v, want %v (%s)", action, role, kind, d.Allow, ok, d.Message)
				}
				if !d.Allow && (d.Status != http.StatusForbidden || d.Code != fieldsync.EForbidden) {
					t.Errorf("%s by %s: refused with %d %s, want 403 forbidden", action, role, d.Status, d.Code)
				}
			}
		}
	}
}

// TestDecideOperator checks the operator's side of the table: an
// operator token does the operator actions and nothing else, and no
// organisation's token, whatever its role, does an operator action.
func TestDecideOperator(t *testing.T) {
	op := Principal{User: "selftest", TokenKind: TokenOperator}
	for action, r := range rules {
		d := Decide(op, Request{Action: action, Org: "acme", RecordExists: true, RecordAssignee: "ana"})
		if d.Allow != r.operator {
			t.Errorf("%s by the operator: allow=%v, want %v (%s)", action, d.Allow, r.operator, d.Message)
		}
		if !d.Allow && (d.Status != http.StatusForbidden || d.Code != fieldsync.EForbidden) {
			t.Errorf("%s by the operator: refused with %d %s, want 403 forbidden", action, d.Status, d.Code)
		}
	}
	for _, a := range []Action{ActionCreateTestOrg, ActionDeleteTestOrg} {
		if d := DecideAction(op, a, ""); !d.Allow {
			t.Errorf("%s by the operator with no organisation: %+v", a, d)
		}
		for _, p := range []Principal{
			{Org: "acme", User: "adam", Role: RoleAdmin, TokenKind: TokenUser},
			{Org: "selftest-x", User: "selftest-office", Role: RoleDispatcher, TokenKind: TokenUser},
			{Org: "acme", User: "ana", Role: RoleFieldWorker, DeviceID: "d1", TokenKind: TokenDevice},
			{User: "selftest", TokenKind: TokenUser},
		} {
			if d := DecideAction(p, a, p.Org); d.Allow || d.Status != http.StatusForbidden {
				t.Errorf("%s by %s (%s, %s): %+v, want 403", a, p.User, p.Role, p.TokenKind, d)
			}
		}
	}
	if d := DecideAction(Principal{TokenKind: TokenOperator}, ActionCreateTestOrg, ""); d.Allow {
		t.Errorf("an operator principal without a name is allowed: %+v", d)
	}
}

func TestDecideDefaults(t *testing.T) {
	p := Principal{Org: "acme", User: "ana", Role: RoleAdmin, TokenKind: TokenUser}
	if d := Decide(p, Request{Action: "format_disk", Org: "acme"}); d.Allow || d.Code != fieldsync.EForbidden {
		t.Errorf("an unknown action: %+v", d)
	}
	if d := Decide(Principal{Org: "acme", Role: "root"}, Request{Action: ActionInfo, Org: "acme"}); d.Allow {
		t.Errorf("an unknown role is allowed: %+v", d)
	}
	if d := Decide(Principal{Role: RoleAdmin}, Request{Action: ActionInfo}); d.Allow || d.Code != fieldsync.ENotFound {
		t.Errorf("a principal of no organisation: %+v", d)
	}
	w := Principal{Org: "acme", User: "ana", Role: RoleFieldWorker, DeviceID: "d1", TokenKind: TokenDevice}
	if d := Decide(w, Request{Action: ActionReadRecord, Org: "acme"}); d.Allow {
		t.Errorf("a worker reads a record with no facts given (zero Request): %+v", d)
	}
	if d := Decide(w, Request{Action: ActionReadRecord, Org: "acme", RecordExists: true}); d.Allow {
		t.Errorf("a worker reads an unassigned record: %+v", d)
	}
	if d := Decide(w, Request{Action: ActionPull, Org: "acme", RecordExists: false}); d.Allow {
		t.Errorf("a worker reads a record that does not exist: %+v", d)
	}
	if err := Decide(w, Request{Action: ActionInfo, Org: "acme"}).Err(); err != nil {
		t.Errorf("Err of an allowed decision: %v", err)
	}
}

func TestActionOf(t *testing.T) {
	cases := []struct {
		method, path string
		want         Action
		code         fieldsync.Code
	}{
		{"POST", "/v1/push", ActionPush, ""},
		{"GET", "/v1/changes", ActionPull, ""},
		{"GET", "/v1/records/work_order/abc", ActionReadRecord, ""},
		{"HEAD", "/v1/records/work_order/abc", ActionReadRecord, ""},
		{"PATCH", "/v1/records/work_order/abc", ActionOfficeEdit, ""},
		{"POST", "/v1/records/work_order", ActionOfficeCreate, ""},
		{"POST", "/v1/records/work_order/abc/settle", ActionSettle, ""},
		{"GET", "/v1/ops/0190", ActionReadOp, ""},
		{"GET", "/v1/info", ActionInfo, ""},
		{"GET", "/v1/schema", ActionReadSchema, ""},
		{"PUT", "/v1/schema", ActionWriteSchema, ""},
		{"POST", "/v1/files/", ActionUpload, ""},
		{"PATCH", "/v1/files/abc123", ActionUpload, ""},
		{"HEAD", "/v1/files/abc123", ActionUpload, ""},
		{"GET", "/v1/blobs/aa11", ActionDownload, ""},
		{"HEAD", "/v1/blobs/aa11", ActionDownload, ""},
		{"POST", "/v1/operator/test-orgs", ActionCreateTestOrg, ""},
		{"DELETE", "/v1/operator/test-orgs/selftest-1", ActionDeleteTestOrg, ""},
		{"GET", "/v1/operator/test-orgs", "", fieldsync.EMethodNotAllowed},
		{"POST", "/v1/operator/test-orgs/x", "", fieldsync.EMethodNotAllowed},
		{"DELETE", "/v1/operator/orgs/acme", "", fieldsync.ENotFound},
		{"DELETE", "/v1/operator/test-orgs/a/b", "", fieldsync.ENotFound},
		{"DELETE", "/v1/push", "", fieldsync.EMethodNotAllowed},
		{"POST", "/v1/schema", "", fieldsync.EMethodNotAllowed},
		{"GET", "/v1/records/work_order", "", fieldsync.EMethodNotAllowed},
		{"GET", "/v1/records//abc", "", fieldsync.ENotFound},
		{"GET", "/v1/records/a/b/c", "", fieldsync.ENotFound},
		{"GET", "/v1/files/a/b", "", fieldsync.ENotFound},
		{"GET", "/v1/nothing", "", fieldsync.ENotFound},
		{"GET", "/healthz", "", fieldsync.ENotFound},
		{"GET", "/v1/", "", fieldsync.ENotFound},
		{"GET", "/v1/push/", "", fieldsync.ENotFound},
	}
	for _, c := range cases {
		got, err := ActionOf(c.method, c.path)
		if got != c.want || fieldsync.ErrorCode(err) != c.code {
			t.Errorf("%s %s: %q, %v; want %q, %s", c.method, c.path, got, err, c.want, c.code)
		}
	}
}
