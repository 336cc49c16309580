package auth

import (
	"crypto/rand"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Enrolment codes are 10 characters of Crockford's base32 (digits and
// upper-case letters without I, L, O, U): 50 bits, typed by a person,
// shown in two groups of five (ABCDE-FGHJK). Reading one back forgives
// case, spaces, dashes, and O, I, L typed for 0, 1, 1.
const (
	codeAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	codeLen      = 10
)

// NewEnrolmentCode makes a random enrolment code in its display form.
func NewEnrolmentCode() string {
	var b [codeLen]byte
	rand.Read(b[:])
	out := make([]byte, 0, codeLen+1)
	for i, c := range b {
		if i == codeLen/2 {
			out = append(out, '-')
		}
		out = append(out, codeAlphabet[c&31])
	}
	return string(out)
}

// NormalizeEnrolmentCode returns the canonical form of a code as typed
// (ten characters, no dash), and false when it cannot be a code.
func NormalizeEnrolmentCode(s string) (string, bool) {
	if len(s) > 4*codeLen {
		return "", false
	}
	out := make([]byte, 0, codeLen)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		switch c {
		case ' ', '-':
			continue
		case 'O':
			c = '0'
		case 'I', 'L':
			c = '1'
		}
		if strings.IndexByte(codeAlphabet, c) < 0 || len(out) == codeLen {
			return "", false
		}
		out = append(out, c)
	}
	if len(out) != codeLen {
		return "", false
	}
	return string(out), true
}

// HashEnrolmentCode is what the identity store keeps of a code: Argon2id
// of its canonical form keyed with the installation's secret key, so the
// same code always gives the same hash (it is looked up by it) and a
// stolen database does not give the code away cheaply.
func HashEnrolmentCode(canonical string, key []byte, p Argon2Params) []byte {
	return argon2.IDKey([]byte(canonical), key, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
}
