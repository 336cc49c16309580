// Package protocol defines the wire format of the /v1 sync API: the only
// JSON-tagged types of the project, their conversions to and from the
// domain types, and strict decoders that refuse anything malformed,
// oversized or unknown with a stable error code. docs/protocol.md is its
// prose description.
package protocol

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync"
)

// Version is the protocol version this build speaks. Every request names
// its version in the VersionHeader; the server accepts Version and
// MinVersion..Version.
const (
	Version       = 1
	MinVersion    = 1
	VersionHeader = "Fieldsync-Protocol"
)

// Limits. A request over any of them is refused whole with ETooLarge.
const (
	MaxBodyBytes   = 8 << 20 // decompressed request body
	MaxBatchOps    = 1000
	MaxFieldsPerOp = 64
	MaxFieldBytes  = 64 << 10 // one field's JSON value
	MaxPullLimit   = 5000
)

// Paths of the API.
const (
	PathPush    = "/v1/push"
	PathChanges = "/v1/changes"
	PathRecords = "/v1/records/" // + type/id
	PathOps     = "/v1/ops/"     // + op id
	PathInfo    = "/v1/info"
	PathSchema  = "/v1/schema"
	// PathFiles is the base of the tus resumable-upload endpoint; an upload
	// names its blob's SHA-256 in Upload-Metadata ("sha256").
	PathFiles = "/v1/files/"
	// PathBlobs + sha256 downloads a verified blob (GET, HEAD, ranges).
	PathBlobs = "/v1/blobs/"
)

// Op is the wire form of fieldsync.Op.
type Op struct {
	ID     string                     `json:"id"`
	Device string                     `json:"device,omitempty"` // defaults to the batch's device
	Seq    int64                      `json:"seq"`
	Prev   int64                      `json:"prev,omitempty"`
	Type   string                     `json:"type"`
	Entity string                     `json:"entity"`
	Kind   string                     `json:"kind"`
	Base   int64                      `json:"base,omitempty"`
	Fields map[string]json.RawMessage `json:"fields,omitempty"`
	At     int64                      `json:"at"`            // device local time, Unix milliseconds
	HLC    int64                      `json:"hlc,omitempty"` // hybrid logical clock when made
}

// PushRequest is the body of POST /v1/push.
type PushRequest struct {
	Device string `json:"device"`
	Ops    []Op   `json:"ops"`
}

// PushResponse is the body of a 200 answer to POST /v1/push: one result
// per op, in request order.
type PushResponse struct {
	Results []Result `json:"results"`
	HLC     int64    `json:"hlc,omitempty"` // the server's clock: devices observe it
}

// Result is the wire form of fieldsync.Result.
type Result struct {
	Op         string       `json:"op"`
	Status     string       `json:"status"`
	Version    int64        `json:"version,omitempty"`
	Number     string       `json:"number,omitempty"`
	Code       string       `json:"code,omitempty"`
	Message    string       `json:"message,omitempty"`
	Conflicts  []Conflict   `json:"conflicts,omitempty"`
	Overridden []Overridden `json:"overridden,omitempty"`
	Recorded   *Result      `json:"recorded,omitempty"`
}

// Overridden is the wire form of fieldsync.Overridden.
type Overridden struct {
	Field  string          `json:"field"`
	Value  json.RawMessage `json:"value"`
	By     string          `json:"by,omitempty"`
	Policy string          `json:"policy"`
}

// Conflict is the wire form of fieldsync.FieldConflict.
type Conflict struct {
	Field         string          `json:"field"`
	ServerValue   json.RawMessage `json:"server_value"`
	DeviceValue   json.RawMessage `json:"device_value"`
	ServerVersion int64           `json:"server_version"`
	ServerBy      string          `json:"server_by,omitempty"`
}

// Record is one record in a changes page or a record read.
type Record struct {
	Type      string                     `json:"type"`
	ID        string                     `json:"id"`
	Number    string                     `json:"number,omitempty"`
	Version   int64                      `json:"version"`
	Deleted   bool                       `json:"deleted,omitempty"`
	Fields    map[string]json.RawMessage `json:"fields,omitempty"`
	Review    []string                   `json:"review,omitempty"`
	Conflicts []fieldsync.Conflict       `json:"conflicts,omitempty"`
	// Attachments of the record, each with the server's status.
	Attachments []fieldsync.Attachment `json:"attachments,omitempty"`
	Seq         int64                  `json:"seq"`
	Updated     time.Time              `json:"updated"`
	// Gone, in a change feed entry, tells a device to drop its copy of
	// the record: the record is no longer within its reach (GoneUnassigned:
	// it was assigned to someone else). Such an entry carries no fields.
	Gone string `json:"gone,omitempty"`
}

// GoneUnassigned is Record.Gone for a record taken away from the field
// worker who pulled it: assigned to someone else, or to nobody.
const GoneUnassigned = "unassigned"

// ChangesResponse is the body of GET /v1/changes.
type ChangesResponse struct {
	Changes []Record `json:"changes"`
	Cursor  string   `json:"cursor"`
	More    bool     `json:"more"`
	HLC     int64    `json:"hlc,omitempty"` // the server's clock: devices observe it
}

