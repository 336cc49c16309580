package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/media"
	"github.com/fieldsync/fieldsync/protocol"
)

// Attachment statuses the device shows besides the server's
// (fieldsync.AttachmentUploading and fieldsync.AttachmentReady).
const (
	// AttachmentOnDevice: saved on this device; the server does not have
	// the attachment yet.
	AttachmentOnDevice = "on_device"
	// AttachmentFailed: the file on the device is damaged or gone; it
	// will not be sent.
	AttachmentFailed = "failed"
	// AttachmentRejected: the server refused the attach op (see its op).
	AttachmentRejected = "rejected"
)

// Default limits (see Limits).
const (
	DefaultMaxFileBytes   = 25 << 20
	DefaultMaxRecordBytes = 100 << 20
	DefaultMaxStoreBytes  = 2 << 30
)

// Limits bound what attachments may take. Attach refuses, before writing
// anything, what would pass one; saving text is never refused.
type Limits struct {
	// MaxFileBytes caps one prepared file (default 25 MiB).
	MaxFileBytes int64
	// MaxRecordBytes caps the attachments of one record, on the device
	// and on the server together (default 100 MiB).
	MaxRecordBytes int64
	// MaxStoreBytes caps the device store: database, originals,
	// thumbnails and signatures together (default 2 GiB).
	MaxStoreBytes int64
}

func (l Limits) validate() error {
	if l.MaxFileBytes < 0 || l.MaxRecordBytes < 0 || l.MaxStoreBytes < 0 {
		return errors.New("client: Config.Limits: a limit must be 0 (default) or more")
	}
	return nil
}

// AttachInput is one file to attach. Give exactly one of Data, Path and
// Strokes.
type AttachInput struct {
	Role string    // fieldsync.RolePhoto, RoleScan or RoleSignature
	Name string    // shown to people; default: the base name of Path
	Data io.Reader // a JPEG or PNG
	Path string    // a JPEG or PNG file to read
	// Strokes is a signature as drawn on a pad of Width×Height.
	Strokes       []media.Stroke
	Width, Height int
}

// Room says what still fits before a photo is taken.
type Room struct {
	FileLimit   int64 // Limits.MaxFileBytes
	RecordUsed  int64 // attachments of the record, on the device and on the server
	RecordLimit int64
	StoreUsed   int64 // Storage.Total()
	StoreLimit  int64
	// MaxFile is the largest prepared file (with its thumbnail) that fits
	// now: the least of the three.
	MaxFile int64
	// Reason says, when MaxFile is 0, which limit is reached.
	Reason string
}

// AttachRoom tells what an attachment to the record typ/id may still
// take, so that an app can say so before the person takes the photo.
func (e *Engine) AttachRoom(ctx context.Context, typ, id string) (Room, error) {
	tx, err := e.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Room{}, err
	}
	defer tx.Rollback()
	return e.room(ctx, tx, typ, id)
}

func (e *Engine) room(ctx context.Context, q querier, typ, id string) (Room, error) {
	lim := e.cfg.Limits
	r := Room{FileLimit: lim.MaxFileBytes, RecordLimit: lim.MaxRecordBytes, StoreLimit: lim.MaxStoreBytes}
	st, err := e.storage(ctx, q)
	if err != nil {
		return r, err
	}
	r.StoreUsed = st.Total()
	if r.RecordUsed, err = e.recordAttachBytes(ctx, q, typ, id); err != nil {
		return r, err
	}
	r.MaxFile = max(0, min(r.FileLimit, r.RecordLimit-r.RecordUsed, r.StoreLimit-r.StoreUsed))
	switch {
	case r.StoreUsed >= r.StoreLimit:
		r.Reason = e.storeFullMessage(st, 0)
	case r.RecordUsed >= r.RecordLimit:
		r.Reason = fmt.Sprintf("this record already has %s of attachments, the most one record may have (%s)",
			FormatBytes(r.RecordUsed), FormatBytes(r.RecordLimit))
	}
	return r, nil
}

// recordAttachBytes sums the sizes of the record's attachments: those
// made on this device and those the server reported.
func (e *Engine) recordAttachBytes(ctx context.Context, q querier, typ, id string) (int64, error) {
	atts, err := e.attachmentsOf(ctx, q, typ, id)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, a := range atts {
		if a.Status != AttachmentRejected {
			n += a.Size
		}
	}
	return n, nil
}

