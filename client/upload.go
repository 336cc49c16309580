package client

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/internal/sealedfile"
	"github.com/fieldsync/fieldsync/internal/tusclient"
	"github.com/fieldsync/fieldsync/protocol"
)

// Blob states (table blobs).
const (
	blobPending  = "pending"
	blobUploaded = "uploaded"
	blobFailed   = "failed"
)

// Messages kept as a blob's last error.
const (
	msgFileMissing = "the file on the device is missing: it cannot be sent"
	msgFileDamaged = "the file on the device is damaged (its bytes no longer match their SHA-256): it cannot be sent"
	msgResend      = "the server received damaged bytes and refused them; sent again from the start"
)

// errYield stops uploads so that ops saved meanwhile go first.
var errYield = errors.New("new ops to send first")

// blobToSend is a blob the server does not hold yet.
type blobToSend struct {
	sha, contentType, name, url string
	size, offset                int64
}

// upload sends the bytes of the attachments whose attach ops the server
// has, smallest first, resuming each from the server's offset. Ops come
// first: when the device queues a new op meanwhile, upload stops after
// the chunk under way so that the next sync sends the op. Nothing here
// holds the database's write lock while bytes travel.
func (e *Engine) upload(ctx context.Context, rep *Report) error {
	var top int64
	if err := e.db.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM outbox`).Scan(&top); err != nil {
		return err
	}
	blobs, err := e.blobsToSend(ctx)
	if err != nil {
		return err
	}
	rep.UploadsLeft = len(blobs)
	for _, b := range blobs {
		if newer, err := e.opsAfter(ctx, top); err != nil || newer {
			rep.yielded = newer
			return err
		}
		done, err := e.uploadBlob(ctx, b, top, rep)
		if done {
			rep.UploadsLeft--
		}
		switch {
		case errors.Is(err, errYield):
			rep.yielded = true
			return nil
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil && (fieldsync.ErrorCode(err).Retryable() || IsAuthRefusal(err) || fieldsync.ErrorCode(err) == fieldsync.EForbidden):
			return err // the next file would meet the same answer
		}
	}
	return nil
}

// uploadPhaseError is a failure of the upload phase of a sync, after its
// ops and changes went through.
type uploadPhaseError struct{ err error }

func (e *uploadPhaseError) Error() string { return e.err.Error() }
func (e *uploadPhaseError) Unwrap() error { return e.err }

func uploadPhase(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &uploadPhaseError{err}
}

func isUploadPhase(err error) bool {
	var u *uploadPhaseError
	return errors.As(err, &u)
}

// blobsToSend lists the blobs to upload, smallest first: not yet on the
// server, their file still here, named by an attach op the server has.
func (e *Engine) blobsToSend(ctx context.Context) ([]blobToSend, error) {
	rows, err := e.db.QueryContext(ctx, `SELECT b.sha256, b.size, b.content_type, b.upload_url, b.upload_offset,
		(SELECT a.name FROM attachments a WHERE a.sha256 = b.sha256 ORDER BY a.op_seq LIMIT 1)
		FROM blobs b WHERE b.state = 'pending' AND b.reclaimed_at = 0
		AND EXISTS (SELECT 1 FROM attachments a JOIN outbox o ON o.seq = a.op_seq
			WHERE a.sha256 = b.sha256 AND o.status IN ('delivered', 'conflict'))
		ORDER BY b.size, b.created_at`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []blobToSend
	for rows.Next() {
		var b blobToSend
		if err := rows.Scan(&b.sha, &b.size, &b.contentType, &b.url, &b.offset, &b.name); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// opsAfter reports whether an op was queued after seq top.
func (e *Engine) opsAfter(ctx context.Context, top int64) (bool, error) {
	var newer bool
	err := e.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM outbox WHERE seq > ?)`, top).Scan(&newer)
	return newer, err
}

