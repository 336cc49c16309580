package client

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/internal/devicekey"
	"github.com/fieldsync/fieldsync/internal/sealedfile"
	"github.com/fieldsync/fieldsync/internal/sqlitedb"
)

// Data at rest. With Config.PIN (or Config.Key) set, the device database,
// its WAL and every attachment file (original, thumbnail, signature) are
// encrypted with keys derived (HKDF-SHA256) from one random 32-byte data
// key. The data key is kept in Dir/keys.json, wrapped by a key derived
// from the PIN (see internal/devicekey), or comes from Config.Key.
//
// An existing device without encryption is encrypted the first time it
// is opened with a PIN: the database is copied by VACUUM INTO an
// encrypted file that then replaces it, and each attachment file is
// sealed in place. A crash midway is finished by the next Open.

// KDFParams are the Argon2id costs of deriving a key from the PIN. A zero
// field takes its default: 3 passes, 64 MiB, 2 lanes.
type KDFParams struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

const plainDBHeader = "SQLite format 3\x00"

// dataKeys are the keys derived from the data key.
type dataKeys struct {
	db    []byte // the database (adiantum)
	files []byte // attachment files (sealedfile)
}

func deriveKeys(dek []byte) (*dataKeys, error) {
	if len(dek) != devicekey.KeySize {
		return nil, fmt.Errorf("client: Config.Key returned %d bytes, want %d", len(dek), devicekey.KeySize)
	}
	db, err := hkdf.Key(sha256.New, dek, nil, "fieldsync device database", 32)
	if err != nil {
		return nil, err
	}
	files, err := hkdf.Key(sha256.New, dek, nil, "fieldsync attachment files", 32)
	if err != nil {
		return nil, err
	}
	return &dataKeys{db: db, files: files}, nil
}

