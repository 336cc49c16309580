// Package schema is the declarative description of the entity types a
// deployment syncs: their fields, each field's type and limits, who may
// write it and how a clash is settled. The server validates every op
// against it; a bundled default describes work orders.
package schema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/fieldsync/fieldsync"
)

// Field types.
const (
	TypeString = "string" // text; max = characters
	TypeInt    = "int"    // integer; min/max = value
	TypeNumber = "number" // float; min/max = value
	TypeBool   = "bool"
	TypeEnum   = "enum"   // one of values
	TypeTime   = "time"   // RFC 3339 string
	TypeObject = "object" // any JSON object; max = bytes
	TypeList   = "list"   // append-only list; item describes each item
)

// Conflict policies.
const (
	PolicyServerOwned  = "server-owned"
	PolicyServerWins   = "server-wins"
	PolicyDeviceWins   = "device-wins"
	PolicyLastWriter   = "last-writer-wins"
	PolicyRolePriority = "role-priority"
	PolicyAppend       = "append"
	PolicyManual       = "manual"
)

// Schema is a parsed, validated schema. It is immutable and safe for
// concurrent use.
type Schema struct {
	Version int                    `json:"version"`
	Types   map[string]*EntityType `json:"types"`
}

// EntityType describes one kind of record.
type EntityType struct {
	Title        string `json:"title,omitempty"`
	NumberPrefix string `json:"number_prefix,omitempty"` // e.g. "WO-": the server numbers new records
	NumberStart  int64  `json:"number_start,omitempty"`
	// Shared marks reference data every field worker of the organisation
	// may read and sync, whoever it is assigned to (a price list, a list
	// of sites); records of other types reach a field worker only while
	// assigned to them.
	Shared bool              `json:"shared,omitempty"`
	Fields map[string]*Field `json:"fields"`
}

// Field describes one field of an entity type.
type Field struct {
	Type     string   `json:"type"`
	Required bool     `json:"required,omitempty"`
	Min      *float64 `json:"min,omitempty"`
	Max      *float64 `json:"max,omitempty"`
	Values   []string `json:"values,omitempty"` // enum values
	Item     *Field   `json:"item,omitempty"`   // list item
	Policy   string   `json:"policy,omitempty"`
	Roles    []string `json:"roles,omitempty"` // role-priority order, strongest first
}

//go:embed workorder.json
var defaultJSON []byte

// Default returns the bundled work-order schema.
func Default() *Schema {
	s, err := Parse(defaultJSON)
	if err != nil {
		panic("bundled schema: " + err.Error())
	}
	return s
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// Parse decodes and checks a schema document.
func Parse(data []byte) (*Schema, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Schema
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("schema: data after the schema document")
	}
	if s.Version < 1 {
		return nil, fmt.Errorf("schema: version must be 1 or more")
	}
	if len(s.Types) == 0 {
		return nil, fmt.Errorf("schema: no types")
	}
	for tn, t := range s.Types {
		if !nameRE.MatchString(tn) {
			return nil, fmt.Errorf("schema: type name %q: use lowercase letters, digits and _", tn)
		}
		if t == nil || len(t.Fields) == 0 {
			return nil, fmt.Errorf("schema: type %s: no fields", tn)
		}
		for fn, f := range t.Fields {
			if !nameRE.MatchString(fn) {
				return nil, fmt.Errorf("schema: %s.%s: use lowercase letters, digits and _", tn, fn)
			}
			if err := checkField(f, false); err != nil {
				return nil, fmt.Errorf("schema: %s.%s: %w", tn, fn, err)
			}
		}
	}
	return &s, nil
}

func checkField(f *Field, inList bool) error {
	if f == nil {
		return fmt.Errorf("empty field")
	}
	if f.Min != nil && f.Max != nil && *f.Min > *f.Max {
		return fmt.Errorf("min %v is above max %v", *f.Min, *f.Max)
	}
	switch f.Type {
	case TypeString, TypeInt, TypeNumber, TypeBool, TypeTime, TypeObject:
	case TypeEnum:
		if len(f.Values) == 0 {
			return fmt.Errorf("enum without values")
		}
	case TypeList:
		if inList {
			return fmt.Errorf("list of lists")
		}
		if f.Item == nil {
			return fmt.Errorf("list without item")
		}
		if err := checkField(f.Item, true); err != nil {
			return fmt.Errorf("item: %w", err)
		}
		if f.Policy == "" {
			f.Policy = PolicyAppend
		}
		if f.Policy != PolicyAppend {
			return fmt.Errorf("a list's policy is append")
		}
	default:
		return fmt.Errorf("unknown type %q", f.Type)
	}
	if inList {
		return nil
	}
	switch f.Policy {
	case "":
		f.Policy = PolicyManual
	case PolicyServerOwned, PolicyServerWins, PolicyDeviceWins, PolicyLastWriter, PolicyManual:
	case PolicyAppend:
		if f.Type != TypeList {
			return fmt.Errorf("policy append is for lists")
		}
	case PolicyRolePriority:
		if len(f.Roles) == 0 {
			return fmt.Errorf("role-priority without roles")
		}
	default:
		return fmt.Errorf("unknown policy %q", f.Policy)
	}
	return nil
}

