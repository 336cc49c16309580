package schema_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/schema"
)

func TestDefaultSchema(t *testing.T) {
	s := schema.Default()
	if got := s.TypeNames(); !slices.Equal(got, []string{"work_order"}) {
		t.Fatalf("types %v", got)
	}
	wo, ok := s.Type("work_order")
	if !ok {
		t.Fatal("no work_order type")
	}
	if wo.NumberPrefix != "WO-" || wo.NumberStart != 1001 {
		t.Errorf("numbering %q %d", wo.NumberPrefix, wo.NumberStart)
	}
	for name, f := range wo.Fields {
		if f.Policy == "" {
			t.Errorf("field %s has no policy after parsing", name)
		}
		if (f.Type == schema.TypeList) != (f.Policy == schema.PolicyAppend) {
			t.Errorf("field %s: type %s with policy %s", name, f.Type, f.Policy)
		}
	}
	for name, policy := range map[string]string{
		"title": schema.PolicyLastWriter, "status": schema.PolicyManual, "assignee": schema.PolicyServerOwned,
		"amount": schema.PolicyServerOwned, "address": schema.PolicyServerWins, "comments": schema.PolicyAppend,
		"photos": schema.PolicyAppend, "visit_start": schema.PolicyDeviceWins,
	} {
		if f := wo.Fields[name]; f == nil || f.Policy != policy {
			t.Errorf("field %s: %+v, want policy %s", name, f, policy)
		}
	}
	if _, ok := s.Type("invoice"); ok {
		t.Error("found a type that is not in the schema")
	}
	// Default parses a fresh copy each time: callers cannot change
	// each other's schema.
	wo.Fields["title"].Max = nil
	if again, _ := schema.Default().Type("work_order"); again.Fields["title"].Max == nil {
		t.Error("Default returned a shared schema")
	}
}

func TestKitchenSinkParses(t *testing.T) {
	s := loadSink(t)
	job, _ := s.Type("job")
	if job.Fields["name"].Policy != schema.PolicyManual {
		t.Errorf("a field with no policy gets %q, want manual", job.Fields["name"].Policy)
	}
	if job.Fields["notes"].Policy != schema.PolicyAppend {
		t.Errorf("a list with no policy gets %q, want append", job.Fields["notes"].Policy)
	}
	// A parsed schema written out parses again to the same thing.
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := schema.Parse(data)
	if err != nil {
		t.Fatalf("re-parse: %v", err)
	}
	data2, _ := json.Marshal(s2)
	if string(data) != string(data2) {
		t.Errorf("re-parse changed the schema:\n%s\n%s", data, data2)
	}
}

