package protocol

import (
	"encoding/json"
	"strconv"
)

// Results are encoded once per op three times over: into the server's op
// log, into the push answer, and into the device's outbox. MarshalJSON
// writes the usual ones (no conflicts, overridden values or recorded
// result; strings with nothing to escape) by hand, byte for byte what
// encoding/json writes, and hands the rest to encoding/json.
// TestResultJSONMatchesEncodingJSON holds the two together.

// resultFields is Result without its MarshalJSON, for encoding/json.
type resultFields Result

// MarshalJSON encodes r exactly as encoding/json encodes its fields.
func (r Result) MarshalJSON() ([]byte, error) {
	if len(r.Conflicts) > 0 || len(r.Overridden) > 0 || r.Recorded != nil ||
		!plainText(r.Op) || !plainText(r.Status) || !plainText(r.Number) || !plainText(r.Code) || !plainText(r.Message) {
		return json.Marshal((*resultFields)(&r))
	}
	b := make([]byte, 0, 48+len(r.Op)+len(r.Status)+len(r.Number)+len(r.Code)+len(r.Message))
	b = append(b, `{"op":"`...)
	b = append(b, r.Op...)
	b = append(b, `","status":"`...)
	b = append(b, r.Status...)
	b = append(b, '"')
	if r.Version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendInt(b, r.Version, 10)
	}
	str := func(key, v string) {
		if v != "" {
			b = append(b, ',', '"')
			b = append(b, key...)
			b = append(b, '"', ':', '"')
			b = append(b, v...)
			b = append(b, '"')
		}
	}
	str("number", r.Number)
	str("code", r.Code)
	str("message", r.Message)
	return append(b, '}'), nil
}

// plainText reports whether encoding/json writes s as it is between
// quotes: printable ASCII with nothing it escapes (", \, <, >, &).
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// UnmarshalJSON decodes a result as encoding/json decodes its fields into
// r. The usual ones (the keys MarshalJSON writes by hand, plain strings,
// integer versions) are read by hand; anything else goes to encoding/json.
func (r *Result) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil // as encoding/json does for a struct
	}
	if fast, ok := parseResult(data, *r); ok {
		*r = fast
		return nil
	}
	f := resultFields(*r)
	err := json.Unmarshal(data, &f)
	*r = Result(f)
	return err
}

// parseResult reads into r a result object with only op, status,
// version, number, code and message, each at most once, strings without
// escapes.
func parseResult(data []byte, r Result) (Result, bool) {
	p := pushParser{data: data}
	var seen int
	ok := p.members(func(key []byte) bool {
		var bit int
		var ok bool
		switch string(key) {
		case "op":
			bit = 1
			r.Op, ok = p.str()
		case "status":
			bit = 2
			r.Status, ok = p.str()
		case "version":
			bit = 4
			r.Version, ok = p.int()
		case "number":
			bit = 8
			r.Number, ok = p.str()
		case "code":
			bit = 16
			r.Code, ok = p.str()
		case "message":
			bit = 32
			r.Message, ok = p.str()
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	})
	p.ws()
	return r, ok && p.i == len(data)
}
