package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/schema"
)

// OfficeDevice is the device id under which office (dispatcher) edits are
// recorded in the op log.
const OfficeDevice = "office"

// applyOp decides one op inside tx and records its result there, so the
// effect and the recorded result commit together. The returned error is
// for storage failures only (the whole transaction then rolls back);
// every verdict about the op itself is in the Result.
func applyOp(tx fieldsync.StoreTx, sch *schema.Schema, op *fieldsync.Op, now time.Time, office bool) (fieldsync.Result, error) {
	res := fieldsync.Result{OpID: op.ID}

	// Exactly once: a known op id returns what was recorded, changing nothing.
	if e, ok, err := tx.OpByID(op.ID); err != nil {
		return res, err
	} else if ok {
		recorded := e.Result
		res.Status = fieldsync.StatusDuplicate
		res.Recorded = &recorded
		return res, nil
	}
	// A sequence number names one op forever.
	if e, ok, err := tx.OpByDeviceSeq(op.DeviceID, op.Seq); err != nil {
		return res, err
	} else if ok {
		res.Status = fieldsync.StatusRejected
		res.Code = fieldsync.ESeqReused
		res.Message = fmt.Sprintf("sequence number %d of this device was already used by op %s", op.Seq, e.Op.ID)
		return res, nil
	}
	// Device order per record: the device's previous op on this record
	// must have been decided first.
	if op.PrevSeq > 0 {
		if _, ok, err := tx.OpByDeviceSeq(op.DeviceID, op.PrevSeq); err != nil {
			return res, err
		} else if !ok {
			res.Status = fieldsync.StatusRetry
			res.Code = fieldsync.EWaitingForEarlier
			res.Message = fmt.Sprintf("waiting for this device's op number %d on the same record", op.PrevSeq)
			return res, nil
		}
	}

	entry := fieldsync.OpEntry{Op: *op, ReceivedAt: now}
	if err := sch.CheckOp(op, office); err != nil {
		res.Status = fieldsync.StatusRejected
		res.Code = fieldsync.ErrorCode(err)
		res.Message = fieldsync.ErrorMessage(err)
	} else {
		rec, exists, err := tx.Record(op.EntityType, op.EntityID)
		if err != nil {
			return res, err
		}
		t, _ := sch.Type(op.EntityType)
		changed := decide(&rec, exists, t, op, now, &res)
		if changed {
			if !exists && t.NumberPrefix != "" {
				n, err := tx.NextNumber("number:"+op.EntityType, max(t.NumberStart, 1))
				if err != nil {
					return res, err
				}
				rec.Number = fmt.Sprintf("%s%d", t.NumberPrefix, n)
			}
			rec.UpdatedAt = now
			seq, err := tx.PutRecord(&rec)
			if err != nil {
				return res, err
			}
			entry.ChangeSeq = seq
		}
		res.Number = rec.Number
	}
	entry.Result = res
	if err := tx.RecordOp(entry); err != nil {
		return res, err
	}
	return res, nil
}

