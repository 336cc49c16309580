package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/schema"
)

// AssigneeField is the field that names the field worker a record is
// assigned to (a user name). A type without it reaches field workers only
// when it is shared.
const AssigneeField = "assignee"

// formerPrefix keys the record meta entries that remember who a record
// was assigned to before: "~was:<user>". Meta keys are otherwise field
// names, which cannot start with "~"; meta is never sent on the wire.
const formerPrefix = "~was:"

// systemWriter is the writer name of the fields the server sets itself
// (the assignee of a record a field worker creates).
const systemWriter = "server"

// caller is who a request speaks for: a principal from the front's
// Middleware, or the system itself (no principal, Config.RequireAuth off).
type caller struct {
	p      auth.Principal
	system bool
}

// callerOf returns who r speaks for. Without a principal in its context
// the request is refused with token_missing when the server requires
// authentication, and acts as the system otherwise.
func (s *Server) callerOf(r *http.Request) (caller, error) {
	if p, ok := auth.FromContext(r.Context()); ok {
		return caller{p: p}, nil
	}
	if s.requireAuth {
		return caller{}, fieldsync.Errorf(fieldsync.ETokenMissing, "this request needs a token: send Authorization: Bearer <token>")
	}
	return caller{system: true}, nil
}

// decide asks auth.Decide for c (the system may do anything); req.Org is
// filled with the organisation this server serves.
func (s *Server) decide(c caller, req auth.Request) error {
	if c.system {
		return nil
	}
	req.Org = s.org
	return auth.Decide(c.p, req).Err()
}

// guard answers r's refusal and reports false unless its caller may do
// action at all (auth.DecideAction: organisation, role, token kind); the
// decision on a record comes after, with decide.
func (s *Server) guard(w http.ResponseWriter, r *http.Request, action auth.Action) (caller, bool) {
	c, err := s.callerOf(r)
	if err == nil && !c.system {
		err = auth.DecideAction(c.p, action, s.org).Err()
	}
	if err != nil {
		s.writeError(w, r, err)
		return c, false
	}
	return c, true
}

// recordRequest describes rec (as stored; exists false when there is
// none) for a record-scoped action.
func recordRequest(sch *schema.Schema, action auth.Action, typ string, rec *fieldsync.Record, exists bool) auth.Request {
	req := auth.Request{Action: action, RecordExists: exists, Shared: sharedType(sch, typ)}
	if exists {
		req.RecordAssignee = assigneeOf(rec)
	}
	return req
}

func sharedType(sch *schema.Schema, typ string) bool {
	t, ok := sch.Type(typ)
	return ok && t.Shared
}

// assigneeOf returns the user name in rec's assignee field ("" if none).
func assigneeOf(rec *fieldsync.Record) string {
	raw, ok := rec.Fields[AssigneeField]
	if !ok {
		return ""
	}
	var name string
	if json.Unmarshal(raw, &name) != nil {
		return ""
	}
	return name
}

// officeName is the writer name of an office request, for the log.
func (c caller) officeName() string {
	if c.system {
		return OfficeDevice
	}
	return c.p.User
}

// pushCheck decides one pushed op against the record as stored, inside
// the push transaction; a refusal becomes the op's rejected result.
type pushCheck func(sch *schema.Schema, op *fieldsync.Op, rec *fieldsync.Record, exists bool) *fieldsync.Error

// pushCheckFor returns the per-op check of a push by c (nil for the
// system).
func (s *Server) pushCheckFor(c caller) pushCheck {
	if c.system {
		return nil
	}
	return func(sch *schema.Schema, op *fieldsync.Op, rec *fieldsync.Record, exists bool) *fieldsync.Error {
		req := recordRequest(sch, auth.ActionPush, op.EntityType, rec, exists)
		req.Org = s.org
		req.DeviceID = op.DeviceID
		if op.Kind != fieldsync.KindAttach {
			req.Fields = sortedKeys(op.Fields)
		}
		if t, ok := sch.Type(op.EntityType); ok {
			req.ServerOwned = func(f string) bool {
				fd, ok := t.Fields[f]
				return ok && fd.Policy == schema.PolicyServerOwned
			}
		}
		d := auth.Decide(c.p, req)
		if d.Allow {
			return nil
		}
		return &fieldsync.Error{Code: d.Code, Message: d.Message}
	}
}

// creatorOf is the user a record created by c is assigned to: a field
// worker's own creations stay theirs ("" for anyone else).
func creatorOf(c caller) string {
	if c.system || c.p.Role != auth.RoleFieldWorker {
		return ""
	}
	return c.p.User
}

