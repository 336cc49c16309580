package auth

import (
	"net/http"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync"
)

func TestNewToken(t *testing.T) {
	d, u := NewToken(TokenDevice), NewToken(TokenUser)
	if !strings.HasPrefix(d, "fsd_") || !strings.HasPrefix(u, "fsu_") || len(d) != 47 || len(u) != 47 {
		t.Fatalf("tokens %q %q: want fsd_/fsu_ and 47 characters", d, u)
	}
	if k, err := ParseToken(d); err != nil || k != TokenDevice {
		t.Fatalf("parse device token: %v %v", k, err)
	}
	if k, err := ParseToken(u); err != nil || k != TokenUser {
		t.Fatalf("parse user token: %v %v", k, err)
	}
	if NewToken(TokenDevice) == d {
		t.Fatal("two tokens are equal")
	}
	if len(HashToken(d)) != 32 || string(HashToken(d)) == string(HashToken(u)) {
		t.Fatal("token hashes are not 32 distinct bytes")
	}
}

func TestParseAuthorization(t *testing.T) {
	tok := NewToken(TokenDevice)
	cases := []struct {
		name   string
		values []string
		code   fieldsync.Code
	}{
		{"good", []string{"Bearer " + tok}, ""},
		{"scheme in any case", []string{"bearer " + tok}, ""},
		{"missing", nil, fieldsync.ETokenMissing},
		{"two headers", []string{"Bearer " + tok, "Bearer " + tok}, fieldsync.ETokenInvalid},
		{"basic", []string{"Basic " + tok}, fieldsync.ETokenInvalid},
		{"no scheme", []string{tok}, fieldsync.ETokenInvalid},
		{"two spaces", []string{"Bearer  " + tok}, fieldsync.ETokenInvalid},
		{"trailing space", []string{"Bearer " + tok + " "}, fieldsync.ETokenInvalid},
		{"empty", []string{""}, fieldsync.ETokenInvalid},
		{"other prefix", []string{"Bearer fsx_" + tok[4:]}, fieldsync.ETokenInvalid},
		{"short", []string{"Bearer " + tok[:46]}, fieldsync.ETokenInvalid},
		{"padding", []string{"Bearer " + tok[:46] + "="}, fieldsync.ETokenInvalid},
		{"std alphabet", []string{"Bearer " + tok[:46] + "+"}, fieldsync.ETokenInvalid},
		{"not canonical", []string{"Bearer " + tok[:46] + "B"}, fieldsync.ETokenInvalid},
		{"non-ASCII", []string{"Bearer " + tok[:45] + "é"}, fieldsync.ETokenInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range c.values {
				h.Add("Authorization", v)
			}
			got, err := ParseAuthorization(h)
			if c.code == "" {
				if err != nil || got != tok {
					t.Fatalf("got %q, %v; want the token", got, err)
				}
				return
			}
			wantCode(t, err, c.code)
		})
	}
}

// FuzzParseAuthorization checks that any header value is either a token
// of the right shape or refused with a token code.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("Bearer " + NewToken(TokenDevice))
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Authorization": {v}}
		tok, err := ParseAuthorization(h)
		if err != nil {
			if fieldsync.ErrorCode(err) != fieldsync.ETokenInvalid {
				t.Fatalf("code %s: want token_invalid", fieldsync.ErrorCode(err))
			}
			return
		}
		if len(tok) != tokenLen || !strings.HasSuffix(v, tok) {
			t.Fatalf("accepted %q from %q", tok, v)
		}
		if _, err := ParseToken(tok); err != nil {
			t.Fatalf("accepted a token ParseToken refuses: %v", err)
		}
	})
}
