package server

import (
	"fmt"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

// decideAttach computes the effect of an attach op on rec (the record as
// stored; zero if !exists) and fills res, like decide. It reports whether
// rec changed. The attachment is ready at once when tx already holds a
// verified blob of its hash, and uploading until then.
//
// The record must exist, as for an append; a deleted record keeps the
// attachment (proof of work is never lost). An attachment id names one
// file forever: the same id with the same hash again changes nothing,
// with another hash it is refused.
func decideAttach(tx fieldsync.StoreTx, rec *fieldsync.Record, exists bool, op *fieldsync.Op, now time.Time, res *fieldsync.Result) (bool, error) {
	reject := func(code fieldsync.Code, format string, args ...any) (bool, error) {
		res.Status = fieldsync.StatusRejected
		res.Code = code
		res.Message = fmt.Sprintf(format, args...)
		return false, nil
	}
	a, err := protocol.DecodeAttachment(op.Fields[fieldsync.AttachField])
	if err != nil {
		return reject(fieldsync.ErrorCode(err), "%s", fieldsync.ErrorMessage(err))
	}
	if !exists {
		return reject(fieldsync.ERecordMissing, "the server has no %s %s (was its create rejected?)", op.EntityType, op.EntityID)
	}
	for _, old := range rec.Attachments {
		if old.ID != a.ID {
			continue
		}
		if old.SHA256 != a.SHA256 {
			return reject(fieldsync.EAlreadyExists, "attachment %s is already on %s with other bytes (sha256 %s…): a new file needs a new attachment id",
				a.ID, label(rec), old.SHA256[:12])
		}
		res.Status = fieldsync.StatusApplied
		res.Version = rec.Version
		res.Message = fmt.Sprintf("attachment %s was already on %s", a.ID, label(rec))
		return false, nil
	}
	a.Status = fieldsync.AttachmentUploading
	if b, ok, err := tx.Blob(a.SHA256); err != nil {
		return false, err
	} else if ok {
		if b.Size != a.Size {
			return reject(fieldsync.EInvalidField, "attachment: size %d differs from the %d bytes the server holds for sha256 %s…", a.Size, b.Size, a.SHA256[:12])
		}
		a.Status = fieldsync.AttachmentReady
	}
	a.By = op.DeviceID
	a.At = now
	rec.Attachments = append(rec.Attachments, a)
	rec.Version++
	res.Status = fieldsync.StatusApplied
	res.Version = rec.Version
	if rec.Deleted {
		res.Message = fmt.Sprintf("%s was deleted on the server; the attachment is kept with it", label(rec))
	}
	return true, nil
}

// markBlobReady marks every attachment of hash sha that is still
// uploading as ready, on every record that has one, and writes those
// records (each gets a new version and feed position, so devices pulling
// changes learn it). It returns how many records changed.
func markBlobReady(tx fieldsync.StoreTx, sha string, now time.Time) (int, error) {
	refs, err := tx.RecordsWithBlob(sha)
	if err != nil {
		return 0, err
	}
	changed := 0
	for _, ref := range refs {
		rec, ok, err := tx.Record(ref[0], ref[1])
		if err != nil {
			return changed, err
		}
		if !ok {
			continue
		}
		flipped := false
		for i := range rec.Attachments {
			if a := &rec.Attachments[i]; a.SHA256 == sha && a.Status == fieldsync.AttachmentUploading {
				a.Status = fieldsync.AttachmentReady
				flipped = true
			}
		}
		if !flipped {
			continue
		}
		rec.Version++
		rec.UpdatedAt = now
		if _, err := tx.PutRecord(&rec); err != nil {
			return changed, err
		}
		changed++
	}
	return changed, nil
}
