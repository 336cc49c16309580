package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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
// every verdict about the op itself is in the Result. by says who sends
// the op: its check (nil for the system and the office) may refuse it,
// and a field worker's creations are assigned to its creator.
func applyOp(tx fieldsync.StoreTx, sch *schema.Schema, op *fieldsync.Op, now time.Time, office bool, by opAuthor) (fieldsync.Result, error) {
	res := fieldsync.Result{OpID: op.ID}

	if c, ok := tx.(opChecker); ok {
		recorded, holder, prevFound, err := c.CheckOp(op.ID, op.DeviceID, op.Seq, op.PrevSeq)
		if err != nil {
			return res, err
		}
		switch {
		case recorded != nil:
			res.Status = fieldsync.StatusDuplicate
			res.Recorded = recorded
			return res, nil
		case holder != "":
			res.Status = fieldsync.StatusRejected
			res.Code = fieldsync.ESeqReused
			res.Message = fmt.Sprintf("sequence number %d of this device was already used by op %s", op.Seq, holder)
			return res, nil
		case !prevFound:
			res.Status = fieldsync.StatusRetry
			res.Code = fieldsync.EWaitingForEarlier
			res.Message = fmt.Sprintf("waiting for this device's op number %d on the same record", op.PrevSeq)
			return res, nil
		}
		return decideAndRecord(tx, sch, op, now, office, by, res)
	}

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
	return decideAndRecord(tx, sch, op, now, office, by, res)
}

// opChecker is an optional StoreTx capability: the op-log checks of an
// incoming op (its id, its sequence number, the device's previous op on
// the record) in one round trip, decoding only a recorded result that is
// returned. CheckOp gives the recorded result of opID (nil if none), the
// id of the op holding (device, seq) ("" if none), and whether op prev of
// the device is recorded (true when prev is 0).
type opChecker interface {
	CheckOp(opID, device string, seq, prev int64) (recorded *fieldsync.Result, seqHolder string, prevFound bool, err error)
}

// recordKeeper is an optional StoreTx capability: PutRecordOwned is
// PutRecord of a record its caller will not change again, so a store that
// keeps recent records in memory may keep this one as it is rather than a
// copy.
type recordKeeper interface {
	PutRecordOwned(rec *fieldsync.Record) (int64, error)
}

