package protocol_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

const opID = "0190a6c4-1b2c-7d3e-8f40-0123456789ab"

// pushWith returns a push body with one op whose JSON members are the
// defaults overridden (or removed, with value "") by over.
func pushWith(over map[string]string) string {
	members := map[string]string{
		"id": `"` + opID + `"`, "seq": "2", "prev": "1", "type": `"work_order"`, "entity": `"wo-1"`,
		"kind": `"update"`, "base": "1", "fields": `{"status":"new"}`, "at": "1720000000000",
	}
	for k, v := range over {
		members[k] = v
	}
	var parts []string
	for _, k := range []string{"id", "device", "seq", "prev", "type", "entity", "kind", "base", "fields", "at", "hlc"} {
		if v := members[k]; v != "" {
			parts = append(parts, fmt.Sprintf("%q:%s", k, v))
		}
	}
	return `{"device":"dev-1","ops":[{` + strings.Join(parts, ",") + `}]}`
}

func TestDecodePushRefusals(t *testing.T) {
	manyFields := map[string]string{}
	var fs []string
	for i := range protocol.MaxFieldsPerOp + 1 {
		fs = append(fs, fmt.Sprintf(`"f%d":1`, i))
	}
	manyFields["fields"] = "{" + strings.Join(fs, ",") + "}"
	var ops []string
	for i := range protocol.MaxBatchOps + 1 {
		ops = append(ops, fmt.Sprintf(`{"id":"0190a6c4-1b2c-7d3e-8f40-%012x","seq":%d,"type":"t","entity":"e","kind":"delete","base":1,"at":0}`, i, i+1))
	}
	tooMany := `{"device":"d","ops":[` + strings.Join(ops, ",") + `]}`
	dup := `{"device":"d","ops":[` +
		`{"id":"` + opID + `","seq":1,"type":"t","entity":"e","kind":"create","at":0},` +
		`{"id":"` + opID + `","seq":2,"type":"t","entity":"e","kind":"delete","base":1,"at":0}]}`
	longName := "x" + strings.Repeat("é", 50)
	cases := []struct {
		name string
		body string
		code fieldsync.Code
	}{
		{"malformed", `{"device":`, fieldsync.EInvalidJSON},
		{"not an object", `[1,2]`, fieldsync.EInvalidJSON},
		{"trailing data", pushWith(nil) + ` {}`, fieldsync.EInvalidJSON},
		{"unknown member", `{"device":"d","ops":[],"x":1}`, fieldsync.EInvalidJSON},
		{"unknown op member", pushWith(map[string]string{"at": `0,"colour":"red"`}), fieldsync.EInvalidJSON},
		{"wrong type seq", pushWith(map[string]string{"seq": `"2"`}), fieldsync.EInvalidJSON},
		{"fractional seq", pushWith(map[string]string{"seq": `2.5`}), fieldsync.EInvalidJSON},
		{"missing device", `{"ops":[]}`, fieldsync.EInvalidRequest},
		{"bad device", `{"device":"a b","ops":[]}`, fieldsync.EInvalidRequest},
		{"empty batch", `{"device":"d","ops":[]}`, fieldsync.EInvalidRequest},
		{"null batch", `{"device":"d","ops":null}`, fieldsync.EInvalidRequest},
		{"too many ops", tooMany, fieldsync.ETooLarge},
		{"duplicate op id", dup, fieldsync.EInvalidRequest},
		{"bad op id", pushWith(map[string]string{"id": `"not-a-uuid"`}), fieldsync.EInvalidRequest},
		{"uppercase op id", pushWith(map[string]string{"id": `"` + strings.ToUpper(opID) + `"`}), fieldsync.EInvalidRequest},
		{"foreign device", pushWith(map[string]string{"device": `"other"`}), fieldsync.EInvalidRequest},
		{"seq 0", pushWith(map[string]string{"seq": "0", "prev": ""}), fieldsync.EInvalidRequest},
		{"prev equal seq", pushWith(map[string]string{"prev": "2"}), fieldsync.EInvalidRequest},
		{"prev above seq", pushWith(map[string]string{"prev": "3"}), fieldsync.EInvalidRequest},
		{"negative prev", pushWith(map[string]string{"prev": "-1"}), fieldsync.EInvalidRequest},
		{"bad type", pushWith(map[string]string{"type": `"Work Order"`}), fieldsync.EInvalidRequest},
		{"bad entity", pushWith(map[string]string{"entity": `"../x"`}), fieldsync.EInvalidRequest},
		{"unknown kind", pushWith(map[string]string{"kind": `"merge"`}), fieldsync.EInvalidRequest},
		{"negative base", pushWith(map[string]string{"base": "-1"}), fieldsync.EInvalidRequest},
		{"create with base", pushWith(map[string]string{"kind": `"create"`}), fieldsync.EInvalidRequest},
		{"too many fields", pushWith(manyFields), fieldsync.ETooLarge},
		{"bad field name", pushWith(map[string]string{"fields": `{"Status":"x"}`}), fieldsync.EInvalidRequest},
		{"long non-ASCII field name", pushWith(map[string]string{"fields": `{"` + longName + `":1}`}), fieldsync.EInvalidRequest},
		{"field too large", pushWith(map[string]string{"fields": `{"description":"` + strings.Repeat("x", protocol.MaxFieldBytes) + `"}`}), fieldsync.ETooLarge},
		{"negative time", pushWith(map[string]string{"at": "-1"}), fieldsync.EInvalidRequest},
		{"negative clock", pushWith(map[string]string{"hlc": "-1"}), fieldsync.EInvalidRequest},
		{"clock not a number", pushWith(map[string]string{"hlc": `"1"`}), fieldsync.EInvalidJSON},
		{"clock too large", pushWith(map[string]string{"hlc": "9223372036854775808"}), fieldsync.EInvalidJSON},
		{"settle of two fields", pushWith(map[string]string{"kind": `"settle"`, "fields": `{"status":{"conflict":"c","choice":"keep_server"},"title":{"conflict":"c","choice":"keep_server"}}`}), fieldsync.EInvalidRequest},
		{"settle of no field", pushWith(map[string]string{"kind": `"settle"`, "fields": ""}), fieldsync.EInvalidRequest},
		{"settle with empty fields", pushWith(map[string]string{"kind": `"settle"`, "fields": "{}"}), fieldsync.EInvalidRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := protocol.DecodePush([]byte(c.body))
			if err == nil {
				t.Fatalf("accepted: %+v", req)
			}
			if got := fieldsync.ErrorCode(err); got != c.code {
				t.Fatalf("code %q, want %q (%v)", got, c.code, err)
			}
			checkRefusal(t, err, requestCodes)
			if strings.ContainsRune(err.Error(), utf8.RuneError) {
				t.Fatalf("message has a broken character: %q", err.Error())
			}
		})
	}
}

