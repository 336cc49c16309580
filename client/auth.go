package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/internal/tusclient"
	"github.com/fieldsync/fieldsync/protocol"
)

// What the device knows of its standing with the server (Status.Auth).
const (
	// AuthOK: the device holds a token the server has not refused, or
	// the server asked for none.
	AuthOK = "ok"
	// AuthNotEnrolled: the device holds no token, or the server does not
	// accept the one it holds (unknown, replaced, expired): enrol it.
	AuthNotEnrolled = "not_enrolled"
	// AuthRevoked: the office revoked the device: enrol it again.
	AuthRevoked = "revoked"
)

// Keys of the meta table that hold the device's enrolment. The token is
// kept only there (the device store is the device's secret store) and
// is never logged or shown.
const (
	metaToken      = "auth_token"
	metaServer     = "auth_server"
	metaPin        = "auth_pin"
	metaOrg        = "auth_org"
	metaUser       = "auth_user"
	metaRole       = "auth_role"
	metaDeviceName = "auth_device_name"
	metaEnrolled   = "auth_enrolled"
	metaAuthState  = "auth_state"
	metaAuthMsg    = "auth_message"
)

// authMessages are what a person reads when the server refuses the
// device's token. Each says that nothing on the device is lost.
var authMessages = map[fieldsync.Code]string{
	fieldsync.ETokenRevoked: "this device was revoked by the office; what is saved here is kept; enrol again with a new code to deliver it",
	fieldsync.ETokenMissing: "this device is not enrolled with the server; what is saved here is kept; enrol it with a code from the office to deliver it",
	fieldsync.ETokenInvalid: "the server does not accept this device's token (a newer enrolment replaced it, or this is another server); " +
		"what is saved here is kept; enrol again with a new code to deliver it",
	fieldsync.ETokenExpired: "this device's token has expired; what is saved here is kept; enrol again with a new code to deliver it",
}

// authState is the Status.Auth that a refusal with code means, or ""
// when code is not a refusal of the device's token.
func authState(code fieldsync.Code) string {
	switch code {
	case fieldsync.ETokenRevoked:
		return AuthRevoked
	case fieldsync.ETokenMissing, fieldsync.ETokenInvalid, fieldsync.ETokenExpired:
		return AuthNotEnrolled
	}
	return ""
}

// IsAuthRefusal reports whether err is the server refusing the device's
// token (token_missing, token_invalid, token_expired, token_revoked):
// retrying cannot help until the device is enrolled again. Nothing was
// sent, nothing on the device was changed.
func IsAuthRefusal(err error) bool { return authState(fieldsync.ErrorCode(err)) != "" }

// TLSConfig says how the engine checks the server's certificate.
type TLSConfig struct {
	// PinSHA256 is the SHA-256 of the server's certificate (its DER
	// bytes) in hex, as `fieldsync server --tls-self-signed` prints it;
	// colons, spaces and case are forgiven. When set, the engine accepts
	// exactly that certificate and consults no authority. Empty: the pin
	// stored when the device enrolled with this server, if any; else
	// ordinary verification against RootCAs.
	PinSHA256 string
	// RootCAs are the authorities a server's chain is checked against
	// when nothing is pinned (nil: the system's).
	RootCAs *x509.CertPool
}

func (t *TLSConfig) validate() error {
	if t.PinSHA256 == "" {
		return nil
	}
	if _, err := NormalizePin(t.PinSHA256); err != nil {
		return fmt.Errorf("client: Config.TLS.PinSHA256: %w", err)
	}
	return nil
}

