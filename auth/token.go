package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/fieldsync/fieldsync"
)

// Token shapes: a prefix naming the kind, then 32 random bytes in
// unpadded base64url (43 characters).
const (
	DeviceTokenPrefix   = "fsd_"
	UserTokenPrefix     = "fsu_"
	OperatorTokenPrefix = "fso_"
	tokenRandomBytes    = 32
	tokenLen            = 4 + 43
)

// NewToken makes a new random token of kind k.
func NewToken(k TokenKind) string {
	var b [tokenRandomBytes]byte
	rand.Read(b[:])
	prefix := DeviceTokenPrefix
	switch k {
	case TokenUser:
		prefix = UserTokenPrefix
	case TokenOperator:
		prefix = OperatorTokenPrefix
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// HashToken is what the identity store keeps of a token: its SHA-256. A
// token is 256 random bits, so a fast hash is enough; the store never
// sees the token again after issuing it.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// ParseToken checks a token's shape (prefix, length, alphabet, canonical
// encoding) and returns its kind. It does not say whether the token was
// ever issued: that is Authenticator's job.
func ParseToken(token string) (TokenKind, error) {
	if len(token) != tokenLen {
		return "", invalidToken("the token has the wrong length")
	}
	var kind TokenKind
	switch token[:4] {
	case DeviceTokenPrefix:
		kind = TokenDevice
	case UserTokenPrefix:
		kind = TokenUser
	case OperatorTokenPrefix:
		kind = TokenOperator
	default:
		return "", invalidToken("the token is not a fieldsync token")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token[4:])
	if err != nil || len(b) != tokenRandomBytes {
		return "", invalidToken("the token is damaged")
	}
	return kind, nil
}

// ParseAuthorization reads the bearer token of a request's headers:
// exactly one Authorization header, "Bearer" (any case), one space, and a
// token of the right shape. It answers ETokenMissing when there is no
// Authorization header and ETokenInvalid for anything malformed.
func ParseAuthorization(h http.Header) (string, error) {
	vals := h.Values("Authorization")
	switch {
	case len(vals) == 0:
		return "", fieldsync.Errorf(fieldsync.ETokenMissing,
			"this request needs a token: send \"Authorization: Bearer <token>\" (a device gets one by enrolling, a person by logging in)")
	case len(vals) > 1:
		return "", invalidToken("send one Authorization header, not %d", len(vals))
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", invalidToken("the Authorization header must be \"Bearer <token>\"")
	}
	if _, err := ParseToken(token); err != nil {
		return "", err
	}
	return token, nil
}

func invalidToken(format string, args ...any) error {
	return fieldsync.Errorf(fieldsync.ETokenInvalid, format, args...)
}