// decideAndRecord decides an op that passed the op-log checks and records
// its result in tx.
func decideAndRecord(tx fieldsync.StoreTx, sch *schema.Schema, op *fieldsync.Op, now time.Time, office bool, by opAuthor, res fieldsync.Result) (fieldsync.Result, error) {
	entry := fieldsync.OpEntry{Op: *op, ReceivedAt: now}
	rec, exists, err := fieldsync.Record{}, false, sch.CheckOp(op, office)
	if err == nil {
		if rec, exists, err = tx.Record(op.EntityType, op.EntityID); err != nil {
			return res, err
		}
		if by.check != nil {
			if refused := by.check(sch, op, &rec, exists); refused != nil {
				err = refused
			}
		}
	}
	if err != nil {
		res.Status = fieldsync.StatusRejected
		res.Code = fieldsync.ErrorCode(err)
		res.Message = fieldsync.ErrorMessage(err)
	} else {
		t, _ := sch.Type(op.EntityType)
		before := assigneeOf(&rec)
		var changed bool
		if op.Kind == fieldsync.KindAttach {
			if changed, err = decideAttach(tx, &rec, exists, op, now, &res); err != nil {
				return res, err
			}
		} else {
			changed = decide(&rec, exists, t, op, now, &res)
		}
		if changed && !exists {
			assignCreator(&rec, t, by.creator)
		}
		if changed {
			noteReassignment(&rec, before, now.UnixMilli())
			if !exists && t.NumberPrefix != "" {
				n, err := tx.NextNumber("number:"+op.EntityType, max(t.NumberStart, 1))
				if err != nil {
					return res, err
				}
				rec.Number = fmt.Sprintf("%s%d", t.NumberPrefix, n)
			}
			rec.UpdatedAt = now
			put := tx.PutRecord
			if k, ok := tx.(recordKeeper); ok {
				put = k.PutRecordOwned // rec is only read from here on
			}
			seq, err := put(&rec)
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
// written. It is a pure function of its inputs: clashes are settled by
// each field's policy (settleClash), and a clash that needs a person
// opens a conflict instead of overwriting anything.
func decide(rec *fieldsync.Record, exists bool, t *schema.EntityType, op *fieldsync.Op, now time.Time, res *fieldsync.Result) bool {
	reject := func(code fieldsync.Code, format string, args ...any) bool {
		res.Status = fieldsync.StatusRejected
		res.Code = code
		res.Message = fmt.Sprintf(format, args...)
		return false
	}
	w := writerOf(op, now)
	meta := func(version int64) fieldsync.FieldMeta {
		return fieldsync.FieldMeta{Version: version, By: op.DeviceID, Seq: op.Seq, Role: w.Role, HLC: w.HLC, OpID: op.ID, At: now.UnixMilli()}
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
			rec.Meta[name] = meta(1)
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
		changed := false
		for _, name := range sortedKeys(op.Fields) {
			v := op.Fields[name]
			cur, has := rec.Fields[name]
			m := rec.Meta[name]
			if c, open := rec.OpenConflict(name); open {
				// Under review: nobody overwrites it. The writer of the
				// server's side may correct its own value; anyone else's
				// value joins the conflict (a device's later value replaces
				// its earlier one) for the person who settles it.
				changed = true
				mine := fieldsync.ConflictValue{Value: v, By: op.DeviceID, Role: w.Role, OpID: op.ID, At: now}
				if own(m, op) {
					res.Conflicts = append(res.Conflicts, fieldsync.FieldConflict{
						Field: name, ServerValue: v, DeviceValue: v, ServerVersion: next, ServerBy: op.DeviceID,
					})
					mine.Version = next
					c.Server = mine
					setField(rec, name, v)
					rec.Meta[name] = meta(next)
					continue
				}
				res.Conflicts = append(res.Conflicts, fieldsync.FieldConflict{
					Field: name, ServerValue: orNull(cur), DeviceValue: v, ServerVersion: m.Version, ServerBy: m.By,
				})
				replaced := false
				for i := range c.Theirs {
					if op.DeviceID != OfficeDevice && c.Theirs[i].By == op.DeviceID {
						c.Theirs[i], replaced = mine, true
					}
				}
				if !replaced {
					c.Theirs = append(c.Theirs, mine)
				}
				continue
			}
			equal := has && jsonEqual(cur, v) || !has && isNull(v)
			if clash(m, op) {
				f := t.Fields[name]
				verdict := settleClash(f, writerFromMeta(m), w)
				if equal {
					// Both sides agree on the value. Unless the policy
					// keeps the current writer, the incoming write becomes
					// the last writer, so a write that saw neither clashes
					// with it whatever the order of arrival. It had not
					// seen the value it agreed with (Since), so its own
					// next write still meets that value.
					if verdict != keepCurrent {
						nm := meta(next)
						nm.Since = m.Version
						rec.Meta[name] = nm
						changed = true
					}
					continue
				}
				switch verdict {
				case keepCurrent:
					res.Overridden = append(res.Overridden, fieldsync.Overridden{Field: name, Value: v, By: op.DeviceID, Policy: f.Policy})
					continue
				case takeIncoming:
					res.Overridden = append(res.Overridden, fieldsync.Overridden{Field: name, Value: orNull(cur), By: m.By, Policy: f.Policy})
				case needsReview:
					rec.Conflicts = append(rec.Conflicts, fieldsync.Conflict{
						ID: conflictID(op.ID, name), Field: name, OpenedAt: now,
						Server: fieldsync.ConflictValue{Value: orNull(cur), By: m.By, Role: m.Role, OpID: m.OpID, Version: m.Version, At: time.UnixMilli(m.At).UTC()},
						Theirs: []fieldsync.ConflictValue{{Value: v, By: op.DeviceID, Role: w.Role, OpID: op.ID, At: now}},
					})
					if !slices.Contains(rec.Review, name) {
						rec.Review = append(rec.Review, name)
					}
					res.Conflicts = append(res.Conflicts, fieldsync.FieldConflict{
						Field: name, ServerValue: orNull(cur), DeviceValue: v, ServerVersion: m.Version, ServerBy: m.By,
					})
					changed = true
					continue
				}
			}
			// A write of the value already there still counts as a write:
			// it is who the next clash on this field is with.
			setField(rec, name, v)
			rec.Meta[name] = meta(next)
			changed = true
		}
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
			if len(res.Overridden) > 0 {
				res.Message = overriddenMessage(res.Overridden, op)
			}
		}
		return changed

	case fieldsync.KindAppend:
		if !exists {
			return reject(fieldsync.ERecordMissing, "the server has no %s %s (was its create rejected?)", op.EntityType, op.EntityID)
		}
		// Proof of work is never lost: even on a deleted record the items
		// are kept, and the office sees them in its history.
		rec.Version++
		for _, name := range sortedKeys(op.Fields) {
			cur, has := rec.Fields[name]
			item, _ := json.Marshal(fieldsync.AppendItem{ID: op.ID, Value: op.Fields[name], By: op.DeviceID, At: op.LocalTime})
			rec.Fields[name] = appendToList(cur, has, item)
			rec.Meta[name] = meta(rec.Version)
		}
		res.Status = fieldsync.StatusApplied
		res.Version = rec.Version
		if rec.Deleted {
			res.Message = fmt.Sprintf("%s was deleted on the server; the item is kept with it", label(rec))
		}
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
			if !isFormerKey(name) && clash(rec.Meta[name], op) {
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

	case fieldsync.KindSettle:
		if !exists {
			return reject(fieldsync.ERecordMissing, "the server has no %s %s", op.EntityType, op.EntityID)
		}
		name := sortedKeys(op.Fields)[0]
		st, err := t.Fields[name].ParseSettle(op.Fields[name])
		if err != nil {
			return reject(fieldsync.EInvalidField, "field %q: %v", name, err)
		}
		c, open := rec.OpenConflict(name)
		if !open || c.ID != st.Conflict {
			for _, old := range rec.Conflicts {
				if old.ID == st.Conflict && old.Field == name && old.Settled != nil {
					s := old.Settled
					return reject(fieldsync.EAlreadySettled, "this conflict on %s was already settled by %s (%s) at version %d", name, s.By, s.Choice, s.Version)
				}
			}
			return reject(fieldsync.ENoConflict, "%s has no open conflict %s on %s", label(rec), st.Conflict, name)
		}
		cur, has := rec.Fields[name]
		value := orNull(cur)
		switch st.Choice {
		case fieldsync.ChoiceTakeDevice:
			value = c.Theirs[len(c.Theirs)-1].Value
			if st.Op != "" {
				found := false
				for _, tv := range c.Theirs {
					if tv.OpID == st.Op {
						value, found = tv.Value, true
					}
				}
				if !found {
					return reject(fieldsync.EInvalidField, "op %s is not one of the conflict's values", st.Op)
				}
			}
		case fieldsync.ChoiceNewValue:
			value = st.Value
		}
		next := rec.Version + 1
		if isNull(value) {
			delete(rec.Fields, name)
		} else if !has || !jsonEqual(cur, value) {
			rec.Fields[name] = value
		}
		rec.Meta[name] = meta(next)
		c.Settled = &fieldsync.ConflictSettled{
			Choice: st.Choice, Value: value, Note: st.Note, By: op.DeviceID, Role: w.Role,
			OpID: op.ID, Version: next, At: now,
		}
		rec.Review = slices.DeleteFunc(rec.Review, func(f string) bool { return f == name })
		rec.Version = next
		res.Status = fieldsync.StatusApplied
		res.Version = next
		return true
	}
	return reject(fieldsync.EInvalidRequest, "unknown kind %q", op.Kind)
}

// writerOf describes the author of op for the policies. A device's clock
// reading is capped at the server's clock, so a device whose clock runs
// ahead cannot win every last-writer clash.
func writerOf(op *fieldsync.Op, now time.Time) writer {
	role := RoleFieldWorker
	if op.DeviceID == OfficeDevice {
		role = RoleDispatcher
	}
	h := op.HLC
	if h == 0 {
		h = fieldsync.HLCFromTime(op.LocalTime)
	}
	if limit := fieldsync.HLCFromTime(now) + 0xffff; h > limit {
		h = limit
	}
	return writer{By: op.DeviceID, Role: role, HLC: h, OpID: op.ID}
}

func writerFromMeta(m fieldsync.FieldMeta) writer {
	return writer{By: m.By, Role: m.Role, HLC: m.HLC, OpID: m.OpID}
}

func overriddenMessage(os []fieldsync.Overridden, op *fieldsync.Op) string {
	parts := make([]string, len(os))
	for i, o := range os {
		if o.By == op.DeviceID && jsonEqual(o.Value, op.Fields[o.Field]) {
			parts[i] = fmt.Sprintf("%s: your %s lost (%s)", o.Field, short(o.Value), o.Policy)
		} else {
			parts[i] = fmt.Sprintf("%s: replaced %s (%s)", o.Field, short(o.Value), o.Policy)
		}
	}
	return strings.Join(parts, "; ")
}

// clash reports whether a field last changed as m was changed since op's
// base version by someone the op's author had not seen: another device,
// the office, or a later op of its own.
func clash(m fieldsync.FieldMeta, op *fieldsync.Op) bool {
	if m.Version <= op.BaseVersion {
		return false
	}
	return !own(m, op)
}

// own reports whether the field's last write was an earlier op of op's own
// device. Office edits all share one device id while coming from different
// people, so an office edit never counts as the author's own.
func own(m fieldsync.FieldMeta, op *fieldsync.Op) bool {
	return m.By == op.DeviceID && m.By != OfficeDevice && m.Seq < op.Seq && m.Since <= op.BaseVersion
}

// conflictID names the conflict op opened on field: derived from both, so
// it is the same on every server that decides the op, and one op clashing
// on two fields opens two conflicts with their own ids.
func conflictID(opID, field string) string {
	h := sha256.Sum256([]byte(opID + "\x00" + field))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func setField(rec *fieldsync.Record, name string, v json.RawMessage) {
	if isNull(v) {
		delete(rec.Fields, name)
	} else {
		rec.Fields[name] = v
	}
}

func conflictMessage(cs []fieldsync.FieldConflict) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		if jsonEqual(c.ServerValue, c.DeviceValue) {
			parts[i] = fmt.Sprintf("%s awaits review; your %s replaces your earlier value on the server's side", c.Field, short(c.DeviceValue))
			continue
		}
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
	if plainString(a) && plainString(b) {
		return false
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