// NormalizePin reads a certificate fingerprint (64 hex digits, in any
// case, optionally in colon- or space-separated groups) and returns it
// as 64 lower-case hex digits.
func NormalizePin(s string) (string, error) {
	if len(s) > 200 {
		return "", errors.New("not a SHA-256 fingerprint: too long")
	}
	clean := strings.Map(func(r rune) rune {
		if r == ':' || r == ' ' || r == '-' {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	clean = strings.ToLower(clean)
	b, err := hex.DecodeString(clean)
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("not a SHA-256 fingerprint: want 64 hex digits (colons allowed), got %d characters", len(clean))
	}
	return clean, nil
}

// formatPin writes a fingerprint as the server prints it: lower-case hex
// pairs separated by colons.
func formatPin(sum []byte) string {
	h := hex.EncodeToString(sum)
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// pinError is a TLS handshake refused because the server's certificate
// is not the pinned one.
type pinError struct{ got string }

func (e *pinError) Error() string {
	if e.got == "" {
		return "the server presented no certificate to compare with the pinned fingerprint"
	}
	return "the server's certificate does not match the pinned fingerprint (it presented SHA-256 " + e.got + ")"
}

// verifyPin accepts exactly the leaf certificate whose SHA-256 is want.
// It is a VerifyConnection hook, so resumed sessions are checked too.
func verifyPin(want []byte) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &pinError{}
		}
		got := sha256.Sum256(cs.PeerCertificates[0].Raw)
		if subtle.ConstantTimeCompare(got[:], want) != 1 {
			return &pinError{got: formatPin(got[:])}
		}
		return nil
	}
}

// tlsError turns a failed TLS check into a user-safe *fieldsync.Error,
// or returns nil when err is no such failure. Both are worth a retry
// (a captive portal goes away), and both need a person if they last.
func tlsError(err error) error {
	var pe *pinError
	if errors.As(err, &pe) {
		return fieldsync.Errorf(fieldsync.EUnavailable, "%s: another server, or something in between, answered; "+
			"nothing was sent. Check the network; if the server's certificate was replaced, enrol again with its new fingerprint", pe.Error())
	}
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) {
		return fieldsync.Errorf(fieldsync.EUnavailable, "the server's certificate is not trusted (%v); nothing was sent. "+
			"For a self-signed server, pin its fingerprint (fieldsync enroll --tls-pin)", ve.Err)
	}
	return nil
}

// Enrolment is what the device keeps of its enrolment with a server. The
// token itself is never returned.
type Enrolment struct {
	Server     string    // the server URL it enrolled with
	Org        string    // the organisation, user and role the token stands for
	User       string    //
	Role       string    //
	DeviceName string    // the name the office sees
	Pin        string    // the pinned certificate fingerprint, "" when none
	Enrolled   time.Time // zero when the device never enrolled
}

// Enrolment returns what the device keeps of its enrolment.
func (e *Engine) Enrolment(ctx context.Context) (Enrolment, error) {
	return e.enrolment(ctx, e.db)
}

func (e *Engine) enrolment(ctx context.Context, q querier) (Enrolment, error) {
	var en Enrolment
	vals := map[string]*string{metaServer: &en.Server, metaOrg: &en.Org, metaUser: &en.User, metaRole: &en.Role,
		metaDeviceName: &en.DeviceName, metaPin: &en.Pin}
	for k, p := range vals {
		v, err := e.meta(ctx, q, k)
		if err != nil {
			return en, err
		}
		*p = v
	}
	at, err := e.meta(ctx, q, metaEnrolled)
	if err != nil {
		return en, err
	}
	if n, err := strconv.ParseInt(at, 10, 64); err == nil && n > 0 {
		en.Enrolled = time.UnixMilli(n).UTC()
	}
	return en, nil
}

// ServerURL returns the server the engine syncs with: Config.ServerURL,
// else the one the device enrolled with; "" when it works offline.
func (e *Engine) ServerURL() string { return e.cfg.ServerURL }

