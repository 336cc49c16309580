package auth

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

// HTTPStatus returns the HTTP status of an error code: the sync API's
// table (protocol.HTTPStatus), so both answer alike.
func HTTPStatus(code fieldsync.Code) int { return protocol.HTTPStatus(code) }

// WriteError answers err in the sync API's error shape:
// {"error":{"code","message","retryable"}}. A token refusal carries a
// WWW-Authenticate challenge; a rate or availability refusal carries
// Retry-After (see WriteRateLimited for the exact wait).
func WriteError(w http.ResponseWriter, err error) {
	code := fieldsync.ErrorCode(err)
	status := HTTPStatus(code)
	h := w.Header()
	switch code {
	case fieldsync.ETokenMissing:
		h.Set("WWW-Authenticate", `Bearer realm="fieldsync"`)
	case fieldsync.ETokenInvalid, fieldsync.ETokenExpired, fieldsync.ETokenRevoked:
		h.Set("WWW-Authenticate", `Bearer realm="fieldsync", error="invalid_token"`)
	case fieldsync.EUnavailable:
		h.Set("Retry-After", "2")
	}
	if status == http.StatusTooManyRequests && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "1")
	}
	body := protocol.ErrorBody{Error: protocol.ErrorDetail{Code: string(code), Message: fieldsync.ErrorMessage(err), Retryable: code.Retryable()}}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(&body)
}

// WriteRateLimited answers 429 rate_limited with Retry-After in whole
// seconds, rounded up.
func WriteRateLimited(w http.ResponseWriter, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	WriteError(w, fieldsync.Errorf(fieldsync.ERateLimited, "too many requests: try again in %d s", max(secs, 1)))
}

// ActionOf names the action of a /v1 request, by method and path. It
// answers ENotFound for a path that is not an endpoint and
// EMethodNotAllowed for a method an endpoint does not serve: a request
// the access table does not know is refused before it reaches a
// handler, so a new endpoint must be named here to be served.
func ActionOf(method, path string) (Action, error) {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	seg := strings.Split(strings.TrimPrefix(path, "/v1/"), "/")
	if !strings.HasPrefix(path, "/v1/") {
		return "", noEndpoint(method, path)
	}
	for i, s := range seg {
		// tus addresses an upload under /v1/files/ (a trailing slash
		// included); everywhere else an empty segment is no endpoint.
		if s == "" && !(seg[0] == "files" && i == len(seg)-1) {
			return "", noEndpoint(method, path)
		}
	}
	byMethod := func(m map[string]Action) (Action, error) {
		if a, ok := m[method]; ok {
			return a, nil
		}
		return "", fieldsync.Errorf(fieldsync.EMethodNotAllowed, "%s is not allowed on %s", method, path)
	}
	switch {
	case len(seg) == 1 && seg[0] == "push":
		return byMethod(map[string]Action{http.MethodPost: ActionPush})
	case len(seg) == 1 && seg[0] == "changes":
		return byMethod(map[string]Action{http.MethodGet: ActionPull})
	case len(seg) == 1 && seg[0] == "info":
		return byMethod(map[string]Action{http.MethodGet: ActionInfo})
	case len(seg) == 1 && seg[0] == "schema":
		return byMethod(map[string]Action{http.MethodGet: ActionReadSchema, http.MethodPut: ActionWriteSchema})
	case len(seg) == 2 && seg[0] == "records":
		return byMethod(map[string]Action{http.MethodPost: ActionOfficeCreate})
	case len(seg) == 3 && seg[0] == "records":
		return byMethod(map[string]Action{http.MethodGet: ActionReadRecord, http.MethodPatch: ActionOfficeEdit})
	case len(seg) == 4 && seg[0] == "records" && seg[3] == "settle":
		return byMethod(map[string]Action{http.MethodPost: ActionSettle})
	case len(seg) == 2 && seg[0] == "ops":
		return byMethod(map[string]Action{http.MethodGet: ActionReadOp})
	case len(seg) == 2 && seg[0] == "blobs":
		return byMethod(map[string]Action{http.MethodGet: ActionDownload})
	case len(seg) == 1 && seg[0] == "enrolments":
		return byMethod(map[string]Action{http.MethodPost: ActionIssueEnrolment})
	case seg[0] == "files" && len(seg) <= 2:
		return ActionUpload, nil
	case len(seg) == 2 && seg[0] == "operator" && seg[1] == "test-orgs":
		return byMethod(map[string]Action{http.MethodPost: ActionCreateTestOrg})
	case len(seg) == 3 && seg[0] == "operator" && seg[1] == "test-orgs":
		return byMethod(map[string]Action{http.MethodDelete: ActionDeleteTestOrg})
	}
	return "", noEndpoint(method, path)
}

