package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
)

// fmtTime shows a time in the local zone, to the second.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// fmtAge says how long ago t was, roughly.
func fmtAge(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

// fmtValue shows a JSON value for people: strings without quotes, the
// rest as compact JSON.
func fmtValue(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, v) == nil {
		return buf.String()
	}
	return string(v)
}

// fmtFields shows an op's fields on one line: name=value, JSON values.
func fmtFields(fields map[string]json.RawMessage, max int) string {
	var parts []string
	for _, n := range sortedFieldNames(fields) {
		var buf bytes.Buffer
		if json.Compact(&buf, fields[n]) != nil {
			buf.Reset()
			buf.Write(fields[n])
		}
		parts = append(parts, n+"="+buf.String())
	}
	return truncate(strings.Join(parts, " "), max)
}

func truncate(s string, n int) string {
	r := []rune(s)
	if n <= 0 || len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// plural says "1 op", "3 ops".
func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// appendItems decodes a list field of append items; ok is false when the
// value is not such a list.
func appendItems(v json.RawMessage) ([]fieldsync.AppendItem, bool) {
	var raws []json.RawMessage
	if json.Unmarshal(v, &raws) != nil {
		return nil, false
	}
	items := make([]fieldsync.AppendItem, 0, len(raws))
	for _, r := range raws {
		var probe map[string]json.RawMessage
		if json.Unmarshal(r, &probe) != nil || probe["id"] == nil || probe["value"] == nil {
			return nil, false
		}
		var it fieldsync.AppendItem
		if json.Unmarshal(r, &it) != nil {
			return nil, false
		}
		items = append(items, it)
	}
	return items, true
}

// printFields writes a record's fields, one per line; list fields show
// one item per line with who added it and when.
func printFields(w io.Writer, fields map[string]json.RawMessage, review []string) {
	names := sortedFieldNames(fields)
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for _, n := range names {
		mark := ""
		for _, r := range review {
			if r == n {
				mark = "   (needs review)"
			}
		}
		if items, ok := appendItems(fields[n]); ok {
			fmt.Fprintf(w, "  %-*s  %s%s\n", width, n, plural(len(items), "item", "items"), mark)
			for _, it := range items {
				fmt.Fprintf(w, "  %-*s    - %s   (%s, %s)\n", width, "", fmtValue(it.Value), shortID(it.By), fmtTime(it.At))
			}
			continue
		}
		fmt.Fprintf(w, "  %-*s  %s%s\n", width, n, fmtValue(fields[n]), mark)
	}
}

// shortID is the part of an id a person can tell apart: the last 8
// characters of a UUID (its random part), or the whole of a short id.
func shortID(id string) string {
	if len(id) <= 12 {
		return id
	}
	return id[len(id)-8:]
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// timePtr is nil for the zero time, so JSON leaves it out.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
