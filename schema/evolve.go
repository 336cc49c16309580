package schema

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Compatible reports whether next may replace cur on a running system:
// next may add entity types, add optional fields, add enum values and
// widen limits; anything else would leave stored records or queued ops
// invalid, and is refused with every reason listed.
func Compatible(cur, next *Schema) error {
	var why []string
	for _, tn := range cur.TypeNames() {
		ct := cur.Types[tn]
		nt, ok := next.Types[tn]
		if !ok {
			why = append(why, fmt.Sprintf("type %s is removed", tn))
			continue
		}
		if nt.NumberPrefix != ct.NumberPrefix {
			why = append(why, fmt.Sprintf("%s: number prefix changes from %q to %q", tn, ct.NumberPrefix, nt.NumberPrefix))
		}
		for _, fn := range sortedFieldNames(ct) {
			cf := ct.Fields[fn]
			nf, ok := nt.Fields[fn]
			if !ok {
				why = append(why, fmt.Sprintf("%s.%s is removed", tn, fn))
				continue
			}
			for _, w := range fieldChanges(cf, nf) {
				why = append(why, fmt.Sprintf("%s.%s: %s", tn, fn, w))
			}
		}
		for _, fn := range sortedFieldNames(nt) {
			if _, old := ct.Fields[fn]; !old && nt.Fields[fn].Required {
				why = append(why, fmt.Sprintf("%s.%s is new and required: records made before it have no value", tn, fn))
			}
		}
	}
	if len(why) > 0 {
		sort.Strings(why)
		return fmt.Errorf("a breaking schema change is refused (only new types, new optional fields, new enum values and wider limits are accepted on a running system): %s", strings.Join(why, "; "))
	}
	return nil
}

func fieldChanges(c, n *Field) []string {
	var why []string
	if c.Type != n.Type {
		return []string{fmt.Sprintf("type changes from %s to %s", c.Type, n.Type)}
	}
	if c.Policy != n.Policy {
		why = append(why, fmt.Sprintf("policy changes from %s to %s", c.Policy, n.Policy))
	}
	if !slices.Equal(c.Roles, n.Roles) {
		why = append(why, "role priority changes")
	}
	if !c.Required && n.Required {
		why = append(why, "becomes required")
	}
	for _, v := range c.Values {
		if !slices.Contains(n.Values, v) {
			why = append(why, fmt.Sprintf("enum value %q is removed", v))
		}
	}
	if narrower(c.Min, n.Min, false) {
		why = append(why, "minimum rises")
	}
	if narrower(c.Max, n.Max, true) {
		why = append(why, "maximum falls")
	}
	if c.Item != nil && n.Item != nil {
		for _, w := range fieldChanges(c.Item, n.Item) {
			why = append(why, "item "+w)
		}
	}
	return why
}

// narrower reports whether limit n is stricter than c (an upper limit when
// upper, a lower one otherwise); no limit is the widest.
func narrower(c, n *float64, upper bool) bool {
	switch {
	case n == nil:
		return false
	case c == nil:
		return true
	case upper:
		return *n < *c
	default:
		return *n > *c
	}
}

// JSON returns the schema as a document Parse accepts.
func (s *Schema) JSON() []byte {
	b, _ := json.MarshalIndent(s, "", "  ")
	return b
}