// OpEntry is the server's record of one op (GET /v1/ops/{id}).
type OpEntry struct {
	Op       Op        `json:"op"`
	Result   Result    `json:"result"`
	Received time.Time `json:"received"`
}

// RecordHistory is the body of GET /v1/records/{type}/{id}.
type RecordHistory struct {
	Record Record    `json:"record"`
	Ops    []OpEntry `json:"ops,omitempty"`
}

// EditRequest is the body of PATCH /v1/records/{type}/{id}: an office edit.
type EditRequest struct {
	Base   int64                      `json:"base"`
	Fields map[string]json.RawMessage `json:"fields"`
}

// SettleRequest is the body of POST /v1/records/{type}/{id}/settle: the
// office settles a conflict on one field.
type SettleRequest struct {
	Field    string          `json:"field"`
	Conflict string          `json:"conflict"`
	Choice   string          `json:"choice"`
	Value    json.RawMessage `json:"value,omitempty"`
	Op       string          `json:"op,omitempty"`
	Note     string          `json:"note,omitempty"`
}

// DecodeSettle decodes and checks the shape of a settle body; the schema
// checks the rest.
func DecodeSettle(data []byte) (*SettleRequest, error) {
	var req SettleRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	if !nameRE.MatchString(req.Field) {
		return nil, invalid("field: want lowercase letters, digits and _")
	}
	if req.Conflict == "" {
		return nil, invalid("conflict: name the conflict to settle")
	}
	if len(req.Value) > MaxFieldBytes {
		return nil, fieldsync.Errorf(fieldsync.ETooLarge, "value: larger than %d bytes", MaxFieldBytes)
	}
	return &req, nil
}

// Created is the body of a 200 answer to POST /v1/records/{type} (an
// office create; the request body is an EditRequest with base 0).
type Created struct {
	ID     string `json:"id"`
	Result Result `json:"result"`
}

// Info is the body of GET /v1/info.
type Info struct {
	Protocol    int      `json:"protocol"`
	MinProtocol int      `json:"min_protocol"`
	Epoch       string   `json:"epoch"`
	Types       []string `json:"types"`
}

// ErrorBody is the body of every non-2xx answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail carries a stable code, a user-safe message and whether a
// retry can help.
type ErrorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

// The shapes of ids and names, checked by hand: they run several times
// per op of every push, where a regular expression costs more than the
// rest of the check.
var (
	uuidRE   = matcher(isUUID) // ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$
	idRE     = matcher(isID)   // ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$
	nameRE   = matcher(isName) // ^[a-z][a-z0-9_]{0,62}$
	deviceRE = idRE
)

type matcher func(string) bool

func (m matcher) MatchString(s string) bool { return m(s) }

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

func isID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

func isName(s string) bool {
	if len(s) < 1 || len(s) > 63 || !('a' <= s[0] && s[0] <= 'z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ValidID reports whether s may be an entity or device id: 1–64 ASCII
// letters, digits, '_', '.', '-', starting with a letter or digit.
func ValidID(s string) bool { return idRE.MatchString(s) }

// ValidOpID reports whether s is a lowercase UUID.
func ValidOpID(s string) bool { return uuidRE.MatchString(s) }

func invalid(format string, args ...any) error {
	return fieldsync.Errorf(fieldsync.EInvalidRequest, format, args...)
}

// ReadBody reads a request body, gunzipping it when encoding is "gzip",
// and refuses more than max decompressed bytes or invalid UTF-8.
func ReadBody(r io.Reader, encoding string, max int64) ([]byte, error) {
	switch encoding {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fieldsync.Errorf(fieldsync.EInvalidJSON, "body is not valid gzip")
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fieldsync.Errorf(fieldsync.EUnsupportedMedia, "content encoding %q is not accepted: send gzip or nothing", encoding)
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		var fe *fieldsync.Error
		if errors.As(err, &fe) {
			return nil, fe
		}
		return nil, fieldsync.Errorf(fieldsync.EInvalidJSON, "body could not be read whole: %v", err)
	}
	if int64(len(data)) > max {
		return nil, fieldsync.Errorf(fieldsync.ETooLarge, "body is larger than %d bytes", max)
	}
	if !utf8.Valid(data) {
		return nil, fieldsync.Errorf(fieldsync.EInvalidJSON, "body is not valid UTF-8")
	}
	return data, nil
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fieldsync.Errorf(fieldsync.EInvalidJSON, "malformed JSON: %s", describeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fieldsync.Errorf(fieldsync.EInvalidJSON, "malformed JSON: data after the body")
	}
	return nil
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("%s: want %s", te.Field, te.Type)
		}
		return fmt.Sprintf("want %s", te.Type)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "body ends too early"
	}
	return err.Error()
}

// DecodePush decodes and checks a push body. Every op is checked for shape
// (ids, sequence numbers, kinds, sizes); the schema check is the server's.
func DecodePush(data []byte) (*PushRequest, error) {
	req, ok := decodePushFast(data)
	if !ok {
		req = &PushRequest{}
		if err := decodeStrict(data, req); err != nil {
			return nil, err
		}
	}
	return checkPush(req)
}

