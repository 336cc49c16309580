// Package fieldsync holds the domain of offline synchronization for field
// workers: operations made on a device, their results on the server, the
// records they change, and the errors both sides share. It has no I/O and
// imports only the standard library; the wire format lives in package
// protocol, the server in package server, the device engine in package
// client.
package fieldsync

import (
	"encoding/json"
	"time"
)

// OpKind says what an operation does to its record.
type OpKind string

// The operation kinds. An update carries only the fields it changes; an
// append adds one item to each named list field and never conflicts.
const (
	KindCreate OpKind = "create"
	KindUpdate OpKind = "update"
	KindDelete OpKind = "delete"
	KindAppend OpKind = "append"
	KindSettle OpKind = "settle" // settles a conflict on one field
	KindAttach OpKind = "attach" // adds one attachment (photo, signature, scan) to a record
)

// Valid reports whether k is a known kind.
func (k OpKind) Valid() bool {
	switch k {
	case KindCreate, KindUpdate, KindDelete, KindAppend, KindSettle, KindAttach:
		return true
	}
	return false
}

// Op is one user action, made on a device and never rewritten once queued.
//
// Seq is the device's own sequence number (1, 2, 3…, never reused). PrevSeq
// is the Seq of the same device's previous operation on the same record, or
// 0 for its first: the server applies an operation only after the one it
// names, so a device's operations on a record take effect in device order.
type Op struct {
	ID          string // UUIDv7, made on the device
	DeviceID    string
	Seq         int64
	PrevSeq     int64
	EntityType  string
	EntityID    string // made on the device, the record's id forever
	Kind        OpKind
	BaseVersion int64 // the record version the device had seen
	Fields      map[string]json.RawMessage
	LocalTime   time.Time // the device's clock: informative only
	HLC         HLC       // hybrid logical clock when made: orders last-writer-wins
}

// ResultStatus is the server's verdict on one operation.
type ResultStatus string

// Result statuses. Applied, Rejected and Conflict are final and recorded
// with the op id; Duplicate answers a repeated op id with the recorded
// result; Retry means "not now" (an earlier op of the device on the same
// record is missing) and nothing was recorded.
const (
	StatusApplied   ResultStatus = "applied"
	StatusDuplicate ResultStatus = "duplicate"
	StatusRejected  ResultStatus = "rejected"
	StatusConflict  ResultStatus = "conflict"
	StatusRetry     ResultStatus = "retry"
)

// Final reports whether the status settles the op for good.
func (s ResultStatus) Final() bool {
	return s == StatusApplied || s == StatusRejected || s == StatusConflict || s == StatusDuplicate
}

// Result is the server's answer for one operation.
type Result struct {
	OpID       string
	Status     ResultStatus
	Version    int64  // the record's version after the op (applied, conflict)
	Number     string // the record's human number, e.g. WO-1042
	Code       Code   // why, for rejected, conflict and retry
	Message    string // human-readable reason
	Conflicts  []FieldConflict
	Overridden []Overridden // values that lost to a field policy
	Recorded   *Result      // for a duplicate: the result recorded the first time
}

// Overridden is a value that lost a clash settled by a field's policy. It
// is recorded, never silently dropped.
type Overridden struct {
	Field  string
	Value  json.RawMessage // the value that lost
	By     string          // who had written it
	Policy string          // the policy that decided
}

// Effective is the result that decides the op's fate: the recorded one for
// a duplicate, the result itself otherwise.
func (r Result) Effective() Result {
	if r.Status == StatusDuplicate && r.Recorded != nil {
		return *r.Recorded
	}
	return r
}

// FieldConflict is one field that both sides changed. Nothing is
// overwritten: the server keeps its value, and both values are recorded.
type FieldConflict struct {
	Field         string
	ServerValue   json.RawMessage
	DeviceValue   json.RawMessage
	ServerVersion int64  // the version at which the server's value was set
	ServerBy      string // who set the server's value (device id or "office")
}

// FieldMeta says when and by whom a field of a record last changed.
type FieldMeta struct {
	Version int64  `json:"v"`
	By      string `json:"by"`
	Seq     int64  `json:"seq"`
	Role    string `json:"role,omitempty"`
	HLC     HLC    `json:"hlc,omitempty"`
	OpID    string `json:"op,omitempty"`
	At      int64  `json:"at,omitempty"` // server time of the change, Unix milliseconds
	// Since is set when the last write agreed with a value its writer had
	// not seen: the version of that value. The writer's next op must
	// still meet it.
	Since int64 `json:"since,omitempty"`
}

// Record is the server's state of one entity.
type Record struct {
	Type      string
	ID        string
	Number    string
	Version   int64
	Deleted   bool
	Fields    map[string]json.RawMessage
	Meta      map[string]FieldMeta // per field: last change
	Review    []string             // fields that need a person's review
	Conflicts []Conflict           // open and settled conflicts of the record
	// Attachments of the record in the order they were attached.
	Attachments []Attachment
	Seq         int64 // position in the server's change feed
	UpdatedAt   time.Time
}

// AppendItem is one item of an append-only list field (a comment, a
// reading, a checklist tick). Its id is the op id that added it.
type AppendItem struct {
	ID    string          `json:"id"`
	Value json.RawMessage `json:"value"`
	By    string          `json:"by"`
	At    time.Time       `json:"at"`
}

// ChangeTag is the short tag of the change an op made, kept in cursors:
// the last 8 hex digits of the op id (its random part).
func ChangeTag(opID string) string {
	if len(opID) < 8 {
		return opID
	}
	return opID[len(opID)-8:]
}
