// Package devicekey keeps the device's data key: a random 32-byte key
// that encrypts the device database and its attachment files, stored in
// the file keys.json wrapped (XChaCha20-Poly1305) by a key derived from
// the user's PIN with Argon2id. Changing the PIN re-wraps the data key
// only; nothing else is re-encrypted.
//
// Wrong PINs are counted in the same file, synced to disk before the PIN
// is checked, so neither a restart nor a process killed mid-check resets
// the count: after MaxFreeAttempts wrong PINs in a row each further
// attempt waits FirstDelay, doubling up to MaxDelay.
package devicekey

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/fieldsync/fieldsync"
)

// FileName is the name of the key file in the device directory.
const FileName = "keys.json"

// KeySize is the size of the data key in bytes.
const KeySize = 32

// Limits on wrong PINs.
const (
	MaxFreeAttempts = 3                // wrong PINs in a row before a wait
	FirstDelay      = 30 * time.Second // the first wait, doubled after each further wrong PIN
	MaxDelay        = 24 * time.Hour   // the longest wait
	MinPINLength    = 4                // characters
	MaxPINLength    = 256              // bytes
)

const (
	version  = 1
	kdfName  = "argon2id"
	saltSize = 16
)

// Params are the Argon2id cost parameters of the PIN's key derivation.
type Params struct {
	Time      uint32 `json:"t"`     // passes
	MemoryKiB uint32 `json:"m_kib"` // memory in KiB
	Threads   uint8  `json:"p"`     // lanes
}

// DefaultParams are the cost parameters of a new key file: 3 passes over
// 64 MiB with 2 lanes.
var DefaultParams = Params{Time: 3, MemoryKiB: 64 << 10, Threads: 2}

func (p Params) valid() bool {
	return p.Time >= 1 && p.Time <= 64 && p.MemoryKiB >= 8 && p.MemoryKiB <= 1<<20 &&
		p.Threads >= 1 && p.Threads <= 64 && p.MemoryKiB >= 8*uint32(p.Threads)
}

// File is the content of keys.json.
type File struct {
	Version     int    `json:"version"`
	KDF         string `json:"kdf"`
	Params      Params `json:"params"`
	Salt        []byte `json:"salt"`         // base64
	Nonce       []byte `json:"nonce"`        // base64, 24 bytes
	WrappedKey  []byte `json:"wrapped_key"`  // base64: the sealed data key
	Failed      int    `json:"failed"`       // wrong PINs in a row
	NextAttempt int64  `json:"next_attempt"` // Unix milliseconds; 0: now
}

// Decode parses and checks a key file. A damaged file is an EInternal
// error that says so; nothing else is read from it.
func Decode(b []byte) (*File, error) {
	var f File
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return nil, damaged("not the JSON expected: %v", err)
	}
	if d.More() {
		return nil, damaged("trailing data")
	}
	switch {
	case f.Version != version:
		return nil, damaged("version %d: this build reads version %d", f.Version, version)
	case f.KDF != kdfName:
		return nil, damaged("kdf %q: want %q", f.KDF, kdfName)
	case !f.Params.valid():
		return nil, damaged("key derivation parameters out of range")
	case len(f.Salt) < saltSize || len(f.Salt) > 64:
		return nil, damaged("salt of %d bytes", len(f.Salt))
	case len(f.Nonce) != chacha20poly1305.NonceSizeX:
		return nil, damaged("nonce of %d bytes", len(f.Nonce))
	case len(f.WrappedKey) != KeySize+chacha20poly1305.Overhead:
		return nil, damaged("wrapped key of %d bytes", len(f.WrappedKey))
	case f.Failed < 0 || f.NextAttempt < 0:
		return nil, damaged("negative attempt counters")
	}
	return &f, nil
}

func damaged(format string, args ...any) error {
	return fieldsync.Errorf(fieldsync.EInternal, "the device's key file %s is damaged: "+format, append([]any{FileName}, args...)...)
}

// Exists reports whether dir holds a key file.
func Exists(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// CheckPIN refuses a PIN that is too short or too long.
func CheckPIN(pin string) error {
	if utf8.RuneCountInString(pin) < MinPINLength || len(pin) > MaxPINLength {
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "a PIN has %d to %d characters", MinPINLength, MaxPINLength)
	}
	return nil
}

// Create makes a new random data key, writes it to dir/keys.json wrapped
// by pin, and returns it. It fails with fs.ErrExist when dir already has
// a key file (another process may have made it first: Unlock that one).
func Create(dir, pin string, p Params) ([]byte, error) {
	if err := CheckPIN(pin); err != nil {
		return nil, err
	}
	if p == (Params{}) {
		p = DefaultParams
	}
	if !p.valid() {
		return nil, fieldsync.Errorf(fieldsync.EInvalidRequest, "key derivation parameters out of range")
	}
	dek := make([]byte, KeySize)
	rand.Read(dek)
	f := &File{Version: version, KDF: kdfName, Params: p}
	if err := f.wrap(dek, pin); err != nil {
		return nil, err
	}
	if err := write(dir, f, true); err != nil {
		return nil, err
	}
	return dek, nil
}

