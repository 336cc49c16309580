package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

// Record states as a person sees them.
const (
	RecordReady  = "ready to send" // has ops not yet delivered
	RecordSent   = "sent"          // everything delivered
	RecordReview = "needs review"  // a field awaits a person's decision
	RecordError  = "error"         // an op was rejected
)

// View is a record as the device shows it: the server-confirmed state with
// the device's pending ops applied on top.
type View struct {
	Type         string
	ID           string
	Number       string // the server's number, once known
	Version      int64  // confirmed version
	Deleted      bool
	Fields       map[string]json.RawMessage
	Review       []string             // fields awaiting review
	Conflicts    []fieldsync.Conflict // open conflicts not yet settled on this device
	Settled      []fieldsync.Conflict // conflicts settled on the server, with their settlement
	State        string               // RecordReady, RecordSent, RecordReview, RecordError
	Pending      int                  // ops not yet delivered
	OnlyOnDevice bool                 // the server has not confirmed the record yet
	// Attachments are the server's attachments of the record (uploading,
	// ready), then those only on this device (AttachmentOnDevice, or
	// AttachmentFailed, AttachmentRejected), in the order attached.
	Attachments []fieldsync.Attachment
}

// Get returns the view of one record; ENotFound when the device knows of
// no such record.
func (e *Engine) Get(ctx context.Context, typ, id string) (View, error) {
	tx, err := e.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return View{}, err
	}
	defer tx.Rollback()
	return e.view(ctx, tx, typ, id)
}

// List returns the views of every record of type typ that is not deleted,
// in creation order of their ids.
func (e *Engine) List(ctx context.Context, typ string) ([]View, error) {
	tx, err := e.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id FROM records WHERE type = ? UNION SELECT entity_id FROM outbox WHERE type = ? ORDER BY 1`, typ, typ)
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	var out []View
	for _, id := range ids {
		v, err := e.view(ctx, tx, typ, id)
		if err != nil {
			if fieldsync.ErrorCode(err) == fieldsync.ENotFound {
				continue
			}
			return nil, err
		}
		if !v.Deleted {
			out = append(out, v)
		}
	}
	return out, nil
}

func (e *Engine) view(ctx context.Context, tx *sql.Tx, typ, id string) (View, error) {
	v := View{Type: typ, ID: id, Fields: map[string]json.RawMessage{}}
	var fields, review, conflicts string
	err := tx.QueryRowContext(ctx, `SELECT number, version, deleted, fields, review, conflicts FROM records WHERE type = ? AND id = ?`, typ, id).
		Scan(&v.Number, &v.Version, &v.Deleted, &fields, &review, &conflicts)
	known := err == nil
	switch {
	case errors.Is(err, sql.ErrNoRows):
		v.OnlyOnDevice = true
	case err != nil:
		return v, err
	default:
		if err := json.Unmarshal([]byte(fields), &v.Fields); err != nil {
			return v, err
		}
		if err := json.Unmarshal([]byte(review), &v.Review); err != nil {
			return v, err
		}
		var all []fieldsync.Conflict
		if err := json.Unmarshal([]byte(conflicts), &all); err != nil {
			return v, err
		}
		for _, c := range all {
			if c.Open() {
				v.Conflicts = append(v.Conflicts, c)
			} else {
				v.Settled = append(v.Settled, c)
			}
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT op_id, kind, fields, local_time, status, result, result_version, number
		FROM outbox WHERE type = ? AND entity_id = ? ORDER BY seq`, typ, id)
	if err != nil {
		return v, err
	}
	defer rows.Close()
	any := known
	hasError := false
	for rows.Next() {
		var opID, kind, status, result, number string
		var raw []byte
		var local, rv int64
		if err := rows.Scan(&opID, &kind, &raw, &local, &status, &result, &rv, &number); err != nil {
			return v, err
		}
		any = true
		if number != "" && v.Number == "" {
			v.Number = number
		}
		var f map[string]json.RawMessage
		if err := json.Unmarshal(raw, &f); err != nil {
			return v, err
		}
		var skip []string // fields the server did not take
		switch status {
		case OpDelivered, OpConflict:
			if rv <= v.Version { // already in the confirmed state
				continue
			}
			// Until the next pull, show what the server decided: fields
			// kept for review or lost to a policy are not overlaid.
			var w protocol.Result
			json.Unmarshal([]byte(result), &w)
			eff := protocol.ToResult(&w).Effective()
			for _, c := range eff.Conflicts {
				skip = append(skip, c.Field)
				if !slices.Contains(v.Review, c.Field) {
					v.Review = append(v.Review, c.Field)
				}
			}
			for _, o := range eff.Overridden {
				if o.By == e.deviceID && jsonSame(o.Value, f[o.Field]) {
					skip = append(skip, o.Field)
				}
			}
		case OpQueued, OpSending:
			v.Pending++
		case OpError:
			hasError = true
			continue
		default:
			continue
		}
		if fieldsync.OpKind(kind) == fieldsync.KindSettle {
			settleLocally(&v, f)
			continue
		}
		overlay(&v, fieldsync.OpKind(kind), opID, e.deviceID, time.UnixMilli(local).UTC(), f, skip)
	}
	if err := rows.Err(); err != nil {
		return v, err
	}
	if !any {
		return v, fieldsync.Errorf(fieldsync.ENotFound, "no %s %s on this device", typ, id)
	}
	if v.Attachments, err = e.attachmentsOf(ctx, tx, typ, id); err != nil {
		return v, err
	}
	switch {
	case len(v.Review) > 0:
		v.State = RecordReview
	case hasError:
		v.State = RecordError
	case v.Pending > 0 || v.OnlyOnDevice || slices.ContainsFunc(v.Attachments, func(a fieldsync.Attachment) bool {
		return a.Status == AttachmentOnDevice
	}):
		v.State = RecordReady
	default:
		v.State = RecordSent
	}
	return v, nil
}

