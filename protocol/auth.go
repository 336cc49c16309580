package protocol

import (
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync"
)

// Paths of the two endpoints that take no bearer token: a device redeems
// an enrolment code, a person logs in. Every other /v1 request carries
// "Authorization: Bearer <token>".
const (
	PathEnroll = "/v1/enroll"
	PathLogin  = "/v1/login"
)

// Limits of the identity requests.
const (
	MaxAuthBodyBytes  = 4 << 10 // an enrol or login body
	MaxPasswordBytes  = 1024
	MaxDeviceNameRune = 100
	maxCodeBytes      = 32
)

// EnrollRequest redeems a one-time enrolment code for a device token.
// Device is the device's own id when it has one already (made when its
// store was created, carried by every op it queued): the token is then
// bound to that id, so what the device holds can still be delivered.
type EnrollRequest struct {
	Code       string `json:"code"`
	DeviceName string `json:"device_name"`
	Device     string `json:"device,omitempty"`
}

// EnrollResponse carries the device token, shown once and never again.
type EnrollResponse struct {
	Token  string `json:"token"`
	Device string `json:"device"`
	Org    string `json:"org"`
	User   string `json:"user"`
	Role   string `json:"role"`
}

// LoginRequest opens a user session for the office console or the CLI.
type LoginRequest struct {
	Org      string `json:"org"`
	User     string `json:"user"`
	Password string `json:"password"`
}

// LoginResponse carries the session token and when it stops working.
type LoginResponse struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	Org     string    `json:"org"`
	User    string    `json:"user"`
	Role    string    `json:"role"`
}

// ValidOrgName reports whether s may name an organisation: 1–63 lowercase
// ASCII letters, digits and '-', starting with a letter. The name is also
// the name of the organisation's database file, so nothing else is let in.
func ValidOrgName(s string) bool {
	if len(s) < 1 || len(s) > 63 || !('a' <= s[0] && s[0] <= 'z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidUserName reports whether s may name a user: 1–64 lowercase ASCII
// letters, digits, '_', '.', '-', starting with a letter or digit. It is
// the value records carry in their assignee field.
func ValidUserName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := '0' <= c && c <= '9' || 'a' <= c && c <= 'z'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// ValidDeviceName reports whether s may name a device for people: 1–100
// characters, no control characters, not only spaces.
func ValidDeviceName(s string) bool {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxDeviceNameRune {
		return false
	}
	blank := true
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return false
		}
		if !unicode.IsSpace(r) {
			blank = false
		}
	}
	return !blank
}

// DecodeEnroll decodes and checks an enrolment body. The code's own shape
// is checked where it is redeemed; here only its size.
func DecodeEnroll(data []byte) (*EnrollRequest, error) {
	var req EnrollRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	if req.Code == "" {
		return nil, invalid("code: the enrolment code is required")
	}
	if len(req.Code) > maxCodeBytes {
		return nil, fieldsync.Errorf(fieldsync.EEnrolmentInvalid, "code: this is not an enrolment code (too long)")
	}
	if !ValidDeviceName(req.DeviceName) {
		return nil, invalid("device_name: want 1-%d printable characters", MaxDeviceNameRune)
	}
	if req.Device != "" && !ValidID(req.Device) {
		return nil, invalid("device: want an id of 1-64 letters, digits, '_', '.', '-'")
	}
	return &req, nil
}

// DecodeLogin decodes and checks a login body.
func DecodeLogin(data []byte) (*LoginRequest, error) {
	var req LoginRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	if !ValidOrgName(req.Org) {
		return nil, invalid("org: want 1-63 lowercase letters, digits and '-', starting with a letter")
	}
	if !ValidUserName(req.User) {
		return nil, invalid("user: want 1-64 lowercase letters, digits, '_', '.', '-'")
	}
	if req.Password == "" {
		return nil, invalid("password: required")
	}
	if len(req.Password) > MaxPasswordBytes {
		return nil, fieldsync.Errorf(fieldsync.ETooLarge, "password: longer than %d bytes", MaxPasswordBytes)
	}
	return &req, nil
}
