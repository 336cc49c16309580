package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/internal/tusclient"
	"github.com/fieldsync/fieldsync/protocol"
)

// Attachment files live in the device directory, named by their SHA-256:
//
//	attachments/ab/cdef…   the prepared file (the "original" that is uploaded)
//	thumbs/ab/cdef…        its thumbnail, kept when the original is reclaimed
//	files.lock             guards the files while they are written
//
// A file is written to a temporary name, synced, renamed into place and
// its directory synced before the transaction that names it commits, so a
// queued attach op always has its file. A crash in between leaves a file
// no row names; Open removes it.
const (
	attachDir     = "attachments"
	thumbDir      = "thumbs"
	filesLockName = "files.lock"
	tmpPrefix     = ".tmp-"
)

// Retention says how long originals stay on the device.
type Retention struct {
	// KeepOriginalsFor is how long the original file of an attachment is
	// kept once the server holds its bytes and its attach op is
	// delivered; then Reclaim removes it and keeps the thumbnail. Zero
	// means 7 days. Signatures are never removed: they are small and have
	// no separate thumbnail.
	KeepOriginalsFor time.Duration
}

// DefaultKeepOriginalsFor is the default Retention.KeepOriginalsFor.
const DefaultKeepOriginalsFor = 7 * 24 * time.Hour

// reclaimEvery is how often Run looks for originals to reclaim, at most;
// a shorter retention makes it look as often.
const reclaimEvery = time.Hour

// fileStore is the engine's attachment files and their uploader.
type fileStore struct {
	root   string // the device directory
	key    []byte // seals the files; nil when the device is not encrypted
	tus    *tusclient.Client
	mu     sync.Mutex
	lastRe time.Time // last Reclaim by Run
}

func (f *fileStore) blobPath(sha string) string {
	return filepath.Join(f.root, attachDir, sha[:2], sha[2:])
}

func (f *fileStore) thumbPath(sha string) string {
	return filepath.Join(f.root, thumbDir, sha[:2], sha[2:])
}

func (f *fileStore) lock(exclusive, wait bool) (*filesLock, error) {
	return lockFiles(filepath.Join(f.root, filesLockName), exclusive, wait)
}

// openFiles prepares the attachment directories and the uploader, and
// removes the files an interrupted Attach or Reclaim left behind.
func (e *Engine) openFiles(ctx context.Context) error {
	if e.cfg.Limits.MaxFileBytes == 0 {
		e.cfg.Limits.MaxFileBytes = DefaultMaxFileBytes
	}
	if e.cfg.Limits.MaxRecordBytes == 0 {
		e.cfg.Limits.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if e.cfg.Limits.MaxStoreBytes == 0 {
		e.cfg.Limits.MaxStoreBytes = DefaultMaxStoreBytes
	}
	if e.cfg.Retention.KeepOriginalsFor == 0 {
		e.cfg.Retention.KeepOriginalsFor = DefaultKeepOriginalsFor
	}
	e.files = &fileStore{root: e.cfg.Dir, tus: &tusclient.Client{
		HTTP:           e.http,
		Header:         http.Header{protocol.VersionHeader: {strconv.Itoa(protocol.Version)}},
		RequestTimeout: e.cfg.RequestTimeout,
	}}
	made := false
	for _, d := range []string{attachDir, thumbDir} {
		p := filepath.Join(e.cfg.Dir, d)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(p, 0o700); err != nil {
				return fmt.Errorf("attachment files: %w", err)
			}
			made = true
		}
	}
	if made {
		if err := syncDir(e.cfg.Dir); err != nil {
			return fmt.Errorf("attachment files: %w", err)
		}
	}
	if e.keys != nil {
		e.files.key = e.keys.files
	}
	if err := e.cleanFiles(ctx); err != nil {
		return err
	}
	return e.sealFiles()
}

