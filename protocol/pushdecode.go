package protocol

import "encoding/json"

// A push body is decoded on the server's critical path, and encoding/json
// (reflection, a strict Decoder) costs about a tenth of the server's work
// on a push. decodePushFast reads the shape devices send — compact or
// spaced JSON, known keys in any order, plain strings, integer numbers,
// any valid JSON as field values — without reflection. Whatever it is not
// sure of (escapes in keys or ids, a key twice, null, anything unknown or
// malformed) it leaves to encoding/json, so what is accepted, what is
// refused and every error message stay exactly those of decodeStrict.
// FuzzDecodePushFast holds the two to that.

// decodePushFast decodes a push body, or reports false when
// encoding/json must decide. A decoded request holds no reference to data.
func decodePushFast(data []byte) (*PushRequest, bool) {
	p := pushParser{data: data}
	req, ok := p.request()
	if !ok {
		return nil, false
	}
	return req, true
}

type pushParser struct {
	data []byte
	i    int
	// values is a copy of the field values of data: the decoded fields
	// point into it (one allocation instead of one per value).
	values []byte
	// The last type and kind seen, reused when the next op has the same.
	lastType, lastKind string
}

func (p *pushParser) ws() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// eat skips white space and the byte c, if it is next.
func (p *pushParser) eat(c byte) bool {
	p.ws()
	if p.i < len(p.data) && p.data[p.i] == c {
		p.i++
		return true
	}
	return false
}