func TestDecodePushAccepts(t *testing.T) {
	req, err := protocol.DecodePush([]byte(validPush))
	if err != nil {
		t.Fatal(err)
	}
	if req.Device != "dev-1" || len(req.Ops) != 4 {
		t.Fatalf("got %+v", req)
	}
	op := protocol.ToOp(&req.Ops[1], req.Device)
	want := fieldsync.Op{
		ID: "0190a6c4-1b2c-7d3e-8f40-0123456789ac", DeviceID: "dev-1", Seq: 2, PrevSeq: 1,
		EntityType: "work_order", EntityID: "wo-1", Kind: fieldsync.KindUpdate, BaseVersion: 1,
		LocalTime: time.UnixMilli(1720000001000).UTC(),
	}
	fields := op.Fields
	op.Fields = nil
	if !reflect.DeepEqual(op, want) || string(fields["status"]) != `"in progress"` {
		t.Fatalf("ToOp = %+v %s, want %+v", op, fields, want)
	}
}

// TestDecodePushClockAndSettle: an op's clock reading and a settle op
// come through the decoder and the conversion unchanged.
func TestDecodePushClockAndSettle(t *testing.T) {
	body := pushWith(map[string]string{
		"kind": `"settle"`, "hlc": "112721736499200005",
		"fields": `{"status":{"conflict":"0190a6c4-1b2c-7d3e-8f40-0123456789aa","choice":"new_value","value":"waiting for parts","note":"completed, but parts required"}}`,
	})
	req, err := protocol.DecodePush([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	op := protocol.ToOp(&req.Ops[0], req.Device)
	if op.Kind != fieldsync.KindSettle || op.HLC != 112721736499200005 || len(op.Fields) != 1 {
		t.Fatalf("op %+v", op)
	}
	var st fieldsync.Settle
	if err := json.Unmarshal(op.Fields["status"], &st); err != nil || st.Choice != fieldsync.ChoiceNewValue || string(st.Value) != `"waiting for parts"` || st.Note != "completed, but parts required" {
		t.Fatalf("settlement %+v: %v", st, err)
	}
	back := protocol.FromOp(&op)
	if back.HLC != req.Ops[0].HLC || back.Kind != "settle" {
		t.Fatalf("FromOp %+v", back)
	}
}

func TestDecodeSettle(t *testing.T) {
	const conflict = "0190a6c4-1b2c-7d3e-8f40-0123456789aa"
	t.Run("accepts", func(t *testing.T) {
		for _, c := range []struct {
			body string
			want protocol.SettleRequest
		}{
			{`{"field":"status","conflict":"` + conflict + `","choice":"keep_server"}`,
				protocol.SettleRequest{Field: "status", Conflict: conflict, Choice: "keep_server"}},
			{`{"field":"status","conflict":"` + conflict + `","choice":"take_device","op":"` + opID + `"}`,
				protocol.SettleRequest{Field: "status", Conflict: conflict, Choice: "take_device", Op: opID}},
			{`{"field":"status","conflict":"` + conflict + `","choice":"new_value","value":"waiting for parts","note":"completed, but parts required"}`,
				protocol.SettleRequest{Field: "status", Conflict: conflict, Choice: "new_value", Value: json.RawMessage(`"waiting for parts"`), Note: "completed, but parts required"}},
			{`{"field":"status","conflict":"` + conflict + `","choice":"new_value","value":null}`,
				protocol.SettleRequest{Field: "status", Conflict: conflict, Choice: "new_value", Value: json.RawMessage(`null`)}},
			// The choice and the value are the schema's to judge.
			{`{"field":"status","conflict":"x","choice":"mine","value":{"a":1}}`,
				protocol.SettleRequest{Field: "status", Conflict: "x", Choice: "mine", Value: json.RawMessage(`{"a":1}`)}},
		} {
			got, err := protocol.DecodeSettle([]byte(c.body))
			if err != nil {
				t.Fatalf("%s: %v", c.body, err)
			}
			if !reflect.DeepEqual(*got, c.want) {
				t.Errorf("%s:\ngot  %+v\nwant %+v", c.body, *got, c.want)
			}
		}
	})
	for _, c := range []struct {
		name string
		body string
		code fieldsync.Code
	}{
		{"empty", ``, fieldsync.EInvalidJSON},
		{"malformed", `{"field":"status",`, fieldsync.EInvalidJSON},
		{"not an object", `["status"]`, fieldsync.EInvalidJSON},
		{"unknown member", `{"field":"status","conflict":"c","choice":"keep_server","by":"me"}`, fieldsync.EInvalidJSON},
		{"two fields", `{"field":["status","title"],"conflict":"c","choice":"keep_server"}`, fieldsync.EInvalidJSON},
		{"trailing data", `{"field":"status","conflict":"c","choice":"keep_server"} {}`, fieldsync.EInvalidJSON},
		{"note not text", `{"field":"status","conflict":"c","choice":"keep_server","note":1}`, fieldsync.EInvalidJSON},
		{"no field", `{"conflict":"c","choice":"keep_server"}`, fieldsync.EInvalidRequest},
		{"bad field name", `{"field":"Status","conflict":"c","choice":"keep_server"}`, fieldsync.EInvalidRequest},
		{"no conflict", `{"field":"status","choice":"keep_server"}`, fieldsync.EInvalidRequest},
		{"empty conflict", `{"field":"status","conflict":"","choice":"keep_server"}`, fieldsync.EInvalidRequest},
		{"value too large", `{"field":"status","conflict":"c","choice":"new_value","value":"` + strings.Repeat("v", protocol.MaxFieldBytes) + `"}`, fieldsync.ETooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := protocol.DecodeSettle([]byte(c.body))
			if err == nil {
				t.Fatalf("accepted %+v", got)
			}
			if code := fieldsync.ErrorCode(err); code != c.code {
				t.Fatalf("code %q, want %q (%v)", code, c.code, err)
			}
			checkRefusal(t, err, requestCodes)
		})
	}
}

func TestDecodeEditRefusals(t *testing.T) {
	cases := []struct {
		name string
		body string
		code fieldsync.Code
	}{
		{"malformed", `{"base":1,`, fieldsync.EInvalidJSON},
		{"unknown member", `{"base":1,"fields":{"title":"x"},"why":"x"}`, fieldsync.EInvalidJSON},
		{"wrong type", `{"base":"1","fields":{"title":"x"}}`, fieldsync.EInvalidJSON},
		{"negative base", `{"base":-1,"fields":{"title":"x"}}`, fieldsync.EInvalidRequest},
		{"no fields", `{"base":1,"fields":{}}`, fieldsync.EInvalidRequest},
		{"bad name", `{"base":1,"fields":{"a-b":1}}`, fieldsync.EInvalidRequest},
		{"too large", `{"base":1,"fields":{"a":"` + strings.Repeat("y", protocol.MaxFieldBytes) + `"}}`, fieldsync.ETooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := protocol.DecodeEdit([]byte(c.body))
			if got := fieldsync.ErrorCode(err); got != c.code {
				t.Fatalf("code %q, want %q (%v)", got, c.code, err)
			}
		})
	}
}