// assignCreator sets the assignee of a record just created by a field
// worker to that worker, as a server-owned write, when its type has an
// assignee field.
func assignCreator(rec *fieldsync.Record, t *schema.EntityType, user string) {
	if user == "" || t == nil {
		return
	}
	if _, ok := t.Fields[AssigneeField]; !ok {
		return
	}
	raw, _ := json.Marshal(user)
	rec.Fields[AssigneeField] = raw
	m := rec.Meta[AssigneeField]
	rec.Meta[AssigneeField] = fieldsync.FieldMeta{Version: rec.Version, By: systemWriter, Role: RoleDispatcher, At: m.At}
}

// noteReassignment remembers, in rec's meta, the field worker a record
// was assigned to before a change of its assignee, so the change feed
// can tell that worker to drop it; the new assignee is forgotten as a
// former one.
func noteReassignment(rec *fieldsync.Record, before string, at int64) {
	after := assigneeOf(rec)
	if after == before {
		return
	}
	if before != "" {
		rec.Meta[formerPrefix+before] = fieldsync.FieldMeta{Version: rec.Version, By: before, At: at}
	}
	delete(rec.Meta, formerPrefix+after)
}

// wasAssigned reports whether rec was once assigned to user.
func wasAssigned(rec *fieldsync.Record, user string) bool {
	_, ok := rec.Meta[formerPrefix+user]
	return ok
}

// feedEntry is what caller c sees of rec in the change feed: the record,
// a gone marker (a record taken away from a field worker who could see
// it), or nothing (false).
func feedEntry(c caller, sch *schema.Schema, rec *fieldsync.Record) (protocol.Record, bool) {
	if c.system || c.p.Role != auth.RoleFieldWorker || sharedType(sch, rec.Type) || assigneeOf(rec) == c.p.User {
		return protocol.FromRecord(rec), true
	}
	if wasAssigned(rec, c.p.User) {
		return protocol.Record{Type: rec.Type, ID: rec.ID, Number: rec.Number, Version: rec.Version,
			Seq: rec.Seq, Updated: rec.UpdatedAt.UTC(), Gone: protocol.GoneUnassigned}, true
	}
	return protocol.Record{}, false
}

// isFormerKey reports whether a meta key is a former-assignee entry.
func isFormerKey(k string) bool { return strings.HasPrefix(k, formerPrefix) }

// opAuthor is who sends an op, for applyOp: check refuses what the
// sender may not do (nil: no check), creator is the field worker whose
// new records are assigned to them ("" for none).
type opAuthor struct {
	check   pushCheck
	creator string
}

// logOffice logs an office request with the person who made it: office
// ops are recorded under the device id OfficeDevice, so the log is where
// the dispatcher's user name is kept.
func (s *Server) logOffice(c caller, msg string, r *http.Request, res *fieldsync.Result, attrs ...any) {
	attrs = append(attrs, "user", c.officeName(), "path", r.URL.Path, "op", res.OpID, "status", res.Status)
	s.log.Info(msg, attrs...)
}

// mayDownload decides a download of blob sha by c: allowed when c may
// read a record that has an attachment with that hash, or c's device
// attached it itself; anything else answers not_found, as for a blob
// the server does not hold.
func (s *Server) mayDownload(ctx context.Context, c caller, sha string) error {
	if c.system || c.p.Role.Office() {
		return s.decide(c, auth.Request{Action: auth.ActionDownload, RecordExists: true})
	}
	sch := s.schema.Load()
	allowed := false
	err := s.store.Update(ctx, func(tx fieldsync.StoreTx) error {
		refs, err := tx.RecordsWithBlob(sha)
		if err != nil {
			return err
		}
		for _, ref := range refs {
			rec, ok, err := tx.Record(ref[0], ref[1])
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if s.decide(c, recordRequest(sch, auth.ActionDownload, rec.Type, &rec, true)) == nil || attachedBy(&rec, sha, c.p.DeviceID) {
				allowed = true
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !allowed {
		return fieldsync.Errorf(fieldsync.ENotFound, "the server holds no file with sha256 %s (not uploaded, or its upload is not finished)", sha)
	}
	return nil
}

// attachedBy reports whether device attached a file with hash sha to rec.
func attachedBy(rec *fieldsync.Record, sha, device string) bool {
	for _, a := range rec.Attachments {
		if device != "" && a.SHA256 == sha && a.By == device {
			return true
		}
	}
	return false
}