// Type returns the entity type named typ.
func (s *Schema) Type(typ string) (*EntityType, bool) {
	t, ok := s.Types[typ]
	return t, ok
}

// TypeNames returns the entity type names, sorted.
func (s *Schema) TypeNames() []string {
	names := make([]string, 0, len(s.Types))
	for n := range s.Types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CheckOp validates op against the schema, as written by a device or,
// when office is true, by the office (which may write server-owned
// fields). The
// returned error is a *fieldsync.Error with a stable code and a message
// that names the field.
func (s *Schema) CheckOp(op *fieldsync.Op, office bool) error {
	t, ok := s.Types[op.EntityType]
	if !ok {
		return fieldsync.Errorf(fieldsync.EUnknownEntityType, "unknown entity type %q", op.EntityType)
	}
	if op.Kind == fieldsync.KindAttach {
		// Any type may carry attachments; the server checks the value.
		if _, ok := op.Fields[fieldsync.AttachField]; !ok || len(op.Fields) != 1 {
			return fieldsync.Errorf(fieldsync.EInvalidRequest, "an attach carries exactly one field, %q", fieldsync.AttachField)
		}
		return nil
	}
	names := make([]string, 0, len(op.Fields))
	for n := range op.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		f, ok := t.Fields[name]
		if !ok {
			return fieldsync.Errorf(fieldsync.EUnknownField, "%s has no field %q", op.EntityType, name)
		}
		if f.Policy == PolicyServerOwned && !office {
			return fieldsync.Errorf(fieldsync.EServerOwned, "field %q is set by the server only", name)
		}
		v := op.Fields[name]
		switch op.Kind {
		case fieldsync.KindAppend:
			if f.Type != TypeList {
				return fieldsync.Errorf(fieldsync.EInvalidField, "field %q is not a list: use update", name)
			}
			if err := f.Item.checkItem(v); err != nil {
				return fieldsync.Errorf(fieldsync.EInvalidField, "field %q: %v", name, err)
			}
		case fieldsync.KindCreate, fieldsync.KindUpdate:
			if f.Type == TypeList {
				return fieldsync.Errorf(fieldsync.EInvalidField, "field %q is append-only: use append", name)
			}
			if f.Required && isNull(v) {
				return fieldsync.Errorf(fieldsync.ERequiredField, "field %q is required", name)
			}
			if err := f.check(v); err != nil {
				return fieldsync.Errorf(fieldsync.EInvalidField, "field %q: %v", name, err)
			}
		case fieldsync.KindDelete:
			return fieldsync.Errorf(fieldsync.EInvalidRequest, "a delete carries no fields")
		case fieldsync.KindSettle:
			if f.Type == TypeList {
				return fieldsync.Errorf(fieldsync.EInvalidField, "field %q is append-only: it never conflicts", name)
			}
			if _, err := f.ParseSettle(v); err != nil {
				return fieldsync.Errorf(fieldsync.EInvalidField, "field %q: %v", name, err)
			}
		}
	}
	if op.Kind == fieldsync.KindCreate {
		for _, name := range sortedFieldNames(t) {
			f := t.Fields[name]
			if f.Required && f.Policy != PolicyServerOwned {
				if _, ok := op.Fields[name]; !ok {
					return fieldsync.Errorf(fieldsync.ERequiredField, "field %q is required", name)
				}
			}
		}
	}
	if op.Kind == fieldsync.KindSettle && len(op.Fields) != 1 {
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "a settle names exactly one field")
	}
	if (op.Kind == fieldsync.KindUpdate || op.Kind == fieldsync.KindAppend) && len(op.Fields) == 0 {
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "an %s names at least one field", op.Kind)
	}
	return nil
}