func TestCursor(t *testing.T) {
	for _, c := range []protocol.Cursor{
		{Epoch: "0123456789abcdef", Seq: 0},
		{Epoch: "0123456789abcdef", Seq: 1, Tag: "89abcdef"},
		{Epoch: "abcdef01", Seq: 1 << 62, Tag: ""},
	} {
		s := c.String()
		got, err := protocol.ParseCursor(s)
		if err != nil || got != c {
			t.Errorf("ParseCursor(%q) = %+v, %v; want %+v", s, got, err, c)
		}
	}
	if s := (protocol.Cursor{}).String(); s != "" {
		t.Errorf("zero cursor encodes as %q", s)
	}
	if c, err := protocol.ParseCursor(""); err != nil || c != (protocol.Cursor{}) {
		t.Errorf("empty cursor: %+v, %v", c, err)
	}
	for _, s := range []string{"x", "1.abc.1.", "1.0123456789abcdef.01.", "1.0123456789abcdef.1.XYZ", "0.0123456789abcdef.1.", "1.0123456789abcdef..", strings.Repeat("1", 200)} {
		if _, err := protocol.ParseCursor(s); fieldsync.ErrorCode(err) != fieldsync.EInvalidRequest {
			t.Errorf("ParseCursor(%q) = %v, want invalid_request", s, err)
		}
	}
}