func loadSink(t *testing.T) *schema.Schema {
	t.Helper()
	data, err := os.ReadFile("testdata/kitchen_sink.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := schema.Parse(data)
	if err != nil {
		t.Fatalf("kitchen sink: %v", err)
	}
	return s
}

// withField returns a one-type schema document with one field "f"
// described by fieldJSON.
func withField(fieldJSON string) string {
	return `{"version":1,"types":{"job":{"fields":{"f":` + fieldJSON + `}}}}`
}

func TestBadSchemas(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []string // all must appear in the message
	}{
		{"not JSON", `{"version":`, []string{"schema"}},
		{"not an object", `[]`, []string{"schema"}},
		{"unknown member", `{"version":1,"types":{},"colour":1}`, []string{"colour"}},
		{"unknown field member", withField(`{"type":"string","maxlen":3}`), []string{"maxlen"}},
		{"trailing data", withField(`{"type":"string"}`) + ` {"version":2}`, []string{"schema"}},
		{"trailing brace", withField(`{"type":"string"}`) + `}`, []string{"schema"}},
		{"version 0", `{"version":0,"types":{"job":{"fields":{"f":{"type":"string"}}}}}`, []string{"version"}},
		{"no types", `{"version":1,"types":{}}`, []string{"no types"}},
		{"bad type name", `{"version":1,"types":{"Job":{"fields":{"f":{"type":"string"}}}}}`, []string{`"Job"`}},
		{"null type", `{"version":1,"types":{"job":null}}`, []string{"job", "no fields"}},
		{"type without fields", `{"version":1,"types":{"job":{"fields":{}}}}`, []string{"job", "no fields"}},
		{"bad field name", `{"version":1,"types":{"job":{"fields":{"Due Date":{"type":"time"}}}}}`, []string{"job.Due Date"}},
		{"null field", withField(`null`), []string{"job.f", "empty field"}},
		{"unknown type", withField(`{"type":"text"}`), []string{"job.f", `"text"`}},
		{"no type", withField(`{}`), []string{"job.f", "unknown type"}},
		{"enum without values", withField(`{"type":"enum"}`), []string{"job.f", "enum without values"}},
		{"list without item", withField(`{"type":"list"}`), []string{"job.f", "list without item"}},
		{"list with null item", withField(`{"type":"list","item":null}`), []string{"job.f", "list without item"}},
		{"list of lists", withField(`{"type":"list","item":{"type":"list","item":{"type":"string"}}}`), []string{"job.f", "list of lists"}},
		{"list item of unknown type", withField(`{"type":"list","item":{"type":"blob"}}`), []string{"job.f", "item", `"blob"`}},
		{"enum item without values", withField(`{"type":"list","item":{"type":"enum"}}`), []string{"job.f", "item", "enum"}},
		{"list with manual policy", withField(`{"type":"list","item":{"type":"string"},"policy":"manual"}`), []string{"job.f", "append"}},
		{"append policy on a string", withField(`{"type":"string","policy":"append"}`), []string{"job.f", "append is for lists"}},
		{"role-priority without roles", withField(`{"type":"string","policy":"role-priority"}`), []string{"job.f", "roles"}},
		{"unknown policy", withField(`{"type":"string","policy":"first-wins"}`), []string{"job.f", `"first-wins"`}},
		{"min above max", withField(`{"type":"int","min":5,"max":1}`), []string{"job.f", "min"}},
		{"string min above max", withField(`{"type":"string","min":10,"max":2}`), []string{"job.f", "min"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := schema.Parse([]byte(c.doc))
			if err == nil {
				t.Fatalf("accepted: %+v", s)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q does not name %q", err, w)
				}
			}
		})
	}
}

// op builds an op on the kitchen-sink type "job".
func op(kind fieldsync.OpKind, fields map[string]string) *fieldsync.Op {
	o := &fieldsync.Op{ID: "0190a6c4-1b2c-7d3e-8f40-0123456789ab", DeviceID: "dev", Seq: 1, EntityType: "job", EntityID: "j1", Kind: kind}
	if fields != nil {
		o.Fields = map[string]json.RawMessage{}
		for k, v := range fields {
			o.Fields[k] = json.RawMessage(v)
		}
	}
	return o
}

