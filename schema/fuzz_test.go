package schema_test

import (
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/schema"
)

// opCodes are the codes CheckOp may answer with.
var opCodes = map[fieldsync.Code]bool{
	fieldsync.EUnknownEntityType: true,
	fieldsync.EUnknownField:      true,
	fieldsync.EInvalidField:      true,
	fieldsync.ERequiredField:     true,
	fieldsync.EServerOwned:       true,
	fieldsync.EInvalidRequest:    true,
}

// probeValues are values tried on every field of a fuzzed schema.
var probeValues = []string{`null`, `""`, `"x"`, `0`, `-1e308`, `1.5`, `true`, `{}`, `[]`, `"2024-07-03T09:30:00Z"`, `{"a":[1,2,{"b":null}]}`}

// FuzzSchemaParse: Parse never panics; an accepted schema survives a
// round trip through the encoder, and checking ops of every kind against
// each of its fields, with the fuzzed value and some fixed ones, from a
// device and from the office, never panics and answers with a per-op
// code.
func FuzzSchemaParse(f *testing.F) {
	for _, name := range []string{"workorder.json", "testdata/kitchen_sink.json"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, []byte(`"abc"`))
	}
	f.Add([]byte(withField(`{"type":"list","item":{"type":"enum","values":["a"]}}`)), []byte(`"a"`))
	f.Add([]byte(withField(`{"type":"int","min":1e308,"max":-1e308}`)), []byte(`1e309`))
	f.Add([]byte(withField(`{"type":"string","max":-1}`)), []byte(`""`))
	f.Add([]byte(withField(`{"type":"object","max":0}`)), []byte(`{}`))
	f.Add([]byte(`{"version":1,"types":{"job":null}}`), []byte(`null`))
	f.Add([]byte(`{"version":1,"types":{"job":{"fields":{"f":{"type":"list","item":null}}}}}`), []byte(`[`))
	f.Fuzz(func(t *testing.T, data, value []byte) {
		s, err := schema.Parse(data)
		if err != nil {
			if s != nil {
				t.Fatal("Parse returned a schema and an error")
			}
			return
		}
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("encode accepted schema: %v", err)
		}
		if _, err := schema.Parse(out); err != nil {
			t.Fatalf("accepted schema does not parse again: %v\n%s", err, out)
		}
		values := append([]json.RawMessage{value}, rawAll(probeValues)...)
		if json.Valid(value) {
			values = append(values, settlements(value)...)
		}
		for _, tn := range s.TypeNames() {
			typ, _ := s.Type(tn)
			for fn := range typ.Fields {
				for _, v := range values {
					probe(t, s, tn, map[string]json.RawMessage{fn: v})
				}
			}
			probe(t, s, tn, nil)
		}
		// The bundled schema against the fuzzed value, and settlements
		// carrying it as their new value.
		def := schema.Default()
		wo, _ := def.Type("work_order")
		for fn := range wo.Fields {
			probe(t, def, "work_order", map[string]json.RawMessage{fn: value})
			if json.Valid(value) {
				for _, st := range settlements(value) {
					probe(t, def, "work_order", map[string]json.RawMessage{fn: st})
				}
			}
		}
	})
}

// settlements are settle contents built around value: as a new value,
// as a note, and as a wrongly placed value.
func settlements(value []byte) []json.RawMessage {
	note, _ := json.Marshal(string(value))
	return []json.RawMessage{
		json.RawMessage(`{"conflict":"c","choice":"new_value","value":` + string(value) + `}`),
		json.RawMessage(`{"conflict":"c","choice":"keep_server","note":` + string(note) + `}`),
		json.RawMessage(`{"conflict":"c","choice":"take_device","value":` + string(value) + `}`),
	}
}

func rawAll(vs []string) []json.RawMessage {
	out := make([]json.RawMessage, len(vs))
	for i, v := range vs {
		out[i] = json.RawMessage(v)
	}
	return out
}

func probe(t *testing.T, s *schema.Schema, typ string, fields map[string]json.RawMessage) {
	t.Helper()
	for _, kind := range []fieldsync.OpKind{fieldsync.KindCreate, fieldsync.KindUpdate, fieldsync.KindAppend, fieldsync.KindDelete, fieldsync.KindSettle} {
		for _, office := range []bool{false, true} {
			o := &fieldsync.Op{ID: "0190a6c4-1b2c-7d3e-8f40-0123456789ab", DeviceID: "d", Seq: 1, EntityType: typ, EntityID: "e", Kind: kind, Fields: fields}
			err := s.CheckOp(o, office)
			if err == nil {
				continue
			}
			var fe *fieldsync.Error
			if !errors.As(err, &fe) || !opCodes[fe.Code] || fe.Message == "" {
				t.Fatalf("CheckOp(%s %s %s) = %v: not a per-op *fieldsync.Error", kind, typ, fields, err)
			}
		}
	}
}
