package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tus/tusd/v2/pkg/filelocker"
	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	xslog "golang.org/x/exp/slog"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/protocol"
)

// Attachment bytes live in Config.BlobDir:
//
//	uploads/          uploads under way (tus: <id> holds the bytes so far,
//	                  <id>.info the upload's length and metadata)
//	sha256/ab/cdef…   verified blobs, named by their SHA-256, one file each
//
// An upload that completes is hashed; bytes that do not match the SHA-256
// it declared are discarded (HTTP 460) and must be sent again. Bytes that
// match are synced to disk and renamed into sha256/ (the directory synced
// too) before the store records the blob and marks the attachments that
// wait for it ready, so the store never says "ready" for a file that a
// crash could lose. A file in sha256/ that the store does not know yet (the
// server stopped between the rename and the commit) is verified again and
// recorded the next time anyone asks for that hash: a HEAD or GET of the
// blob, or a new upload of it. Every device still holding the attachment
// asks, so nothing stays "uploading" for good.

// blobStore is the attachment part of a Server.
type blobStore struct {
	dir     string // Config.BlobDir
	uploads string // dir/uploads
	max     int64
	tus     *handler.UnroutedHandler
	expiry  time.Duration // Config.UploadExpiry

	sweepMu   sync.Mutex // one sweep of abandoned uploads at a time
	lastSweep time.Time
}

// blobPath is where the verified blob with that hash lives.
func (b *blobStore) blobPath(sha string) string {
	return filepath.Join(b.dir, "sha256", sha[:2], sha[2:])
}

// initBlobs sets up the upload and download endpoints. Without a BlobDir
// they answer 503.
func (s *Server) initBlobs(cfg Config) error {
	files := strings.TrimSuffix(protocol.PathFiles, "/")
	if cfg.BlobDir == "" {
		off := func(w http.ResponseWriter, r *http.Request) {
			s.writeError(w, r, fieldsync.Errorf(fieldsync.EUnavailable, "attachments are not configured on this server"))
		}
		for _, p := range []string{files + "/{$}", protocol.PathFiles + "{id}", protocol.PathBlobs + "{sha}"} {
			s.mux.HandleFunc(p, off)
		}
		return nil
	}
	b := &blobStore{dir: cfg.BlobDir, uploads: filepath.Join(cfg.BlobDir, "uploads"), max: cfg.MaxAttachmentBytes}
	if b.max <= 0 {
		b.max = protocol.MaxAttachmentBytes
	}
	b.expiry = cfg.UploadExpiry
	if b.expiry == 0 {
		b.expiry = DefaultUploadExpiry
	}
	if err := os.MkdirAll(b.uploads, 0o750); err != nil {
		return fmt.Errorf("server: blob directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(b.dir, "sha256"), 0o750); err != nil {
		return fmt.Errorf("server: blob directory: %w", err)
	}
	store := filestore.New(b.uploads)
	store.DirModePerm, store.FileModePerm = 0o750, 0o640
	composer := handler.NewStoreComposer()
	composer.UseCore(store)
	composer.UseTerminater(store)
	filelocker.New(b.uploads).UseIn(composer)
	tus, err := handler.NewUnroutedHandler(handler.Config{
		StoreComposer:             composer,
		BasePath:                  protocol.PathFiles,
		MaxSize:                   b.max,
		DisableDownload:           true,
		DisableConcatenation:      true,
		Cors:                      &handler.CorsConfig{Disable: true},
		Logger:                    xslog.New(tusLog{s.log.With("part", "uploads").Handler()}),
		PreUploadCreateCallback:   s.beforeUpload,
		PreFinishResponseCallback: s.finishUpload,
	})
	if err != nil {
		return fmt.Errorf("server: uploads: %w", err)
	}
	b.tus = tus
	s.blobs = b

	// The tus handler sees paths relative to PathFiles; every route goes
	// through the same mux, and so through ServeHTTP, as the rest of /v1.
	route := func(fn http.HandlerFunc) http.Handler {
		inner := http.StripPrefix(files, tus.Middleware(fn))
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := s.guard(w, r, auth.ActionUpload); ok {
				inner.ServeHTTP(w, r)
			}
		})
	}
	upload := func(fn http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !validUploadID(r.PathValue("id")) {
				s.writeError(w, r, fieldsync.Errorf(fieldsync.ENotFound, "no such upload: %s", r.URL.Path))
				return
			}
			route(fn).ServeHTTP(w, r)
		}
	}
	options := func(w http.ResponseWriter, r *http.Request) {} // the tus middleware answers OPTIONS itself
	s.mux.Handle("POST "+files+"/{$}", route(tus.PostFile))
	s.mux.Handle("OPTIONS "+files+"/{$}", route(options))
	s.mux.HandleFunc("HEAD "+protocol.PathFiles+"{id}", upload(tus.HeadFile))
	s.mux.HandleFunc("PATCH "+protocol.PathFiles+"{id}", upload(tus.PatchFile))
	s.mux.HandleFunc("DELETE "+protocol.PathFiles+"{id}", upload(tus.DelFile))
	s.mux.HandleFunc("OPTIONS "+protocol.PathFiles+"{id}", upload(options))
	s.mux.HandleFunc("GET "+protocol.PathBlobs+"{sha}", s.handleBlob) // and HEAD
	return nil
}