// plain reads a string of printable ASCII with no escapes and returns its
// contents (a slice of data).
func (p *pushParser) plain() ([]byte, bool) {
	p.ws()
	if p.i >= len(p.data) || p.data[p.i] != '"' {
		return nil, false
	}
	for j := p.i + 1; j < len(p.data); j++ {
		switch c := p.data[j]; {
		case c == '"':
			s := p.data[p.i+1 : j]
			p.i = j + 1
			return s, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

// str reads a plain string as a Go string.
func (p *pushParser) str() (string, bool) {
	b, ok := p.plain()
	return string(b), ok
}

// reuse reads a plain string, reusing last when it is the same.
func (p *pushParser) reuse(last *string) (string, bool) {
	b, ok := p.plain()
	if !ok {
		return "", false
	}
	if string(b) != *last {
		*last = string(b)
	}
	return *last, true
}

// int reads a JSON integer that fits an int64: what encoding/json accepts
// for an int64 field, less fractions and exponents (it refuses those).
func (p *pushParser) int() (int64, bool) {
	p.ws()
	i, neg := p.i, false
	if i < len(p.data) && p.data[i] == '-' {
		neg = true
		i++
	}
	start := i
	var n uint64
	for i < len(p.data) && p.data[i] >= '0' && p.data[i] <= '9' {
		if i-start >= 18 { // beyond 18 digits: let encoding/json check the range
			return 0, false
		}
		n = n*10 + uint64(p.data[i]-'0')
		i++
	}
	if i == start || p.data[start] == '0' && i-start > 1 {
		return 0, false
	}
	if i < len(p.data) {
		switch p.data[i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	p.i = i
	if neg {
		return -int64(n), true
	}
	return int64(n), true
}

// members reads a JSON object whose keys are plain strings, calling fn
// for each key with the parser at its value.
func (p *pushParser) members(fn func(key []byte) bool) bool {
	if !p.eat('{') {
		return false
	}
	if p.eat('}') {
		return true
	}
	for {
		key, ok := p.plain()
		if !ok || !p.eat(':') || !fn(key) {
			return false
		}
		if p.eat('}') {
			return true
		}
		if !p.eat(',') {
			return false
		}
	}
}

func (p *pushParser) request() (*PushRequest, bool) {
	req := &PushRequest{}
	var seen [2]bool
	ok := p.members(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "device":
			if seen[0] {
				return false
			}
			seen[0] = true
			req.Device, ok = p.str()
		case "ops":
			if seen[1] {
				return false
			}
			seen[1] = true
			req.Ops, ok = p.ops()
		}
		return ok
	})
	if !ok {
		return nil, false
	}
	p.ws()
	if p.i != len(p.data) {
		return nil, false
	}
	return req, true
}

// elements reads a JSON array, calling fn for each element with the
// parser at it.
func (p *pushParser) elements(fn func() bool) bool {
	if !p.eat('[') {
		return false
	}
	if p.eat(']') {
		return true
	}
	for {
		if !fn() {
			return false
		}
		if p.eat(']') {
			return true
		}
		if !p.eat(',') {
			return false
		}
	}
}

func (p *pushParser) ops() ([]Op, bool) {
	ops := make([]Op, 0, min(len(p.data)/128+1, MaxBatchOps+1))
	ok := p.elements(func() bool {
		ops = append(ops, Op{})
		return p.op(&ops[len(ops)-1])
	})
	if !ok {
		return nil, false
	}
	return ops, true
}

// The keys of an op, for telling a repeated key.
const (
	keyID = 1 << iota
	keyDevice
	keySeq
	keyPrev
	keyType
	keyEntity
	keyKind
	keyBase
	keyFields
	keyAt
	keyHLC
)

func (p *pushParser) op(op *Op) bool {
	var seen int
	return p.members(func(key []byte) bool {
		var bit int
		var ok bool
		switch string(key) {
		case "id":
			bit = keyID
			op.ID, ok = p.str()
		case "device":
			bit = keyDevice
			op.Device, ok = p.str()
		case "seq":
			bit = keySeq
			op.Seq, ok = p.int()
		case "prev":
			bit = keyPrev
			op.Prev, ok = p.int()
		case "type":
			bit = keyType
			op.Type, ok = p.reuse(&p.lastType)
		case "entity":
			bit = keyEntity
			op.Entity, ok = p.str()
		case "kind":
			bit = keyKind
			op.Kind, ok = p.reuse(&p.lastKind)
		case "base":
			bit = keyBase
			op.Base, ok = p.int()
		case "fields":
			bit = keyFields
			op.Fields, ok = p.fields()
		case "at":
			bit = keyAt
			op.At, ok = p.int()
		case "hlc":
			bit = keyHLC
			op.HLC, ok = p.int()
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	})
}

// fields reads an op's fields: plain names, any valid JSON values, kept
// byte for byte as encoding/json keeps a json.RawMessage. A name given
// twice keeps its last value, as in encoding/json.
func (p *pushParser) fields() (map[string]json.RawMessage, bool) {
	m := map[string]json.RawMessage{}
	ok := p.members(func(key []byte) bool {
		p.ws()
		start := p.i
		end, ok := skipJSON(p.data, start, 0)
		if !ok {
			return false
		}
		p.i = end
		m[string(key)] = p.value(p.data[start:end])
		return true
	})
	return m, ok
}

// value returns a copy of v in p.values.
func (p *pushParser) value(v []byte) json.RawMessage {
	if len(p.values)+len(v) > cap(p.values) {
		p.values = make([]byte, 0, max(len(v), 4096))
	}
	n := len(p.values)
	p.values = append(p.values, v...)
	return p.values[n:len(p.values):len(p.values)]
}

// maxDepth bounds the nesting of a field value read here; deeper values
// go to encoding/json.
const maxDepth = 64

// skipJSON returns the index after the valid JSON value that starts at
// data[i], or false when there is none there (or it nests too deep).
func skipJSON(data []byte, i, depth int) (int, bool) {
	if i >= len(data) || depth > maxDepth {
		return 0, false
	}
	switch c := data[i]; {
	case c == '"':
		return skipJSONString(data, i)
	case c == '{':
		i = skipWS(data, i+1)
		if i < len(data) && data[i] == '}' {
			return i + 1, true
		}
		for {
			end, ok := skipJSONString(data, i)
			if !ok {
				return 0, false
			}
			i = skipWS(data, end)
			if i >= len(data) || data[i] != ':' {
				return 0, false
			}
			if i, ok = skipJSON(data, skipWS(data, i+1), depth+1); !ok {
				return 0, false
			}
			i = skipWS(data, i)
			if i >= len(data) {
				return 0, false
			}
			switch data[i] {
			case '}':
				return i + 1, true
			case ',':
				i = skipWS(data, i+1)
			default:
				return 0, false
			}
		}
	case c == '[':
		i = skipWS(data, i+1)
		if i < len(data) && data[i] == ']' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = skipJSON(data, i, depth+1); !ok {
				return 0, false
			}
			i = skipWS(data, i)
			if i >= len(data) {
				return 0, false
			}
			switch data[i] {
			case ']':
				return i + 1, true
			case ',':
				i = skipWS(data, i+1)
			default:
				return 0, false
			}
		}
	case c == 't':
		return skipLiteral(data, i, "true")
	case c == 'f':
		return skipLiteral(data, i, "false")
	case c == 'n':
		return skipLiteral(data, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return skipNumber(data, i)
	}
	return 0, false
}

func skipWS(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

func skipLiteral(data []byte, i int, lit string) (int, bool) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// skipJSONString checks the string at data[i] as encoding/json's scanner
// does: no control characters, only JSON's escapes. Other bytes pass as
// they are.
func skipJSONString(data []byte, i int) (int, bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return j + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			j++
			if j >= len(data) {
				return 0, false
			}
			switch data[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(data)-j < 5 {
					return 0, false
				}
				for _, h := range data[j+1 : j+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return 0, false
					}
				}
				j += 4
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

// skipNumber checks a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(data []byte, i int) (int, bool) {
	digits := func() bool {
		start := i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		return i > start
	}
	if data[i] == '-' {
		i++
	}
	if i < len(data) && data[i] == '0' {
		i++
	} else if !digits() {
		return 0, false
	}
	if i < len(data) && data[i] == '.' {
		i++
		if !digits() {
			return 0, false
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if !digits() {
			return 0, false
		}
	}
	return i, true
}

// DecodeFields decodes a JSON object of field values exactly as
// json.Unmarshal decodes it into a map[string]json.RawMessage, faster for
// the usual shape (plain names). The values do not share memory with data.
func DecodeFields(data []byte) (map[string]json.RawMessage, error) {
	p := pushParser{data: data, values: make([]byte, 0, len(data))} // the values fit
	if m, ok := p.fields(); ok {
		if p.ws(); p.i == len(data) {
			return m, nil
		}
	}
	var m map[string]json.RawMessage
	err := json.Unmarshal(data, &m)
	return m, err
}
