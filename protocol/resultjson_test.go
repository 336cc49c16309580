package protocol

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// TestResultJSONMatchesEncodingJSON holds Result.MarshalJSON to what
// encoding/json writes for its fields, for random results with plain,
// escaped, HTML-ish, non-ASCII and empty strings, with and without
// conflicts, overridden values and recorded results, alone and inside a
// push answer.
func TestResultJSONMatchesEncodingJSON(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 4))
	texts := []string{"", "applied", "0190a6c4-1b2c-7d3e-8f40-000000000001", "WO-1042", "status: needs review",
		`say "hi"`, `a\b`, "<b>&</b>", "é", "tab\there", "\u2028", "\x7f", "\xff", "line\nbreak"}
	pick := func() string { return texts[rng.IntN(len(texts))] }
	var random func(depth int) Result
	random = func(depth int) Result {
		r := Result{Op: pick(), Status: pick(), Number: pick(), Code: pick(), Message: pick()}
		r.Version = []int64{0, 0, 1, 7, -1, 1 << 40, -1 << 62}[rng.IntN(7)]
		if rng.IntN(8) == 0 {
			r.Conflicts = []Conflict{{Field: pick(), ServerValue: json.RawMessage(`"x"`), DeviceValue: json.RawMessage(`[1, 2]`), ServerVersion: 3, ServerBy: pick()}}
		}
		if rng.IntN(8) == 0 {
			r.Overridden = []Overridden{{Field: pick(), Value: json.RawMessage(`"<v>"`), By: pick(), Policy: pick()}}
		}
		if depth == 0 && rng.IntN(8) == 0 {
			rec := random(1)
			r.Recorded = &rec
		}
		return r
	}
	for range 20000 {
		r := random(0)
		want, err := json.Marshal((*resultFields)(&r))
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.MarshalJSON()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("MarshalJSON of %#v:\n%s (%v)\nencoding/json:\n%s", r, got, err, want)
		}
		if got, _ := json.Marshal(&r); !bytes.Equal(got, want) {
			t.Fatalf("json.Marshal of %#v:\n%s\nencoding/json:\n%s", r, got, want)
		}
		resp := PushResponse{Results: []Result{r, random(0)}, HLC: rng.Int64N(3)}
		type plainResponse struct {
			Results []resultFields `json:"results"`
			HLC     int64          `json:"hlc,omitempty"`
		}
		plain := plainResponse{HLC: resp.HLC}
		for _, x := range resp.Results {
			plain.Results = append(plain.Results, resultFields(x))
		}
		gotResp, err1 := json.Marshal(&resp)
		wantResp, err2 := json.Marshal(&plain)
		if err1 != nil || err2 != nil || !bytes.Equal(gotResp, wantResp) {
			t.Fatalf("push answer:\n%s (%v)\nencoding/json:\n%s (%v)", gotResp, err1, wantResp, err2)
		}
	}
}

// TestResultUnmarshalMatchesEncodingJSON holds Result.UnmarshalJSON to
// encoding/json decoding into the same fields, from the same starting
// value: for results as encoded, and for texts that are spaced, escaped,
// case-folded, repeated, null, unknown, mistyped or broken.
func TestResultUnmarshalMatchesEncodingJSON(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 6))
	members := []string{`"op":"0190a6c4-1b2c-7d3e-8f40-000000000001"`, `"status":"applied"`, `"version":12`, `"version":-1`,
		`"version":1.5`, `"version":"1"`, `"version":null`, `"number":"WO-1"`, `"code":"field_conflict"`, `"message":"a \"b\""`,
		`"message":"é"`, `"message":null`, `"Status":"rejected"`, `"OP":"x"`, `"extra":[1,2]`, `"recorded":{"op":"y","status":"applied"}`,
		`"conflicts":[{"field":"s","server_value":1,"device_value":2,"server_version":3}]`, `"overridden":[]`, ` "op" : "spaced" `}
	for range 20000 {
		parts := make([]string, rng.IntN(5))
		for i := range parts {
			parts[i] = members[rng.IntN(len(members))]
		}
		text := "{" + strings.Join(parts, ",") + "}"
		switch rng.IntN(12) {
		case 0:
			text = "null"
		case 1:
			text = text[:len(text)/2]
		case 2:
			text = " " + text + " "
		case 3:
			text = "[]"
		}
		base := Result{Op: "old", Version: 9, Message: "kept unless replaced"}
		got, want := base, resultFields(base)
		gotErr := json.Unmarshal([]byte(text), &got)
		wantErr := json.Unmarshal([]byte(text), &want)
		if (gotErr == nil) != (wantErr == nil) || !reflect.DeepEqual(got, Result(want)) {
			t.Fatalf("decoding %s:\n%#v (%v)\nencoding/json:\n%#v (%v)", text, got, gotErr, Result(want), wantErr)
		}
	}
}
