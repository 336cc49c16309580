package protocol

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// TestOpJSONMatchesEncodingJSON holds Op.MarshalJSON to what encoding/json
// writes for its fields, for random ops with plain and odd ids, names and
// field values (spaced, escaped, HTML-ish, non-ASCII, invalid), alone and
// inside a push request.
func TestOpJSONMatchesEncodingJSON(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 5))
	texts := []string{"", "0190a6c4-1b2c-7d3e-8f40-000000000001", "work_order", "update", "dev-1", `q"uote`, "<b>", "é", "tab\t", "\x7f"}
	values := []string{`"in progress"`, `12`, `-3.5e2`, `true`, `null`, `[1,2]`, `[1, 2]`, `{"a":"b"}`, `{"a": "b"}`, `"<b>&"`,
		`"é"`, `"\u2028"`, "\"\u2028\"", `"a\"b"`, `"a\\"`, ` 1`, `1 `, `{`, ``, `"x" "y"`, `[{"id":"x","value":"y"}]`, "\"\xff\""}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	nums := []int64{0, 0, 1, 42, -1, 1 << 50}
	for range 20000 {
		o := Op{ID: pick(texts), Device: pick(texts), Seq: nums[rng.IntN(len(nums))], Prev: nums[rng.IntN(len(nums))],
			Type: pick(texts), Entity: pick(texts), Kind: pick(texts), Base: nums[rng.IntN(len(nums))],
			At: nums[rng.IntN(len(nums))], HLC: nums[rng.IntN(len(nums))]}
		switch rng.IntN(4) {
		case 0:
		case 1:
			o.Fields = map[string]json.RawMessage{}
		default:
			o.Fields = map[string]json.RawMessage{}
			for range 1 + rng.IntN(4) {
				o.Fields[pick([]string{"status", "title", "a_b", "Key", "é", "k<", ""})] = json.RawMessage(pick(values))
			}
		}
		want, wantErr := json.Marshal((*opFields)(&o))
		got, gotErr := json.Marshal(&o)
		if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
			t.Fatalf("json.Marshal of %#v:\n%s (%v)\nencoding/json:\n%s (%v)", o, got, gotErr, want, wantErr)
		}
		if wantErr != nil {
			continue
		}
		if direct, err := o.MarshalJSON(); err != nil || !bytes.Equal(direct, want) {
			t.Fatalf("MarshalJSON of %#v:\n%s (%v)\nencoding/json:\n%s", o, direct, err, want)
		}
		req := PushRequest{Device: "d", Ops: []Op{o, o}}
		type plainRequest struct {
			Device string     `json:"device"`
			Ops    []opFields `json:"ops"`
		}
		if appended, err := AppendPushRequest([]byte("x"), &req); err != nil || !bytes.Equal(appended[1:], want2(t, &req)) || appended[0] != 'x' {
			t.Fatalf("AppendPushRequest:\n%s (%v)\nencoding/json:\n%s", appended, err, want2(t, &req))
		}
		gotReq, err1 := json.Marshal(&req)
		wantReq, err2 := json.Marshal(&plainRequest{Device: "d", Ops: []opFields{opFields(o), opFields(o)}})
		if err1 != nil || err2 != nil || !bytes.Equal(gotReq, wantReq) {
			t.Fatalf("push request:\n%s (%v)\nencoding/json:\n%s (%v)", gotReq, err1, wantReq, err2)
		}
	}
}

// want2 is json.Marshal of req, which must succeed.
func want2(t *testing.T, req *PushRequest) []byte {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAppendPushRequestOddCases covers what random ops do not: no ops, a
// device id that needs escaping, and a field value that is not JSON.
func TestAppendPushRequestOddCases(t *testing.T) {
	for _, req := range []PushRequest{
		{Device: "d"},
		{Device: "d", Ops: []Op{}},
		{Device: "dé<\"\n", Ops: []Op{{ID: "x", Kind: "update"}}},
	} {
		got, err := AppendPushRequest(nil, &req)
		if want := want2(t, &req); err != nil || !bytes.Equal(got, want) {
			t.Errorf("AppendPushRequest(%+v) = %s (%v), encoding/json %s", req, got, err, want)
		}
	}
	bad := PushRequest{Device: "d", Ops: []Op{{ID: "x", Fields: map[string]json.RawMessage{"a": json.RawMessage("{")}}}}
	_, err := AppendPushRequest(nil, &bad)
	_, want := json.Marshal(&bad)
	if err == nil || want == nil || err.Error() != want.Error() {
		t.Errorf("AppendPushRequest of a bad field: %v, encoding/json: %v", err, want)
	}
}
