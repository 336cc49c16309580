package fieldsync

import (
	"encoding/json"
	"time"
)

// Settlement choices for a conflict.
const (
	ChoiceKeepServer = "keep_server" // the value the server kept stays
	ChoiceTakeDevice = "take_device" // the clashing value wins
	ChoiceNewValue   = "new_value"   // a new value, given by the person settling
)

// Conflict is a clash on one field that a person must settle. Nothing was
// overwritten: Server holds the value the server kept, Theirs every value
// that clashed with it.
type Conflict struct {
	ID       string           `json:"id"`
	Field    string           `json:"field"`
	Server   ConflictValue    `json:"server"`
	Theirs   []ConflictValue  `json:"theirs"`
	OpenedAt time.Time        `json:"opened_at"`
	Settled  *ConflictSettled `json:"settled,omitempty"`
}

// Open reports whether the conflict still awaits a person.
func (c *Conflict) Open() bool { return c.Settled == nil }

// ConflictValue is one side of a conflict: a value, who wrote it, when and
// through which op.
type ConflictValue struct {
	Value   json.RawMessage `json:"value"`
	By      string          `json:"by"`
	Role    string          `json:"role,omitempty"`
	OpID    string          `json:"op,omitempty"`
	Version int64           `json:"version,omitempty"` // the record version that held it (server side)
	At      time.Time       `json:"at"`
}

// ConflictSettled records how and by whom a conflict was settled.
type ConflictSettled struct {
	Choice  string          `json:"choice"`
	Value   json.RawMessage `json:"value"`
	Note    string          `json:"note,omitempty"`
	By      string          `json:"by"`
	Role    string          `json:"role,omitempty"`
	OpID    string          `json:"op"`
	Version int64           `json:"version"` // the record version the settlement made
	At      time.Time       `json:"at"`
}

// Settle is the content of a settle op for one field.
type Settle struct {
	Conflict string          `json:"conflict"`
	Choice   string          `json:"choice"`
	Value    json.RawMessage `json:"value,omitempty"` // new_value: the new value
	Op       string          `json:"op,omitempty"`    // take_device: which clashing op's value (default the latest)
	Note     string          `json:"note,omitempty"`
}

// OpenConflict returns the record's open conflict on field, if any.
func (r *Record) OpenConflict(field string) (*Conflict, bool) {
	for i := range r.Conflicts {
		if r.Conflicts[i].Field == field && r.Conflicts[i].Open() {
			return &r.Conflicts[i], true
		}
	}
	return nil, false
}