func noEndpoint(method, path string) error {
	return fieldsync.Errorf(fieldsync.ENotFound, "no such endpoint: %s %s", method, path)
}

// rateKey names a principal's bucket: its device, or its user session.
func rateKey(p Principal) string {
	if p.TokenKind == TokenOperator {
		return "o:" + p.User
	}
	if p.DeviceID != "" {
		return "d:" + p.Org + "/" + p.DeviceID
	}
	return "u:" + p.Org + "/" + p.User
}

// Middleware authenticates every request before anything else runs: it
// reads the bearer token, asks a for its Principal, takes one token from
// the principal's rate bucket (lim; nil: DefaultPrincipalRate), checks
// that the principal's role may do the request's action at all
// (DecideAction), and hands the request, with the Principal in its
// context (FromContext), to next(p): the handler of the principal's own
// organisation — its data is the only data that request can reach.
// Record-level decisions are the handler's, with Decide. A nil handler
// from next answers 503. Refused tokens are limited per client address
// by the same limiter.
func Middleware(a Authenticator, lim *Limiter, log *slog.Logger, next func(p Principal) http.Handler) http.Handler {
	if lim == nil {
		lim = NewLimiter(DefaultPrincipalRate, nil)
	}
	log = orDiscard(log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse := func(p Principal, err error) {
			st := HTTPStatus(fieldsync.ErrorCode(err))
			if st >= 500 {
				log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			} else {
				log.Info("request refused", "method", r.Method, "path", r.URL.Path, "org", p.Org, "user", p.User,
					"device", p.DeviceID, "code", fieldsync.ErrorCode(err), "msg", fieldsync.ErrorMessage(err))
			}
			WriteError(w, err)
		}
		p, ok := admit(w, r, a, lim, log, refuse, false)
		if !ok {
			return
		}
		h := next(p)
		if h == nil {
			refuse(p, fieldsync.Errorf(fieldsync.EUnavailable, "the organisation's data is not available now: try again later"))
			return
		}
		h.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

// admit is the door both middlewares share: it answers the request
// itself and reports false unless the bearer token names a principal,
// the principal's rate bucket has a token, and DecideAction allows the
// request's action (in the principal's own organisation, or, for the
// operator API, in none). Refused tokens are counted per client
// address; an address that has spent its burst on them is answered 429
// before any lookup, so a flood of bad tokens costs the identity store
// little.
func admit(w http.ResponseWriter, r *http.Request, a Authenticator, lim *Limiter, log *slog.Logger,
	refuse func(Principal, error), operator bool) (Principal, bool) {
	addr := clientAddress(r)
	if empty, wait := lim.Empty(addr); empty {
		WriteRateLimited(w, wait)
		return Principal{}, false
	}
	token, err := ParseAuthorization(r.Header)
	var p Principal
	if err == nil {
		p, err = a.Authenticate(r.Context(), token)
	}
	if err != nil {
		if HTTPStatus(fieldsync.ErrorCode(err)) == http.StatusUnauthorized {
			lim.Allow(addr)
		}
		refuse(Principal{}, err)
		return Principal{}, false
	}
	if ok, wait := lim.Allow(rateKey(p)); !ok {
		log.Info("request refused", "method", r.Method, "path", r.URL.Path, "org", p.Org, "user", p.User,
			"device", p.DeviceID, "code", fieldsync.ERateLimited)
		WriteRateLimited(w, wait)
		return p, false
	}
	action, err := ActionOf(r.Method, r.URL.Path)
	if err != nil {
		refuse(p, err)
		return p, false
	}
	org := p.Org
	if operator {
		org = ""
	}
	if d := DecideAction(p, action, org); !d.Allow {
		refuse(p, d.Err())
		return p, false
	}
	return p, true
}

// EnrollHandler serves POST /v1/enroll: a device redeems an enrolment
// code for its token. Requests are limited per client address (lim; nil:
// DefaultAddressRate). The answer is never cached.
func EnrollHandler(e Enroller, lim *Limiter, log *slog.Logger) http.Handler {
	log = orDiscard(log)
	return publicHandler(lim, log, func(w http.ResponseWriter, r *http.Request, body []byte) error {
		req, err := protocol.DecodeEnroll(body)
		if err != nil {
			return err
		}
		iss, err := e.Enroll(r.Context(), req.Code, req.DeviceName, req.Device)
		if err != nil {
			return err
		}
		log.Info("device enrolled", "org", iss.Org, "user", iss.User, "device", iss.DeviceID)
		writeJSON(w, &protocol.EnrollResponse{Token: iss.Token, Device: iss.DeviceID, Org: iss.Org, User: iss.User, Role: string(iss.Role)})
		return nil
	})
}

// LoginHandler serves POST /v1/login: a person opens a session with the
// organisation, user name and password. Requests are limited per client
// address (lim; nil: DefaultAddressRate). The answer is never cached.
func LoginHandler(l LoginService, lim *Limiter, log *slog.Logger) http.Handler {
	log = orDiscard(log)
	return publicHandler(lim, log, func(w http.ResponseWriter, r *http.Request, body []byte) error {
		req, err := protocol.DecodeLogin(body)
		if err != nil {
			return err
		}
		iss, err := l.Login(r.Context(), req.Org, req.User, req.Password)
		if err != nil {
			return err
		}
		log.Info("login", "org", iss.Org, "user", iss.User)
		writeJSON(w, &protocol.LoginResponse{Token: iss.Token, Expires: iss.Expires.UTC(), Org: iss.Org, User: iss.User, Role: string(iss.Role)})
		return nil
	})
}

// publicHandler is the shared frame of the endpoints without a token:
// POST only, rate-limited per client address, a small JSON body.
func publicHandler(lim *Limiter, log *slog.Logger, serve func(http.ResponseWriter, *http.Request, []byte) error) http.Handler {
	if lim == nil {
		lim = NewLimiter(DefaultAddressRate, nil)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			WriteError(w, fieldsync.Errorf(fieldsync.EMethodNotAllowed, "%s is not allowed on %s: use POST", r.Method, r.URL.Path))
			return
		}
		if ok, wait := lim.Allow(clientAddress(r)); !ok {
			log.Info("request refused", "path", r.URL.Path, "addr", clientAddress(r), "code", fieldsync.ERateLimited)
			WriteRateLimited(w, wait)
			return
		}
		err := checkContentType(r)
		var body []byte
		if err == nil {
			body, err = protocol.ReadBody(r.Body, r.Header.Get("Content-Encoding"), protocol.MaxAuthBodyBytes)
		}
		if err == nil {
			err = serve(w, r, body)
		}
		if err != nil {
			if HTTPStatus(fieldsync.ErrorCode(err)) >= 500 {
				log.Error("request failed", "path", r.URL.Path, "err", err)
			} else {
				log.Info("request refused", "path", r.URL.Path, "addr", clientAddress(r), "code", fieldsync.ErrorCode(err))
			}
			WriteError(w, err)
		}
	})
}

