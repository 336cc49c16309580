package protocol

import (
	"bytes"
	"strings"
	"time"
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
	MaxOperatorBody   = 4 << 10       // an operator request's body at most
)

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
	return len(name) > len(TestOrgPrefix) && strings.HasPrefix(name, TestOrgPrefix) && ValidOrgName(name)
}

// DecodeTestOrgRequest decodes and checks the body of POST
// /v1/operator/test-orgs: one JSON object, no unknown field, nothing
// after it. An empty body asks for the defaults. It answers EInvalidJSON
// for a body that is not that object and EInvalidRequest for a bad name
// or life.
func DecodeTestOrgRequest(data []byte) (*TestOrgRequest, error) {
	var req TestOrgRequest
	if len(bytes.TrimSpace(data)) > 0 {
		if err := decodeStrict(data, &req); err != nil {
			return nil, err
		}
	}
	if req.Name != "" && !ValidTestOrgName(req.Name) {
		name := req.Name
		if len(name) > 80 {
			name = name[:80] + "…"
		}
		return nil, invalid("name %q: a test organisation's name starts with %q, then lowercase letters, digits and '-' (63 characters at most); or leave it out",
			name, TestOrgPrefix)
	}
	if req.TTLSeconds < 0 || time.Duration(req.TTLSeconds) > MaxTestOrgTTL/time.Second {
		return nil, invalid("ttl_seconds %d: want 1 to %d, or leave it out for %d",
			req.TTLSeconds, int64(MaxTestOrgTTL/time.Second), int64(DefaultTestOrgTTL/time.Second))
	}
	return &req, nil
}
