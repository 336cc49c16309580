package protocol_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

const validAttachment = `{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ab","sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",` +
	`"size":482133,"content_type":"image/jpeg","role":"photo","name":"Boiler — front.jpg"}`

// attachmentCodes are the codes DecodeAttachment may answer with.
var attachmentCodes = map[fieldsync.Code]bool{
	fieldsync.EInvalidField:     true,
	fieldsync.ETooLarge:         true,
	fieldsync.EUnsupportedMedia: true,
}

func TestDecodeAttachment(t *testing.T) {
	a, err := protocol.DecodeAttachment(json.RawMessage(validAttachment))
	if err != nil {
		t.Fatal(err)
	}
	want := fieldsync.Attachment{ID: "0190a6c4-1b2c-7d3e-8f40-0123456789ab", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Size: 482133, ContentType: "image/jpeg", Role: fieldsync.RolePhoto, Name: "Boiler — front.jpg"}
	if a != want {
		t.Fatalf("got %+v\nwant %+v", a, want)
	}
	with := func(old, new string) string { return strings.Replace(validAttachment, old, new, 1) }
	cases := []struct {
		name, value string
		code        fieldsync.Code
		mention     string
	}{
		{"empty", ``, fieldsync.EInvalidField, "attachment"},
		{"null", `null`, fieldsync.EInvalidField, "object"},
		{"number", `12`, fieldsync.EInvalidField, "attachment"},
		{"unknown key", with(`"role"`, `"color":"red","role"`), fieldsync.EInvalidField, "color"},
		{"status from a device", with(`"role"`, `"status":"ready","role"`), fieldsync.EInvalidField, "status"},
		{"no id", with(`"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ab",`, ``), fieldsync.EInvalidField, "id"},
		{"upper-case id", with(`0190a6c4-1b2c-7d3e-8f40-0123456789ab`, `0190A6C4-1B2C-7D3E-8F40-0123456789AB`), fieldsync.EInvalidField, "id"},
		{"short sha", with(`0f00a08"`, `0f00a0"`), fieldsync.EInvalidField, "sha256"},
		{"upper-case sha", with(`9f86d`, `9F86D`), fieldsync.EInvalidField, "sha256"},
		{"no size", with(`"size":482133,`, ``), fieldsync.EInvalidField, "size"},
		{"negative size", with(`482133`, `-1`), fieldsync.EInvalidField, "size"},
		{"fractional size", with(`482133`, `1.5`), fieldsync.EInvalidField, "size"},
		{"size over the limit", with(`482133`, `67108865`), fieldsync.ETooLarge, "size"},
		{"no content type", with(`"content_type":"image/jpeg",`, ``), fieldsync.EInvalidField, "content_type"},
		{"content type", with(`image/jpeg`, `image/svg+xml`), fieldsync.EUnsupportedMedia, "content_type"},
		{"content type with parameters", with(`image/jpeg`, `image/jpeg; q=1`), fieldsync.EUnsupportedMedia, "content_type"},
		{"role", with(`"photo"`, `"Photo"`), fieldsync.EInvalidField, "role"},
		{"name with a newline", with(`front.jpg`, `front\n.jpg`), fieldsync.EInvalidField, "name"},
		{"name too long", with(`Boiler — front.jpg`, strings.Repeat("x", 256)), fieldsync.EInvalidField, "name"},
		{"trailing data", validAttachment + ` {}`, fieldsync.EInvalidField, "after"},
		{"truncated", validAttachment[:50], fieldsync.EInvalidField, "attachment"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := protocol.DecodeAttachment(json.RawMessage(c.value))
			if fieldsync.ErrorCode(err) != c.code || !strings.Contains(fieldsync.ErrorMessage(err), c.mention) {
				t.Fatalf("error %v, want %s mentioning %q", err, c.code, c.mention)
			}
		})
	}
	// The limits themselves are accepted.
	for _, v := range []string{with(`482133`, `67108864`), with(`482133`, `1`), with(`Boiler — front.jpg`, strings.Repeat("é", 127)+"x"),
		with(`,"name":"Boiler — front.jpg"`, ``), with(`"photo"`, `"signature"`), with(`image/jpeg`, `application/pdf`)} {
		if _, err := protocol.DecodeAttachment(json.RawMessage(v)); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
}