func sortedFieldNames(t *EntityType) []string {
	names := make([]string, 0, len(t.Fields))
	for n := range t.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// plainString returns the JSON string v as json.Unmarshal would when it
// has no escapes, no control characters and is valid UTF-8: then it is
// the bytes between the quotes. Every op's values are checked here, and
// most are such strings.
func plainString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	in := v[1 : len(v)-1]
	for _, c := range in {
		if c == '"' || c == '\\' || c < 0x20 {
			return "", false
		}
	}
	if !utf8.Valid(in) {
		return "", false
	}
	return string(in), true
}

func isNull(v json.RawMessage) bool {
	return len(bytes.TrimSpace(v)) == 0 || string(bytes.TrimSpace(v)) == "null"
}

// check validates one value; null clears an optional field.
func (f *Field) check(v json.RawMessage) error {
	if isNull(v) {
		return nil
	}
	switch f.Type {
	case TypeString, TypeEnum, TypeTime:
		s, plain := plainString(v)
		if !plain {
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("want a string")
			}
		}
		if !utf8.ValidString(s) {
			return fmt.Errorf("not valid UTF-8")
		}
		switch f.Type {
		case TypeString:
			n := float64(utf8.RuneCountInString(s))
			if f.Max != nil && n > *f.Max {
				return fmt.Errorf("longer than %d characters", int(*f.Max))
			}
			if f.Min != nil && n < *f.Min {
				return fmt.Errorf("shorter than %d characters", int(*f.Min))
			}
		case TypeEnum:
			for _, ok := range f.Values {
				if s == ok {
					return nil
				}
			}
			return fmt.Errorf("%q is not one of %q", s, f.Values)
		case TypeTime:
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				return fmt.Errorf("want an RFC 3339 time")
			}
		}
	case TypeInt, TypeNumber:
		var n float64
		if err := json.Unmarshal(v, &n); err != nil {
			return fmt.Errorf("want a number")
		}
		if f.Type == TypeInt && (n != math.Trunc(n) || math.Abs(n) > 1<<53) {
			return fmt.Errorf("want a whole number")
		}
		if f.Max != nil && n > *f.Max {
			return fmt.Errorf("more than %v", *f.Max)
		}
		if f.Min != nil && n < *f.Min {
			return fmt.Errorf("less than %v", *f.Min)
		}
	case TypeBool:
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return fmt.Errorf("want true or false")
		}
	case TypeObject:
		var m map[string]json.RawMessage
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("want an object")
		}
		if f.Max != nil && float64(len(v)) > *f.Max {
			return fmt.Errorf("larger than %d bytes", int(*f.Max))
		}
	default:
		return fmt.Errorf("cannot hold a value")
	}
	return nil
}

// MaxNoteChars caps the note of a settlement.
const MaxNoteChars = 2000

// ParseSettle decodes and checks the content of a settle op for this field.
func (f *Field) ParseSettle(v json.RawMessage) (fieldsync.Settle, error) {
	var st fieldsync.Settle
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return st, fmt.Errorf("want a settlement {conflict, choice, value, op, note}")
	}
	if st.Conflict == "" || len(st.Conflict) > 80 {
		return st, fmt.Errorf("name the conflict to settle")
	}
	switch st.Choice {
	case fieldsync.ChoiceKeepServer, fieldsync.ChoiceTakeDevice:
		if len(st.Value) > 0 {
			return st, fmt.Errorf("a value goes only with choice %s", fieldsync.ChoiceNewValue)
		}
	case fieldsync.ChoiceNewValue:
		if len(st.Value) == 0 {
			return st, fmt.Errorf("choice %s needs a value", fieldsync.ChoiceNewValue)
		}
		if f.Required && isNull(st.Value) {
			return st, fmt.Errorf("the field is required")
		}
		if err := f.check(st.Value); err != nil {
			return st, err
		}
	default:
		return st, fmt.Errorf("choice %q is not %s, %s or %s", st.Choice, fieldsync.ChoiceKeepServer, fieldsync.ChoiceTakeDevice, fieldsync.ChoiceNewValue)
	}
	if !utf8.ValidString(st.Note) || utf8.RuneCountInString(st.Note) > MaxNoteChars {
		return st, fmt.Errorf("the note is longer than %d characters or not valid text", MaxNoteChars)
	}
	return st, nil
}

// check for list items: an item may not be null.
func (f *Field) checkItem(v json.RawMessage) error {
	if isNull(v) {
		return fmt.Errorf("an item may not be empty")
	}
	return f.check(v)
}
