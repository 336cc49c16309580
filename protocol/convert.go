package protocol

import (
	"time"

	"github.com/fieldsync/fieldsync"
)

// FromOp converts a domain op to its wire form. The device is left out:
// the batch names it once.
func FromOp(op *fieldsync.Op) Op {
	return Op{
		ID:     op.ID,
		Seq:    op.Seq,
		Prev:   op.PrevSeq,
		Type:   op.EntityType,
		Entity: op.EntityID,
		Kind:   string(op.Kind),
		Base:   op.BaseVersion,
		Fields: op.Fields,
		At:     op.LocalTime.UnixMilli(),
		HLC:    int64(op.HLC),
	}
}

// ToOp converts a checked wire op of device's batch to the domain form.
func ToOp(w *Op, device string) fieldsync.Op {
	return fieldsync.Op{
		ID:          w.ID,
		DeviceID:    device,
		Seq:         w.Seq,
		PrevSeq:     w.Prev,
		EntityType:  w.Type,
		EntityID:    w.Entity,
		Kind:        fieldsync.OpKind(w.Kind),
		BaseVersion: w.Base,
		Fields:      w.Fields,
		LocalTime:   time.UnixMilli(w.At).UTC(),
		HLC:         fieldsync.HLC(w.HLC),
	}
}

// FromResult converts a domain result to its wire form.
func FromResult(r *fieldsync.Result) Result {
	w := Result{
		Op:      r.OpID,
		Status:  string(r.Status),
		Version: r.Version,
		Number:  r.Number,
		Code:    string(r.Code),
		Message: r.Message,
	}
	for _, c := range r.Conflicts {
		w.Conflicts = append(w.Conflicts, Conflict{
			Field: c.Field, ServerValue: c.ServerValue, DeviceValue: c.DeviceValue,
			ServerVersion: c.ServerVersion, ServerBy: c.ServerBy,
		})
	}
	for _, o := range r.Overridden {
		w.Overridden = append(w.Overridden, Overridden{Field: o.Field, Value: o.Value, By: o.By, Policy: o.Policy})
	}
	if r.Recorded != nil {
		rec := FromResult(r.Recorded)
		w.Recorded = &rec
	}
	return w
}

// ToResult converts a wire result to the domain form.
func ToResult(w *Result) fieldsync.Result {
	r := fieldsync.Result{
		OpID:    w.Op,
		Status:  fieldsync.ResultStatus(w.Status),
		Version: w.Version,
		Number:  w.Number,
		Code:    fieldsync.Code(w.Code),
		Message: w.Message,
	}
	for _, c := range w.Conflicts {
		r.Conflicts = append(r.Conflicts, fieldsync.FieldConflict{
			Field: c.Field, ServerValue: c.ServerValue, DeviceValue: c.DeviceValue,
			ServerVersion: c.ServerVersion, ServerBy: c.ServerBy,
		})
	}
	for _, o := range w.Overridden {
		r.Overridden = append(r.Overridden, fieldsync.Overridden{Field: o.Field, Value: o.Value, By: o.By, Policy: o.Policy})
	}
	if w.Recorded != nil {
		rec := ToResult(w.Recorded)
		r.Recorded = &rec
	}
	return r
}

// FromRecord converts a domain record to its wire form.
func FromRecord(r *fieldsync.Record) Record {
	return Record{
		Type: r.Type, ID: r.ID, Number: r.Number, Version: r.Version,
		Deleted: r.Deleted, Fields: r.Fields, Review: r.Review, Conflicts: r.Conflicts, Seq: r.Seq,
		Attachments: r.Attachments, Updated: r.UpdatedAt.UTC(),
	}
}

// ToRecord converts a wire record to the domain form.
func ToRecord(w *Record) fieldsync.Record {
	return fieldsync.Record{
		Type: w.Type, ID: w.ID, Number: w.Number, Version: w.Version,
		Deleted: w.Deleted, Fields: w.Fields, Review: w.Review, Conflicts: w.Conflicts, Seq: w.Seq,
		Attachments: w.Attachments, UpdatedAt: w.Updated,
	}
}
