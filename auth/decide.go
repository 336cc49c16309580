package auth

import (
	"net/http"

	"github.com/fieldsync/fieldsync"
)

// Action is what a request does, for the access rules.
type Action string

// The actions of the /v1 API.
const (
	ActionPush           Action = "push"            // POST /v1/push: one decision per op
	ActionPull           Action = "pull"            // GET /v1/changes: one decision per record
	ActionReadRecord     Action = "read_record"     // GET /v1/records/{type}/{id}
	ActionOfficeEdit     Action = "office_edit"     // PATCH /v1/records/{type}/{id}
	ActionOfficeCreate   Action = "office_create"   // POST /v1/records/{type}
	ActionSettle         Action = "settle"          // POST /v1/records/{type}/{id}/settle (the office's settle)
	ActionReadOp         Action = "read_op"         // GET /v1/ops/{id}: decided on the op's record
	ActionReadSchema     Action = "read_schema"     // GET /v1/schema
	ActionWriteSchema    Action = "write_schema"    // PUT /v1/schema
	ActionUpload         Action = "upload"          // /v1/files/ (tus)
	ActionDownload       Action = "download"        // GET, HEAD /v1/blobs/{sha}: decided on a record that holds it
	ActionAdminUsers     Action = "admin_users"     // manage the organisation's users
	ActionAdminDevices   Action = "admin_devices"   // list and revoke the organisation's devices
	ActionIssueEnrolment Action = "issue_enrolment" // make an enrolment code for a user
	ActionInfo           Action = "info"            // GET /v1/info

	// The operator API: an operator token only, never an organisation's.
	ActionCreateTestOrg Action = "create_test_org" // POST /v1/operator/test-orgs
	ActionDeleteTestOrg Action = "delete_test_org" // DELETE /v1/operator/test-orgs/{name}
)

// rule is what the access table says of one action.
type rule struct {
	roles        []Role
	recordScoped bool // a field worker reaches only assigned or shared records
	deviceOnly   bool // needs a device token, for the device the request names
	operator     bool // needs an operator token; no organisation's token reaches it
}

var (
	everyone = []Role{RoleFieldWorker, RoleDispatcher, RoleAdmin}
	office   = []Role{RoleDispatcher, RoleAdmin}
	admins   = []Role{RoleAdmin}
)

// rules is the access table; docs/security.md shows it. An action not in
// it is refused.
var rules = map[Action]rule{
	ActionPush:           {roles: everyone, recordScoped: true, deviceOnly: true},
	ActionPull:           {roles: everyone, recordScoped: true},
	ActionReadRecord:     {roles: everyone, recordScoped: true},
	ActionReadOp:         {roles: everyone, recordScoped: true},
	ActionDownload:       {roles: everyone, recordScoped: true},
	ActionUpload:         {roles: everyone},
	ActionReadSchema:     {roles: everyone},
	ActionInfo:           {roles: everyone},
	ActionOfficeEdit:     {roles: office},
	ActionOfficeCreate:   {roles: office},
	ActionSettle:         {roles: office},
	ActionIssueEnrolment: {roles: office},
	ActionWriteSchema:    {roles: admins},
	ActionAdminUsers:     {roles: admins},
	ActionAdminDevices:   {roles: admins},
	ActionCreateTestOrg:  {operator: true},
	ActionDeleteTestOrg:  {operator: true},
}

// RecordScoped reports whether a's decision depends on the target record.
func (a Action) RecordScoped() bool { return rules[a].recordScoped }

// Request describes what a principal asks to do, for Decide.
type Request struct {
	Action Action
	// Org is the organisation that owns the target: the organisation of
	// the store serving the request. Required.
	Org string
	// DeviceID is the device the request speaks for (a push batch's
	// device); it must be the token's device.
	DeviceID string
	// For record-scoped actions: whether the target record exists yet
	// (false for an op creating it), its assignee (the server's value),
	// and whether its entity type is shared reference data.
	RecordExists   bool
	RecordAssignee string
	Shared         bool
	// Fields are the names of the fields an op writes; ServerOwned tells
	// which of them only the server may set (nil: none).
	Fields      []string
	ServerOwned func(field string) bool
}

// Decision is Decide's answer. A refusal carries the HTTP status, the
// stable code and a message safe to show.
type Decision struct {
	Allow   bool
	Status  int
	Code    fieldsync.Code
	Message string
}

// Err returns the refusal as a *fieldsync.Error, nil when allowed.
func (d Decision) Err() error {
	if d.Allow {
		return nil
	}
	return &fieldsync.Error{Code: d.Code, Message: d.Message}
}

var allowed = Decision{Allow: true, Status: http.StatusOK}

