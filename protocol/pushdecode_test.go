package protocol

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync"
)

// decodePushStd is DecodePush as it is without the fast path: encoding/json
// decides alone.
func decodePushStd(data []byte) (*PushRequest, error) {
	req := &PushRequest{}
	if err := decodeStrict(data, req); err != nil {
		return nil, err
	}
	return checkPush(req)
}

// FuzzDecodePushFast holds the hand-written push decoder to encoding/json:
// whatever it decodes, encoding/json decodes to the same request, and
// DecodePush accepts, refuses and explains every body exactly as the
// encoding/json path does (same code, same message). The decoded request
// keeps no reference to the body.
func FuzzDecodePushFast(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "golden", "push_request.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add([]byte(`{"device":"d","ops":[{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ab","seq":1,"type":"t","entity":"e","kind":"create","at":0}]}`))
	f.Add([]byte(`{"ops":[{"kind":"update","seq":2,"prev":1,"base":1,"at":5,"hlc":9,"entity":"e","type":"t","id":"0190a6c4-1b2c-7d3e-8f40-0123456789ab","fields":{"a":1.5e3,"b":[true,false,null,{"c":"\u00e9\n"}],"c":-0}}],"device":"d"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		std, stdErr := decodePushStd(data)
		body := bytes.Clone(data)
		if fast, ok := decodePushFast(body); ok {
			var want PushRequest
			if err := decodeStrict(data, &want); err != nil {
				t.Fatalf("fast path decoded what encoding/json refuses (%v):\n%s", err, data)
			}
			for i := range body {
				body[i] = 'x' // the result must not change with the body
			}
			if !reflect.DeepEqual(fast, &want) {
				t.Fatalf("fast path decoded\n%+v\nencoding/json\n%+v\nfrom %s", fast, &want, data)
			}
		}
		got, gotErr := DecodePush(data)
		if (gotErr == nil) != (stdErr == nil) {
			t.Fatalf("DecodePush error %v, encoding/json path %v, for %s", gotErr, stdErr, data)
		}
		if stdErr != nil {
			if fieldsync.ErrorCode(gotErr) != fieldsync.ErrorCode(stdErr) || gotErr.Error() != stdErr.Error() {
				t.Fatalf("DecodePush refused with %q (%s), encoding/json path with %q (%s)",
					gotErr, fieldsync.ErrorCode(gotErr), stdErr, fieldsync.ErrorCode(stdErr))
			}
			return
		}
		if !reflect.DeepEqual(got, std) {
			t.Fatalf("DecodePush gave\n%+v\nencoding/json path\n%+v", got, std)
		}
	})
}

// TestDecodePushFastTakesUsualBodies checks that the bodies devices send
// do take the fast path (a fast path that always declined would pass the
// fuzz test and help nobody), and that odd ones are left to encoding/json.
func TestDecodePushFastTakesUsualBodies(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "golden", "push_request.json"))
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, golden); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"golden": string(golden), "compact": compact.String()} {
		req, ok := decodePushFast([]byte(body))
		if !ok || len(req.Ops) != 5 {
			t.Errorf("%s body: fast path declined it", name)
		}
	}
	const op = `{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ab","seq":1,"type":"t","entity":"e","kind":"create","at":0}`
	for _, body := range []string{
		`{"device":"d","ops":[` + op + `],"device":"e"}`,                          // a key twice
		`{"device":"d","ops":[` + strings.Replace(op, `"seq"`, `"Seq"`, 1) + `]}`, // encoding/json folds case
		`{"device":"d\u0041","ops":[` + op + `]}`,                                 // an escape in an id
		`{"device":"d","ops":null}`,
		`{"device":"d","ops":[` + strings.Replace(op, `"seq":1`, `"seq":1.0`, 1) + `]}`,
		`{"device":"d","ops":[` + strings.Replace(op, `"seq":1`, `"seq":12345678901234567890`, 1) + `]}`,
		`{"device":"d","ops":[` + op + `]} x`,
	} {
		if _, ok := decodePushFast([]byte(body)); ok {
			t.Errorf("fast path took %s", body)
		}
	}
}

// FuzzDecodeFields holds DecodeFields to json.Unmarshal into a
// map[string]json.RawMessage: same map, same error, nothing shared with
// the input.
func FuzzDecodeFields(f *testing.F) {
	for _, s := range []string{`{"status":"in progress"}`, `{}`, ` { "a" : [1, 2] , "b":{"c":null} } `, `{"a":1,"a":2}`,
		`{"A\u0041":1}`, `null`, `{"a":1} x`, `{"a":}`, `[]`, `{"a":"\u00e9"}`, "{\"a\":\"\xff\"}", `{"a":01}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want map[string]json.RawMessage
		wantErr := json.Unmarshal(data, &want)
		in := bytes.Clone(data)
		got, gotErr := DecodeFields(in)
		for i := range in {
			in[i] = 'x'
		}
		if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
			t.Fatalf("DecodeFields(%q) error %v, json.Unmarshal %v", data, gotErr, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("DecodeFields(%q) = %q, json.Unmarshal %q", data, got, want)
		}
	})
}