// validUploadID reports whether id may name an upload: the ids the upload
// store makes are hex.
func validUploadID(id string) bool {
	if len(id) < 1 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// uploadError is a refusal of an upload request, with the JSON error body
// of the rest of the API.
func (s *Server) uploadError(r handler.HTTPRequest, status int, code fieldsync.Code, format string, args ...any) handler.Error {
	msg := fmt.Sprintf(format, args...)
	body, _ := json.Marshal(protocol.ErrorBody{Error: protocol.ErrorDetail{Code: string(code), Message: msg, Retryable: code.Retryable()}})
	if status >= 500 {
		s.log.Error("upload failed", "method", r.Method, "path", r.URI, "msg", msg)
	} else {
		s.log.Info("upload refused", "method", r.Method, "path", r.URI, "status", status, "code", code, "msg", msg)
	}
	return handler.Error{ErrorCode: string(code), Message: msg, HTTPResponse: handler.HTTPResponse{
		StatusCode: status, Body: string(body) + "\n", Header: handler.HTTPHeader{"Content-Type": "application/json"},
	}}
}

// beforeUpload checks an upload creation. The metadata must name the
// SHA-256 of the bytes to come; if the server already holds them, the
// answer is 200 with the blob's description and Content-Location, and no
// upload is created.
func (s *Server) beforeUpload(hook handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	var none handler.FileInfoChanges
	s.maybeSweepUploads(hook.Context)
	req, info := hook.HTTPRequest, hook.Upload
	sha := info.MetaData[protocol.UploadMetaSHA256]
	ct := info.MetaData[protocol.UploadMetaContentType]
	name := info.MetaData[protocol.UploadMetaFilename]
	switch {
	case !fieldsync.ValidSHA256(sha):
		return handler.HTTPResponse{}, none, s.uploadError(req, http.StatusBadRequest, fieldsync.EInvalidRequest,
			"Upload-Metadata must carry %q: the file's SHA-256 as 64 lower-case hex digits", protocol.UploadMetaSHA256)
	case ct != "" && !protocol.ValidContentType(ct):
		return handler.HTTPResponse{}, none, s.uploadError(req, http.StatusUnsupportedMediaType, fieldsync.EUnsupportedMedia,
			"content type %q is not accepted: send %s", ct, strings.Join(protocol.AttachmentContentTypes, ", "))
	case !protocol.ValidAttachmentName(name):
		return handler.HTTPResponse{}, none, s.uploadError(req, http.StatusBadRequest, fieldsync.EInvalidRequest,
			"%s: want at most %d bytes of text without control characters", protocol.UploadMetaFilename, protocol.MaxAttachmentName)
	case info.SizeIsDeferred:
		return handler.HTTPResponse{}, none, s.uploadError(req, http.StatusBadRequest, fieldsync.EInvalidRequest,
			"name the file's size in Upload-Length: uploads of unknown length are not accepted")
	case info.Size < 1:
		return handler.HTTPResponse{}, none, s.uploadError(req, http.StatusBadRequest, fieldsync.EInvalidRequest,
			"an empty file cannot be an attachment")
	}
	blob, held, err := s.heldBlob(hook.Context, sha, ct)
	if err != nil {
		return handler.HTTPResponse{}, none, s.uploadError(req, http.StatusServiceUnavailable, fieldsync.EUnavailable,
			"the server could not check its files; try again")
	}
	if held {
		if blob.Size != info.Size {
			return handler.HTTPResponse{}, none, s.uploadError(req, http.StatusBadRequest, fieldsync.EInvalidRequest,
				"the server holds %d bytes with sha256 %s, but Upload-Length says %d: check the hash", blob.Size, sha, info.Size)
		}
		body, _ := json.Marshal(protocol.FromBlob(&blob))
		s.log.Info("upload not needed: blob already held", "sha256", sha)
		return handler.HTTPResponse{}, none, handler.Error{ErrorCode: "blob_held", Message: "already held", HTTPResponse: handler.HTTPResponse{
			StatusCode: http.StatusOK, Body: string(body) + "\n",
			Header: handler.HTTPHeader{"Content-Type": "application/json", "Content-Location": protocol.PathBlobs + sha},
		}}
	}
	meta := handler.MetaData{protocol.UploadMetaSHA256: sha}
	if ct != "" {
		meta[protocol.UploadMetaContentType] = ct
	}
	if name != "" {
		meta[protocol.UploadMetaFilename] = name
	}
	return handler.HTTPResponse{}, handler.FileInfoChanges{MetaData: meta}, nil
}

// finishUpload runs when the last byte of an upload is written, before
// the client is answered: the bytes are verified, made durable, moved to
// their content-addressed place, and only then recorded as a blob, with
// every attachment waiting for them marked ready.
func (s *Server) finishUpload(hook handler.HookEvent) (handler.HTTPResponse, error) {
	req, info := hook.HTTPRequest, hook.Upload
	sha := info.MetaData[protocol.UploadMetaSHA256]
	path, infoPath := info.Storage[filestore.StorageKeyPath], info.Storage[filestore.StorageKeyInfoPath]
	got, err := hashFile(path, true)
	if err != nil {
		s.log.Error("verify upload", "id", info.ID, "err", err)
		return handler.HTTPResponse{}, s.uploadError(req, http.StatusInternalServerError, fieldsync.EInternal, "the server could not read the upload back")
	}
	if got != sha {
		removeUpload(path, infoPath)
		return handler.HTTPResponse{}, s.uploadError(req, protocol.StatusChecksumMismatch, fieldsync.EInvalidRequest,
			"the %d bytes received hash to sha256 %s, not %s as declared: they were discarded; upload the file again from the start", info.Size, got, sha)
	}
	if err := s.blobs.place(path, sha); err != nil {
		s.log.Error("store blob", "sha256", sha, "err", err)
		return handler.HTTPResponse{}, s.uploadError(req, http.StatusInternalServerError, fieldsync.EInternal, "the server could not store the file")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(hook.Context), 30*time.Second)
	defer cancel()
	if _, err := s.recordBlob(ctx, sha, info.Size, info.MetaData[protocol.UploadMetaContentType]); err != nil {
		// The file is in place: the next request for this hash records it.
		s.log.Error("record blob", "sha256", sha, "err", err)
		return handler.HTTPResponse{}, s.uploadError(req, http.StatusServiceUnavailable, fieldsync.EUnavailable, "the file is stored but not yet recorded; check it with HEAD %s%s", protocol.PathBlobs, sha)
	}
	removeUpload("", infoPath)
	return handler.HTTPResponse{Header: handler.HTTPHeader{"Content-Location": protocol.PathBlobs + sha}}, nil
}

// removeUpload deletes what is left of an upload; errors only leave
// litter behind.
func removeUpload(paths ...string) {
	for _, p := range paths {
		if p != "" {
			os.Remove(p)
		}
	}
}

// recordBlob records the verified blob sha and marks the attachments
// waiting for it ready, in one transaction. The content type is the one
// the upload named, else the one sniffed from the blob's file.
func (s *Server) recordBlob(ctx context.Context, sha string, size int64, ct string) (fieldsync.Blob, error) {
	if ct == "" {
		ct = sniff(s.blobs.blobPath(sha))
	}
	now := s.now().UTC()
	blob := fieldsync.Blob{SHA256: sha, Size: size, ContentType: ct, StoredAt: now}
	marked := 0
	err := s.store.Update(ctx, func(tx fieldsync.StoreTx) error {
		if old, ok, err := tx.Blob(sha); err != nil {
			return err
		} else if ok {
			blob = old
		} else if err := tx.PutBlob(blob); err != nil {
			return err
		}
		var err error
		marked, err = markBlobReady(tx, sha, now)
		return err
	})
	if err != nil {
		return blob, err
	}
	s.log.Info("blob stored", "sha256", sha, "size", size, "content_type", blob.ContentType, "records_ready", marked)
	return blob, nil
}

// heldBlob returns the verified blob sha if the server holds it. A file in
// place that the store does not know (the server stopped between the two)
// is hashed again and recorded here.
func (s *Server) heldBlob(ctx context.Context, sha, ct string) (fieldsync.Blob, bool, error) {
	blob, err := s.store.Blob(ctx, sha)
	if err == nil {
		return blob, true, nil
	}
	if fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		return blob, false, err
	}
	path := s.blobs.blobPath(sha)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return blob, false, nil
	}
	if err != nil {
		return blob, false, err
	}
	got, err := hashFile(path, false)
	if err != nil {
		return blob, false, err
	}
	if got != sha {
		// Not what its name says: never serve it, and let an upload
		// replace it.
		s.log.Error("blob file does not match its name: removed", "sha256", sha, "actual", got)
		os.Remove(path)
		return blob, false, nil
	}
	s.log.Warn("blob file found without its record: recording it", "sha256", sha)
	blob, err = s.recordBlob(ctx, sha, fi.Size(), ct)
	return blob, err == nil, err
}

