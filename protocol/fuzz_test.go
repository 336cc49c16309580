package protocol_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

// requestCodes are the codes a request decoder may answer with.
var requestCodes = map[fieldsync.Code]bool{
	fieldsync.EInvalidJSON:    true,
	fieldsync.EInvalidRequest: true,
	fieldsync.ETooLarge:       true,
}

// checkRefusal fails unless err is a *fieldsync.Error with one of codes
// and a valid UTF-8 message.
func checkRefusal(t *testing.T, err error, codes map[fieldsync.Code]bool) {
	t.Helper()
	var fe *fieldsync.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *fieldsync.Error", err, err)
	}
	if !codes[fe.Code] {
		t.Fatalf("error code %q is not one of the expected codes (message %q)", fe.Code, fe.Message)
	}
	if fe.Message == "" || !utf8.ValidString(fe.Message) {
		t.Fatalf("error message %q is empty or not valid UTF-8", fe.Message)
	}
}

// sameJSON reports whether a and b hold the same JSON value.
func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func sameFields(a, b map[string]json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !sameJSON(v, w) {
			return false
		}
	}
	return true
}

const validPush = `{"device":"dev-1","ops":[` +
	`{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ab","seq":1,"type":"work_order","entity":"wo-1","kind":"create","fields":{"title":"Boiler","status":"new"},"at":1720000000000},` +
	`{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ac","seq":2,"prev":1,"type":"work_order","entity":"wo-1","kind":"update","base":1,"fields":{"status":"in progress"},"at":1720000001000},` +
	`{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ad","seq":3,"prev":2,"type":"work_order","entity":"wo-1","kind":"append","base":2,"fields":{"comments":"pressure ok"},"at":1720000002000},` +
	`{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ae","device":"dev-1","seq":4,"prev":3,"type":"work_order","entity":"wo-1","kind":"delete","base":3,"at":1720000003000}]}`