func TestCheckOp(t *testing.T) {
	s := loadSink(t)
	const (
		create = fieldsync.KindCreate
		update = fieldsync.KindUpdate
		appnd  = fieldsync.KindAppend
		del    = fieldsync.KindDelete
	)
	type F = map[string]string
	cases := []struct {
		name   string
		kind   fieldsync.OpKind
		fields F
		office bool
		code   fieldsync.Code // "" = accepted
		field  string         // named in the message
	}{
		// Strings: length counts characters, not bytes.
		{"string within max in characters", update, F{"name": `"héllo"`}, false, "", ""},
		{"string over max by one character", update, F{"name": `"héllo!"`}, false, fieldsync.EInvalidField, "name"},
		{"string of 4 multibyte characters", update, F{"name": `"日本語字"`}, false, "", ""},
		{"string of 6 multibyte characters", update, F{"name": `"日本語字幕版"`}, false, fieldsync.EInvalidField, "name"},
		{"string escapes count as characters", update, F{"name": `"\u00e9\u00e9"`}, false, "", ""},
		{"string under min", update, F{"name": `"a"`}, false, fieldsync.EInvalidField, "name"},
		{"string given a number", update, F{"name": `12`}, false, fieldsync.EInvalidField, "name"},
		{"string given an object", update, F{"name": `{"a":"b"}`}, false, fieldsync.EInvalidField, "name"},
		// Enums.
		{"enum value", update, F{"kind": `"b"`}, false, "", ""},
		{"enum unknown value", update, F{"kind": `"c"`}, false, fieldsync.EInvalidField, "kind"},
		{"enum is case-sensitive", update, F{"kind": `"A"`}, false, fieldsync.EInvalidField, "kind"},
		{"enum given a number", update, F{"kind": `1`}, false, fieldsync.EInvalidField, "kind"},
		{"enum cleared", update, F{"kind": `null`}, false, "", ""},
		// Ints and numbers.
		{"int", update, F{"count": `7`}, false, "", ""},
		{"int written with exponent", update, F{"count": `1e1`}, false, "", ""},
		{"int fraction", update, F{"count": `3.5`}, false, fieldsync.EInvalidField, "count"},
		{"int over max", update, F{"count": `11`}, false, fieldsync.EInvalidField, "count"},
		{"int under min", update, F{"count": `-1`}, false, fieldsync.EInvalidField, "count"},
		{"int given a string", update, F{"count": `"3"`}, false, fieldsync.EInvalidField, "count"},
		{"int given a bool", update, F{"count": `true`}, false, fieldsync.EInvalidField, "count"},
		{"number fraction", update, F{"ratio": `1.25`}, false, "", ""},
		{"number at min", update, F{"ratio": `-1.5`}, false, "", ""},
		{"number over max", update, F{"ratio": `1.5000001`}, false, fieldsync.EInvalidField, "ratio"},
		{"number given a string", update, F{"ratio": `"1"`}, false, fieldsync.EInvalidField, "ratio"},
		// Bools.
		{"bool", update, F{"done": `false`}, false, "", ""},
		{"bool given a string", update, F{"done": `"true"`}, false, fieldsync.EInvalidField, "done"},
		{"bool given a number", update, F{"done": `1`}, false, fieldsync.EInvalidField, "done"},
		// Times: RFC 3339 only.
		{"time UTC", update, F{"due": `"2024-07-03T09:30:00Z"`}, false, "", ""},
		{"time with offset and fraction", update, F{"due": `"2024-07-03T09:30:00.123+02:00"`}, false, "", ""},
		{"time date only", update, F{"due": `"2024-07-03"`}, false, fieldsync.EInvalidField, "due"},
		{"time without zone", update, F{"due": `"2024-07-03T09:30:00"`}, false, fieldsync.EInvalidField, "due"},
		{"time in words", update, F{"due": `"tomorrow"`}, false, fieldsync.EInvalidField, "due"},
		{"time as Unix seconds", update, F{"due": `1720000000`}, false, fieldsync.EInvalidField, "due"},
		// Objects: size in bytes.
		{"object", update, F{"where": `{"lat":1,"lon":2}`}, false, "", ""},
		{"object over max bytes", update, F{"where": `{"lat":1.000001,"lon":2}`}, false, fieldsync.EInvalidField, "where"},
		{"object given a list", update, F{"where": `[1,2]`}, false, fieldsync.EInvalidField, "where"},
		{"object given a string", update, F{"where": `"here"`}, false, fieldsync.EInvalidField, "where"},
		// Lists: append only, items checked against the item rule.
		{"append a list item", appnd, F{"notes": `"abc"`}, false, "", ""},
		{"append two lists at once", appnd, F{"notes": `"ab"`, "photos": `{"sha":"x"}`}, false, "", ""},
		{"append an item over its max", appnd, F{"notes": `"abcd"`}, false, fieldsync.EInvalidField, "notes"},
		{"append a null item", appnd, F{"notes": `null`}, false, fieldsync.EInvalidField, "notes"},
		{"append an item of the wrong type", appnd, F{"photos": `"photo.jpg"`}, false, fieldsync.EInvalidField, "photos"},
		{"append to a non-list field", appnd, F{"name": `"abc"`}, false, fieldsync.EInvalidField, "name"},
		{"update a list field", update, F{"notes": `["abc"]`}, false, fieldsync.EInvalidField, "notes"},
		{"create with a list field", create, F{"name": `"ab"`, "notes": `["a"]`}, false, fieldsync.EInvalidField, "notes"},
		{"append with no fields", appnd, F{}, false, fieldsync.EInvalidRequest, ""},
		// Required fields.
		{"create with the required field", create, F{"name": `"ab"`}, false, "", ""},
		{"create without the required field", create, F{"kind": `"a"`}, false, fieldsync.ERequiredField, "name"},
		{"create with the required field null", create, F{"name": `null`}, false, fieldsync.ERequiredField, "name"},
		{"create with nothing", create, nil, false, fieldsync.ERequiredField, "name"},
		{"update clearing a required field", update, F{"name": `null`}, false, fieldsync.ERequiredField, "name"},
		{"update leaving the required field alone", update, F{"kind": `"a"`}, false, "", ""},
		{"update with no fields", update, F{}, false, fieldsync.EInvalidRequest, ""},
		{"office create needs the required field too", create, F{"kind": `"a"`}, true, fieldsync.ERequiredField, "name"},
		// Server-owned fields: refused for devices, allowed for the office.
		{"device writes a server-owned field", update, F{"owner": `"ana"`}, false, fieldsync.EServerOwned, "owner"},
		{"office writes a server-owned field", update, F{"owner": `"ana"`}, true, "", ""},
		{"device creates with a server-owned field", create, F{"name": `"ab"`, "total": `3`}, false, fieldsync.EServerOwned, "total"},
		{"office creates with a server-owned field", create, F{"name": `"ab"`, "total": `3`}, true, "", ""},
		{"required server-owned field is not asked of a create", create, F{"name": `"ab"`}, false, "", ""},
		{"office value still checked", update, F{"total": `"lots"`}, true, fieldsync.EInvalidField, "total"},
		// Names and kinds.
		{"unknown field", update, F{"colour": `"red"`}, false, fieldsync.EUnknownField, "colour"},
		{"unknown field for the office", update, F{"colour": `"red"`}, true, fieldsync.EUnknownField, "colour"},
		{"delete", del, nil, false, "", ""},
		{"delete with fields", del, F{"name": `"ab"`}, false, fieldsync.EInvalidRequest, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.CheckOp(op(c.kind, c.fields), c.office)
			if got := fieldsync.ErrorCode(err); got != c.code {
				t.Fatalf("code %q, want %q (%v)", got, c.code, err)
			}
			if c.field != "" && !strings.Contains(fieldsync.ErrorMessage(err), `"`+c.field+`"`) {
				t.Errorf("message %q does not name the field %q", fieldsync.ErrorMessage(err), c.field)
			}
		})
	}
	t.Run("unknown entity type", func(t *testing.T) {
		o := op(update, F{"name": `"ab"`})
		o.EntityType = "invoice"
		err := s.CheckOp(o, true)
		if fieldsync.ErrorCode(err) != fieldsync.EUnknownEntityType || !strings.Contains(err.Error(), "invoice") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("first bad field in name order is reported", func(t *testing.T) {
		for range 20 { // map order varies; the answer must not
			err := s.CheckOp(op(update, F{"zz": `1`, "count": `"x"`, "ratio": `"y"`}), false)
			if msg := fieldsync.ErrorMessage(err); !strings.Contains(msg, `"count"`) {
				t.Fatalf("got %v, want the count field", err)
			}
		}
	})
}

func TestCheckOpWorkOrder(t *testing.T) {
	s := schema.Default()
	mk := func(kind fieldsync.OpKind, f map[string]string) *fieldsync.Op {
		o := op(kind, f)
		o.EntityType = "work_order"
		return o
	}
	type F = map[string]string
	for _, c := range []struct {
		name string
		op   *fieldsync.Op
		code fieldsync.Code
	}{
		{"create", mk(fieldsync.KindCreate, F{"title": `"Boiler"`, "status": `"new"`}), ""},
		{"create without title", mk(fieldsync.KindCreate, F{"status": `"new"`}), fieldsync.ERequiredField},
		{"status in progress", mk(fieldsync.KindUpdate, F{"status": `"in progress"`}), ""},
		{"status unknown", mk(fieldsync.KindUpdate, F{"status": `"done"`}), fieldsync.EInvalidField},
		{"assignee by a device", mk(fieldsync.KindUpdate, F{"assignee": `"ana"`}), fieldsync.EServerOwned},
		{"amount by a device", mk(fieldsync.KindUpdate, F{"amount": `12.5`}), fieldsync.EServerOwned},
		{"comment", mk(fieldsync.KindAppend, F{"comments": `"pressure ok"`}), ""},
		{"empty comment", mk(fieldsync.KindAppend, F{"comments": `""`}), fieldsync.EInvalidField},
		{"photo", mk(fieldsync.KindAppend, F{"photos": `{"sha256":"ab","size":10}`}), ""},
		{"title of 200 characters", mk(fieldsync.KindUpdate, F{"title": `"` + strings.Repeat("é", 200) + `"`}), ""},
		{"title of 201 characters", mk(fieldsync.KindUpdate, F{"title": `"` + strings.Repeat("a", 201) + `"`}), fieldsync.EInvalidField},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := fieldsync.ErrorCode(s.CheckOp(c.op, false)); got != c.code {
				t.Fatalf("code %q, want %q", got, c.code)
			}
		})
	}
}