func (e *Engine) storeFullMessage(st Storage, need int64) string {
	msg := fmt.Sprintf("the device's storage for this app is full: %s used of %s", FormatBytes(st.Total()), FormatBytes(st.Limits.MaxStoreBytes))
	if need > 0 {
		msg += fmt.Sprintf(", and this needs %s more", FormatBytes(need))
	}
	msg += fmt.Sprintf(". Text can still be saved. Originals the server holds are removed %s after they are delivered",
		fmtDuration(e.cfg.Retention.KeepOriginalsFor))
	if st.Reclaimable > 0 {
		msg += fmt.Sprintf(" (%s can be freed now)", FormatBytes(st.Reclaimable))
	}
	switch {
	case st.Pending == 1:
		msg += "; 1 attachment waits to be sent: sync to send it"
	case st.Pending > 1:
		msg += fmt.Sprintf("; %d attachments wait to be sent: sync to send them", st.Pending)
	}
	return msg
}

func fmtDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d >= time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
	return d.String()
}

// Attach prepares a photo, scan or signature, stores it on the device and
// queues its attach op on the record typ/id. It returns once both are
// durably on disk; the bytes are uploaded later, by Sync, and the
// returned attachment's status is AttachmentOnDevice.
//
// A photo or scan is re-encoded with Config.Photo (downsized, metadata
// dropped, a thumbnail made); a signature becomes a small PNG. The
// prepared file is refused, with nothing written, when it passes a limit:
// ETooLarge for one file or one record, EStorageFull for the device
// store. Input media cannot read is refused with the media package's
// codes (EUnsupportedMedia, ETooLarge, EInvalidRequest).
func (e *Engine) Attach(ctx context.Context, typ, id string, in AttachInput) (fieldsync.Attachment, fieldsync.Op, error) {
	var op fieldsync.Op
	if !fieldsync.ValidRole(in.Role) {
		return fieldsync.Attachment{}, op, fieldsync.Errorf(fieldsync.EInvalidRequest, "role %q: want photo, scan or signature", in.Role)
	}
	if in.Name == "" && in.Path != "" {
		in.Name = filepath.Base(in.Path)
	}
	if !protocol.ValidAttachmentName(in.Name) {
		return fieldsync.Attachment{}, op, fieldsync.Errorf(fieldsync.EInvalidRequest,
			"name: want at most %d bytes of text without control characters", protocol.MaxAttachmentName)
	}
	if _, err := e.Get(ctx, typ, id); err != nil {
		return fieldsync.Attachment{}, op, err
	}
	// Refuse at once when the store is full, before reading anything.
	room, err := e.AttachRoom(ctx, typ, id)
	if err != nil {
		return fieldsync.Attachment{}, op, err
	}
	if room.StoreUsed >= room.StoreLimit {
		return fieldsync.Attachment{}, op, &fieldsync.Error{Code: fieldsync.EStorageFull, Message: room.Reason}
	}
	prep, inputSize, err := e.prepare(in)
	if err != nil {
		return fieldsync.Attachment{}, op, err
	}
	sum := sha256.Sum256(prep.Data)
	att := fieldsync.Attachment{
		ID: uuid.Must(uuid.NewV7()).String(), SHA256: hex.EncodeToString(sum[:]), Size: int64(len(prep.Data)),
		ContentType: prep.ContentType, Role: in.Role, Name: in.Name,
	}
	thumb := prep.Thumb
	if bytes.Equal(thumb, prep.Data) {
		thumb = nil // a signature is its own thumbnail
	}
	if err := e.checkLimits(ctx, typ, id, att, int64(len(thumb))); err != nil {
		return fieldsync.Attachment{}, op, err
	}
	raw, err := json.Marshal(att)
	if err != nil {
		return fieldsync.Attachment{}, op, err
	}
	if _, err := protocol.DecodeAttachment(raw); err != nil {
		return fieldsync.Attachment{}, op, err
	}
	op = fieldsync.Op{
		ID: uuid.Must(uuid.NewV7()).String(), DeviceID: e.deviceID, Kind: fieldsync.KindAttach,
		EntityType: typ, EntityID: id, Fields: map[string]json.RawMessage{fieldsync.AttachField: raw},
		LocalTime: e.now().UTC(),
	}
	if err := checkChange(&op); err != nil {
		return fieldsync.Attachment{}, op, err
	}
	fields, err := json.Marshal(op.Fields)
	if err != nil {
		return fieldsync.Attachment{}, op, err
	}
	if err := e.storeAttachment(ctx, &op, fields, att, prep, thumb, inputSize); err != nil {
		return fieldsync.Attachment{}, op, fmt.Errorf("store the attachment: %w", e.diskFull(err))
	}
	select {
	case e.kick <- struct{}{}:
	default:
	}
	att.Status, att.By, att.At = AttachmentOnDevice, e.deviceID, op.LocalTime
	return att, op, nil
}