// Unlock returns the data key of dir/keys.json with pin. now is the
// clock that paces wrong attempts. A wrong PIN is EWrongPIN; a PIN tried
// before the wait after earlier wrong ones is over is ELocked, and is
// not checked.
func Unlock(dir, pin string, now time.Time) ([]byte, error) {
	f, err := Read(dir)
	if err != nil {
		return nil, err
	}
	if wait := f.Wait(now); wait > 0 {
		return nil, lockedError(f, wait)
	}
	// Count the attempt as wrong first: killing the process during the
	// check must not give a free try.
	ok := *f
	f.Failed++
	f.NextAttempt = 0
	if d := delayAfter(f.Failed); d > 0 {
		f.NextAttempt = now.Add(d).UnixMilli()
	}
	if err := write(dir, f, false); err != nil {
		return nil, err
	}
	dek, err := f.unwrap(pin)
	if err != nil {
		return nil, wrongPIN(f, now)
	}
	ok.Failed, ok.NextAttempt = 0, 0
	if err := write(dir, &ok, false); err != nil {
		return nil, err
	}
	return dek, nil
}

// ChangePIN re-wraps the data key of dir/keys.json with newPIN, after
// checking oldPIN as Unlock does. The data key, and so every encrypted
// byte on the device, stays the same.
func ChangePIN(dir, oldPIN, newPIN string, now time.Time) error {
	if err := CheckPIN(newPIN); err != nil {
		return err
	}
	dek, err := Unlock(dir, oldPIN, now)
	if err != nil {
		return err
	}
	f, err := Read(dir)
	if err != nil {
		return err
	}
	if err := f.wrap(dek, newPIN); err != nil {
		return err
	}
	f.Failed, f.NextAttempt = 0, 0
	return write(dir, f, false)
}

// Read reads and decodes dir/keys.json.
func Read(dir string) (*File, error) {
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("read the key file: %w", err)
	}
	return Decode(b)
}

// Wait is how long from now until the next PIN may be tried.
func (f *File) Wait(now time.Time) time.Duration {
	if f.NextAttempt == 0 {
		return 0
	}
	return max(0, time.UnixMilli(f.NextAttempt).Sub(now))
}

// delayAfter is the wait after n wrong PINs in a row.
func delayAfter(n int) time.Duration {
	if n < MaxFreeAttempts {
		return 0
	}
	d := FirstDelay
	for i := MaxFreeAttempts; i < n && d < MaxDelay; i++ {
		d *= 2
	}
	return min(d, MaxDelay)
}

func lockedError(f *File, wait time.Duration) error {
	return fieldsync.Errorf(fieldsync.ELocked, "%d wrong PINs in a row: try again in %s", f.Failed, roundUp(wait))
}

func wrongPIN(f *File, now time.Time) error {
	msg := "wrong PIN"
	if w := f.Wait(now); w > 0 {
		msg += fmt.Sprintf(" (%d in a row): the next try is possible in %s", f.Failed, roundUp(w))
	} else if left := MaxFreeAttempts - f.Failed; left > 0 {
		msg += fmt.Sprintf(": %d more tries before a wait", left)
	}
	return fieldsync.Errorf(fieldsync.EWrongPIN, "%s", msg)
}

func roundUp(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// kek derives the key-encryption key from pin.
func (f *File) kek(pin string) []byte {
	p := f.Params
	return argon2.IDKey([]byte(pin), f.Salt, p.Time, p.MemoryKiB, p.Threads, chacha20poly1305.KeySize)
}

// ad binds the wrapped key to the file's version and parameters.
func (f *File) ad() []byte {
	return fmt.Appendf(nil, "fieldsync keys v%d %s t=%d m=%d p=%d", f.Version, f.KDF, f.Params.Time, f.Params.MemoryKiB, f.Params.Threads)
}

func (f *File) wrap(dek []byte, pin string) error {
	f.Salt = make([]byte, saltSize)
	rand.Read(f.Salt)
	f.Nonce = make([]byte, chacha20poly1305.NonceSizeX)
	rand.Read(f.Nonce)
	aead, err := chacha20poly1305.NewX(f.kek(pin))
	if err != nil {
		return err
	}
	f.WrappedKey = aead.Seal(nil, f.Nonce, dek, f.ad())
	return nil
}

func (f *File) unwrap(pin string) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(f.kek(pin))
	if err != nil {
		return nil, err
	}
	return aead.Open(nil, f.Nonce, f.WrappedKey, f.ad())
}

// write stores f in dir durably: a temporary file, synced, moved into
// place (only if no key file exists yet when exclusive), the directory
// synced.
func write(dir string, f *File, exclusive bool) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-keys-*")
	if err != nil {
		return fmt.Errorf("write the key file: %w", err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the key file: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if exclusive {
		err = os.Link(name, path) // fails if another process made one
	} else {
		err = os.Rename(name, path)
	}
	if err != nil {
		return fmt.Errorf("write the key file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write the key file: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("write the key file: %w", err)
	}
	return nil
}
