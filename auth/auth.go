// Package auth is the identity and access core of fieldsync: who is
// asking (a Principal, from a bearer token), what they may do (Decide,
// the one place where access rules live), and the HTTP layer that
// authenticates every request, limits its rate and answers refusals with
// the same JSON error shape as the sync API.
//
// Identities (organisations, users, devices, tokens, enrolment codes) are
// kept by an identity store (auth/sqlite); this package holds no driver,
// so the server can import it. Secrets are never stored: passwords as
// Argon2id hashes, tokens as SHA-256 hashes, enrolment codes as keyed
// Argon2id hashes. docs/security.md is its prose description.
package auth

import (
	"context"
	"time"
)

// Role is what a user is allowed to do within its organisation.
type Role string

// The roles. An admin has every right of a dispatcher, and manages the
// users and devices of its organisation.
const (
	RoleFieldWorker Role = "field_worker"
	RoleDispatcher  Role = "dispatcher"
	RoleAdmin       Role = "admin"
)

// Valid reports whether r is one of the roles.
func (r Role) Valid() bool {
	switch r {
	case RoleFieldWorker, RoleDispatcher, RoleAdmin:
		return true
	}
	return false
}

// Office reports whether r has the dispatcher's rights.
func (r Role) Office() bool { return r == RoleDispatcher || r == RoleAdmin }

// TokenKind tells a device token from a user session token.
type TokenKind string

// The token kinds, and their prefixes on the wire.
const (
	TokenDevice TokenKind = "device" // "fsd_…": issued at enrolment, no expiry, revocable
	TokenUser   TokenKind = "user"   // "fsu_…": issued at login, expires
	// TokenOperator is the installation operator's credential ("fso_…"),
	// made on the host, of no organisation: it reaches the operator API
	// (/v1/operator/, test organisations) and nothing else.
	TokenOperator TokenKind = "operator"
)

// Org is an organisation: the unit of isolation. Its sync data lives in a
// store of its own.
type Org struct {
	Name    string
	Created time.Time
	// TestExpires is set for a temporary test organisation (made through
	// the operator API): when it is removed with everything in it. Zero
	// for a real organisation.
	TestExpires time.Time
}

// Test reports whether o is a temporary test organisation.
func (o Org) Test() bool { return !o.TestExpires.IsZero() }

// User is a person of an organisation. Name is what records carry in
// their assignee field.
type User struct {
	Org         string
	Name        string
	Role        Role
	HasPassword bool
	Created     time.Time
	Revoked     time.Time // zero while active
}

// Device is an enrolled device of a user. ID is the device id its ops
// carry.
type Device struct {
	Org      string
	ID       string
	User     string
	Name     string
	Enrolled time.Time // the last enrolment
	LastSeen time.Time // zero if never seen since enrolment
	Revoked  time.Time // zero while active
}

// Principal is who a request comes from, as its token proves. An
// operator (TokenKind TokenOperator) has no organisation and no role:
// User is the operator credential's name.
type Principal struct {
	Org       string
	User      string
	Role      Role
	DeviceID  string // empty for a user session
	TokenKind TokenKind
}

// Enrolment is an issued enrolment code. Code is shown once: only a hash
// of it is stored.
type Enrolment struct {
	Code    string
	Org     string
	User    string
	Expires time.Time
}

// Issued is a token just issued (at enrolment or login), with what it
// stands for. Token is shown once: only its hash is stored.
type Issued struct {
	Token string
	Principal
	Expires time.Time // zero for a device token
}

// Authenticator turns a bearer token into the Principal it stands for.
// It answers *fieldsync.Error with ETokenInvalid, ETokenExpired or
// ETokenRevoked for a token it refuses, and reads the identity store on
// every call, so a revocation is effective at once. Safe for concurrent
// use.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// Enroller redeems enrolment codes. Enroll answers EEnrolmentInvalid for
// an unknown or used code, EEnrolmentExpired for an expired one, and
// EForbidden for a device id that belongs to another user.
type Enroller interface {
	Enroll(ctx context.Context, code, deviceName, deviceID string) (Issued, error)
}

// LoginService opens user sessions. Login answers ELoginFailed for any
// wrong organisation, user or password, without saying which.
type LoginService interface {
	Login(ctx context.Context, org, user, password string) (Issued, error)
}

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the Principal the Middleware put in ctx, and false
// when there is none (a request that was not authenticated).
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
