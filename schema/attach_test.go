package schema_test

import (
	"encoding/json"
	"testing"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/schema"
)

// TestCheckOpAttach: every entity type takes attach ops, which carry the
// one field fieldsync.AttachField whatever fields the type declares.
func TestCheckOpAttach(t *testing.T) {
	s, err := schema.Parse([]byte(`{"version":1,"types":{"visit":{"fields":{"note":{"type":"string","required":true}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	value := json.RawMessage(`{"id":"x"}`) // the server checks the value itself
	op := func(typ string, fields map[string]json.RawMessage) *fieldsync.Op {
		return &fieldsync.Op{ID: "0190a6c4-1b2c-7d3e-8f40-0123456789ab", DeviceID: "d", Seq: 1, EntityType: typ, EntityID: "v1",
			Kind: fieldsync.KindAttach, Fields: fields}
	}
	if err := s.CheckOp(op("visit", map[string]json.RawMessage{fieldsync.AttachField: value}), false); err != nil {
		t.Fatalf("attach to a type without list fields: %v", err)
	}
	if err := schema.Default().CheckOp(op("work_order", map[string]json.RawMessage{fieldsync.AttachField: value}), false); err != nil {
		t.Fatalf("attach to a work order: %v", err)
	}
	cases := []struct {
		name   string
		typ    string
		fields map[string]json.RawMessage
		code   fieldsync.Code
	}{
		{"unknown type", "job", map[string]json.RawMessage{fieldsync.AttachField: value}, fieldsync.EUnknownEntityType},
		{"no field", "visit", nil, fieldsync.EInvalidRequest},
		{"another field", "visit", map[string]json.RawMessage{"note": value}, fieldsync.EInvalidRequest},
		{"two fields", "visit", map[string]json.RawMessage{fieldsync.AttachField: value, "note": value}, fieldsync.EInvalidRequest},
	}
	for _, c := range cases {
		if err := s.CheckOp(op(c.typ, c.fields), false); fieldsync.ErrorCode(err) != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}
}
