package protocol

import (
	"testing"

	"github.com/fieldsync/fieldsync"
)

func TestDecodeEnrolmentRequest(t *testing.T) {
	req, err := DecodeEnrolmentRequest([]byte(`{"user":"ana"}`))
	if err != nil || req.User != "ana" {
		t.Fatalf("got %+v, %v", req, err)
	}
	for _, bad := range []string{`{"user":""}`, `{"user":"ana","role":"admin"}`, `{"user":7}`, `{}`, `[`, `{"user":"ana"} {}`} {
		if _, err := DecodeEnrolmentRequest([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		} else if c := fieldsync.ErrorCode(err); c != fieldsync.EInvalidJSON && c != fieldsync.EInvalidRequest {
			t.Errorf("%s: code %s", bad, c)
		}
	}
}

func FuzzDecodeEnrolmentRequest(f *testing.F) {
	f.Add([]byte(`{"user":"ana"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeEnrolmentRequest(data)
		if err != nil {
			if fieldsync.ErrorCode(err) == fieldsync.EInternal {
				t.Fatalf("internal error for bad input: %v", err)
			}
			return
		}
		if !ValidUserName(req.User) {
			t.Fatalf("accepted user %q", req.User)
		}
	})
}