// place moves the verified, synced upload at path to the blob's place and
// makes the move durable. If the blob is already there (the same bytes
// uploaded twice), the upload is dropped: each blob is stored once.
func (b *blobStore) place(path, sha string) error {
	dst := b.blobPath(sha)
	if err := mkdirDurable(filepath.Dir(dst)); err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		return os.Remove(path)
	}
	if err := os.Rename(path, dst); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}

// hashFile returns the lower-case hex SHA-256 of the file at path, syncing
// it to disk first when sync is set.
func hashFile(path string, sync bool) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if sync {
		if err := f.Sync(); err != nil {
			return "", err
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// mkdirDurable makes dir and any missing parents, syncing each parent
// whose entries changed.
func mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirDurable(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// sniff guesses the content type of the file at path: one of
// protocol.AttachmentContentTypes, or application/octet-stream.
func sniff(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "application/octet-stream"
	}
	defer f.Close()
	buf := make([]byte, 512)
	n, _ := io.ReadFull(f, buf)
	ct := http.DetectContentType(buf[:n])
	if protocol.ValidContentType(ct) {
		return ct
	}
	return "application/octet-stream"
}

// handleBlob serves GET and HEAD PathBlobs{sha}: the verified bytes, with
// ranges, the hash as a strong ETag, and the blob's content type.
func (s *Server) handleBlob(w http.ResponseWriter, r *http.Request) {
	c, ok := s.guard(w, r, auth.ActionDownload)
	if !ok {
		return
	}
	sha := r.PathValue("sha")
	if !fieldsync.ValidSHA256(sha) {
		s.writeError(w, r, fieldsync.Errorf(fieldsync.EInvalidRequest, "name the blob by its SHA-256: 64 lower-case hex digits"))
		return
	}
	if err := s.mayDownload(r.Context(), c, sha); err != nil {
		s.writeError(w, r, err)
		return
	}
	blob, held, err := s.heldBlob(r.Context(), sha, "")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !held {
		s.writeError(w, r, fieldsync.Errorf(fieldsync.ENotFound, "the server holds no file with sha256 %s (not uploaded, or its upload is not finished)", sha))
		return
	}
	f, err := os.Open(s.blobs.blobPath(sha))
	if err != nil {
		s.writeError(w, r, fmt.Errorf("open blob %s: %w", sha, err))
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("ETag", `"`+sha+`"`)
	h.Set("Content-Type", blob.ContentType)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", blob.StoredAt, f)
}

// tusLog passes the upload handler's log lines (golang.org/x/exp/slog) to
// the server's log/slog handler. Its per-request lines are debug level.
type tusLog struct{ h slog.Handler }

func tusLevel(l xslog.Level) slog.Level {
	if l < xslog.LevelWarn {
		return slog.LevelDebug
	}
	return slog.Level(l)
}

func (t tusLog) Enabled(ctx context.Context, l xslog.Level) bool {
	return t.h.Enabled(ctx, tusLevel(l))
}

func (t tusLog) Handle(ctx context.Context, r xslog.Record) error {
	rec := slog.NewRecord(r.Time, tusLevel(r.Level), r.Message, r.PC)
	r.Attrs(func(a xslog.Attr) bool {
		rec.AddAttrs(tusAttr(a))
		return true
	})
	return t.h.Handle(ctx, rec)
}

func (t tusLog) WithAttrs(as []xslog.Attr) xslog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = tusAttr(a)
	}
	return tusLog{t.h.WithAttrs(out)}
}

func (t tusLog) WithGroup(name string) xslog.Handler { return tusLog{t.h.WithGroup(name)} }

func tusAttr(a xslog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == xslog.KindGroup {
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, x := range g {
			out[i] = tusAttr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	return slog.Any(a.Key, v.Any())
}
