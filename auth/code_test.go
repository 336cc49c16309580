package auth

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func TestEnrolmentCodeShape(t *testing.T) {
	re := regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$`)
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		c := NewEnrolmentCode()
		if !re.MatchString(c) {
			t.Fatalf("code %q is not two groups of five Crockford characters", c)
		}
		canon, ok := NormalizeEnrolmentCode(c)
		if !ok || canon != strings.ReplaceAll(c, "-", "") {
			t.Fatalf("code %q normalises to %q, %v", c, canon, ok)
		}
		if seen[c] {
			t.Fatalf("code %q drawn twice in 200", c)
		}
		seen[c] = true
	}
}

func TestNormalizeEnrolmentCode(t *testing.T) {
	good := map[string]string{
		"ABCDE-FGHJK":   "ABCDEFGHJK",
		"abcde fghjk":   "ABCDEFGHJK",
		" ab-cd-efghjk": "ABCDEFGHJK",
		"OOIIL-01234":   "00111" + "01234",
	}
	for in, want := range good {
		if got, ok := NormalizeEnrolmentCode(in); !ok || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "ABCDE", "ABCDE-FGHJKM", "ABCDE-FGHJU", "ABCDE_FGHJK", "ÀBCDE-FGHJK", strings.Repeat(" ", 41) + "ABCDEFGHJK"} {
		if got, ok := NormalizeEnrolmentCode(in); ok {
			t.Errorf("%q is accepted as %q", in, got)
		}
	}
}

func TestHashEnrolmentCode(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	a := HashEnrolmentCode("ABCDEFGHJK", key, cheap)
	if !bytes.Equal(a, HashEnrolmentCode("ABCDEFGHJK", key, cheap)) {
		t.Fatal("the code hash is not deterministic: codes cannot be looked up")
	}
	if bytes.Equal(a, HashEnrolmentCode("ABCDEFGHJM", key, cheap)) || bytes.Equal(a, HashEnrolmentCode("ABCDEFGHJK", key[1:], cheap)) {
		t.Fatal("the code hash ignores the code or the key")
	}
}

// FuzzNormalizeEnrolmentCode checks that whatever is typed either gives
// ten characters of the alphabet or is refused.
func FuzzNormalizeEnrolmentCode(f *testing.F) {
	f.Add("ABCDE-FGHJK")
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := NormalizeEnrolmentCode(s)
		if !ok {
			return
		}
		if len(got) != codeLen || strings.Trim(got, codeAlphabet) != "" {
			t.Fatalf("%q normalises to %q", s, got)
		}
		if again, ok := NormalizeEnrolmentCode(got); !ok || again != got {
			t.Fatalf("normal form %q is not stable: %q", got, again)
		}
	})
}