// prepare reads the input and prepares it for its role. It returns the
// prepared file and the input's size.
func (e *Engine) prepare(in AttachInput) (media.Prepared, int64, error) {
	sources := 0
	for _, set := range []bool{in.Data != nil, in.Path != "", in.Strokes != nil} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return media.Prepared{}, 0, fieldsync.Errorf(fieldsync.EInvalidRequest, "give exactly one of a picture, a file or signature strokes")
	}
	if in.Strokes != nil {
		if in.Role != fieldsync.RoleSignature {
			return media.Prepared{}, 0, fieldsync.Errorf(fieldsync.EInvalidRequest, "strokes make a signature, not a %s", in.Role)
		}
		p, err := media.EncodeSignature(in.Strokes, in.Width, in.Height)
		return p, int64(len(p.Data)), err
	}
	r := in.Data
	if in.Path != "" {
		f, err := os.Open(in.Path)
		if err != nil {
			return media.Prepared{}, 0, fieldsync.Errorf(fieldsync.EInvalidRequest, "cannot read %s: %v", in.Path, errors.Unwrap(err))
		}
		defer f.Close()
		r = f
	}
	cr := &countReader{r: r}
	var p media.Prepared
	var err error
	switch in.Role {
	case fieldsync.RolePhoto:
		p, err = media.PreparePhoto(cr, e.cfg.Photo)
	case fieldsync.RoleScan:
		p, err = media.PrepareScan(cr, e.cfg.Photo)
	default:
		p, err = media.PrepareSignature(cr)
	}
	return p, cr.n, err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// checkLimits refuses an attachment that would pass a limit.
