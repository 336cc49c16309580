package protocol

import (
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
)

func TestDecodeTestOrgRequest(t *testing.T) {
	good := []struct {
		body string
		name string
		ttl  time.Duration
	}{
		{``, "", time.Hour},
		{`  `, "", time.Hour},
		{`{}`, "", time.Hour},
		{`null`, "", time.Hour},
		{`{"ttl_seconds":60}`, "", time.Minute},
		{`{"name":"selftest-a1","ttl_seconds":14400}`, "selftest-a1", 4 * time.Hour},
	}
	for _, c := range good {
		req, err := DecodeTestOrgRequest([]byte(c.body))
		if err != nil {
			t.Errorf("%q: %v", c.body, err)
			continue
		}
		if req.Name != c.name || req.TTL() != c.ttl {
			t.Errorf("%q: name %q ttl %s, want %q %s", c.body, req.Name, req.TTL(), c.name, c.ttl)
		}
	}
	bad := []struct {
		body string
		code fieldsync.Code
	}{
		{`{`, fieldsync.EInvalidJSON},
		{`[]`, fieldsync.EInvalidJSON},
		{`{"name":1}`, fieldsync.EInvalidJSON},
		{`{"org":"selftest-a"}`, fieldsync.EInvalidJSON},
		{`{} {}`, fieldsync.EInvalidJSON},
		{`{"ttl_seconds":1.5}`, fieldsync.EInvalidJSON},
		{`{"name":"acme"}`, fieldsync.EInvalidRequest},
		{`{"name":"selftest-"}`, fieldsync.EInvalidRequest},
		{`{"name":"selftest-A"}`, fieldsync.EInvalidRequest},
		{`{"name":"selftest-../x"}`, fieldsync.EInvalidRequest},
		{`{"ttl_seconds":-1}`, fieldsync.EInvalidRequest},
		{`{"ttl_seconds":14401}`, fieldsync.EInvalidRequest},
		{`{"ttl_seconds":9223372036854775807}`, fieldsync.EInvalidRequest},
	}
	for _, c := range bad {
		_, err := DecodeTestOrgRequest([]byte(c.body))
		if fieldsync.ErrorCode(err) != c.code || fieldsync.ErrorMessage(err) == "" {
			t.Errorf("%q: %v, want %s", c.body, err, c.code)
		}
	}
}

// FuzzTestOrgRequest: any body is decoded into a request the operator
// API can act on, or refused with invalid_json or invalid_request.
func FuzzTestOrgRequest(f *testing.F) {
	f.Add([]byte(`{"name":"selftest-a1","ttl_seconds":60}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeTestOrgRequest(body)
		if err != nil {
			if c := fieldsync.ErrorCode(err); c != fieldsync.EInvalidJSON && c != fieldsync.EInvalidRequest {
				t.Fatalf("code %s (%v)", c, err)
			}
			return
		}
		if req.Name != "" && !ValidTestOrgName(req.Name) {
			t.Fatalf("name %q accepted", req.Name)
		}
		if ttl := req.TTL(); ttl < time.Second || ttl > MaxTestOrgTTL {
			t.Fatalf("ttl %s accepted", ttl)
		}
	})
}
