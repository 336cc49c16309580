package schema

import (
	"strings"
	"testing"
)

func TestCompatible(t *testing.T) {
	base := `{"version":1,"types":{"job":{"fields":{
		"title":{"type":"string","max":100,"policy":"last-writer-wins"},
		"state":{"type":"enum","values":["a","b"]},
		"notes":{"type":"list","item":{"type":"string","max":50}}}}}}`
	cases := []struct {
		name string
		next string
		want string // "" = accepted; else a fragment of the refusal
	}{
		{"same", base, ""},
		{"new type", strings.Replace(base, `"types":{`, `"types":{"site":{"fields":{"name":{"type":"string"}}},`, 1), ""},
		{"new optional field", strings.Replace(base, `"fields":{`, `"fields":{"extra":{"type":"int"},`, 1), ""},
		{"new enum value", strings.Replace(base, `["a","b"]`, `["a","b","c"]`, 1), ""},
		{"wider limit", strings.Replace(base, `"max":100`, `"max":200`, 1), ""},
		{"limit removed", strings.Replace(base, `"max":100,`, ``, 1), ""},
		{"type removed", `{"version":1,"types":{"site":{"fields":{"name":{"type":"string"}}}}}`, "type job is removed"},
		{"field removed", strings.Replace(base, `"title":{"type":"string","max":100,"policy":"last-writer-wins"},`, ``, 1), "job.title is removed"},
		{"type changed", strings.Replace(base, `"title":{"type":"string"`, `"title":{"type":"int"`, 1), "type changes from string to int"},
		{"enum value removed", strings.Replace(base, `["a","b"]`, `["a"]`, 1), `enum value "b" is removed`},
		{"narrower limit", strings.Replace(base, `"max":100`, `"max":10`, 1), "maximum falls"},
		{"policy changed", strings.Replace(base, `"last-writer-wins"`, `"manual"`, 1), "policy changes"},
		{"new required field", strings.Replace(base, `"fields":{`, `"fields":{"must":{"type":"int","required":true},`, 1), "new and required"},
		{"becomes required", strings.Replace(base, `"title":{"type":"string",`, `"title":{"type":"string","required":true,`, 1), "becomes required"},
		{"list item narrower", strings.Replace(base, `"max":50`, `"max":5`, 1), "item maximum falls"},
	}
	cur, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			next, err := Parse([]byte(c.next))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			err = Compatible(cur, next)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatal("accepted a breaking change")
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("refusal %q does not say %q", err, c.want)
			}
		})
	}
}

func TestSchemaJSONRoundTrip(t *testing.T) {
	s := Default()
	back, err := Parse(s.JSON())
	if err != nil {
		t.Fatal(err)
	}
	if err := Compatible(s, back); err != nil {
		t.Fatal(err)
	}
	if err := Compatible(back, s); err != nil {
		t.Fatal(err)
	}
}