// TestCheckOpSettle: a settle op names one field that can conflict and
// carries a settlement the field accepts: a known choice, a value only
// with new_value and valid for the field, a note of at most
// MaxNoteChars characters.
func TestCheckOpSettle(t *testing.T) {
	s := loadSink(t)
	long := func(r string, n int) string { return strings.Repeat(r, n) }
	type F = map[string]string
	cases := []struct {
		name   string
		fields F
		office bool
		code   fieldsync.Code
		field  string // named in the message
	}{
		{"keep the server's value", F{"kind": `{"conflict":"c1","choice":"keep_server"}`}, false, "", ""},
		{"take the latest device value", F{"kind": `{"conflict":"c1","choice":"take_device"}`}, false, "", ""},
		{"take a named op's value", F{"kind": `{"conflict":"c1","choice":"take_device","op":"0190a6c4-1b2c-7d3e-8f40-0123456789ab"}`}, false, "", ""},
		{"new value", F{"kind": `{"conflict":"c1","choice":"new_value","value":"b","note":"checked on site"}`}, false, "", ""},
		{"new value null clears an optional field", F{"kind": `{"conflict":"c1","choice":"new_value","value":null}`}, false, "", ""},
		{"new value null on a required field", F{"name": `{"conflict":"c1","choice":"new_value","value":null}`}, false, fieldsync.EInvalidField, "name"},
		{"new value outside the enum", F{"kind": `{"conflict":"c1","choice":"new_value","value":"c"}`}, false, fieldsync.EInvalidField, "kind"},
		{"new value of the wrong type", F{"count": `{"conflict":"c1","choice":"new_value","value":"7"}`}, false, fieldsync.EInvalidField, "count"},
		{"new value over the field's max", F{"name": `{"conflict":"c1","choice":"new_value","value":"abcdef"}`}, false, fieldsync.EInvalidField, "name"},
		{"new value without a value", F{"kind": `{"conflict":"c1","choice":"new_value"}`}, false, fieldsync.EInvalidField, "kind"},
		{"a value with keep_server", F{"kind": `{"conflict":"c1","choice":"keep_server","value":"a"}`}, false, fieldsync.EInvalidField, "kind"},
		{"a value with take_device", F{"kind": `{"conflict":"c1","choice":"take_device","value":"a"}`}, false, fieldsync.EInvalidField, "kind"},
		{"unknown choice", F{"kind": `{"conflict":"c1","choice":"mine"}`}, false, fieldsync.EInvalidField, "kind"},
		{"no choice", F{"kind": `{"conflict":"c1"}`}, false, fieldsync.EInvalidField, "kind"},
		{"no conflict", F{"kind": `{"choice":"keep_server"}`}, false, fieldsync.EInvalidField, "kind"},
		{"conflict id of 80 characters", F{"kind": `{"conflict":"` + long("c", 80) + `","choice":"keep_server"}`}, false, "", ""},
		{"conflict id of 81 characters", F{"kind": `{"conflict":"` + long("c", 81) + `","choice":"keep_server"}`}, false, fieldsync.EInvalidField, "kind"},
		{"note of the most characters", F{"kind": `{"conflict":"c1","choice":"keep_server","note":"` + long("é", schema.MaxNoteChars) + `"}`}, false, "", ""},
		{"note one character too long", F{"kind": `{"conflict":"c1","choice":"keep_server","note":"` + long("n", schema.MaxNoteChars+1) + `"}`}, false, fieldsync.EInvalidField, "kind"},
		{"unknown member", F{"kind": `{"conflict":"c1","choice":"keep_server","by":"me"}`}, false, fieldsync.EInvalidField, "kind"},
		{"not an object", F{"kind": `"keep_server"`}, false, fieldsync.EInvalidField, "kind"},
		{"null", F{"kind": `null`}, false, fieldsync.EInvalidField, "kind"},
		{"a list field never conflicts", F{"notes": `{"conflict":"c1","choice":"keep_server"}`}, false, fieldsync.EInvalidField, "notes"},
		{"a server-owned field by a device", F{"owner": `{"conflict":"c1","choice":"keep_server"}`}, false, fieldsync.EServerOwned, "owner"},
		{"a server-owned field by the office", F{"owner": `{"conflict":"c1","choice":"keep_server"}`}, true, "", ""},
		{"a role-priority field", F{"stage": `{"conflict":"c1","choice":"new_value","value":"y"}`}, false, "", ""},
		{"an unknown field", F{"colour": `{"conflict":"c1","choice":"keep_server"}`}, false, fieldsync.EUnknownField, "colour"},
		{"two fields", F{"kind": `{"conflict":"c1","choice":"keep_server"}`, "count": `{"conflict":"c2","choice":"keep_server"}`}, false, fieldsync.EInvalidRequest, ""},
		{"no field", F{}, false, fieldsync.EInvalidRequest, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.CheckOp(op(fieldsync.KindSettle, c.fields), c.office)
			if got := fieldsync.ErrorCode(err); got != c.code {
				t.Fatalf("code %q, want %q (%v)", got, c.code, err)
			}
			if c.field != "" && !strings.Contains(fieldsync.ErrorMessage(err), `"`+c.field+`"`) {
				t.Errorf("message %q does not name the field %q", fieldsync.ErrorMessage(err), c.field)
			}
		})
	}
}

