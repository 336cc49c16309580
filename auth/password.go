package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/fieldsync/fieldsync"
)

// Argon2Params are the cost parameters of Argon2id.
type Argon2Params struct {
	Time      uint32 // passes over memory
	MemoryKiB uint32 // memory in KiB
	Threads   uint8  // lanes
	SaltLen   uint32 // bytes of random salt (passwords only)
	KeyLen    uint32 // bytes of output
}

// DefaultPasswordParams hash passwords: 2 passes over 64 MiB with 2
// lanes, a 16-byte salt and a 32-byte key — about 0.1 s on a server core.
// Only a login pays it; devices sync with tokens.
var DefaultPasswordParams = Argon2Params{Time: 2, MemoryKiB: 64 << 10, Threads: 2, SaltLen: 16, KeyLen: 32}

// DefaultCodeParams hash enrolment codes (with the installation's key as
// salt, so the hash can be looked up): 2 passes over 19 MiB, one lane.
// A stolen identity database then does not give away codes still
// unredeemed: 50 bits of code cost 2^50 such hashes.
var DefaultCodeParams = Argon2Params{Time: 2, MemoryKiB: 19 << 10, Threads: 1, KeyLen: 32}

// Bounds on parameters read back from a stored hash, so a damaged or
// hostile row cannot make a login allocate without limit.
const (
	maxArgonTime   = 16
	maxArgonMemory = 1 << 20 // KiB: 1 GiB
	maxArgonLanes  = 16
)

// errBadHash reports a stored password hash that cannot be read.
var errBadHash = errors.New("stored password hash is not an argon2id hash this build reads")

// Validate names the first parameter out of bounds.
func (p Argon2Params) Validate() error {
	switch {
	case p.Time < 1 || p.Time > maxArgonTime:
		return fmt.Errorf("argon2 time %d: want 1 to %d", p.Time, maxArgonTime)
	case p.MemoryKiB < 8*uint32(max(p.Threads, 1)) || p.MemoryKiB > maxArgonMemory:
		return fmt.Errorf("argon2 memory %d KiB: want 8×threads to %d", p.MemoryKiB, maxArgonMemory)
	case p.Threads < 1 || p.Threads > maxArgonLanes:
		return fmt.Errorf("argon2 threads %d: want 1 to %d", p.Threads, maxArgonLanes)
	case p.KeyLen < 16 || p.KeyLen > 64:
		return fmt.Errorf("argon2 key length %d: want 16 to 64", p.KeyLen)
	}
	return nil
}

// HashPassword hashes password with a new random salt and returns the
// self-describing form $argon2id$v=19$m=65536,t=2,p=2$SALT$HASH (salt and
// hash in unpadded standard base64), which carries its own parameters so
// they can change without breaking stored hashes.
func HashPassword(password string, p Argon2Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	if p.SaltLen < 8 || p.SaltLen > 64 {
		return "", fmt.Errorf("argon2 salt length %d: want 8 to 64", p.SaltLen)
	}
	salt := make([]byte, p.SaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches encoded (a hash made by
// HashPassword), comparing in constant time. The error is for a stored
// hash it cannot read, never for a wrong password.
func VerifyPassword(password, encoded string) (bool, error) {
	p, salt, want, err := parseHash(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NeedsRehash reports whether encoded was made with parameters other than
// p: a login that succeeds then stores a new hash.
func NeedsRehash(encoded string, p Argon2Params) bool {
	q, salt, _, err := parseHash(encoded)
	return err != nil || q.Time != p.Time || q.MemoryKiB != p.MemoryKiB || q.Threads != p.Threads ||
		q.KeyLen != p.KeyLen || uint32(len(salt)) != p.SaltLen
}

// parseHash reads $argon2id$v=19$m=M,t=T,p=P$SALT$HASH strictly.
func parseHash(encoded string) (Argon2Params, []byte, []byte, error) {
	var p Argon2Params
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, errBadHash
	}
	var m, t, l uint64
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return p, nil, nil, errBadHash
	}
	for i, dst := range []*uint64{&m, &t, &l} {
		name, val, ok := strings.Cut(params[i], "=")
		if !ok || name != [...]string{"m", "t", "p"}[i] {
			return p, nil, nil, errBadHash
		}
		n, err := strconv.ParseUint(val, 10, 32)
		if err != nil || strconv.FormatUint(n, 10) != val {
			return p, nil, nil, errBadHash
		}
		*dst = n
	}
	b64 := base64.RawStdEncoding.Strict()
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(salt) > 64 || l > 255 {
		return p, nil, nil, errBadHash
	}
	p = Argon2Params{Time: uint32(t), MemoryKiB: uint32(m), Threads: uint8(l), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}
	if p.Validate() != nil {
		return p, nil, nil, errBadHash
	}
	return p, salt, key, nil
}

// Password length bounds, in bytes. Passwords are chosen by people for
// the office console; field workers' devices use tokens instead.
const (
	MinPasswordLen = 10
	MaxPasswordLen = 1024
)

// CheckPassword answers EInvalidRequest for a password too short or too
// long to be accepted.
func CheckPassword(password string) error {
	switch {
	case len(password) < MinPasswordLen:
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "password: at least %d characters", MinPasswordLen)
	case len(password) > MaxPasswordLen:
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "password: at most %d bytes", MaxPasswordLen)
	}
	return nil
}