// initAuth completes the configuration from the device's enrolment (the
// server URL and its pinned certificate when the Config names none),
// sets up TLS, and loads the token. Open calls it before the uploader is
// made, since the uploader shares the HTTP client.
func (e *Engine) initAuth(ctx context.Context) error {
	en, err := e.Enrolment(ctx)
	if err != nil {
		return err
	}
	e.cfg.ServerURL = strings.TrimRight(e.cfg.ServerURL, "/")
	if e.cfg.ServerURL == "" {
		e.cfg.ServerURL = en.Server
	}
	pin := e.cfg.TLS.PinSHA256
	if pin == "" && en.Pin != "" && en.Server == e.cfg.ServerURL {
		pin = en.Pin
	}
	e.cfg.TLS.PinSHA256 = pin // the pin in effect, which Enroll keeps
	if err := e.setTLS(pin); err != nil {
		return err
	}
	e.fixed = e.cfg.Token
	return e.loadToken(ctx)
}

// setTLS applies the TLS settings to the engine's HTTP client: a pin, or
// the authorities to trust. A caller's own client is copied, not
// changed; its transport must then be an *http.Transport.
func (e *Engine) setTLS(pin string) error {
	if pin == "" && e.cfg.TLS.RootCAs == nil {
		return nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: e.cfg.TLS.RootCAs}
	if pin != "" {
		p, err := NormalizePin(pin)
		if err != nil {
			return fmt.Errorf("pinned certificate: %w", err)
		}
		want, _ := hex.DecodeString(p)
		// The pin replaces the authority check; VerifyConnection runs
		// on every handshake, resumed ones included.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = verifyPin(want)
	}
	var tr *http.Transport
	if e.cfg.HTTPClient == nil {
		tr = e.http.Transport.(*http.Transport) // made by Open for this engine alone
	} else {
		switch t := e.cfg.HTTPClient.Transport.(type) {
		case nil:
			tr = http.DefaultTransport.(*http.Transport).Clone()
		case *http.Transport:
			tr = t.Clone()
		default:
			return fmt.Errorf("client: Config.TLS needs Config.HTTPClient.Transport to be an *http.Transport, not %T", t)
		}
		c := *e.cfg.HTTPClient
		c.Transport = tr
		e.http = &c
	}
	tr.TLSClientConfig = tc
	return nil
}

// loadToken reads the token to send: Config.Token, else the stored one.
// Sync calls it each time, so an enrolment made by another process on
// the same device directory is used at the next sync.
func (e *Engine) loadToken(ctx context.Context) error {
	tok := e.fixedToken()
	if tok == "" {
		var err error
		if tok, err = e.meta(ctx, e.db, metaToken); err != nil {
			return err
		}
	}
	e.authMu.Lock()
	e.token = tok
	e.authMu.Unlock()
	return nil
}

// fixedToken is Config.Token, until Enroll replaces it.
func (e *Engine) fixedToken() string {
	e.authMu.Lock()
	defer e.authMu.Unlock()
	return e.fixed
}

// currentToken is the token requests carry, "" when none is known.
func (e *Engine) currentToken() string {
	e.authMu.Lock()
	defer e.authMu.Unlock()
	return e.token
}

// authorize adds the device's bearer token to a request's headers.
func (e *Engine) authorize(h http.Header) {
	if t := e.currentToken(); t != "" {
		h.Set("Authorization", "Bearer "+t)
	}
}

// authHeader is the header an upload adds to each of its requests.
func (e *Engine) authHeader() http.Header {
	h := http.Header{}
	e.authorize(h)
	if len(h) == 0 {
		return nil
	}
	return h
}

// noteAuth records, in the sync's closing transaction, what the sync
// learned of the device's standing: a refusal of its token, or that the
// server served it. A sync that ran with a token since replaced by a
// new enrolment says nothing about the new one.
func (e *Engine) noteAuth(ctx context.Context, tx *sql.Tx, syncErr error, used string) error {
	state := authState(fieldsync.ErrorCode(syncErr))
	switch {
	case syncErr == nil:
		state = AuthOK
	case state == "":
		return nil // not about the token: nothing learned
	}
	if e.fixedToken() == "" {
		stored, err := e.meta(ctx, tx, metaToken)
		if err != nil {
			return err
		}
		if stored != used {
			return nil
		}
	}
	msg := ""
	if state != AuthOK {
		msg = fieldsync.ErrorMessage(syncErr)
	}
	if err := setMeta(ctx, tx, metaAuthState, state); err != nil {
		return err
	}
	return setMeta(ctx, tx, metaAuthMsg, msg)
}

