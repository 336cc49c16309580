package fieldsync

import (
	"encoding/hex"
	"time"
)

// An attachment's bytes travel apart from its attach op. The op (kind
// "attach") goes through the outbox like any other and carries the
// attachment's description in its single field AttachField; the bytes are
// uploaded separately, resumably, and addressed by their SHA-256. Either
// may arrive first.

// AttachField is the name of the one field an attach op carries; its value
// is the JSON of an Attachment (Status, By and At are set by the server).
const AttachField = "attachment"

// Attachment roles.
const (
	RolePhoto     = "photo"
	RoleSignature = "signature"
	RoleScan      = "scan"
)

// Attachment statuses as the server reports them.
const (
	// AttachmentUploading: the attach op is applied but the server does not
	// hold verified bytes for the hash yet.
	AttachmentUploading = "uploading"
	// AttachmentReady: the bytes arrived and their SHA-256 checked out;
	// the blob can be downloaded.
	AttachmentReady = "ready"
)

// Attachment is one file attached to a record.
type Attachment struct {
	ID          string    `json:"id"`           // made on the device (UUIDv7)
	SHA256      string    `json:"sha256"`       // lower-case hex of the bytes
	Size        int64     `json:"size"`         // bytes
	ContentType string    `json:"content_type"` // e.g. image/jpeg
	Role        string    `json:"role"`         // photo, signature or scan
	Name        string    `json:"name,omitempty"`
	Status      string    `json:"status,omitempty"` // set by the server
	By          string    `json:"by,omitempty"`     // device that attached it
	At          time.Time `json:"at,omitzero"`      // when the server applied the op
}

// ValidRole reports whether r is a known attachment role.
func ValidRole(r string) bool {
	return r == RolePhoto || r == RoleSignature || r == RoleScan
}

// ValidSHA256 reports whether s is 64 lower-case hex digits.
func ValidSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Blob is a verified, content-addressed file held by the server.
type Blob struct {
	SHA256      string
	Size        int64
	ContentType string
	StoredAt    time.Time
}
