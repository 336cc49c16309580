package fieldsync

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code. Codes are append-only:
// a code once published keeps its meaning and its HTTP status.
type Code string

// Error codes shared by the server, the wire and the device.
const (
	// Request-level codes (the whole request is refused, nothing changed).
	EInvalidJSON        Code = "invalid_json"         // body is not the JSON expected
	EInvalidRequest     Code = "invalid_request"      // well-formed but wrong (missing or bad values)
	ETooLarge           Code = "too_large"            // body, batch or field over its limit
	EUnsupportedVersion Code = "unsupported_protocol" // protocol version not served
	EUnsupportedMedia   Code = "unsupported_media"    // content type or encoding not accepted
	ENotFound           Code = "not_found"            // no such record, op or route
	EMethodNotAllowed   Code = "method_not_allowed"
	ECursorInvalid      Code = "cursor_invalid" // cursor from another server history: resync
	EUnavailable        Code = "unavailable"    // try again later
	EInternal           Code = "internal"       // a bug or a broken disk on the server

	// Per-op codes.
	EUnknownEntityType Code = "unknown_entity_type"
	EUnknownField      Code = "unknown_field"
	EInvalidField      Code = "invalid_field"
	ERequiredField     Code = "required_field"
	EServerOwned       Code = "server_owned_field"
	EAlreadyExists     Code = "already_exists"
	ERecordMissing     Code = "record_missing"
	ERecordDeleted     Code = "record_deleted"
	ESeqReused         Code = "seq_reused"
	EWaitingForEarlier Code = "waiting_for_earlier" // an earlier op on the record is not here yet
	EFieldConflict     Code = "field_conflict"
	EAlreadySettled    Code = "already_settled" // the conflict was settled before
	ENoConflict        Code = "no_conflict"     // nothing to settle on that field

	// Device-only codes.
	EStorageFull Code = "storage_full" // the device's storage limit for attachments is reached
	EWrongPIN    Code = "wrong_pin"    // the PIN does not unlock the device's data
	ELocked      Code = "pin_locked"   // too many wrong PINs: wait before the next try
	EPINRequired Code = "pin_required" // the device's data is encrypted: give its PIN

	// Identity and access codes (see docs/security.md).
	ETokenMissing     Code = "token_missing"     // no bearer token sent
	ETokenInvalid     Code = "token_invalid"     // malformed, unknown or forged token
	ETokenExpired     Code = "token_expired"     // a user session past its expiry: log in again
	ETokenRevoked     Code = "token_revoked"     // the device or user was revoked: enrol again
	EForbidden        Code = "forbidden"         // the principal's role may not do this
	ERateLimited      Code = "rate_limited"      // too many requests: wait for Retry-After
	ELoginFailed      Code = "login_failed"      // wrong organisation, user or password
	EEnrolmentInvalid Code = "enrolment_invalid" // unknown or already used enrolment code
	EEnrolmentExpired Code = "enrolment_expired" // enrolment code past its validity
)

// retryable lists the codes for which sending the same thing again later
// can succeed. Everything else needs a person.
var retryable = map[Code]bool{
	EUnavailable:       true,
	EInternal:          true,
	EWaitingForEarlier: true,
	ERateLimited:       true,
}

// Error is the one error type that crosses package and wire boundaries.
// Message is safe to show to a user.
type Error struct {
	Code    Code
	Message string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the user-safe message of err.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Retryable reports whether retrying the same request later can help.
func (c Code) Retryable() bool { return retryable[c] }