// authStatus is the device's standing as Status shows it.
func (e *Engine) authStatus(ctx context.Context, q querier) (state, msg string, err error) {
	if state, err = e.meta(ctx, q, metaAuthState); err != nil {
		return "", "", err
	}
	if msg, err = e.meta(ctx, q, metaAuthMsg); err != nil {
		return "", "", err
	}
	if state != "" {
		return state, msg, nil
	}
	if e.fixedToken() != "" {
		return AuthOK, "", nil
	}
	tok, err := e.meta(ctx, q, metaToken)
	if err != nil || tok != "" {
		return AuthOK, "", err
	}
	return AuthNotEnrolled, "this device is not enrolled with a server yet: enrol it with a code from the office", nil
}

// Enroll redeems a one-time enrolment code from the office at the
// configured server (POST /v1/enroll) under the device's own id, so that
// a device enrolled again keeps its id and delivers what it holds. It
// stores the device token in the device store, with the server URL and
// the pinned fingerprint in use, and uses the token from then on (it
// replaces Config.Token). Nothing else on the device changes.
//
// Errors are *fieldsync.Error: EInvalidRequest for a missing server,
// code or name; enrolment_invalid, enrolment_expired, forbidden (the id
// belongs to another user) and rate_limited from the server;
// EUnavailable when the server cannot be reached.
func (e *Engine) Enroll(ctx context.Context, code, deviceName string) error {
	if e.cfg.ServerURL == "" {
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "no server configured: name the server to enrol with")
	}
	code = strings.TrimSpace(code)
	if code == "" {
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "the enrolment code is required (the office issues it)")
	}
	if !protocol.ValidDeviceName(deviceName) {
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "device name: want 1-%d printable characters", protocol.MaxDeviceNameRune)
	}
	res, err := e.redeem(ctx, protocol.EnrollRequest{Code: code, DeviceName: deviceName, Device: e.deviceID})
	if err != nil {
		return err
	}
	pin := ""
	if e.cfg.TLS.PinSHA256 != "" {
		pin, _ = NormalizePin(e.cfg.TLS.PinSHA256) // checked by Validate
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	err = e.update(context.WithoutCancel(ctx), func(tx *sql.Tx) error {
		prev, err := e.meta(ctx, tx, metaAuthState)
		if err != nil {
			return err
		}
		for _, kv := range [][2]string{
			{metaToken, res.Token}, {metaServer, e.cfg.ServerURL}, {metaPin, pin}, {metaOrg, res.Org}, {metaUser, res.User},
			{metaRole, res.Role}, {metaDeviceName, deviceName}, {metaEnrolled, now}, {metaAuthState, AuthOK}, {metaAuthMsg, ""},
		} {
			if err := setMeta(ctx, tx, kv[0], kv[1]); err != nil {
				return err
			}
		}
		if prev != "" && prev != AuthOK {
			// The last sync's error was the refusal this enrolment ends.
			return setMeta(ctx, tx, "last_error", "")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store the enrolment: %w", err)
	}
	e.authMu.Lock()
	e.token = res.Token
	e.fixed = ""
	e.authMu.Unlock()
	e.reauth.Store(true)
	select {
	case e.kick <- struct{}{}:
	default:
	}
	e.log.Info("device enrolled", "device", e.deviceID, "org", res.Org, "user", res.User, "server", e.cfg.ServerURL)
	return nil
}

// redeem posts an enrolment request and decodes the answer.
func (e *Engine) redeem(ctx context.Context, req protocol.EnrollRequest) (*protocol.EnrollResponse, error) {
	body, err := json.Marshal(&req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, e.cfg.ServerURL+protocol.PathEnroll, bytes.NewReader(body))
	if err != nil {
		return nil, fieldsync.Errorf(fieldsync.EInvalidRequest, "server URL: %v", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set(protocol.VersionHeader, strconv.Itoa(protocol.Version))
	resp, err := e.http.Do(hreq)
	if err != nil {
		return nil, transportError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readError(resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxAuthBodyBytes+1))
	if err != nil {
		return nil, transportError(err)
	}
	res, err := decodeEnrollResponse(data)
	if err != nil {
		return nil, err
	}
	if res.Device != e.deviceID {
		return nil, fieldsync.Errorf(fieldsync.EInternal, "the server enrolled this device under another id (%s, not %s): "+
			"what it holds could not be delivered; nothing was stored", res.Device, e.deviceID)
	}
	return res, nil
}

// maxTokenBytes bounds a token the device accepts (the server's are 47
// bytes).
const maxTokenBytes = 512

// decodeEnrollResponse reads and checks the server's answer to an
// enrolment. The token must be something a header can carry.
func decodeEnrollResponse(data []byte) (*protocol.EnrollResponse, error) {
	bad := func(why string) error {
		return fieldsync.Errorf(fieldsync.EInternal, "the server's answer to the enrolment is not valid (%s): nothing was stored", why)
	}
	if len(data) > protocol.MaxAuthBodyBytes {
		return nil, bad("too long")
	}
	var res protocol.EnrollResponse
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, bad("not the JSON expected")
	}
	if res.Token == "" || len(res.Token) > maxTokenBytes {
		return nil, bad("no token")
	}
	for i := 0; i < len(res.Token); i++ {
		if c := res.Token[i]; c <= ' ' || c > '~' {
			return nil, bad("the token has characters a header cannot carry")
		}
	}
	if !protocol.ValidID(res.Device) {
		return nil, bad("device id")
	}
	if res.Org != "" && !protocol.ValidOrgName(res.Org) || res.User != "" && !protocol.ValidUserName(res.User) || len(res.Role) > 64 {
		return nil, bad("organisation, user or role")
	}
	return &res, nil
}

// waitError is a refusal that names how long to wait before asking
// again (Retry-After).
type waitError struct {
	err  error
	wait time.Duration
}

func (w *waitError) Error() string { return w.err.Error() }
func (w *waitError) Unwrap() error { return w.err }

// RetryAfter returns the wait the server asked for with a refusal (429
// rate_limited or 503, with Retry-After), or 0.
func RetryAfter(err error) time.Duration {
	var w *waitError
	if errors.As(err, &w) {
		return w.wait
	}
	return 0
}

// answerError turns a refusing HTTP answer into a *fieldsync.Error, with
// the wait of its Retry-After. An answer without the JSON error body (a
// HEAD, a proxy) is named by its status: 401 is a token refused or
// missing (WWW-Authenticate tells which), 403 forbidden, 429
// rate_limited. A refusal of the token carries the device's message.
func answerError(status int, h http.Header, body []byte, now time.Time) error {
	var b protocol.ErrorBody
	var fe *fieldsync.Error
	if json.Unmarshal(body, &b) == nil && b.Error.Code != "" {
		fe = &fieldsync.Error{Code: fieldsync.Code(b.Error.Code), Message: b.Error.Message}
	} else {
		switch status {
		case http.StatusUnauthorized:
			code := fieldsync.ETokenMissing
			if strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
				code = fieldsync.ETokenInvalid
			}
			fe = fieldsync.Errorf(code, "server answered HTTP %d", status)
		case http.StatusForbidden:
			fe = fieldsync.Errorf(fieldsync.EForbidden, "the server refused this device (HTTP 403)")
		case http.StatusTooManyRequests:
			fe = fieldsync.Errorf(fieldsync.ERateLimited, "the server asks this device to slow down (HTTP 429)")
		default:
			fe = protocol.DecodeErrorBody(status, nil)
		}
	}
	if msg, ok := authMessages[fe.Code]; ok {
		fe.Message = msg
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		if wait, ok := tusclient.ParseRetryAfter(h.Get("Retry-After"), now); ok && wait > 0 {
			return &waitError{err: fe, wait: wait}
		}
	}
	return fe
}
