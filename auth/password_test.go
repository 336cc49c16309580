package auth

import (
	"regexp"
	"strings"
	"testing"
)

func TestPasswordRoundTrip(t *testing.T) {
	h, err := HashPassword("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := VerifyPassword("correct horse battery", h); err != nil || !ok {
		t.Fatalf("verify the right password: %v %v", ok, err)
	}
	if ok, err := VerifyPassword("correct horse batterx", h); err != nil || ok {
		t.Fatalf("verify a wrong password: %v %v", ok, err)
	}
	h2, _ := HashPassword("correct horse battery", cheap)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	if NeedsRehash(h, cheap) {
		t.Fatal("a fresh hash needs a rehash")
	}
	if !NeedsRehash(h, DefaultPasswordParams) {
		t.Fatal("a hash with other parameters does not need a rehash")
	}
}

// TestDefaultPasswordEncoding checks the documented form and parameters.
func TestDefaultPasswordEncoding(t *testing.T) {
	h, err := HashPassword("a password", DefaultPasswordParams)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\$argon2id\$v=19\$m=65536,t=2,p=2\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(h) {
		t.Fatalf("hash %q is not in the documented form", h)
	}
	if ok, err := VerifyPassword("a password", h); !ok || err != nil {
		t.Fatalf("verify: %v %v", ok, err)
	}
}

func TestPasswordHashRejectsDamage(t *testing.T) {
	good, _ := HashPassword("pw", cheap)
	parts := strings.Split(good, "$")
	bad := []string{
		"",
		"plain",
		strings.Replace(good, "argon2id", "argon2i", 1),
		strings.Replace(good, "v=19", "v=16", 1),
		strings.Replace(good, "m=64,", "m=064,", 1),
		strings.Replace(good, "m=64,", "m=99999999999,", 1),
		strings.Replace(good, "t=1,", "t=0,", 1),
		strings.Replace(good, "p=1", "p=300", 1),
		strings.Join(parts[:5], "$"),
		good + "$",
		strings.Replace(good, parts[4], parts[4]+"=", 1),
		strings.Replace(good, parts[4], "AAAA", 1), // 3-byte salt
		strings.Replace(good, parts[5], "AAAA", 1), // 3-byte key
	}
	for _, b := range bad {
		if ok, err := VerifyPassword("pw", b); err == nil || ok {
			t.Errorf("hash %q: verify = %v, %v; want an error", b, ok, err)
		}
	}
}

func TestCheckPassword(t *testing.T) {
	if err := CheckPassword("short"); err == nil {
		t.Fatal("a 5-character password is accepted")
	}
	if err := CheckPassword(strings.Repeat("x", MaxPasswordLen+1)); err == nil {
		t.Fatal("an overlong password is accepted")
	}
	if err := CheckPassword("long enough here"); err != nil {
		t.Fatal(err)
	}
}
