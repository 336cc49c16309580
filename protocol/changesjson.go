package protocol

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// A pull moves every record through encoding/json twice: the server
// encodes each page and the device decodes it, and with reflection, map
// key sorting and a second validating pass over each value that is a large
// part of a pull's cost. AppendChangesResponse and DecodeChangesResponse
// handle the usual records (plain ids and names, compact printable ASCII
// field values) by hand and hand everything else to encoding/json, so that
// what they write and read is exactly what encoding/json writes and reads.
// TestChangesJSONMatchesEncodingJSON and FuzzDecodeChanges hold them to it.

// recordFields is Record for encoding/json.
type recordFields Record

// AppendChangesResponse appends the JSON of resp to b followed by a new
// line, byte for byte what a json.Encoder writes.
func AppendChangesResponse(b []byte, resp *ChangesResponse) ([]byte, error) {
	if resp.Changes == nil {
		b = append(b, `{"changes":null`...)
	} else {
		b = append(b, `{"changes":[`...)
		for i := range resp.Changes {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = AppendRecord(b, &resp.Changes[i]); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"cursor":`...)
	b = appendString(b, resp.Cursor)
	if resp.More {
		b = append(b, `,"more":true`...)
	} else {
		b = append(b, `,"more":false`...)
	}
	if resp.HLC != 0 {
		b = append(b, `,"hlc":`...)
		b = strconv.AppendInt(b, resp.HLC, 10)
	}
	return append(b, '}', '\n'), nil
}

// AppendRecord appends the JSON of r to b, byte for byte what json.Marshal
// writes for it.
func AppendRecord(b []byte, r *Record) ([]byte, error) {
	if !plainRecord(r) {
		v, err := json.Marshal((*recordFields)(r))
		if err != nil {
			return nil, err
		}
		return append(b, v...), nil
	}
	b = append(b, `{"type":"`...)
	b = append(b, r.Type...)
	b = append(b, `","id":"`...)
	b = append(b, r.ID...)
	b = append(b, '"')
	if r.Number != "" {
		b = append(b, `,"number":"`...)
		b = append(b, r.Number...)
		b = append(b, '"')
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, r.Version, 10)
	if r.Deleted {
		b = append(b, `,"deleted":true`...)
	}
	if len(r.Fields) > 0 {
		b = append(b, `,"fields":`...)
		b = appendFieldsSorted(b, r.Fields)
	}
	if len(r.Review) > 0 {
		b = append(b, `,"review":[`...)
		for i, f := range r.Review {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = append(b, f...)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	if len(r.Conflicts) > 0 {
		v, err := json.Marshal(r.Conflicts)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"conflicts":`...)
		b = append(b, v...)
	}
	if len(r.Attachments) > 0 {
		v, err := json.Marshal(r.Attachments)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"attachments":`...)
		b = append(b, v...)
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, `,"updated":"`...)
	b = r.Updated.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if r.Gone != "" {
		b = append(b, `,"gone":"`...)
		b = append(b, r.Gone...)
		b = append(b, '"')
	}
	return append(b, '}'), nil
}

// plainRecord reports whether AppendRecord can write r by hand: every
// string it writes itself is plain text, every field name plain and every
// value plain, and the time one encoding/json writes as RFC 3339 in UTC.
func plainRecord(r *Record) bool {
	if !plainText(r.Type) || !plainText(r.ID) || !plainText(r.Number) || !plainText(r.Gone) {
		return false
	}
	if y := r.Updated.Year(); y < 0 || y > 9999 {
		return false
	}
	if _, off := r.Updated.Zone(); off != 0 {
		return false
	}
	for _, f := range r.Review {
		if !plainText(f) {
			return false
		}
	}
	for k, v := range r.Fields {
		if !plainText(k) || !plainValue(v) {
			return false
		}
	}
	return true
}

// appendFieldsSorted appends a JSON object of fields with plain names in
// name order, each value as it is.
func appendFieldsSorted(b []byte, fields map[string]json.RawMessage) []byte {
	var buf [16]string
	keys := buf[:0]
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		b = append(b, fields[k]...)
	}
	return append(b, '}')
}

// AppendFields appends fields as a JSON object, names in order. It is for
// storing fields decoded from the wire: values are written as they are.
func AppendFields(b []byte, fields map[string]json.RawMessage) ([]byte, error) {
	if fields == nil {
		return append(b, '{', '}'), nil
	}
	for k, v := range fields {
		if !plainText(k) || len(v) == 0 {
			m, err := json.Marshal(fields)
			if err != nil {
				return nil, err
			}
			return append(b, m...), nil
		}
	}
	return appendFieldsSorted(b, fields), nil
}

// appendString appends s as a JSON string, as encoding/json writes it.
func appendString(b []byte, s string) []byte {
	if plainText(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	v, _ := json.Marshal(s) // a string always encodes
	return append(b, v...)
}

// DecodeChangesResponse decodes a page of the change feed exactly as
// json.Unmarshal decodes it into a ChangesResponse. What it returns holds
// no reference to data.
func DecodeChangesResponse(data []byte) (*ChangesResponse, error) {
	if resp, ok := decodeChangesFast(data); ok {
		return resp, nil
	}
	var resp ChangesResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// decodeChangesFast decodes the shape the server writes, or reports false
// when encoding/json must decide: escapes in names, ids or keys, null, a
// key twice, a key it does not know (encoding/json matches keys without
// regard to case), numbers that are not plain integers.
func decodeChangesFast(data []byte) (*ChangesResponse, bool) {
	p := pushParser{data: data, values: make([]byte, 0, len(data)/2)}
	resp := &ChangesResponse{}
	var seen int
	ok := p.members(func(key []byte) bool {
		var bit int
		var ok bool
		switch string(key) {
		case "changes":
			bit = 1
			resp.Changes, ok = p.records()
		case "cursor":
			bit = 2
			resp.Cursor, ok = p.str()
		case "more":
			bit = 4
			resp.More, ok = p.bool()
		case "hlc":
			bit = 8
			resp.HLC, ok = p.int()
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	})
	if !ok {
		return nil, false
	}
	p.ws()
	if p.i != len(p.data) {
		return nil, false
	}
	return resp, true
}

func (p *pushParser) bool() (bool, bool) {
	p.ws()
	if end, ok := skipLiteral(p.data, p.i, "true"); ok {
		p.i = end
		return true, true
	}
	if end, ok := skipLiteral(p.data, p.i, "false"); ok {
		p.i = end
		return false, true
	}
	return false, false
}

func (p *pushParser) records() ([]Record, bool) {
	recs := make([]Record, 0, min(len(p.data)/160+1, MaxPullLimit))
	ok := p.elements(func() bool {
		recs = append(recs, Record{})
		return p.record(&recs[len(recs)-1])
	})
	if !ok {
		return nil, false
	}
	return recs, true
}

// The keys of a record, for telling a repeated key.
const (
	recType = 1 << iota
	recID
	recNumber
	recVersion
	recDeleted
	recFields
	recReview
	recConflicts
	recAttachments
	recSeq
	recUpdated
	recGone
)

func (p *pushParser) record(r *Record) bool {
	var seen int
	return p.members(func(key []byte) bool {
		var bit int
		var ok bool
		switch string(key) {
		case "type":
			bit = recType
			r.Type, ok = p.reuse(&p.lastType)
		case "id":
			bit = recID
			r.ID, ok = p.str()
		case "number":
			bit = recNumber
			r.Number, ok = p.str()
		case "version":
			bit = recVersion
			r.Version, ok = p.int()
		case "deleted":
			bit = recDeleted
			r.Deleted, ok = p.bool()
		case "fields":
			bit = recFields
			r.Fields, ok = p.fields()
		case "review":
			bit = recReview
			r.Review, ok = p.strings()
		case "conflicts":
			bit = recConflicts
			ok = p.std(&r.Conflicts)
		case "attachments":
			bit = recAttachments
			ok = p.std(&r.Attachments)
		case "seq":
			bit = recSeq
			r.Seq, ok = p.int()
		case "updated":
			bit = recUpdated
			ok = p.time(&r.Updated)
		case "gone":
			bit = recGone
			r.Gone, ok = p.str()
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	})
}

// strings reads an array of plain strings.
func (p *pushParser) strings() ([]string, bool) {
	out := []string{}
	ok := p.elements(func() bool {
		s, ok := p.str()
		out = append(out, s)
		return ok
	})
	if !ok {
		return nil, false
	}
	return out, true
}

// std reads the next value with encoding/json into v. A null is left to
// encoding/json's handling of the whole body.
func (p *pushParser) std(v any) bool {
	p.ws()
	start := p.i
	end, ok := skipJSON(p.data, start, 0)
	if !ok || p.data[start] == 'n' {
		return false
	}
	p.i = end
	return json.Unmarshal(p.data[start:end], v) == nil
}

// time reads a plain string as time.Time's UnmarshalJSON reads it.
func (p *pushParser) time(t *time.Time) bool {
	p.ws()
	start := p.i
	if _, ok := p.plain(); !ok {
		return false
	}
	return t.UnmarshalJSON(p.data[start:p.i]) == nil
}