// checkContentType checks the content type of an identity request.
func checkContentType(r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return fieldsync.Errorf(fieldsync.EUnsupportedMedia, "content type %q is not accepted: send application/json", ct)
		}
	}
	return nil
}

// clientAddress is the rate key of an unauthenticated request: the
// peer's IP address. Behind a reverse proxy every request shares the
// proxy's address (see docs/security.md).
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "a:" + r.RemoteAddr
	}
	return "a:" + host
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

// Issuer makes one-time enrolment codes.
type Issuer interface {
	IssueEnrolment(ctx context.Context, org, user, issuedBy string) (Enrolment, error)
}

// EnrolmentsHandler serves POST /v1/enrolments behind Middleware: an
// office principal asks for a one-time code to enrol a device of a user
// of its own organisation. The code is in the answer only; the store
// keeps its hash.
func EnrolmentsHandler(iss Issuer, log *slog.Logger) http.Handler {
	log = orDiscard(log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		p, ok := FromContext(r.Context())
		var err error = fieldsync.Errorf(fieldsync.ETokenMissing, "a dispatcher's or an admin's token is required")
		if ok {
			err = nil
			if d := DecideAction(p, ActionIssueEnrolment, p.Org); !d.Allow {
				err = d.Err()
			}
		}
		var body []byte
		if err == nil {
			if err = checkContentType(r); err == nil {
				body, err = protocol.ReadBody(r.Body, r.Header.Get("Content-Encoding"), protocol.MaxAuthBodyBytes)
			}
		}
		var req *protocol.EnrolmentRequest
		if err == nil {
			req, err = protocol.DecodeEnrolmentRequest(body)
		}
		var e Enrolment
		if err == nil {
			e, err = iss.IssueEnrolment(r.Context(), p.Org, req.User, p.User)
		}
		if err != nil {
			log.Info("enrolment code refused", "org", p.Org, "by", p.User, "code", fieldsync.ErrorCode(err))
			WriteError(w, err)
			return
		}
		log.Info("enrolment code issued", "org", e.Org, "user", e.User, "by", p.User, "expires", e.Expires)
		writeJSON(w, &protocol.EnrolmentResponse{Code: e.Code, User: e.User, Org: e.Org, Expires: e.Expires})
	})
}
