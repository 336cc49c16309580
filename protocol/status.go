package protocol

import (
	"net/http"

	"github.com/fieldsync/fieldsync"
)

// statusOf maps error codes to HTTP statuses: the one table, used by the
// sync API and by the identity endpoints in front of it.
var statusOf = map[fieldsync.Code]int{
	fieldsync.EInvalidJSON:        http.StatusBadRequest,
	fieldsync.EInvalidRequest:     http.StatusBadRequest,
	fieldsync.ETooLarge:           http.StatusRequestEntityTooLarge,
	fieldsync.EUnsupportedVersion: http.StatusBadRequest,
	fieldsync.EUnsupportedMedia:   http.StatusUnsupportedMediaType,
	fieldsync.ENotFound:           http.StatusNotFound,
	fieldsync.EMethodNotAllowed:   http.StatusMethodNotAllowed,
	fieldsync.ECursorInvalid:      http.StatusConflict,
	fieldsync.EUnavailable:        http.StatusServiceUnavailable,
	fieldsync.EInternal:           http.StatusInternalServerError,
	// The identity codes.
	fieldsync.EServerOwned:      http.StatusUnprocessableEntity,
	fieldsync.ETokenMissing:     http.StatusUnauthorized,
	fieldsync.ETokenInvalid:     http.StatusUnauthorized,
	fieldsync.ETokenExpired:     http.StatusUnauthorized,
	fieldsync.ETokenRevoked:     http.StatusUnauthorized,
	fieldsync.ELoginFailed:      http.StatusUnauthorized,
	fieldsync.EEnrolmentInvalid: http.StatusUnauthorized,
	fieldsync.EEnrolmentExpired: http.StatusUnauthorized,
	fieldsync.EForbidden:        http.StatusForbidden,
	fieldsync.ERateLimited:      http.StatusTooManyRequests,
}

// HTTPStatus returns the HTTP status of an error code; 422 for a code
// the table does not name (a refusal of well-formed input).
func HTTPStatus(code fieldsync.Code) int {
	if st, ok := statusOf[code]; ok {
		return st
	}
	return http.StatusUnprocessableEntity
}