// checkPush checks a decoded push request.
func checkPush(req *PushRequest) (*PushRequest, error) {
	if !deviceRE.MatchString(req.Device) {
		return nil, invalid("device: want an id of 1-64 letters, digits, '_', '.', '-'")
	}
	if len(req.Ops) == 0 {
		return nil, invalid("ops: the batch is empty")
	}
	if len(req.Ops) > MaxBatchOps {
		return nil, fieldsync.Errorf(fieldsync.ETooLarge, "ops: %d ops, at most %d per batch", len(req.Ops), MaxBatchOps)
	}
	seen := make(map[string]bool, len(req.Ops))
	for i := range req.Ops {
		op := &req.Ops[i]
		if err := checkOp(op, req.Device); err != nil {
			return nil, fieldsync.Errorf(fieldsync.ErrorCode(err), "ops[%d]: %s", i, fieldsync.ErrorMessage(err))
		}
		if seen[op.ID] {
			return nil, invalid("ops[%d]: op id %s appears twice in the batch", i, op.ID)
		}
		seen[op.ID] = true
	}
	return req, nil
}

func checkOp(op *Op, device string) error {
	if !ValidOpID(op.ID) {
		return invalid("id: want a lowercase UUID")
	}
	if op.Device != "" && op.Device != device {
		return invalid("device: differs from the batch's device")
	}
	if op.Seq < 1 {
		return invalid("seq: want 1 or more")
	}
	if op.Prev < 0 || op.Prev >= op.Seq {
		return invalid("prev: want 0 or a sequence number below seq")
	}
	if !nameRE.MatchString(op.Type) {
		return invalid("type: want lowercase letters, digits and _")
	}
	if !idRE.MatchString(op.Entity) {
		return invalid("entity: want an id of 1-64 letters, digits, '_', '.', '-'")
	}
	if !fieldsync.OpKind(op.Kind).Valid() {
		return invalid("kind: %q is not create, update, delete, append, settle or attach", op.Kind)
	}
	if op.Base < 0 {
		return invalid("base: want 0 or more")
	}
	if op.Kind == string(fieldsync.KindCreate) && op.Base != 0 {
		return invalid("base: a create has no base version")
	}
	if len(op.Fields) > MaxFieldsPerOp {
		return fieldsync.Errorf(fieldsync.ETooLarge, "fields: %d fields, at most %d", len(op.Fields), MaxFieldsPerOp)
	}
	for name, v := range op.Fields {
		if !nameRE.MatchString(name) {
			return invalid("fields: name %q: want lowercase letters, digits and _", truncate(name, 40))
		}
		if len(v) > MaxFieldBytes {
			return fieldsync.Errorf(fieldsync.ETooLarge, "fields.%s: larger than %d bytes", name, MaxFieldBytes)
		}
	}
	if op.At < 0 {
		return invalid("at: want Unix milliseconds")
	}
	if op.HLC < 0 {
		return invalid("hlc: want 0 or more")
	}
	if op.Kind == string(fieldsync.KindSettle) && len(op.Fields) != 1 {
		return invalid("fields: a settle names exactly one field")
	}
	if op.Kind == string(fieldsync.KindAttach) && len(op.Fields) != 1 {
		return invalid("fields: an attach carries exactly one field, %q", fieldsync.AttachField)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// DecodeEdit decodes and checks an office edit body.
func DecodeEdit(data []byte) (*EditRequest, error) {
	var req EditRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	if req.Base < 0 {
		return nil, invalid("base: want 0 or more")
	}
	if len(req.Fields) == 0 {
		return nil, invalid("fields: name at least one field")
	}
	if len(req.Fields) > MaxFieldsPerOp {
		return nil, fieldsync.Errorf(fieldsync.ETooLarge, "fields: at most %d", MaxFieldsPerOp)
	}
	for name, v := range req.Fields {
		if !nameRE.MatchString(name) {
			return nil, invalid("fields: name %q: want lowercase letters, digits and _", truncate(name, 40))
		}
		if len(v) > MaxFieldBytes {
			return nil, fieldsync.Errorf(fieldsync.ETooLarge, "fields.%s: larger than %d bytes", name, MaxFieldBytes)
		}
	}
	return &req, nil
}

// DecodeErrorBody rebuilds the *fieldsync.Error a server sent. A body that
// is not an error body gives an error naming the HTTP status.
func DecodeErrorBody(status int, data []byte) *fieldsync.Error {
	var b ErrorBody
	if err := json.Unmarshal(data, &b); err != nil || b.Error.Code == "" {
		code := fieldsync.EInternal
		if status < 500 {
			code = fieldsync.EInvalidRequest
		}
		if status == 502 || status == 503 || status == 504 || status == 429 {
			code = fieldsync.EUnavailable
		}
		return fieldsync.Errorf(code, "server answered HTTP %d", status)
	}
	return &fieldsync.Error{Code: fieldsync.Code(b.Error.Code), Message: b.Error.Message}
}