// uploadBlob sends one blob. done reports that it needs no more sending:
// the server holds it, or its file is damaged. A checksum refusal is
// answered by checking the file: intact, it is sent again from zero;
// damaged, the blob is marked failed.
func (e *Engine) uploadBlob(ctx context.Context, b blobToSend, top int64, rep *Report) (done bool, err error) {
	if err := e.blobUpdate(ctx, `UPDATE blobs SET attempts = attempts + 1, last_attempt = ? WHERE sha256 = ?`,
		time.Now().UnixMilli(), b.sha); err != nil {
		return false, err
	}
	path := e.files.blobPath(b.sha)
	f, err := e.files.open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, e.markFailed(ctx, b.sha, msgFileMissing)
	}
	if errors.Is(err, sealedfile.ErrDamaged) {
		e.log.Error("attachment file damaged on the device", "sha256", b.sha, "file", path, "err", err)
		return true, e.markFailed(ctx, b.sha, msgFileDamaged)
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if f.Size() != b.size {
		return true, e.markFailed(ctx, b.sha, msgFileDamaged)
	}
	for range 3 {
		res, err := e.files.tus.Upload(ctx, &tusclient.Upload{
			Endpoint: e.cfg.ServerURL + protocol.PathFiles,
			URL:      b.url, Size: b.size, Data: f,
			Metadata: map[string]string{
				protocol.UploadMetaSHA256: b.sha, protocol.UploadMetaFilename: b.name, protocol.UploadMetaContentType: b.contentType,
			},
			Header: e.authHeader(),
			Exists: func(ctx context.Context) (bool, error) { return e.blobOnServer(ctx, b.sha) },
			Progress: func(url string, offset int64) error {
				if err := e.blobUpdate(context.WithoutCancel(ctx), `UPDATE blobs SET upload_url = ?, upload_offset = ? WHERE sha256 = ?`,
					url, offset, b.sha); err != nil {
					return err
				}
				if newer, err := e.opsAfter(ctx, top); err != nil || newer {
					return cmpErr(err, errYield)
				}
				return nil
			},
		})
		rep.BytesSent += res.Sent
		switch {
		case err == nil:
			rep.Uploaded++
			e.log.Info("attachment uploaded", "sha256", b.sha, "size", b.size, "sent", res.Sent, "from", max(res.Start, 0))
			return true, e.blobUpdate(context.WithoutCancel(ctx), `UPDATE blobs SET state = 'uploaded', uploaded_at = ?, upload_url = '',
				upload_offset = size, last_error = '' WHERE sha256 = ?`, time.Now().UnixMilli(), b.sha)
		case errors.Is(err, errYield):
			return false, err
		case errors.Is(err, tusclient.ErrChecksum):
			intact, herr := e.files.matches(path, b.sha)
			if herr != nil || !intact {
				e.log.Error("attachment file damaged on the device", "sha256", b.sha, "file", path, "err", herr)
				return true, e.markFailed(ctx, b.sha, msgFileDamaged)
			}
			e.log.Warn("the server refused damaged bytes; sending again from the start", "sha256", b.sha)
			b.url = ""
			if err := e.blobUpdate(context.WithoutCancel(ctx), `UPDATE blobs SET upload_url = '', upload_offset = 0, last_error = ? WHERE sha256 = ?`,
				msgResend, b.sha); err != nil {
				return false, err
			}
		case errors.Is(err, sealedfile.ErrDamaged):
			e.log.Error("attachment file damaged on the device", "sha256", b.sha, "file", path, "err", err)
			return true, e.markFailed(ctx, b.sha, msgFileDamaged)
		default:
			uerr := uploadError(err)
			if !IsAuthRefusal(uerr) { // about the device, not this file: Status says it
				e.blobUpdate(context.WithoutCancel(ctx), `UPDATE blobs SET last_error = ? WHERE sha256 = ?`, fieldsync.ErrorMessage(uerr), b.sha)
			}
			return false, uerr
		}
	}
	return false, fieldsync.Errorf(fieldsync.EUnavailable, "the server refused the bytes of %s three times in a row; will try again later", b.sha)
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// uploadError turns a failed upload into a *fieldsync.Error whose code
// says whether a retry can help.
func uploadError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	var se *tusclient.StatusError
	if errors.As(err, &se) {
		ae := answerError(se.Status, se.Header, []byte(se.Body), time.Now())
		switch c := fieldsync.ErrorCode(ae); {
		case IsAuthRefusal(ae), c == fieldsync.EForbidden, c == fieldsync.ERateLimited:
			return ae
		}
		if se.Temporary() && se.RetryAfter > 0 {
			return &waitError{err: fieldsync.Errorf(fieldsync.EUnavailable, "upload: the server answered HTTP %d; will try again", se.Status),
				wait: se.RetryAfter}
		}
		if se.Temporary() {
			return fieldsync.Errorf(fieldsync.EUnavailable, "upload: the server answered HTTP %d; will try again", se.Status)
		}
		fe := protocol.DecodeErrorBody(se.Status, []byte(se.Body))
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "upload: the server refused the file (HTTP %d): %s", se.Status, fe.Message)
	}
	var fe *fieldsync.Error
	if errors.As(err, &fe) {
		return err
	}
	return transportError(err)
}

func (e *Engine) blobUpdate(ctx context.Context, q string, args ...any) error {
	return e.update(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	})
}

func (e *Engine) markFailed(ctx context.Context, sha, why string) error {
	return e.blobUpdate(context.WithoutCancel(ctx), `UPDATE blobs SET state = 'failed', last_error = ?, upload_url = '' WHERE sha256 = ?`, why, sha)
}

// blobOnServer asks whether the server holds verified bytes of sha.
func (e *Engine) blobOnServer(ctx context.Context, sha string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, e.cfg.ServerURL+protocol.PathBlobs+sha, nil)
	if err != nil {
		return false, fieldsync.Errorf(fieldsync.EInvalidRequest, "server URL: %v", err)
	}
	req.Header.Set(protocol.VersionHeader, strconv.Itoa(protocol.Version))
	e.authorize(req.Header)
	resp, err := e.http.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	wait, _ := tusclient.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return false, &tusclient.StatusError{Method: http.MethodHead, Status: resp.StatusCode, Header: resp.Header, RetryAfter: wait}
}