// cleanFiles removes files no blob names (an Attach that stopped between
// its files and its commit), originals already reclaimed (a Reclaim that
// stopped between its commit and the removal) and temporary files. It
// does nothing while another process writes attachment files.
func (e *Engine) cleanFiles(ctx context.Context) error {
	l, err := e.files.lock(true, false)
	if err != nil || l == nil {
		return err
	}
	defer l.unlock()
	known := map[string]bool{} // sha → original still wanted
	rows, err := e.db.QueryContext(ctx, `SELECT sha256, reclaimed_at = 0 FROM blobs`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var sha string
		var keep bool
		if err := rows.Scan(&sha, &keep); err != nil {
			rows.Close()
			return err
		}
		known[sha] = keep
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, d := range []string{attachDir, thumbDir} {
		err := walkFiles(filepath.Join(e.cfg.Dir, d), func(path, sha string) {
			keep, ok := known[sha]
			if sha != "" && ok && (keep || d == thumbDir) {
				return
			}
			if err := os.Remove(path); err != nil {
				e.log.Warn("could not remove a leftover attachment file", "file", path, "err", err)
				return
			}
			if sha == "" {
				e.log.Info("removed a temporary attachment file left by an interrupted write", "file", path)
			} else if !ok {
				e.log.Warn("removed an attachment file that no attachment names (the app stopped before the attachment was saved)", "file", path)
			} else {
				e.log.Info("removed an original whose space was reclaimed", "file", path)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// walkFiles calls fn for every file under a content-addressed root (two
// levels): sha is the name the file stands for, or "" for a temporary
// file. Anything else is left alone.
func walkFiles(root string, fn func(path, sha string)) error {
	subs, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, s := range subs {
		if strings.HasPrefix(s.Name(), tmpPrefix) && !s.IsDir() {
			fn(filepath.Join(root, s.Name()), "")
			continue
		}
		if !s.IsDir() || len(s.Name()) != 2 {
			continue
		}
		files, err := os.ReadDir(filepath.Join(root, s.Name()))
		if err != nil {
			return err
		}
		for _, f := range files {
			path := filepath.Join(root, s.Name(), f.Name())
			switch {
			case f.IsDir():
			case strings.HasPrefix(f.Name(), tmpPrefix):
				fn(path, "")
			case fieldsync.ValidSHA256(s.Name() + f.Name()):
				fn(path, s.Name()+f.Name())
			}
		}
	}
	return nil
}

// writeDurable writes data to path so that it survives a crash once it
// returns: a temporary file, synced, renamed into place, the directory
// synced (and its parent, when the directory is new).
func writeDurable(path string, data []byte) error {
	dir := filepath.Dir(path)
	newDir := false
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		newDir = true
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if newDir {
		return syncDir(filepath.Dir(dir))
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// ReclaimReport says what Reclaim freed.
type ReclaimReport struct {
	Files int   // original files removed
	Bytes int64 // their size
}

// reclaimable selects the originals that may go: photos and scans whose
// bytes the server holds, every attach op naming them delivered, both for
// longer than the retention.
const reclaimable = `FROM blobs b WHERE b.state = 'uploaded' AND b.reclaimed_at = 0 AND b.category = 'original'
	AND b.uploaded_at <= ?1
	AND NOT EXISTS (SELECT 1 FROM attachments a JOIN outbox o ON o.seq = a.op_seq
		WHERE a.sha256 = b.sha256 AND NOT (o.status IN ('delivered', 'conflict') AND o.decided_at <= ?1))`

// Reclaim removes the original files of photos and scans that the server
// holds, whose attach ops were delivered, both longer ago than
// Retention.KeepOriginalsFor; their thumbnails stay. Run calls it after
// a sync about once an hour (as often as the retention, if shorter). It
// never removes a file that is not safe on the server.
func (e *Engine) Reclaim(ctx context.Context) (ReclaimReport, error) {
	var rep ReclaimReport
	l, err := e.files.lock(true, true)
	if err != nil {
		return rep, fmt.Errorf("reclaim: %w", err)
	}
	defer l.unlock()
	cutoff := time.Now().Add(-e.cfg.Retention.KeepOriginalsFor).UnixMilli()
	var shas []string
	err = e.update(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT b.sha256, b.size `+reclaimable, cutoff)
		if err != nil {
			return err
		}
		for rows.Next() {
			var sha string
			var size int64
			if err := rows.Scan(&sha, &size); err != nil {
				rows.Close()
				return err
			}
			shas = append(shas, sha)
			rep.Bytes += size
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE blobs SET reclaimed_at = ?2 WHERE sha256 IN (SELECT b.sha256 `+reclaimable+`)`,
			cutoff, time.Now().UnixMilli())
		return err
	})
	if err != nil {
		return ReclaimReport{}, fmt.Errorf("reclaim: %w", err)
	}
	// Marked first, removed after: a crash in between leaves files that
	// the next Open removes.
	for _, sha := range shas {
		if err := os.Remove(e.files.blobPath(sha)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			e.log.Warn("could not remove a reclaimed original", "sha256", sha, "err", err)
			continue
		}
		rep.Files++
	}
	if rep.Files > 0 {
		e.log.Info("reclaimed space of originals the server holds", "files", rep.Files, "bytes", rep.Bytes)
	}
	return rep, nil
}

// maybeReclaim runs Reclaim when it has not run for reclaimEvery.
func (e *Engine) maybeReclaim(ctx context.Context) {
	e.files.mu.Lock()
	due := time.Since(e.files.lastRe) >= min(reclaimEvery, e.cfg.Retention.KeepOriginalsFor)
	if due {
		e.files.lastRe = time.Now()
	}
	e.files.mu.Unlock()
	if !due {
		return
	}
	if _, err := e.Reclaim(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("reclaim failed", "err", err)
	}
}

// Storage is what the device's data takes on its disk, by category.
type Storage struct {
	Database    int64 // the device database (records, outbox, trails)
	Originals   int64 // prepared photos and scans
	Thumbnails  int64
	Signatures  int64
	Reclaimable int64 // originals Reclaim would remove now
	Pending     int   // attachments whose bytes or op the server does not hold yet
	Limits      Limits
	// Failed lists attachments that will not be sent: their file on the
	// device is damaged or gone.
	Failed []AttachmentIssue
	// Failing lists attachments still retried after 3 or more failed
	// attempts, with the last reason.
	Failing []AttachmentIssue
}

// Total is the bytes counted against Limits.MaxStoreBytes.
func (s Storage) Total() int64 { return s.Database + s.Originals + s.Thumbnails + s.Signatures }

// AttachmentIssue is an attachment whose upload needs a look.
type AttachmentIssue struct {
	ID          string // attachment id
	Type        string
	EntityID    string
	Role        string
	Name        string
	SHA256      string
	Size        int64
	Sent        int64 // bytes the server confirmed so far
	Attempts    int
	LastError   string
	LastAttempt time.Time
}

// Storage reports what the device's data takes on disk, what Reclaim
// would free, and the attachments not yet on the server.
func (e *Engine) Storage(ctx context.Context) (Storage, error) {
	tx, err := e.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Storage{}, err
	}
	defer tx.Rollback()
	return e.storage(ctx, tx)
}

func (e *Engine) storage(ctx context.Context, q querier) (Storage, error) {
	s := Storage{Limits: e.cfg.Limits}
	for _, name := range []string{"device.db", "device.db-wal"} {
		if fi, err := os.Stat(filepath.Join(e.cfg.Dir, name)); err == nil {
			s.Database += fi.Size()
		}
	}
	rows, err := q.QueryContext(ctx, `SELECT category, coalesce(sum(CASE WHEN reclaimed_at = 0 THEN size END), 0),
		coalesce(sum(thumb_size), 0) FROM blobs GROUP BY category`)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var cat string
		var size, thumbs int64
		if err := rows.Scan(&cat, &size, &thumbs); err != nil {
			rows.Close()
			return s, err
		}
		if cat == categorySignature {
			s.Signatures += size
		} else {
			s.Originals += size
		}
		s.Thumbnails += thumbs
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, err
	}
	cutoff := time.Now().Add(-e.cfg.Retention.KeepOriginalsFor).UnixMilli()
	if err := q.QueryRowContext(ctx, `SELECT coalesce(sum(b.size), 0) `+reclaimable, cutoff).Scan(&s.Reclaimable); err != nil {
		return s, err
	}
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM attachments a JOIN blobs b ON b.sha256 = a.sha256
		JOIN outbox o ON o.seq = a.op_seq
		WHERE o.status != 'discarded' AND (b.state != 'uploaded' OR o.status NOT IN ('delivered', 'conflict'))`).Scan(&s.Pending); err != nil {
		return s, err
	}
	if s.Failed, err = e.issues(ctx, q, `b.state = 'failed'`); err != nil {
		return s, err
	}
	if s.Failing, err = e.issues(ctx, q, `b.state = 'pending' AND b.attempts >= 3 AND b.last_error != ''`); err != nil {
		return s, err
	}
	return s, nil
}

func (e *Engine) issues(ctx context.Context, q querier, where string) ([]AttachmentIssue, error) {
	rows, err := q.QueryContext(ctx, `SELECT a.id, a.type, a.entity_id, a.role, a.name, b.sha256, b.size, b.upload_offset,
		b.attempts, b.last_error, b.last_attempt
		FROM attachments a JOIN blobs b ON b.sha256 = a.sha256 JOIN outbox o ON o.seq = a.op_seq
		WHERE o.status != 'discarded' AND `+where+` ORDER BY a.op_seq LIMIT 100`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AttachmentIssue
	for rows.Next() {
		var a AttachmentIssue
		var at int64
		if err := rows.Scan(&a.ID, &a.Type, &a.EntityID, &a.Role, &a.Name, &a.SHA256, &a.Size, &a.Sent,
			&a.Attempts, &a.LastError, &at); err != nil {
			return nil, err
		}
		if at > 0 {
			a.LastAttempt = time.UnixMilli(at).UTC()
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// FormatBytes writes a size for people: "812 B", "3.4 MiB", "2.0 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