func TestReadBody(t *testing.T) {
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	bomb := func() []byte {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		chunk := bytes.Repeat([]byte(" "), 1<<20)
		for range 64 {
			zw.Write(chunk)
		}
		zw.Close()
		return b.Bytes()
	}()
	if len(bomb) > 1<<20 {
		t.Fatalf("the bomb is %d bytes compressed", len(bomb))
	}
	good := gz("{}")
	cases := []struct {
		name     string
		body     []byte
		encoding string
		max      int64
		code     fieldsync.Code
	}{
		{"plain", []byte("{}"), "", 2, ""},
		{"identity", []byte("{}"), "identity", 2, ""},
		{"gzip", good, "gzip", 2, ""},
		{"plain over", []byte("{} "), "", 2, fieldsync.ETooLarge},
		{"gzip over", gz("{} "), "gzip", 2, fieldsync.ETooLarge},
		{"gzip bomb", bomb, "gzip", protocol.MaxBodyBytes, fieldsync.ETooLarge},
		{"not gzip", []byte("{}"), "gzip", 100, fieldsync.EInvalidJSON},
		{"gzip cut", good[:len(good)-4], "gzip", 100, fieldsync.EInvalidJSON},
		{"gzip empty", nil, "gzip", 100, fieldsync.EInvalidJSON},
		{"invalid UTF-8", []byte("{\"a\":\"\xc3\x28\"}"), "", 100, fieldsync.EInvalidJSON},
		{"invalid UTF-8 gzip", gz("\xff"), "gzip", 100, fieldsync.EInvalidJSON},
		{"brotli", []byte("{}"), "br", 100, fieldsync.EUnsupportedMedia},
		{"deflate", []byte("{}"), "deflate", 100, fieldsync.EUnsupportedMedia},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := protocol.ReadBody(bytes.NewReader(c.body), c.encoding, c.max)
			if code := fieldsync.ErrorCode(err); code != c.code {
				t.Fatalf("code %q, want %q (%v)", code, c.code, err)
			}
			if c.code == "" && string(got) != "{}" {
				t.Fatalf("body %q", got)
			}
		})
	}
}

func TestDecodeErrorBody(t *testing.T) {
	e := protocol.DecodeErrorBody(409, []byte(`{"error":{"code":"cursor_invalid","message":"start again","retryable":false}}`))
	if e.Code != fieldsync.ECursorInvalid || e.Message != "start again" {
		t.Errorf("got %+v", e)
	}
	for status, code := range map[int]fieldsync.Code{
		400: fieldsync.EInvalidRequest, 404: fieldsync.EInvalidRequest, 429: fieldsync.EUnavailable,
		500: fieldsync.EInternal, 502: fieldsync.EUnavailable, 503: fieldsync.EUnavailable, 504: fieldsync.EUnavailable,
	} {
		for _, body := range []string{"", "<html>bad gateway</html>", `{"error":{}}`, `{"error":{"code":""}}`} {
			e := protocol.DecodeErrorBody(status, []byte(body))
			if e.Code != code || !strings.Contains(e.Message, fmt.Sprint(status)) {
				t.Errorf("status %d body %q: got %+v, want code %s", status, body, e, code)
			}
		}
	}
}