// FuzzDecodeAttachment: DecodeAttachment never panics, refuses with one
// of its codes, and whatever it accepts satisfies every documented rule
// and survives a round trip through the encoder.
func FuzzDecodeAttachment(f *testing.F) {
	f.Add([]byte(validAttachment))
	f.Add([]byte(`{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ab","sha256":"` + strings.Repeat("0", 64) + `","size":1,"content_type":"application/pdf","role":"scan"}`))
	f.Add([]byte(`{"id":"0190a6c4-1b2c-7d3e-8f40-0123456789ab","sha256":"` + strings.Repeat("a", 64) + `","size":67108864,"content_type":"image/webp","role":"signature","name":""}`))
	f.Add([]byte(`{"id":"x","status":"ready","by":"d","at":"2024-07-03T09:00:00Z"}`))
	f.Add([]byte(`{"size":1e3,"name":"\u0000\ud800"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(validAttachment[:len(validAttachment)/2]))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := protocol.DecodeAttachment(json.RawMessage(data))
		if err != nil {
			checkRefusal(t, err, attachmentCodes)
			return
		}
		switch {
		case !protocol.ValidOpID(a.ID):
			t.Fatalf("accepted id %q", a.ID)
		case !fieldsync.ValidSHA256(a.SHA256):
			t.Fatalf("accepted sha256 %q", a.SHA256)
		case a.Size < 1 || a.Size > protocol.MaxAttachmentBytes:
			t.Fatalf("accepted size %d", a.Size)
		case !protocol.ValidContentType(a.ContentType):
			t.Fatalf("accepted content type %q", a.ContentType)
		case !fieldsync.ValidRole(a.Role):
			t.Fatalf("accepted role %q", a.Role)
		case len(a.Name) > protocol.MaxAttachmentName || !utf8.ValidString(a.Name) || strings.ContainsFunc(a.Name, unicode.IsControl):
			t.Fatalf("accepted name %q", a.Name)
		case a.Status != "" || a.By != "" || !a.At.IsZero():
			t.Fatalf("a device set server fields: %+v", a)
		}
		again, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("encode accepted attachment: %v", err)
		}
		b, err := protocol.DecodeAttachment(again)
		if err != nil {
			t.Fatalf("re-encoded attachment refused: %v\n%s", err, again)
		}
		if a != b {
			t.Fatalf("round trip changed the attachment: %+v vs %+v", a, b)
		}
	})
}

// TestDecodePushAttach: an attach op carries exactly one field; its value
// is checked when the op is applied, so one bad attachment does not
// refuse the whole batch.
func TestDecodePushAttach(t *testing.T) {
	one := pushWith(map[string]string{"kind": `"attach"`, "fields": `{"attachment":` + validAttachment + `}`})
	req, err := protocol.DecodePush([]byte(one))
	if err != nil {
		t.Fatalf("attach op refused: %v", err)
	}
	if op := protocol.ToOp(&req.Ops[0], req.Device); op.Kind != fieldsync.KindAttach || len(op.Fields[fieldsync.AttachField]) == 0 {
		t.Fatalf("op %+v", op)
	}
	bad := pushWith(map[string]string{"kind": `"attach"`, "fields": `{"attachment":{"id":1}}`})
	if _, err := protocol.DecodePush([]byte(bad)); err != nil {
		t.Fatalf("a bad attachment refused the batch: %v", err)
	}
	for _, fields := range []string{"", `{}`, `{"attachment":` + validAttachment + `,"photos":1}`} {
		body := pushWith(map[string]string{"kind": `"attach"`, "fields": fields})
		if _, err := protocol.DecodePush([]byte(body)); fieldsync.ErrorCode(err) != fieldsync.EInvalidRequest {
			t.Errorf("attach with fields %q: %v", fields, err)
		}
	}
}
