package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

// The operator API: a narrow HTTP surface for the installation's
// operator, who belongs to no organisation. It makes and removes
// temporary test organisations — what `fieldsync selftest` needs to
// check a deployment end to end — and nothing else.
const (
	PathOperator      = "/v1/operator/"
	PathTestOrgs      = "/v1/operator/test-orgs"
	TestOrgPrefix     = "selftest-"   // every test organisation's name starts so
	DefaultTestOrgTTL = time.Hour     // a test organisation's life when none is asked
	MaxTestOrgTTL     = 4 * time.Hour // the longest it may be asked for
	maxOperatorBody   = 4 << 10
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

// TestOrgRequest is the body of POST /v1/operator/test-orgs. Both fields
// are optional.
type TestOrgRequest struct {
	// Name, when given, must start with "selftest-" and be a valid
	// organisation name; empty: the server picks "selftest-<random>".
	Name string `json:"name,omitempty"`
	// TTLSeconds is how long the organisation lives (default 3600, at
	// most 14400); it is removed with everything in it then.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// TestOrgResponse is the answer to POST /v1/operator/test-orgs.
type TestOrgResponse struct {
	Org           string    `json:"org"`
	Expires       time.Time `json:"expires"`
	OfficeUser    string    `json:"office_user"`
	OfficeToken   string    `json:"office_token"`
	Worker        string    `json:"worker"`
	EnrolmentCode string    `json:"enrolment_code"`
}

// TestOrgDeleted is the answer to DELETE /v1/operator/test-orgs/{name}.
type TestOrgDeleted struct {
	Org     string `json:"org"`
	Deleted bool   `json:"deleted"`
}

// TTL is the organisation's life the request asks for, its default
// applied.
func (r *TestOrgRequest) TTL() time.Duration {
	if r.TTLSeconds == 0 {
		return DefaultTestOrgTTL
	}
	return time.Duration(r.TTLSeconds) * time.Second
}

// ValidTestOrgName reports whether name can be a test organisation's:
// a valid organisation name starting with TestOrgPrefix and something
// after it.
func ValidTestOrgName(name string) bool {
	return len(name) > len(TestOrgPrefix) && strings.HasPrefix(name, TestOrgPrefix) && protocol.ValidOrgName(name)
}

// DecodeTestOrgRequest decodes and checks the body of POST
// /v1/operator/test-orgs: one JSON object, no unknown field, nothing
// after it. An empty body asks for the defaults. It answers EInvalidJSON
// for a body that is not that object and EInvalidRequest for a bad name
// or life.
func DecodeTestOrgRequest(data []byte) (*TestOrgRequest, error) {
	var req TestOrgRequest
	if len(bytes.TrimSpace(data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return nil, fieldsync.Errorf(fieldsync.EInvalidJSON, "the body is not a test organisation request: %s", jsonProblem(err))
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, fieldsync.Errorf(fieldsync.EInvalidJSON, "the body has something after its JSON object: send one object")
		}
	}
	if req.Name != "" && !ValidTestOrgName(req.Name) {
		return nil, fieldsync.Errorf(fieldsync.EInvalidRequest,
			"name %q: a test organisation's name starts with %q, then lowercase letters, digits and '-' (63 characters at most); or leave it out",
			truncate(req.Name, 80), TestOrgPrefix)
	}
	if req.TTLSeconds < 0 || time.Duration(req.TTLSeconds) > MaxTestOrgTTL/time.Second {
		return nil, fieldsync.Errorf(fieldsync.EInvalidRequest, "ttl_seconds %d: want 1 to %d, or leave it out for %d",
			req.TTLSeconds, int64(MaxTestOrgTTL/time.Second), int64(DefaultTestOrgTTL/time.Second))
	}
	return &req, nil
}

// jsonProblem says briefly what is wrong with a JSON body.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "not valid JSON"
	case errors.As(err, &te):
		return "field " + te.Field + " has the wrong type"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "it is cut short"
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return "it has an unknown field (" + strings.TrimPrefix(err.Error(), "json: unknown field ") + ")"
	}
	return "not the expected JSON object"
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
	return protocol.ReadBody(r.Body, r.Header.Get("Content-Encoding"), maxOperatorBody)
}

// WriteJSON answers v as JSON with status 200.
func WriteJSON(w http.ResponseWriter, v any) { writeJSON(w, v) }
