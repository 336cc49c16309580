package server

import (
	"encoding/json"
	"unicode/utf8"
)

// appendToList returns the list field cur (absent when !has) with item
// added at its end, exactly as decoding it into []json.RawMessage,
// appending and encoding again with encoding/json would: a JSON array
// that is already compact and has nothing encoding/json would escape is
// extended in place; anything else goes through encoding/json (a value
// that is not an array starts a new list, as a failed decode leaves no
// items).
func appendToList(cur json.RawMessage, has bool, item json.RawMessage) json.RawMessage {
	if !has {
		out, _ := json.Marshal([]json.RawMessage{item})
		return out
	}
	if len(cur) >= 2 && cur[0] == '[' && cur[len(cur)-1] == ']' && plainCompact(cur) && plainCompact(item) && json.Valid(cur) && json.Valid(item) {
		out := make([]byte, 0, len(cur)+len(item)+1)
		out = append(out, cur[:len(cur)-1]...)
		if len(cur) > 2 {
			out = append(out, ',')
		}
		out = append(out, item...)
		return append(out, ']')
	}
	var items []json.RawMessage
	_ = json.Unmarshal(cur, &items) // a list field holds a JSON array
	out, _ := json.Marshal(append(items, item))
	return out
}

// plainCompact reports whether encoding/json would give back the JSON
// text v unchanged as a json.RawMessage: no white space outside strings,
// nothing it escapes (<, >, &, U+2028, U+2029), valid UTF-8.
func plainCompact(v []byte) bool {
	inString := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '<' || c == '>' || c == '&':
			return false
		case c >= 0x80:
			r, size := utf8.DecodeRune(v[i:])
			if r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
				return false
			}
			i += size - 1
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return false
		}
	}
	return true
}

// plainString reports whether v is a JSON string with no escapes and
// valid UTF-8: two such strings are equal as JSON exactly when their
// bytes are.
func plainString(v []byte) bool {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return false
	}
	for _, c := range v[1 : len(v)-1] {
		if c == '"' || c == '\\' || c < 0x20 {
			return false
		}
	}
	return utf8.Valid(v)
}