func (e *Engine) checkLimits(ctx context.Context, typ, id string, att fieldsync.Attachment, thumbSize int64) error {
	lim := e.cfg.Limits
	if att.Size > lim.MaxFileBytes {
		return fieldsync.Errorf(fieldsync.ETooLarge, "the %s is %s after preparation; one attachment may be at most %s",
			att.Role, FormatBytes(att.Size), FormatBytes(lim.MaxFileBytes))
	}
	tx, err := e.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	used, err := e.recordAttachBytes(ctx, tx, typ, id)
	if err != nil {
		return err
	}
	if used+att.Size > lim.MaxRecordBytes {
		return fieldsync.Errorf(fieldsync.ETooLarge, "this record has %s of attachments; with this %s (%s) it would pass the limit of %s per record",
			FormatBytes(used), att.Role, FormatBytes(att.Size), FormatBytes(lim.MaxRecordBytes))
	}
	st, err := e.storage(ctx, tx)
	if err != nil {
		return err
	}
	need := att.Size + thumbSize
	var have bool // the same bytes are already on the device
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM blobs WHERE sha256 = ? AND reclaimed_at = 0)`, att.SHA256).Scan(&have); err != nil {
		return err
	}
	if have {
		need = 0
	}
	if st.Total()+need > lim.MaxStoreBytes {
		return &fieldsync.Error{Code: fieldsync.EStorageFull, Message: e.storeFullMessage(st, need)}
	}
	return nil
}

// Statements of an attach's transaction.
const (
	sqlPutBlob = `INSERT INTO blobs (sha256, size, content_type, category, thumb_size, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (sha256) DO UPDATE SET reclaimed_at = 0, thumb_size = excluded.thumb_size,
		state = CASE WHEN state = 'failed' THEN 'pending' ELSE state END,
		attempts = CASE WHEN state = 'failed' THEN 0 ELSE attempts END,
		last_error = CASE WHEN state = 'failed' THEN '' ELSE last_error END`
	sqlPutAttachment = `INSERT INTO attachments (id, op_seq, type, entity_id, sha256, role, name, input_size, width, height, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// Storage categories of blobs.
const (
	categoryOriginal  = "original"
	categorySignature = "signature"
)

// storeAttachment writes the files, synced, then commits the blob, the
// attachment and the op in one transaction. The files lock keeps a
// concurrent clean-up from taking the files in between.
func (e *Engine) storeAttachment(ctx context.Context, op *fieldsync.Op, fields []byte, att fieldsync.Attachment,
	prep media.Prepared, thumb []byte, inputSize int64) error {
	l, err := e.files.lock(false, true)
	if err != nil {
		return err
	}
	defer l.unlock()
	if err := e.files.put(e.files.blobPath(att.SHA256), prep.Data); err != nil {
		return fmt.Errorf("write the file: %w", err)
	}
	if thumb != nil {
		if err := e.files.put(e.files.thumbPath(att.SHA256), thumb); err != nil {
			return fmt.Errorf("write the thumbnail: %w", err)
		}
	}
	category := categoryOriginal
	if att.Role == fieldsync.RoleSignature {
		category = categorySignature
	}
	now := op.LocalTime.UnixMilli()
	return e.saveTx(ctx, func(stmt stmtFunc) error {
		exec := func(q string, args ...any) error {
			st, err := stmt(q, args...)
			if err != nil {
				return err
			}
			return st.Exec()
		}
		if err := exec(sqlPutBlob, att.SHA256, att.Size, att.ContentType, category, int64(len(thumb)), now); err != nil {
			return err
		}
		if err := queueOp(stmt, op, fields); err != nil {
			return err
		}
		return exec(sqlPutAttachment, att.ID, op.Seq, op.EntityType, op.EntityID, att.SHA256, att.Role, att.Name,
			inputSize, int64(prep.Width), int64(prep.Height), now)
	})
}

// attachmentsOf lists the attachments of a record as the device shows
// them: the server's, in its order, then those only on this device. A
// server "uploading" whose bytes this device has since sent shows
// "ready".
func (e *Engine) attachmentsOf(ctx context.Context, q querier, typ, id string) ([]fieldsync.Attachment, error) {
	var serverJSON string
	err := q.QueryRowContext(ctx, `SELECT attachments FROM records WHERE type = ? AND id = ?`, typ, id).Scan(&serverJSON)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	var out []fieldsync.Attachment
	if serverJSON != "" {
		if err := json.Unmarshal([]byte(serverJSON), &out); err != nil {
			return nil, fmt.Errorf("record %s/%s: attachments: %w", typ, id, err)
		}
	}
	rows, err := q.QueryContext(ctx, `SELECT a.id, a.sha256, b.size, b.content_type, a.role, a.name, a.created_at, b.state, o.status
		FROM attachments a JOIN blobs b ON b.sha256 = a.sha256 JOIN outbox o ON o.seq = a.op_seq
		WHERE a.type = ? AND a.entity_id = ? ORDER BY a.op_seq`, typ, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	onServer := make(map[string]int, len(out))
	for i, a := range out {
		onServer[a.ID] = i
	}
	for rows.Next() {
		var a fieldsync.Attachment
		var created int64
		var blobState, opStatus string
		if err := rows.Scan(&a.ID, &a.SHA256, &a.Size, &a.ContentType, &a.Role, &a.Name, &created, &blobState, &opStatus); err != nil {
			return nil, err
		}
		if i, ok := onServer[a.ID]; ok {
			if out[i].Status == fieldsync.AttachmentUploading && blobState == blobUploaded {
				out[i].Status = fieldsync.AttachmentReady
			}
			continue
		}
		switch {
		case opStatus == OpDiscarded:
			continue
		case opStatus == OpError:
			a.Status = AttachmentRejected
		case blobState == blobFailed:
			a.Status = AttachmentFailed
		default:
			a.Status = AttachmentOnDevice
		}
		a.By, a.At = e.deviceID, time.UnixMilli(created).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}

// LocalFile is where an attachment's files are on this device. On an
// encrypted device (Config.PIN) the files hold ciphertext: read them with
// OpenAttachment and OpenThumbnail.
type LocalFile struct {
	Path      string // the prepared file; "" once reclaimed
	Thumbnail string // the thumbnail (for a signature, the file itself)
	SHA256    string
	Size      int64
}

// LocalFile returns the files of an attachment saved on this device;
// ENotFound for an attachment this device does not hold.
func (e *Engine) LocalFile(ctx context.Context, attachmentID string) (LocalFile, error) {
	var f LocalFile
	var thumbSize, reclaimed int64
	err := e.db.QueryRowContext(ctx, `SELECT b.sha256, b.size, b.thumb_size, b.reclaimed_at FROM attachments a
		JOIN blobs b ON b.sha256 = a.sha256 WHERE a.id = ?`, attachmentID).Scan(&f.SHA256, &f.Size, &thumbSize, &reclaimed)
	if errors.Is(err, sql.ErrNoRows) {
		return f, fieldsync.Errorf(fieldsync.ENotFound, "no attachment %s on this device", attachmentID)
	}
	if err != nil {
		return f, err
	}
	if reclaimed == 0 {
		f.Path = e.files.blobPath(f.SHA256)
	}
	f.Thumbnail = f.Path
	if thumbSize > 0 {
		f.Thumbnail = e.files.thumbPath(f.SHA256)
	}
	return f, nil
}
