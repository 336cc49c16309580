package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

// How conflicts, settlements and overridden values are shown, on the
// device and for the office.

// fmtJSON shows a value as compact JSON, so that a string keeps its quotes
// and an empty value reads "null".
func fmtJSON(v json.RawMessage) string {
	if len(bytes.TrimSpace(v)) == 0 {
		return "null"
	}
	var buf bytes.Buffer
	if json.Compact(&buf, v) != nil {
		return truncate(string(v), 80)
	}
	return truncate(buf.String(), 80)
}

// who names a writer for people: the office, this device, or another
// device by its short id.
func who(by, self string) string {
	switch {
	case by == "":
		return "unknown"
	case by == "office":
		return "office"
	case self != "" && by == self:
		return "this device"
	}
	return "device " + shortID(by)
}

// conflictLine is one value of a conflict: the value, who wrote it, when
// and through which op.
func conflictLine(cv fieldsync.ConflictValue, self string) (value, source string) {
	source = who(cv.By, self)
	if !cv.At.IsZero() {
		source += ", " + fmtTime(cv.At)
	}
	if cv.OpID != "" {
		source += ", op " + cv.OpID
	}
	return fmtJSON(cv.Value), source
}

// printConflict writes an open conflict: the value the server kept, every
// value that clashed with it, and the command that settles it.
func printConflict(w io.Writer, indent string, c fieldsync.Conflict, self, settle string) {
	type line struct{ label, value, source string }
	var lines []line
	v, s := conflictLine(c.Server, self)
	lines = append(lines, line{"server's value:", v, s})
	for _, t := range c.Theirs {
		v, s := conflictLine(t, self)
		lines = append(lines, line{"clashing value:", v, s})
	}
	width := 0
	for _, l := range lines {
		width = max(width, len(l.value))
	}
	for _, l := range lines {
		fmt.Fprintf(w, "%s%-16s %-*s  (%s)\n", indent, l.label, width, l.value, l.source)
	}
	if settle != "" {
		fmt.Fprintf(w, "%s%-16s %s\n", indent, "settle it:", settle)
		if len(c.Theirs) > 1 {
			fmt.Fprintf(w, "%s%-16s %s\n", indent, "", "(--take-device takes the latest clashing value; add --op OPID for another)")
		}
	}
}

// settlementText says how a conflict was settled: the choice, the value
// it left, the note, who and when.
func settlementText(s *fieldsync.ConflictSettled, self string) string {
	var b strings.Builder
	switch s.Choice {
	case fieldsync.ChoiceKeepServer:
		fmt.Fprintf(&b, "kept the server's value %s", fmtJSON(s.Value))
	case fieldsync.ChoiceTakeDevice:
		fmt.Fprintf(&b, "took the clashing value %s", fmtJSON(s.Value))
	case fieldsync.ChoiceNewValue:
		fmt.Fprintf(&b, "new value %s", fmtJSON(s.Value))
	default:
		fmt.Fprintf(&b, "%s: %s", s.Choice, fmtJSON(s.Value))
	}
	if s.Note != "" {
		fmt.Fprintf(&b, ", note %q", s.Note)
	}
	fmt.Fprintf(&b, "; by %s, %s, version %d", who(s.By, self), fmtTime(s.At), s.Version)
	return b.String()
}

// printSettled writes a settled conflict: the settlement, then the values
// that had clashed.
func printSettled(w io.Writer, indent string, c fieldsync.Conflict, self string) {
	fmt.Fprintf(w, "%s%s: settled (conflict %s): %s\n", indent, c.Field, c.ID, settlementText(c.Settled, self))
	vals := []string{fmtJSON(c.Server.Value) + " by " + who(c.Server.By, self)}
	for _, t := range c.Theirs {
		vals = append(vals, fmtJSON(t.Value)+" by "+who(t.By, self))
	}
	fmt.Fprintf(w, "%s  the values were: %s\n", indent, strings.Join(vals, ", "))
}

// settleChoice is what a person asked for on the command line.
type settleChoice struct {
	keepServer, takeDevice bool
	value                  string
	valueSet               bool
	op, note, conflict     string
}

// settleFlags defines the flags shared by settle and office settle.
func settleFlags(c *command) *settleChoice {
	s := &settleChoice{}
	c.BoolVar(&s.keepServer, "keep-server", false, "keep the value the server kept")
	c.BoolVar(&s.takeDevice, "take-device", false, "take the clashing value (the latest one, or the one of --op)")
	c.Func("value", "settle with a new `VALUE` (the rule of fieldsync create applies)", func(v string) error {
		s.value, s.valueSet = v, true
		return nil
	})
	c.StringVar(&s.op, "op", "", "with --take-device: take the value of clashing op `OPID`")
	c.StringVar(&s.note, "note", "", "a note kept with the settlement, e.g. why: `TEXT`")
	c.StringVar(&s.conflict, "conflict", "", "the conflict `ID` to settle (default: the field's open conflict)")
	return s
}

