package client

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

func TestAnswerError(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	body := func(code, msg string) []byte {
		b, _ := json.Marshal(protocol.ErrorBody{Error: protocol.ErrorDetail{Code: code, Message: msg}})
		return b
	}
	for _, c := range []struct {
		name   string
		status int
		header http.Header
		body   []byte
		code   fieldsync.Code
		wait   time.Duration
		msg    string
	}{
		{"revoked", 401, nil, body("token_revoked", "server words"), fieldsync.ETokenRevoked, 0, "revoked by the office"},
		{"head 401, no token", 401, http.Header{"Www-Authenticate": {`Bearer realm="fieldsync"`}}, nil, fieldsync.ETokenMissing, 0, "not enrolled"},
		{"head 401, bad token", 401, http.Header{"Www-Authenticate": {`Bearer realm="fieldsync", error="invalid_token"`}}, nil,
			fieldsync.ETokenInvalid, 0, "enrol again"},
		{"forbidden", 403, nil, body("forbidden", "no push for you"), fieldsync.EForbidden, 0, "no push for you"},
		{"head 403", 403, nil, nil, fieldsync.EForbidden, 0, "HTTP 403"},
		{"429 seconds", 429, http.Header{"Retry-After": {"7"}}, body("rate_limited", "slow down"), fieldsync.ERateLimited, 7 * time.Second, "slow down"},
		{"429 date", 429, http.Header{"Retry-After": {"Sun, 01 Mar 2026 12:01:00 GMT"}}, nil, fieldsync.ERateLimited, time.Minute, "HTTP 429"},
		{"429 no header", 429, nil, nil, fieldsync.ERateLimited, 0, "HTTP 429"},
		{"503 wait", 503, http.Header{"Retry-After": {"2"}}, body("unavailable", "busy"), fieldsync.EUnavailable, 2 * time.Second, "busy"},
		{"400 keeps its wait out", 400, http.Header{"Retry-After": {"2"}}, body("invalid_json", "bad"), fieldsync.EInvalidJSON, 0, "bad"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := c.header
			if h == nil {
				h = http.Header{}
			}
			err := answerError(c.status, h, c.body, now)
			if fieldsync.ErrorCode(err) != c.code || RetryAfter(err) != c.wait || !strings.Contains(fieldsync.ErrorMessage(err), c.msg) {
				t.Fatalf("answerError = %v (wait %v); want %s, %v, %q", err, RetryAfter(err), c.code, c.wait, c.msg)
			}
		})
	}
}

func TestNormalizePin(t *testing.T) {
	hexPin := strings.Repeat("0a", 32)
	colons := strings.ToUpper(strings.TrimSuffix(strings.Repeat("0a:", 32), ":"))
	for _, in := range []string{hexPin, colons, " " + colons + " ", strings.ReplaceAll(colons, ":", " ")} {
		if got, err := NormalizePin(in); err != nil || got != hexPin {
			t.Errorf("NormalizePin(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "abc", hexPin + "00", strings.Repeat("zz", 32), strings.Repeat("a", 300)} {
		if got, err := NormalizePin(in); err == nil {
			t.Errorf("NormalizePin(%q) = %q, want an error", in, got)
		}
	}
}

// FuzzNormalizePin: whatever a person types as a fingerprint is refused
// or gives 64 lower-case hex digits, and normalizing again changes
// nothing.
func FuzzNormalizePin(f *testing.F) {
	f.Add(strings.Repeat("ab:", 31) + "ab")
	f.Add("AB CD")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := NormalizePin(s)
		if err != nil {
			return
		}
		if len(p) != 64 || strings.Trim(p, "0123456789abcdef") != "" {
			t.Fatalf("NormalizePin(%q) = %q", s, p)
		}
		if q, err := NormalizePin(p); err != nil || q != p {
			t.Fatalf("not stable: %q → %q, %v", p, q, err)
		}
	})
}

// FuzzDecodeEnrollResponse: the server's answer to an enrolment is
// refused with internal, or gives a token a header can carry and a
// valid device id.
func FuzzDecodeEnrollResponse(f *testing.F) {
	f.Add([]byte(`{"token":"fsd_abc","device":"0190a6c4-1b2c-7d3e-8f40-000000000001","org":"acme","user":"ana","role":"field_worker"}`))
	f.Add([]byte(`{"token":"a\r\nb","device":"d"}`))
	f.Add([]byte(`{"token":"x","device":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := decodeEnrollResponse(data)
		if err != nil {
			if fieldsync.ErrorCode(err) != fieldsync.EInternal {
				t.Fatalf("error code %s", fieldsync.ErrorCode(err))
			}
			return
		}
		if res.Token == "" || strings.ContainsAny(res.Token, " \r\n\t") || !protocol.ValidID(res.Device) {
			t.Fatalf("accepted %+v", res)
		}
		h := http.Header{}
		h.Set("Authorization", "Bearer "+res.Token)
		if h.Get("Authorization") != "Bearer "+res.Token {
			t.Fatalf("token %q does not survive a header", res.Token)
		}
	})
}

// FuzzAnswerError: any refusing answer gives an error with a code, a
// wait between zero and an hour, and never a panic.
func FuzzAnswerError(f *testing.F) {
	f.Add(401, "", []byte(`{"error":{"code":"token_revoked","message":"m"}}`))
	f.Add(429, "10", []byte(`not json`))
	f.Add(503, "Sun, 01 Mar 2026 12:01:00 GMT", []byte(`{"error":{}}`))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		err := answerError(status, http.Header{"Retry-After": {retryAfter}}, body, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		if err == nil || fieldsync.ErrorCode(err) == "" {
			t.Fatalf("no error for %d %q", status, body)
		}
		if w := RetryAfter(err); w < 0 || w > time.Hour {
			t.Fatalf("wait %v", w)
		}
	})
}