// unlock returns the device's keys: nil when the device is not
// encrypted and no PIN or key is given; EPINRequired when it is
// encrypted and none is given; a new data key for a new key file.
func (e *Engine) unlock(ctx context.Context) (*dataKeys, error) {
	cfg := e.cfg
	if cfg.Key != nil {
		dek, err := cfg.Key(ctx)
		if err != nil {
			return nil, fmt.Errorf("the device key: %w", err)
		}
		return deriveKeys(dek)
	}
	has, err := devicekey.Exists(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if cfg.PIN == "" {
		if has {
			return nil, fieldsync.Errorf(fieldsync.EPINRequired, "the data on this device is encrypted: give its PIN")
		}
		return nil, nil
	}
	if !has {
		if enc, err := isEncryptedDB(filepath.Join(cfg.Dir, "device.db")); err != nil || enc {
			return nil, cmpOr(err, error(fieldsync.Errorf(fieldsync.EPINRequired,
				"the device database is encrypted but its key file %s is missing: the data cannot be read", devicekey.FileName)))
		}
		p := devicekey.Params{Time: cfg.PINParams.Time, MemoryKiB: cfg.PINParams.MemoryKiB, Threads: cfg.PINParams.Threads}
		if p != (devicekey.Params{}) {
			def := devicekey.DefaultParams
			p.Time, p.MemoryKiB, p.Threads = cmpOr(p.Time, def.Time), cmpOr(p.MemoryKiB, def.MemoryKiB), cmpOr(p.Threads, def.Threads)
		}
		dek, err := devicekey.Create(cfg.Dir, cfg.PIN, p)
		if err == nil {
			return deriveKeys(dek)
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	dek, err := devicekey.Unlock(cfg.Dir, cfg.PIN, e.now())
	if err != nil {
		return nil, err
	}
	return deriveKeys(dek)
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// openDB opens the device database, encrypted when the device has keys,
// encrypting a plain one first.
func (e *Engine) openDB(ctx context.Context, migrations fs.FS) (*sql.DB, error) {
	path := filepath.Join(e.cfg.Dir, "device.db")
	if e.keys == nil {
		return sqlitedb.Open(ctx, path, migrations, sqlitedb.Options{})
	}
	plain, err := isPlainDB(path)
	if err != nil {
		return nil, err
	}
	if plain {
		// One process encrypts; another one opening with the PIN
		// meanwhile waits, then finds it done.
		l, err := lockFiles(filepath.Join(e.cfg.Dir, filesLockName), true, true)
		if err != nil {
			return nil, err
		}
		if plain, err = isPlainDB(path); err == nil && plain {
			err = encryptDB(ctx, path, migrations, e.keys.db)
			if err == nil {
				e.log.Info("encrypted the device database")
			}
		}
		l.unlock()
		if err != nil {
			return nil, fmt.Errorf("encrypt the device database: %w", err)
		}
	}
	return sqlitedb.Open(ctx, path, migrations, sqlitedb.Options{Key: e.keys.db})
}

// isPlainDB reports whether path is an unencrypted SQLite database.
func isPlainDB(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	var h [len(plainDBHeader)]byte
	n, err := io.ReadFull(f, h[:])
	if n == 0 && (err == io.EOF) {
		return false, nil
	}
	return string(h[:n]) == plainDBHeader, nil
}

// isEncryptedDB reports whether path is a database that is not plain.
func isEncryptedDB(path string) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && fi.Size() == 0 {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	plain, err := isPlainDB(path)
	return !plain, err
}

// encryptDB replaces the plain database at path by an encrypted copy:
// VACUUM INTO a temporary encrypted file, synced; the plain database
// closed (which folds its WAL in); its WAL removed; the copy renamed
// into place; the directory synced. Until the rename the plain database
// is whole, and after it the encrypted one.
func encryptDB(ctx context.Context, path string, migrations fs.FS, key []byte) error {
	db, err := sqlitedb.Open(ctx, path, migrations, sqlitedb.Options{MaxConns: 1})
	if err != nil {
		return err
	}
	tmp := path + ".encrypting"
	for _, p := range []string{tmp, tmp + "-journal", tmp + "-wal"} {
		os.Remove(p)
	}
	uri := "file:" + filepath.ToSlash(tmp) + "?vfs=adiantum&hexkey=" + hex.EncodeToString(key)
	_, err = db.ExecContext(ctx, `VACUUM INTO ?`, uri)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// sealFiles seals, in place, the attachment files still in plain form
// (a device encrypted after it had attachments, or a sealing that a
// crash interrupted).
func (e *Engine) sealFiles() error {
	if e.keys == nil {
		return nil
	}
	l, err := e.files.lock(true, true)
	if err != nil {
		return err
	}
	defer l.unlock()
	n := 0
	for _, d := range []string{attachDir, thumbDir} {
		var ferr error
		err := walkFiles(filepath.Join(e.cfg.Dir, d), func(path, sha string) {
			if sha == "" || ferr != nil {
				return
			}
			sealed, err := fileIsSealed(path)
			if err != nil || sealed {
				ferr = err
				return
			}
			data, err := os.ReadFile(path)
			if err == nil {
				err = e.files.put(path, data)
			}
			ferr = err
			n++
		})
		if err == nil {
			err = ferr
		}
		if err != nil {
			return fmt.Errorf("encrypt attachment files: %w", err)
		}
	}
	if n > 0 {
		e.log.Info("encrypted attachment files", "files", n)
	}
	return nil
}

func fileIsSealed(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var h [sealedfile.HeaderSize]byte
	n, _ := io.ReadFull(f, h[:])
	return sealedfile.IsSealed(h[:n]), nil
}

// put writes data to path durably, sealed when the device is encrypted.
func (f *fileStore) put(path string, data []byte) error {
	if f.key != nil {
		sealed, err := sealedfile.Seal(f.key, data)
		if err != nil {
			return err
		}
		data = sealed
	}
	return writeDurable(path, data)
}

// plainFile is an attachment file open for reading its plaintext.
type plainFile interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// osFile gives an *os.File the Size of plainFile.
type osFile struct {
	*os.File
	size int64
}

func (f osFile) Size() int64 { return f.size }

// open opens an attachment file for reading its plaintext: decrypting
// it when the device is encrypted (a damaged file is refused with
// sealedfile.ErrDamaged), as it is otherwise.
func (f *fileStore) open(path string) (plainFile, error) {
	if f.key != nil {
		return sealedfile.Open(f.key, path)
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, err
	}
	return osFile{file, fi.Size()}, nil
}

// matches hashes the plaintext of the file at path and compares it with
// sha.
func (f *fileStore) matches(path, sha string) (bool, error) {
	r, err := f.open(path)
	if err != nil {
		return false, err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, r.Size())); err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == sha, nil
}

// OpenAttachment opens the plaintext of an attachment's prepared file on
// this device (decrypted when the device is encrypted: the paths that
// LocalFile returns then hold ciphertext). ENotFound when the device
// does not hold the file (never, or reclaimed). Reading a damaged file
// fails.
func (e *Engine) OpenAttachment(ctx context.Context, attachmentID string) (io.ReadCloser, error) {
	return e.openLocal(ctx, attachmentID, false)
}

// OpenThumbnail opens the plaintext of an attachment's thumbnail (for a
// signature, of the file itself), as OpenAttachment does.
func (e *Engine) OpenThumbnail(ctx context.Context, attachmentID string) (io.ReadCloser, error) {
	return e.openLocal(ctx, attachmentID, true)
}

func (e *Engine) openLocal(ctx context.Context, attachmentID string, thumb bool) (io.ReadCloser, error) {
	lf, err := e.LocalFile(ctx, attachmentID)
	if err != nil {
		return nil, err
	}
	path := lf.Path
	if thumb {
		path = lf.Thumbnail
	}
	if path == "" {
		return nil, fieldsync.Errorf(fieldsync.ENotFound, "the file of attachment %s is no longer on this device (the server holds it)", attachmentID)
	}
	f, err := e.files.open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fieldsync.Errorf(fieldsync.ENotFound, "the file of attachment %s is missing on this device", attachmentID)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, 0, f.Size()), f}, nil
}

// ChangePIN changes the PIN of the device in cfg.Dir from cfg.PIN to
// newPIN. Only the wrapped data key in keys.json changes; the engine may
// be open meanwhile. Errors: EWrongPIN, ELocked (cfg.Now paces the
// attempts), EInvalidRequest for a new PIN too short or too long, and
// EPINRequired when the device is not encrypted.
func ChangePIN(ctx context.Context, cfg Config, newPIN string) error {
	if cfg.Dir == "" {
		return errors.New("client: Config.Dir is required")
	}
	has, err := devicekey.Exists(cfg.Dir)
	if err != nil {
		return err
	}
	if !has {
		return fieldsync.Errorf(fieldsync.EPINRequired, "the data on this device is not encrypted: open it once with a PIN to encrypt it")
	}
	now := time.Now()
	if cfg.Now != nil {
		now = cfg.Now()
	}
	return devicekey.ChangePIN(cfg.Dir, cfg.PIN, newPIN, now)
}

// Encrypted reports whether the device's data is encrypted at rest.
func (e *Engine) Encrypted() bool { return e.keys != nil }

// clearKeys overwrites the engine's keys in memory.
func (e *Engine) clearKeys() {
	if e.keys == nil {
		return
	}
	clear(e.keys.db)
	clear(e.keys.files)
}