// check refuses a command line that does not choose exactly one way.
func (s *settleChoice) check(c *command) error {
	n := 0
	for _, b := range []bool{s.keepServer, s.takeDevice, s.valueSet} {
		if b {
			n++
		}
	}
	if n != 1 {
		return c.usageError("choose one of --keep-server, --take-device or --value VALUE")
	}
	if s.op != "" && !s.takeDevice {
		return c.usageError("--op goes with --take-device")
	}
	return nil
}

// settle builds the settlement of conflict c on a field of type typ.
func (s *settleChoice) settle(typ, field string, c fieldsync.Conflict) (fieldsync.Settle, error) {
	st := fieldsync.Settle{Conflict: c.ID, Note: s.note}
	switch {
	case s.keepServer:
		st.Choice = fieldsync.ChoiceKeepServer
	case s.takeDevice:
		st.Choice = fieldsync.ChoiceTakeDevice
		if s.op != "" {
			op, ok := matchID(s.op, theirOps(c))
			if !ok {
				return st, fmt.Errorf("op %s is not one of the conflict's clashing values: %s", s.op, strings.Join(theirOps(c), ", "))
			}
			st.Op = op
		}
	default:
		st.Choice = fieldsync.ChoiceNewValue
		st.Value = fieldValue(typ, field, s.value)
	}
	return st, nil
}

func theirOps(c fieldsync.Conflict) []string {
	ops := make([]string, 0, len(c.Theirs))
	for _, t := range c.Theirs {
		ops = append(ops, t.OpID)
	}
	return ops
}

// matchID finds ref among ids: the whole id, or a unique tail of at least
// 8 characters (as shortID shows it).
func matchID(ref string, ids []string) (string, bool) {
	found := ""
	for _, id := range ids {
		if id == ref {
			return id, true
		}
		if len(ref) >= 8 && strings.HasSuffix(id, ref) {
			if found != "" {
				return "", false
			}
			found = id
		}
	}
	return found, found != ""
}

// decided is the value a settlement leaves in the field.
func decided(c fieldsync.Conflict, st fieldsync.Settle) json.RawMessage {
	switch st.Choice {
	case fieldsync.ChoiceTakeDevice:
		if len(c.Theirs) == 0 {
			return nil
		}
		v := c.Theirs[len(c.Theirs)-1].Value
		for _, t := range c.Theirs {
			if st.Op != "" && t.OpID == st.Op {
				v = t.Value
			}
		}
		return v
	case fieldsync.ChoiceNewValue:
		return st.Value
	}
	return c.Server.Value
}

// describeSettle says what a settle op asks for, from its fields.
func describeSettle(fields map[string]json.RawMessage) string {
	var parts []string
	for _, name := range sortedFieldNames(fields) {
		var st fieldsync.Settle
		if json.Unmarshal(fields[name], &st) != nil {
			parts = append(parts, name+"="+fmtJSON(fields[name]))
			continue
		}
		p := name + ": "
		switch st.Choice {
		case fieldsync.ChoiceKeepServer:
			p += "keep the server's value"
		case fieldsync.ChoiceTakeDevice:
			p += "take the clashing value"
			if st.Op != "" {
				p += " of op " + st.Op
			}
		case fieldsync.ChoiceNewValue:
			p += "new value " + fmtJSON(st.Value)
		default:
			p += st.Choice
		}
		if st.Note != "" {
			p += fmt.Sprintf(", note %q", st.Note)
		}
		parts = append(parts, p+" (conflict "+shortID(st.Conflict)+")")
	}
	return strings.Join(parts, "; ")
}

// opDetail shows an op's fields on one line; a settle op says what it
// decides.
func opDetail(o client.OpInfo, n int) string {
	if o.Kind == string(fieldsync.KindSettle) {
		return truncate(describeSettle(o.Fields), n)
	}
	return fmtFields(o.Fields, n)
}

// overriddenText says what happened to one value that lost to a field's
// policy. mine is the op's own value of that field, if it has one.
func overriddenText(o fieldsync.Overridden, self string, mine json.RawMessage) string {
	if o.By == self && mine != nil && fmtJSON(mine) == fmtJSON(o.Value) {
		return fmt.Sprintf("%s: this op's %s lost (%s); the server kept its value", o.Field, fmtJSON(o.Value), o.Policy)
	}
	return fmt.Sprintf("%s: replaced the value %s that %s had written (%s)", o.Field, fmtJSON(o.Value), who(o.By, self), o.Policy)
}

// conflictOpShown reports whether a device op answered "conflict" still
// needs a line of its own among what needs attention. An update whose
// conflict is open (it opened it, joined it, or corrected the server's
// side of it) is shown with that conflict; one whose conflict was
// settled (on the server or on this device) needs nothing more. What
// remains: a refused delete, and a conflict the device has not pulled yet.
func conflictOpShown(o client.OpInfo, v client.View) bool {
	if o.Kind != string(fieldsync.KindUpdate) {
		return true
	}
	for _, c := range append(slices.Clip(v.Conflicts), v.Settled...) {
		if c.ID == o.ID || c.Server.OpID == o.ID {
			return false
		}
		for _, t := range c.Theirs {
			if t.OpID == o.ID {
				return false
			}
		}
	}
	for f := range o.Fields {
		if slices.Contains(v.Review, f) {
			return true
		}
	}
	return false
}
