package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync"
)

// Attachment limits.
const (
	// MaxAttachmentBytes is the largest attachment a server accepts by
	// default (64 MiB); a server may be configured lower or higher.
	MaxAttachmentBytes = 64 << 20
	// MaxAttachmentName is the longest attachment name, in bytes.
	MaxAttachmentName = 255
)

// Upload-Metadata keys of a tus upload creation at PathFiles.
const (
	UploadMetaSHA256      = "sha256"       // required: the blob's SHA-256, lower-case hex
	UploadMetaFilename    = "filename"     // optional: informative only
	UploadMetaContentType = "content_type" // optional: one of AttachmentContentTypes
)

// StatusChecksumMismatch is the HTTP status (tus "Checksum Mismatch") of
// an upload whose bytes do not hash to the SHA-256 it declared: the server
// discarded them, and the file must be sent again from the start.
const StatusChecksumMismatch = 460

// AttachmentContentTypes are the content types an attachment may have.
var AttachmentContentTypes = []string{"image/jpeg", "image/png", "image/webp", "application/pdf"}

// ValidContentType reports whether ct is one of AttachmentContentTypes.
func ValidContentType(ct string) bool { return slices.Contains(AttachmentContentTypes, ct) }

// ValidAttachmentName reports whether name may name an attachment: at most
// MaxAttachmentName bytes of valid UTF-8 with no control characters. The
// empty name is valid (a name is optional).
func ValidAttachmentName(name string) bool {
	if len(name) > MaxAttachmentName || !utf8.ValidString(name) {
		return false
	}
	return !strings.ContainsFunc(name, unicode.IsControl)
}

// attachmentOp is what a device may say about an attachment in an attach
// op: the server sets status, by and at, so they are unknown keys here.
type attachmentOp struct {
	ID          *string `json:"id"`
	SHA256      *string `json:"sha256"`
	Size        *int64  `json:"size"`
	ContentType *string `json:"content_type"`
	Role        *string `json:"role"`
	Name        string  `json:"name"`
}

// DecodeAttachment decodes and checks the value of an attach op's field
// fieldsync.AttachField: a JSON object with exactly the keys id (a
// lowercase UUID), sha256 (64 lower-case hex digits), size (1 to
// MaxAttachmentBytes), content_type (one of AttachmentContentTypes), role
// (photo, signature or scan) and, optionally, name (see
// ValidAttachmentName). Any other key, including the server-set status,
// by and at, is refused.
//
// Errors are *fieldsync.Error: EInvalidField for a malformed or missing
// value, ETooLarge for a size over the limit, EUnsupportedMedia for a
// content type not accepted. The message names the key.
func DecodeAttachment(raw json.RawMessage) (fieldsync.Attachment, error) {
	var w attachmentOp
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return fieldsync.Attachment{}, badAttachment("%s", strings.TrimPrefix(describeJSONError(err), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fieldsync.Attachment{}, badAttachment("data after the object")
	}
	if bytes.TrimSpace(raw)[0] != '{' {
		return fieldsync.Attachment{}, badAttachment("want an object")
	}
	switch {
	case w.ID == nil || !ValidOpID(*w.ID):
		return fieldsync.Attachment{}, badAttachment("id: want a lowercase UUID")
	case w.SHA256 == nil || !fieldsync.ValidSHA256(*w.SHA256):
		return fieldsync.Attachment{}, badAttachment("sha256: want 64 lower-case hex digits")
	case w.Size == nil || *w.Size < 1:
		return fieldsync.Attachment{}, badAttachment("size: want the file's size in bytes, 1 or more")
	case *w.Size > MaxAttachmentBytes:
		return fieldsync.Attachment{}, fieldsync.Errorf(fieldsync.ETooLarge, "attachment: size %d is over the limit of %d bytes", *w.Size, MaxAttachmentBytes)
	case w.ContentType == nil || *w.ContentType == "":
		return fieldsync.Attachment{}, badAttachment("content_type: name the file's type (%s)", strings.Join(AttachmentContentTypes, ", "))
	case !ValidContentType(*w.ContentType):
		return fieldsync.Attachment{}, fieldsync.Errorf(fieldsync.EUnsupportedMedia, "attachment: content_type %q is not accepted: send %s",
			truncate(*w.ContentType, 40), strings.Join(AttachmentContentTypes, ", "))
	case w.Role == nil || !fieldsync.ValidRole(*w.Role):
		return fieldsync.Attachment{}, badAttachment("role: want photo, signature or scan")
	case !ValidAttachmentName(w.Name):
		return fieldsync.Attachment{}, badAttachment("name: want at most %d bytes of text without control characters", MaxAttachmentName)
	}
	return fieldsync.Attachment{
		ID: *w.ID, SHA256: *w.SHA256, Size: *w.Size, ContentType: *w.ContentType, Role: *w.Role, Name: w.Name,
	}, nil
}

func badAttachment(format string, args ...any) error {
	return fieldsync.Errorf(fieldsync.EInvalidField, "attachment: "+format, args...)
}

// Blob describes a verified file the server holds. It is the body of a
// 200 answer to an upload creation (POST PathFiles) for bytes the server
// already has: nothing needs to be uploaded.
type Blob struct {
	SHA256      string    `json:"sha256"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	Stored      time.Time `json:"stored"`
}

// FromBlob converts a domain blob to its wire form.
func FromBlob(b *fieldsync.Blob) Blob {
	return Blob{SHA256: b.SHA256, Size: b.Size, ContentType: b.ContentType, Stored: b.StoredAt.UTC()}
}