func TestParseSettle(t *testing.T) {
	job, _ := loadSink(t).Type("job")
	st, err := job.Fields["kind"].ParseSettle(json.RawMessage(`{"conflict":"c1","choice":"new_value","value":"b","note":"parts required"}`))
	if err != nil {
		t.Fatal(err)
	}
	if st.Conflict != "c1" || st.Choice != fieldsync.ChoiceNewValue || string(st.Value) != `"b"` || st.Note != "parts required" || st.Op != "" {
		t.Fatalf("parsed %+v", st)
	}
	st, err = job.Fields["kind"].ParseSettle(json.RawMessage(`{"conflict":"c1","choice":"take_device","op":"o1"}`))
	if err != nil || st.Choice != fieldsync.ChoiceTakeDevice || st.Op != "o1" || st.Value != nil {
		t.Fatalf("parsed %+v, %v", st, err)
	}
	// The reasons name what is wrong.
	for body, want := range map[string]string{
		`{"conflict":"c1","choice":"mine"}`:                           "mine",
		`{"conflict":"c1","choice":"keep_server","value":"a"}`:        "new_value",
		`{"conflict":"c1","choice":"new_value","value":"z"}`:          `"z"`,
		`{"choice":"keep_server"}`:                                    "conflict",
		`{"conflict":"c1","choice":"keep_server","note":"\ud800abc"}`: "",
	} {
		_, err := job.Fields["kind"].ParseSettle(json.RawMessage(body))
		if want == "" {
			if err != nil { // a lone surrogate decodes as U+FFFD: valid text
				t.Errorf("%s: %v", body, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a reason naming %q", body, err, want)
		}
	}
}

// TestPlainAndEscapedStringsCheckAlike checks string values written plainly
// and with escapes: each pair must be accepted or refused alike, with the
// same message, by every string-like field of the default schema and by an
// enum.
func TestPlainAndEscapedStringsCheckAlike(t *testing.T) {
	sch, err := schema.Parse([]byte(`{"version":1,"types":{"job":{"fields":{
		"title":{"type":"string","max":5,"policy":"last-writer-wins"},
		"status":{"type":"enum","values":["new","in progress","é"],"policy":"manual"},
		"due":{"type":"time","policy":"last-writer-wins"}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	escape := func(s string) string {
		var b strings.Builder
		b.WriteByte('"')
		for _, r := range s {
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		b.WriteByte('"')
		return b.String()
	}
	for _, v := range []string{"new", "in progress", "é", "hello", "too long!", "", "2024-07-03T09:30:00Z", "not a time", "naïve"} {
		plain, _ := json.Marshal(v)
		for _, field := range []string{"title", "status", "due"} {
			check := func(raw string) string {
				op := fieldsync.Op{ID: "0190a6c4-1b2c-7d3e-8f40-000000000001", DeviceID: "d", Seq: 1, EntityType: "job", EntityID: "j1",
					Kind: fieldsync.KindUpdate, BaseVersion: 1, Fields: map[string]json.RawMessage{field: json.RawMessage(raw)}}
				if err := sch.CheckOp(&op, false); err != nil {
					return err.Error()
				}
				return ""
			}
			if a, b := check(string(plain)), check(escape(v)); a != b {
				t.Errorf("%s = %s: %q; written with escapes: %q", field, plain, a, b)
			}
		}
	}
}
