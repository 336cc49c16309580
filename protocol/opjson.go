package protocol

import (
	"encoding/json"
	"slices"
	"strconv"
)

// Devices encode every op they push, and check every op they save by
// encoding it. Op.MarshalJSON writes the usual ops (plain ids and names,
// field values that are compact printable ASCII) by hand, byte for byte
// what encoding/json writes, and hands the rest to encoding/json.
// TestOpJSONMatchesEncodingJSON holds the two together.

// opFields is Op without its MarshalJSON, for encoding/json.
type opFields Op

// MarshalJSON encodes o exactly as encoding/json encodes its fields.
func (o Op) MarshalJSON() ([]byte, error) {
	if !plainText(o.ID) || !plainText(o.Device) || !plainText(o.Type) || !plainText(o.Entity) || !plainText(o.Kind) {
		return json.Marshal((*opFields)(&o))
	}
	size := 160 + len(o.ID) + len(o.Device) + len(o.Type) + len(o.Entity) + len(o.Kind)
	for k, v := range o.Fields {
		if !plainText(k) || !plainValue(v) {
			return json.Marshal((*opFields)(&o))
		}
		size += len(k) + len(v) + 4
	}
	b := make([]byte, 0, size)
	str := func(key, v string, omitEmpty bool) {
		if omitEmpty && v == "" {
			return
		}
		b = append(b, ',', '"')
		b = append(b, key...)
		b = append(b, '"', ':', '"')
		b = append(b, v...)
		b = append(b, '"')
	}
	num := func(key string, v int64, omitEmpty bool) {
		if omitEmpty && v == 0 {
			return
		}
		b = append(b, ',', '"')
		b = append(b, key...)
		b = append(b, '"', ':')
		b = strconv.AppendInt(b, v, 10)
	}
	b = append(b, `{"id":"`...)
	b = append(b, o.ID...)
	b = append(b, '"')
	str("device", o.Device, true)
	num("seq", o.Seq, false)
	num("prev", o.Prev, true)
	str("type", o.Type, false)
	str("entity", o.Entity, false)
	str("kind", o.Kind, false)
	num("base", o.Base, true)
	if len(o.Fields) > 0 {
		keys := make([]string, 0, len(o.Fields))
		for k := range o.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"fields":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, k...)
			b = append(b, '"', ':')
			b = append(b, o.Fields[k]...)
		}
		b = append(b, '}')
	}
	num("at", o.At, false)
	num("hlc", o.HLC, true)
	return append(b, '}'), nil
}

// plainValue reports whether encoding/json writes the JSON value v as it
// is: valid, compact (no white space outside strings), printable ASCII
// with nothing it escapes for HTML.
func plainValue(v []byte) bool {
	inString := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c < 0x20 || c >= 0x7f, c == '<', c == '>', c == '&':
			return false
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && c == ' ':
			return false
		}
	}
	return len(v) > 0 && json.Valid(v)
}

// AppendPushRequest appends the JSON of req to b, exactly as json.Marshal
// writes it, without encoding/json's second pass over what Op.MarshalJSON
// wrote.
func AppendPushRequest(b []byte, req *PushRequest) ([]byte, error) {
	b = append(b, `{"device":`...)
	if plainText(req.Device) {
		b = append(b, '"')
		b = append(b, req.Device...)
		b = append(b, '"')
	} else {
		d, _ := json.Marshal(req.Device) // a string always encodes
		b = append(b, d...)
	}
	if req.Ops == nil {
		return append(b, `,"ops":null}`...), nil
	}
	b = append(b, `,"ops":[`...)
	for i := range req.Ops {
		if i > 0 {
			b = append(b, ',')
		}
		o, err := req.Ops[i].MarshalJSON()
		if err != nil {
			// Not JSON: let encoding/json say so, in its words.
			_, err := json.Marshal(req)
			return nil, err
		}
		b = append(b, o...)
	}
	return append(b, ']', '}'), nil
}
