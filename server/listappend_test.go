package server

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// TestAppendToListMatchesEncodingJSON holds appendToList to what decoding
// the list, appending and encoding it with encoding/json gives, for lists
// that are compact, spaced, escaped, HTML-ish, not lists at all, or
// absent.
func TestAppendToListMatchesEncodingJSON(t *testing.T) {
	seed := rand.Uint64()
	if s := os.Getenv("FIELDSYNC_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FIELDSYNC_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (replay with FIELDSYNC_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	elems := []string{`"a"`, `1`, `{"id":"x","value":"y"}`, `"<b>"`, `"\u2028"`, "\"\u2028\"", `"é"`, `[1, 2]`, `{ "k" : 1 }`, `"a\"b"`, `null`, "\"\xff\""}
	reference := func(cur json.RawMessage, has bool, item json.RawMessage) json.RawMessage {
		var items []json.RawMessage
		if has {
			_ = json.Unmarshal(cur, &items)
		}
		out, _ := json.Marshal(append(items, item))
		return out
	}
	for range 20000 {
		var list []byte
		has := rng.IntN(8) > 0
		switch rng.IntN(10) {
		case 0:
			list = []byte(elems[rng.IntN(len(elems))]) // not a list
		case 1:
			list = []byte(`[1,`) // broken
		default:
			parts := make([][]byte, rng.IntN(4))
			for i := range parts {
				parts[i] = []byte(elems[rng.IntN(len(elems))])
			}
			sep := []byte(",")
			if rng.IntN(5) == 0 {
				sep = []byte(", ")
			}
			list = append(append([]byte("["), bytes.Join(parts, sep)...), ']')
		}
		item, _ := json.Marshal(map[string]json.RawMessage{"id": json.RawMessage(`"op"`), "value": json.RawMessage(elems[rng.IntN(len(elems))])})
		if rng.IntN(10) == 0 {
			item = json.RawMessage(elems[rng.IntN(len(elems))]) // an odd item
		}
		got := appendToList(list, has, item)
		want := reference(list, has, item)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendToList(%q, %v, %q) = %q, encoding/json gives %q", list, has, item, got, want)
		}
	}
}

// TestJSONEqualPlainStrings checks the shortcut for plain strings against
// decoding.
func TestJSONEqualPlainStrings(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{`"a"`, `"a"`, true}, {`"a"`, `"b"`, false}, {`"a"`, `"\u0061"`, true}, {`"é"`, "\"\\u00e9\"", true},
		{`"1"`, `1`, false}, {`1`, `1.0`, true}, {`"a"`, ` "a"`, true}, {"\"\xff\"", "\"\xfe\"", true},
	} {
		if got := jsonEqual(json.RawMessage(c.a), json.RawMessage(c.b)); got != c.want {
			t.Errorf("jsonEqual(%s, %s) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