// FuzzDecodePush: DecodePush never panics, refuses with a request code,
// and whatever it accepts satisfies every documented shape rule and
// survives a round trip through the encoder.
func FuzzDecodePush(f *testing.F) {
	f.Add([]byte(validPush))
	f.Add([]byte(`{"device":"d","ops":[]}`))
	f.Add([]byte(`{"device":"d","ops":[{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ab","seq":1,"type":"t","entity":"e","kind":"create","at":0}]}`))
	f.Add([]byte(`{"device":"d","ops":[{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ab","seq":2,"prev":2,"type":"t","entity":"e","kind":"update","at":0}]}`))
	f.Add([]byte(`{"device":"d","ops":[{"id":"0190A6C4-1B2C-7D3E-8F40-0123456789AB","seq":1,"type":"t","entity":"e","kind":"create","at":0}]}`))
	f.Add([]byte(`{"device":"d","ops":[{"id":"x","seq":0}],"extra":1}`))
	f.Add([]byte(`{"device":"d","ops":[{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ab","seq":1,"type":"t","entity":"e","kind":"create","fields":{"Bad":1},"at":0}]}`))
	f.Add([]byte(`{"device":"d","ops":null} {}`))
	f.Add([]byte(validPush[:len(validPush)/2]))
	f.Add([]byte(`{"device":1}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := protocol.DecodePush(data)
		if err != nil {
			if req != nil {
				t.Fatal("DecodePush returned a request and an error")
			}
			checkRefusal(t, err, requestCodes)
			return
		}
		checkPush(t, req)
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("encode accepted request: %v", err)
		}
		req2, err := protocol.DecodePush(again)
		if err != nil {
			t.Fatalf("re-encoded request refused: %v\n%s", err, again)
		}
		if len(req2.Ops) != len(req.Ops) || req2.Device != req.Device {
			t.Fatalf("round trip changed the batch: %+v vs %+v", req, req2)
		}
		for i := range req.Ops {
			a, b := req.Ops[i], req2.Ops[i]
			if !sameFields(a.Fields, b.Fields) {
				t.Fatalf("ops[%d] fields changed in the round trip", i)
			}
			a.Fields, b.Fields = nil, nil
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("ops[%d] changed in the round trip: %+v vs %+v", i, a, b)
			}
		}
	})
}

func checkPush(t *testing.T, req *protocol.PushRequest) {
	t.Helper()
	if !protocol.ValidID(req.Device) {
		t.Fatalf("accepted bad device %q", req.Device)
	}
	if len(req.Ops) < 1 || len(req.Ops) > protocol.MaxBatchOps {
		t.Fatalf("accepted a batch of %d ops", len(req.Ops))
	}
	seen := map[string]bool{}
	for i, op := range req.Ops {
		switch {
		case !protocol.ValidOpID(op.ID):
			t.Fatalf("ops[%d]: accepted op id %q", i, op.ID)
		case seen[op.ID]:
			t.Fatalf("ops[%d]: accepted a repeated op id", i)
		case op.Device != "" && op.Device != req.Device:
			t.Fatalf("ops[%d]: accepted a foreign device", i)
		case op.Seq < 1 || op.Prev < 0 || op.Prev >= op.Seq:
			t.Fatalf("ops[%d]: accepted seq %d prev %d", i, op.Seq, op.Prev)
		case !protocol.ValidID(op.Entity):
			t.Fatalf("ops[%d]: accepted entity %q", i, op.Entity)
		case !fieldsync.OpKind(op.Kind).Valid():
			t.Fatalf("ops[%d]: accepted kind %q", i, op.Kind)
		case op.Base < 0 || op.Kind == "create" && op.Base != 0:
			t.Fatalf("ops[%d]: accepted base %d for %s", i, op.Base, op.Kind)
		case len(op.Fields) > protocol.MaxFieldsPerOp:
			t.Fatalf("ops[%d]: accepted %d fields", i, len(op.Fields))
		case op.At < 0:
			t.Fatalf("ops[%d]: accepted at %d", i, op.At)
		}
		if op.Type == "" || strings.ToLower(op.Type) != op.Type {
			t.Fatalf("ops[%d]: accepted type %q", i, op.Type)
		}
		for name, v := range op.Fields {
			if name == "" || strings.ToLower(name) != name || len(v) > protocol.MaxFieldBytes || !json.Valid(v) {
				t.Fatalf("ops[%d]: accepted field %q = %q", i, name, v)
			}
		}
		seen[op.ID] = true
	}
}

// FuzzDecodeEdit: DecodeEdit never panics, refuses with a request code,
// and what it accepts has a base, 1..64 well-named fields and survives a
// round trip.
func FuzzDecodeEdit(f *testing.F) {
	f.Add([]byte(`{"base":3,"fields":{"status":"closed","assignee":"ana"}}`))
	f.Add([]byte(`{"base":0,"fields":{"title":"New"}}`))
	f.Add([]byte(`{"base":-1,"fields":{"title":"x"}}`))
	f.Add([]byte(`{"base":1,"fields":{}}`))
	f.Add([]byte(`{"base":1,"fields":{"Title":"x"}}`))
	f.Add([]byte(`{"base":1,"fields":{"title":null}}`))
	f.Add([]byte(`{"base":1,"fields":{"title":"x"},"more":true}`))
	f.Add([]byte(`{"base":"1","fields":{"title":"x"}}`))
	f.Add([]byte(`{"base":1,"fields":{"title":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := protocol.DecodeEdit(data)
		if err != nil {
			checkRefusal(t, err, requestCodes)
			return
		}
		if req.Base < 0 || len(req.Fields) == 0 || len(req.Fields) > protocol.MaxFieldsPerOp {
			t.Fatalf("accepted %+v", req)
		}
		for name, v := range req.Fields {
			if name == "" || strings.ToLower(name) != name || len(v) > protocol.MaxFieldBytes || !json.Valid(v) {
				t.Fatalf("accepted field %q = %q", name, v)
			}
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		req2, err := protocol.DecodeEdit(again)
		if err != nil {
			t.Fatalf("re-encoded edit refused: %v", err)
		}
		if req2.Base != req.Base || !sameFields(req.Fields, req2.Fields) {
			t.Fatalf("round trip changed the edit: %+v vs %+v", req, req2)
		}
	})
}

// FuzzParseCursor: ParseCursor never panics, refuses with
// invalid_request, and every accepted cursor encodes back to exactly the
// string it came from.
func FuzzParseCursor(f *testing.F) {
	f.Add("")
	f.Add("1.0123456789abcdef.42.89abcdef")
	f.Add("1.0123456789abcdef.0.")
	f.Add("1.0123456789abcdef.007.89abcdef")
	f.Add("1.0123456789abcdef.-1.")
	f.Add("1.0123456789abcdef.+1.")
	f.Add("2.0123456789abcdef.1.")
	f.Add("1.0123456789ABCDEF.1.")
	f.Add("1.0123456789abcdef.9223372036854775807.ffffffffffffffff")
	f.Add("1.0123456789abcdef.9223372036854775808.")
	f.Add("1.0123456789abcdef.1.2.3")
	f.Add("1.0123456789abcdef.1.\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := protocol.ParseCursor(s)
		if err != nil {
			checkRefusal(t, err, map[fieldsync.Code]bool{fieldsync.EInvalidRequest: true})
			return
		}
		if got := c.String(); got != s {
			t.Fatalf("ParseCursor(%q).String() = %q", s, got)
		}
		if c.Seq < 0 {
			t.Fatalf("accepted a negative position in %q", s)
		}
		c2, err := protocol.ParseCursor(c.String())
		if err != nil || c2 != c {
			t.Fatalf("cursor %+v does not parse back: %+v, %v", c, c2, err)
		}
	})
}

// Body modes of FuzzReadBody.
const (
	modePlain = iota
	modeIdentity
	modeGzip
	modeGzipCut   // gzip, then cut at least one byte off the end
	modeFakeGzip  // raw bytes labelled gzip
	modeOtherType // an encoding the server does not speak
	modeCount
)

// FuzzReadBody: ReadBody never panics; plain and gzip bodies come back
// byte for byte when within the limit and valid UTF-8, and are refused
// with too_large or invalid_json otherwise; truncated gzip is never
// accepted; unknown encodings are refused with unsupported_media.
func FuzzReadBody(f *testing.F) {
	f.Add([]byte(validPush), uint8(modePlain), uint16(4096), uint8(0))
	f.Add([]byte(validPush), uint8(modeGzip), uint16(4096), uint8(0))
	f.Add([]byte(validPush), uint8(modeGzip), uint16(100), uint8(0))
	f.Add([]byte(validPush), uint8(modeGzipCut), uint16(4096), uint8(3))
	f.Add([]byte("\xff\xfe{}"), uint8(modePlain), uint16(4096), uint8(0))
	f.Add([]byte("\x1f\x8b\x08\x00"), uint8(modeFakeGzip), uint16(4096), uint8(0))
	f.Add([]byte("{}"), uint8(modeOtherType), uint16(10), uint8(0))
	f.Add([]byte(""), uint8(modeGzip), uint16(0), uint8(0))
	f.Add([]byte("héllo"), uint8(modeIdentity), uint16(5), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, mode uint8, max uint16, cut uint8) {
		limit := int64(max)
		var body []byte
		encoding := ""
		switch mode % modeCount {
		case modePlain:
			body = data
		case modeIdentity:
			body, encoding = data, "identity"
		case modeGzip, modeGzipCut:
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(data)
			zw.Close()
			body, encoding = buf.Bytes(), "gzip"
			if mode%modeCount == modeGzipCut {
				n := 1 + int(cut)%len(body)
				body = body[:len(body)-n]
			}
		case modeFakeGzip:
			body, encoding = data, "gzip"
		case modeOtherType:
			body, encoding = data, "br"
		}
		got, err := protocol.ReadBody(bytes.NewReader(body), encoding, limit)
		switch mode % modeCount {
		case modeOtherType:
			if err == nil {
				t.Fatal("accepted content encoding br")
			}
			checkRefusal(t, err, map[fieldsync.Code]bool{fieldsync.EUnsupportedMedia: true})
			return
		case modeGzipCut:
			if err == nil {
				t.Fatalf("accepted gzip cut short (%d of the data bytes returned)", len(got))
			}
			checkRefusal(t, err, map[fieldsync.Code]bool{fieldsync.EInvalidJSON: true, fieldsync.ETooLarge: true})
			return
		case modeFakeGzip:
			if err != nil {
				checkRefusal(t, err, map[fieldsync.Code]bool{fieldsync.EInvalidJSON: true, fieldsync.ETooLarge: true})
				return
			}
			if int64(len(got)) > limit || !utf8.Valid(got) {
				t.Fatalf("accepted %d bytes over the limit %d or invalid UTF-8", len(got), limit)
			}
			return
		}
		switch {
		case int64(len(data)) > limit:
			if fieldsync.ErrorCode(err) != fieldsync.ETooLarge {
				t.Fatalf("%d bytes over the limit %d: got %v", len(data), limit, err)
			}
		case !utf8.Valid(data):
			if fieldsync.ErrorCode(err) != fieldsync.EInvalidJSON {
				t.Fatalf("invalid UTF-8: got %v", err)
			}
		default:
			if err != nil {
				t.Fatalf("refused a good body: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("body changed: got %q want %q", got, data)
			}
		}
		if err != nil {
			checkRefusal(t, err, map[fieldsync.Code]bool{fieldsync.EInvalidJSON: true, fieldsync.ETooLarge: true})
		}
	})
}

const validSettle = `{"field":"status","conflict":"0190a6c4-1b2c-7d3e-8f40-0123456789aa","choice":"new_value","value":"waiting for parts","note":"completed, but parts required"}`

// FuzzDecodeSettle: DecodeSettle never panics, refuses with a request
// code, and what it accepts names a well-formed field and a conflict,
// carries a value of at most MaxFieldBytes of valid JSON, and survives a
// round trip through the encoder unchanged.
func FuzzDecodeSettle(f *testing.F) {
	f.Add([]byte(validSettle))
	f.Add([]byte(`{"field":"status","conflict":"c","choice":"keep_server"}`))
	f.Add([]byte(`{"field":"status","conflict":"c","choice":"take_device","op":"0190a6c4-1b2c-7d3e-8f40-0123456789ab"}`))
	f.Add([]byte(`{"field":"status","conflict":"c","choice":"new_value","value":null}`))
	f.Add([]byte(`{"field":"status","conflict":"c","choice":"new_value","value":{"a":[1,{"b":null}]}}`))
	f.Add([]byte(`{"field":"Status","conflict":"c","choice":"keep_server"}`))
	f.Add([]byte(`{"field":"status","conflict":"","choice":"keep_server"}`))
	f.Add([]byte(`{"field":["status","title"],"conflict":"c","choice":"keep_server"}`))
	f.Add([]byte(`{"field":"status","conflict":"c","choice":"keep_server","by":"me"}`))
	f.Add([]byte(`{"field":"status","conflict":"c","choice":"keep_server","note":"\u00e9\ud800"}`))
	f.Add([]byte(validSettle[:len(validSettle)/2]))
	f.Add([]byte(validSettle + ` {}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := protocol.DecodeSettle(data)
		if err != nil {
			if req != nil {
				t.Fatal("DecodeSettle returned a request and an error")
			}
			checkRefusal(t, err, requestCodes)
			return
		}
		if req.Field == "" || strings.ToLower(req.Field) != req.Field || len(req.Field) > 63 || req.Conflict == "" {
			t.Fatalf("accepted field %q conflict %q", req.Field, req.Conflict)
		}
		if len(req.Value) > protocol.MaxFieldBytes || len(req.Value) > 0 && !json.Valid(req.Value) {
			t.Fatalf("accepted value %q", req.Value)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("encode accepted settlement: %v", err)
		}
		req2, err := protocol.DecodeSettle(again)
		if err != nil {
			t.Fatalf("re-encoded settlement refused: %v\n%s", err, again)
		}
		if (len(req.Value) > 0) != (len(req2.Value) > 0) || len(req.Value) > 0 && !sameJSON(req.Value, req2.Value) {
			t.Fatalf("round trip changed the value: %q vs %q", req.Value, req2.Value)
		}
		a, b := *req, *req2
		a.Value, b.Value = nil, nil
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the settlement: %+v vs %+v", a, b)
		}
	})
}
