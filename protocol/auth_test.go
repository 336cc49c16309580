package protocol_test

import (
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

func TestDecodeEnroll(t *testing.T) {
	req, err := protocol.DecodeEnroll([]byte(`{"code":"ABCDE-FGHJK","device_name":"Ana's tablet","device":"d-1"}`))
	if err != nil || req.Code != "ABCDE-FGHJK" || req.DeviceName != "Ana's tablet" || req.Device != "d-1" {
		t.Fatalf("%+v %v", req, err)
	}
	bad := map[string]fieldsync.Code{
		`{"code":"ABCDE-FGHJK"}`:                                                  fieldsync.EInvalidRequest,
		`{"device_name":"t"}`:                                                     fieldsync.EInvalidRequest,
		`{"code":"ABCDE-FGHJK","device_name":"   "}`:                              fieldsync.EInvalidRequest,
		`{"code":"ABCDE-FGHJK","device_name":"a\u0007b"}`:                         fieldsync.EInvalidRequest,
		`{"code":"ABCDE-FGHJK","device_name":"t","device":"a b"}`:                 fieldsync.EInvalidRequest,
		`{"code":"ABCDE-FGHJK","device_name":"t","x":1}`:                          fieldsync.EInvalidJSON,
		`{"code":"` + strings.Repeat("A", 33) + `","device_name":"t"}`:            fieldsync.EEnrolmentInvalid,
		`{"code":"ABCDE-FGHJK","device_name":"` + strings.Repeat("é", 101) + `"}`: fieldsync.EInvalidRequest,
		`[]`: fieldsync.EInvalidJSON,
	}
	for body, code := range bad {
		if _, err := protocol.DecodeEnroll([]byte(body)); fieldsync.ErrorCode(err) != code {
			t.Errorf("%s: %v, want %s", body, err, code)
		}
	}
}

func TestDecodeLogin(t *testing.T) {
	req, err := protocol.DecodeLogin([]byte(`{"org":"acme","user":"dora.k","password":"pw"}`))
	if err != nil || req.Org != "acme" || req.User != "dora.k" || req.Password != "pw" {
		t.Fatalf("%+v %v", req, err)
	}
	bad := map[string]fieldsync.Code{
		`{"org":"Acme","user":"dora","password":"pw"}`:                                fieldsync.EInvalidRequest,
		`{"org":"acme","user":"","password":"pw"}`:                                    fieldsync.EInvalidRequest,
		`{"org":"acme","user":"dora","password":""}`:                                  fieldsync.EInvalidRequest,
		`{"org":"acme","user":"dora","password":"` + strings.Repeat("x", 1025) + `"}`: fieldsync.ETooLarge,
		`{"org":"acme","user":"dora","password":"pw","totp":1}`:                       fieldsync.EInvalidJSON,
	}
	for body, code := range bad {
		if _, err := protocol.DecodeLogin([]byte(body)); fieldsync.ErrorCode(err) != code {
			t.Errorf("%.60s: %v, want %s", body, err, code)
		}
	}
}

func TestNames(t *testing.T) {
	for _, s := range []string{"acme", "a", "acme-2", strings.Repeat("a", 63)} {
		if !protocol.ValidOrgName(s) {
			t.Errorf("org %q refused", s)
		}
	}
	for _, s := range []string{"", "2acme", "Acme", "ac_me", "ac.me", "../a", strings.Repeat("a", 64)} {
		if protocol.ValidOrgName(s) {
			t.Errorf("org %q accepted", s)
		}
	}
	for _, s := range []string{"ana", "0ana", "ana.k", "ana_k-2"} {
		if !protocol.ValidUserName(s) {
			t.Errorf("user %q refused", s)
		}
	}
	for _, s := range []string{"", "Ana", ".ana", "an a", strings.Repeat("a", 65)} {
		if protocol.ValidUserName(s) {
			t.Errorf("user %q accepted", s)
		}
	}
}

var authCodes = map[fieldsync.Code]bool{
	fieldsync.EInvalidJSON:      true,
	fieldsync.EInvalidRequest:   true,
	fieldsync.ETooLarge:         true,
	fieldsync.EEnrolmentInvalid: true,
}

// FuzzDecodeEnroll: any body decodes to a request that passes every
// check, or is refused with a stable code.
func FuzzDecodeEnroll(f *testing.F) {
	f.Add([]byte(`{"code":"ABCDE-FGHJK","device_name":"tablet"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := protocol.DecodeEnroll(data)
		if err != nil {
			checkRefusal(t, err, authCodes)
			return
		}
		if req.Code == "" || len(req.Code) > 32 || !protocol.ValidDeviceName(req.DeviceName) || req.Device != "" && !protocol.ValidID(req.Device) {
			t.Fatalf("accepted %+v", req)
		}
	})
}

// FuzzDecodeLogin: any body decodes to a request that passes every
// check, or is refused with a stable code.
func FuzzDecodeLogin(f *testing.F) {
	f.Add([]byte(`{"org":"acme","user":"dora","password":"pw"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := protocol.DecodeLogin(data)
		if err != nil {
			checkRefusal(t, err, authCodes)
			return
		}
		if !protocol.ValidOrgName(req.Org) || !protocol.ValidUserName(req.User) || req.Password == "" || len(req.Password) > protocol.MaxPasswordBytes {
			t.Fatalf("accepted %+v", req)
		}
	})
}