func deny(status int, code fieldsync.Code, msg string) Decision {
	return Decision{Status: status, Code: code, Message: msg}
}

// notFound is the answer for anything out of the principal's reach:
// another organisation's data or another worker's record. It is the
// answer for a record that does not exist, so a refusal does not tell
// that the record is there.
func notFound() Decision {
	return deny(http.StatusNotFound, fieldsync.ENotFound, "no such record")
}

// DecideAction is the check that needs no record: the principal's
// organisation is the target's, its role may do the action at all, and a
// device-only action comes with a device token. The Middleware runs it
// before the request reaches the organisation's handler; Decide runs it
// first.
//
// The operator API is apart: its actions need an operator token (any
// other is refused 403 forbidden, whatever its role), and an operator
// token is refused 403 forbidden for every other action: it reaches no
// organisation's data. org is ignored for an operator action.
func DecideAction(p Principal, action Action, org string) Decision {
	r, ok := rules[action]
	if p.TokenKind == TokenOperator || r.operator {
		return decideOperator(p, action, r)
	}
	if p.Org == "" || p.Org != org {
		return notFound()
	}
	if !ok {
		return deny(http.StatusForbidden, fieldsync.EForbidden, "this action is not allowed")
	}
	if !hasRole(r.roles, p.Role) {
		return deny(http.StatusForbidden, fieldsync.EForbidden, forbiddenMessage(p.Role, action))
	}
	if r.deviceOnly && (p.TokenKind != TokenDevice || p.DeviceID == "") {
		return deny(http.StatusForbidden, fieldsync.EForbidden, "only an enrolled device may send ops: use the device's token, not a login session")
	}
	return allowed
}

// decideOperator is DecideAction for the operator's side of the table.
func decideOperator(p Principal, action Action, r rule) Decision {
	switch {
	case p.TokenKind != TokenOperator:
		return deny(http.StatusForbidden, fieldsync.EForbidden,
			"only the installation's operator token may do this (made on the server's host with fieldsync admin operator-token)")
	case !r.operator:
		return deny(http.StatusForbidden, fieldsync.EForbidden,
			"an operator token reaches only the operator API (/v1/operator/): use a device's or a person's token of the organisation")
	case p.User == "":
		return deny(http.StatusForbidden, fieldsync.EForbidden, "this operator credential has no name")
	}
	return allowed
}

// Decide is the one place where access is decided: a pure function of
// who asks and what for. Refusals, in the order checked:
//
//   - an operator token for an organisation's action, or any other token
//     for an operator action → 403 forbidden;
//   - another organisation → 404 not_found (it is unreachable, not hidden);
//   - a role that may not do the action → 403 forbidden;
//   - an op for a device other than the token's → 403 forbidden;
//   - a field worker and a record neither assigned to them nor shared
//     → 404 not_found, as if the record did not exist;
//   - an op writing a server-owned field → 422 server_owned_field.
func Decide(p Principal, req Request) Decision {
	if d := DecideAction(p, req.Action, req.Org); !d.Allow {
		return d
	}
	r := rules[req.Action]
	if r.deviceOnly && req.DeviceID != p.DeviceID {
		return deny(http.StatusForbidden, fieldsync.EForbidden,
			"this token was issued for device "+p.DeviceID+", not for "+req.DeviceID)
	}
	if r.recordScoped && p.Role == RoleFieldWorker && !workerReaches(p, req) {
		return notFound()
	}
	if req.Action == ActionPush && req.ServerOwned != nil {
		for _, f := range req.Fields {
			if req.ServerOwned(f) {
				return deny(http.StatusUnprocessableEntity, fieldsync.EServerOwned,
					"field \""+f+"\" is set by the server only")
			}
		}
	}
	return allowed
}

// workerReaches reports whether a field worker may touch the record:
// shared reference data, a record assigned to them, or — for an op — a
// record that does not exist yet (the op creates it, and the server
// assigns it to its creator).
func workerReaches(p Principal, req Request) bool {
	switch {
	case req.Shared:
		return true
	case !req.RecordExists:
		return req.Action == ActionPush
	default:
		return req.RecordAssignee != "" && req.RecordAssignee == p.User
	}
}

func hasRole(roles []Role, r Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

func forbiddenMessage(r Role, a Action) string {
	switch a {
	case ActionOfficeEdit, ActionOfficeCreate, ActionSettle, ActionIssueEnrolment:
		return "only a dispatcher or an admin may do this (your role: " + string(r) + ")"
	case ActionWriteSchema, ActionAdminUsers, ActionAdminDevices:
		return "only an admin may do this (your role: " + string(r) + ")"
	}
	return "your role (" + string(r) + ") may not do this"
}