// decide computes the op's effect on rec (the record as stored; zero if
// !exists) and fills res. It reports whether rec changed and must be
// written. It is a pure function of its inputs.
func decide(rec *fieldsync.Record, exists bool, t *schema.EntityType, op *fieldsync.Op, now time.Time, res *fieldsync.Result) bool {
	reject := func(code fieldsync.Code, format string, args ...any) bool {
		res.Status = fieldsync.StatusRejected
		res.Code = code
		res.Message = fmt.Sprintf(format, args...)
		return false
	}
	switch op.Kind {
	case fieldsync.KindCreate:
		if exists {
			return reject(fieldsync.EAlreadyExists, "a %s with id %s already exists", op.EntityType, op.EntityID)
		}
		*rec = fieldsync.Record{
			Type: op.EntityType, ID: op.EntityID, Version: 1,
			Fields: map[string]json.RawMessage{}, Meta: map[string]fieldsync.FieldMeta{},
		}
		for name, v := range op.Fields {
			if isNull(v) {
				continue
			}
			rec.Fields[name] = v
			rec.Meta[name] = fieldsync.FieldMeta{Version: 1, By: op.DeviceID, Seq: op.Seq}
		}
		res.Status = fieldsync.StatusApplied
		res.Version = 1
		return true

	case fieldsync.KindUpdate:
		if !exists {
			return reject(fieldsync.ERecordMissing, "the server has no %s %s (was its create rejected?)", op.EntityType, op.EntityID)
		}
		if rec.Deleted {
			return reject(fieldsync.ERecordDeleted, "%s was deleted on the server at version %d", label(rec), rec.Version)
		}
		next := rec.Version + 1
		applied := false
		for _, name := range sortedKeys(op.Fields) {
			v := op.Fields[name]
			cur, has := rec.Fields[name]
			if has && jsonEqual(cur, v) || !has && isNull(v) {
				continue // already so: nothing to change, nothing to clash
			}
			if clash(rec.Meta[name], op) {
				res.Conflicts = append(res.Conflicts, fieldsync.FieldConflict{
					Field: name, ServerValue: orNull(cur), DeviceValue: v,
					ServerVersion: rec.Meta[name].Version, ServerBy: rec.Meta[name].By,
				})
				if !slices.Contains(rec.Review, name) {
					rec.Review = append(rec.Review, name)
				}
				continue
			}
			if isNull(v) {
				delete(rec.Fields, name)
			} else {
				rec.Fields[name] = v
			}
			rec.Meta[name] = fieldsync.FieldMeta{Version: next, By: op.DeviceID, Seq: op.Seq}
			applied = true
		}
		changed := applied || len(res.Conflicts) > 0
		if changed {
			rec.Version = next
		}
		res.Version = rec.Version
		if len(res.Conflicts) > 0 {
			res.Status = fieldsync.StatusConflict
			res.Code = fieldsync.EFieldConflict
			res.Message = conflictMessage(res.Conflicts)
		} else {
			res.Status = fieldsync.StatusApplied
		}
		return changed

	case fieldsync.KindAppend:
		if !exists {
			return reject(fieldsync.ERecordMissing, "the server has no %s %s (was its create rejected?)", op.EntityType, op.EntityID)
		}
		if rec.Deleted {
			return reject(fieldsync.ERecordDeleted, "%s was deleted on the server at version %d", label(rec), rec.Version)
		}
		rec.Version++
		for _, name := range sortedKeys(op.Fields) {
			var items []json.RawMessage
			if cur, ok := rec.Fields[name]; ok {
				_ = json.Unmarshal(cur, &items) // a list field holds a JSON array
			}
			item, _ := json.Marshal(fieldsync.AppendItem{ID: op.ID, Value: op.Fields[name], By: op.DeviceID, At: op.LocalTime})
			items = append(items, item)
			rec.Fields[name], _ = json.Marshal(items)
			rec.Meta[name] = fieldsync.FieldMeta{Version: rec.Version, By: op.DeviceID, Seq: op.Seq}
		}
		res.Status = fieldsync.StatusApplied
		res.Version = rec.Version
		return true

	case fieldsync.KindDelete:
		if !exists {
			return reject(fieldsync.ERecordMissing, "the server has no %s %s", op.EntityType, op.EntityID)
		}
		if rec.Deleted {
			res.Status = fieldsync.StatusApplied
			res.Version = rec.Version
			return false
		}
		var changedBy []string
		for _, name := range sortedKeys(rec.Meta) {
			if clash(rec.Meta[name], op) {
				changedBy = append(changedBy, name)
			}
		}
		if len(changedBy) > 0 {
			res.Status = fieldsync.StatusConflict
			res.Code = fieldsync.EFieldConflict
			res.Version = rec.Version
			res.Message = fmt.Sprintf("not deleted: %s changed on the server since you saw it (%s)", label(rec), strings.Join(changedBy, ", "))
			return false
		}
		rec.Deleted = true
		rec.Version++
		res.Status = fieldsync.StatusApplied
		res.Version = rec.Version
		return true
	}
	return reject(fieldsync.EInvalidRequest, "unknown kind %q", op.Kind)
}

// clash reports whether a field last changed as m was changed since op's
// base version by someone the op's author had not seen: another device,
// the office, or a later op of its own. Office edits all share one
// device id while coming from different people, so an office edit never
// counts as the author's own.
func clash(m fieldsync.FieldMeta, op *fieldsync.Op) bool {
	if m.Version <= op.BaseVersion {
		return false
	}
	return !(m.By == op.DeviceID && m.By != OfficeDevice && m.Seq < op.Seq)
}

func conflictMessage(cs []fieldsync.FieldConflict) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s was changed on the server (kept %s, yours %s)", c.Field, short(c.ServerValue), short(c.DeviceValue))
	}
	return strings.Join(parts, "; ") + ": needs review"
}

func short(v json.RawMessage) string {
	s := string(v)
	if len(s) > 60 {
		s = strings.ToValidUTF8(s[:57], "") + "..."
	}
	return s
}

func label(rec *fieldsync.Record) string {
	if rec.Number != "" {
		return rec.Number
	}
	return rec.Type + " " + rec.ID
}

func isNull(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || string(v) == "null"
}

func orNull(v json.RawMessage) json.RawMessage {
	if v == nil {
		return json.RawMessage("null")
	}
	return v
}

func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
