package auth

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

// Operator is an operator credential: a name and when it was made. The
// token itself is shown once, at creation; only its hash is stored.
type Operator struct {
	Name     string
	Created  time.Time
	LastUsed time.Time // zero if never used
	Revoked  time.Time // zero while active
}

// TestOrg is a test organisation just made, with what a selftest needs
// to use it as a device and as the office would. OfficeToken and Code
// are shown once.
type TestOrg struct {
	Org     string
	Expires time.Time
	// OfficeUser is a dispatcher of the organisation; OfficeToken a
	// session of theirs that lasts until Expires.
	OfficeUser, OfficeToken string
	// Worker is a field worker of the organisation; Code a one-time
	// enrolment code for a device of theirs.
	Worker, Code string
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// OperatorMiddleware authenticates a request to the operator API, as
// Middleware does for an organisation's: the bearer token (missing or
// unknown: 401), the principal's rate bucket (lim; nil:
// DefaultPrincipalRate; refused tokens are counted per client address),
// and DecideAction for the request's action — which allows only an
// operator token (an organisation's token, whatever its role: 403). The
// request then reaches next, with the Principal in its context. The
// answer is never cached.
func OperatorMiddleware(a Authenticator, lim *Limiter, log *slog.Logger, next http.Handler) http.Handler {
	if lim == nil {
		lim = NewLimiter(DefaultPrincipalRate, nil)
	}
	log = orDiscard(log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		refuse := func(p Principal, err error) {
			if HTTPStatus(fieldsync.ErrorCode(err)) >= 500 {
				log.Error("operator request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			} else {
				log.Warn("operator request refused", "method", r.Method, "path", r.URL.Path, "addr", clientAddress(r),
					"org", p.Org, "user", p.User, "code", fieldsync.ErrorCode(err), "msg", fieldsync.ErrorMessage(err))
			}
			WriteError(w, err)
		}
		p, ok := admit(w, r, a, lim, log, refuse, true)
		if !ok {
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

// ReadOperatorBody reads the small JSON body of an operator request,
// checking its content type.
func ReadOperatorBody(r *http.Request) ([]byte, error) {
	if err := checkContentType(r); err != nil {
		return nil, err
	}
	return protocol.ReadBody(r.Body, r.Header.Get("Content-Encoding"), protocol.MaxOperatorBody)
}

// WriteJSON answers v as JSON with status 200.
func WriteJSON(w http.ResponseWriter, v any) { writeJSON(w, v) }