// settleLocally shows a settlement made on the device before the server
// has it: the chosen value, and the field no longer awaiting review.
func settleLocally(v *View, fields map[string]json.RawMessage) {
	for field, raw := range fields {
		var st fieldsync.Settle
		if json.Unmarshal(raw, &st) != nil {
			continue
		}
		for i, c := range v.Conflicts {
			if c.ID != st.Conflict || c.Field != field {
				continue
			}
			switch st.Choice {
			case fieldsync.ChoiceTakeDevice:
				if len(c.Theirs) > 0 {
					val := c.Theirs[len(c.Theirs)-1].Value
					for _, t := range c.Theirs {
						if st.Op != "" && t.OpID == st.Op {
							val = t.Value
						}
					}
					v.Fields[field] = val
				}
			case fieldsync.ChoiceNewValue:
				if string(st.Value) == "null" {
					delete(v.Fields, field)
				} else {
					v.Fields[field] = st.Value
				}
			}
			v.Conflicts = slices.Delete(v.Conflicts, i, i+1)
			v.Review = slices.DeleteFunc(v.Review, func(f string) bool { return f == field })
			break
		}
	}
}

// overlay applies one not-yet-confirmed op to a view, as the server would.
func overlay(v *View, kind fieldsync.OpKind, opID, device string, at time.Time, fields map[string]json.RawMessage, skip []string) {
	switch kind {
	case fieldsync.KindCreate, fieldsync.KindUpdate:
		for k, val := range fields {
			if slices.Contains(skip, k) {
				continue
			}
			if string(val) == "null" {
				delete(v.Fields, k)
			} else {
				v.Fields[k] = val
			}
		}
		v.Deleted = false
	case fieldsync.KindAppend:
		for k, val := range fields {
			var items []json.RawMessage
			if cur, ok := v.Fields[k]; ok {
				json.Unmarshal(cur, &items)
			}
			item, _ := json.Marshal(fieldsync.AppendItem{ID: opID, Value: val, By: device, At: at})
			items = append(items, item)
			v.Fields[k], _ = json.Marshal(items)
		}
	case fieldsync.KindDelete:
		v.Deleted = true
	}
}

func jsonSame(a, b json.RawMessage) bool {
	if string(a) == string(b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
