package protocol

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
)

func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := rand.Uint64()
	if s := os.Getenv("FIELDSYNC_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FIELDSYNC_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (replay with FIELDSYNC_SEED=%d)", seed, seed)
	return seed
}

// randomPage makes a page of the change feed from a mix of the usual and
// the unusual: escaped, HTML-ish and non-ASCII strings, spaced and
// non-ASCII values, conflicts and attachments, times in other zones and
// out of encoding/json's range, empty and missing lists and maps.
func randomPage(rng *rand.Rand) *ChangesResponse {
	texts := []string{"", "work_order", "0190a6c4-1b2c-7d3e-8f40-000000000001", "WO-1042", "status",
		`say "hi"`, `a\b`, "<b>&</b>", "é", "tab\there", "\u2028", "\x7f", "\xff"}
	values := []string{`"assigned"`, `"12 Harbour Road"`, `42`, `-1.5e3`, `true`, `null`, `[1,2]`, `{"a":"b"}`,
		`"x < y"`, `"é"`, `[ 1, 2 ]`, `{"k": "v"}`, `"\u00e9"`, `""`, `[]`}
	zones := []*time.Location{time.UTC, time.FixedZone("ahead", 5*3600), time.FixedZone("zero", 0)}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	plain := func() string {
		if rng.IntN(6) == 0 {
			return pick(texts)
		}
		return pick(texts[:5])
	}
	page := &ChangesResponse{Cursor: plain(), More: rng.IntN(2) == 0}
	if rng.IntN(2) == 0 {
		page.HLC = rng.Int64()
	}
	n := rng.IntN(6)
	if n > 0 || rng.IntN(2) == 0 {
		page.Changes = []Record{}
	}
	for range n {
		r := Record{Type: plain(), ID: plain(), Version: rng.Int64N(1000) - 1, Seq: rng.Int64(), Deleted: rng.IntN(5) == 0}
		if rng.IntN(2) == 0 {
			r.Number = plain()
		}
		if rng.IntN(8) == 0 {
			r.Gone = plain()
		}
		year := 2026
		if rng.IntN(40) == 0 {
			year = []int{-1, 10000, 0, 9999}[rng.IntN(4)]
		}
		r.Updated = time.Date(year, time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60),
			[]int{0, 1000000, 123456789, 500}[rng.IntN(4)], zones[rng.IntN(len(zones))])
		if k := rng.IntN(6); k > 0 || rng.IntN(2) == 0 {
			r.Fields = map[string]json.RawMessage{}
			for range k {
				r.Fields[plain()] = json.RawMessage(pick(values))
			}
		}
		if k := rng.IntN(3); k > 0 || rng.IntN(4) == 0 {
			r.Review = []string{}
			for range k {
				r.Review = append(r.Review, plain())
			}
		}
		if rng.IntN(6) == 0 {
			r.Conflicts = []fieldsync.Conflict{{ID: plain(), Field: plain(),
				Server: fieldsync.ConflictValue{Value: json.RawMessage(pick(values)), By: plain(), At: r.Updated},
				Theirs: []fieldsync.ConflictValue{{Value: json.RawMessage(pick(values)), By: plain(), OpID: plain()}}}}
		}
		if rng.IntN(6) == 0 {
			r.Attachments = []fieldsync.Attachment{{ID: plain(), SHA256: plain(), Size: rng.Int64N(1 << 30),
				ContentType: "image/jpeg", Role: plain(), Status: plain()}}
		}
		page.Changes = append(page.Changes, r)
	}
	return page
}

// TestChangesJSONMatchesEncodingJSON holds AppendChangesResponse to what a
// json.Encoder writes, and DecodeChangesResponse to what json.Unmarshal
// reads, for random pages.
func TestChangesJSONMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 5))
	fast := 0
	for range 5000 {
		page := randomPage(rng)
		var want bytes.Buffer
		wantErr := json.NewEncoder(&want).Encode(page)
		got, err := AppendChangesResponse(nil, page)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("AppendChangesResponse error %v, encoding/json %v, for %#v", err, wantErr, page)
		}
		if err != nil {
			continue
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("AppendChangesResponse:\n%s\nencoding/json:\n%s", got, want.Bytes())
		}
		var std ChangesResponse
		if err := json.Unmarshal(got, &std); err != nil {
			t.Fatalf("encoding/json cannot read %s: %v", got, err)
		}
		dec, err := DecodeChangesResponse(got)
		if err != nil {
			t.Fatalf("DecodeChangesResponse(%s): %v", got, err)
		}
		if !reflect.DeepEqual(dec, &std) {
			t.Fatalf("DecodeChangesResponse(%s):\n%#v\nencoding/json:\n%#v", got, dec, &std)
		}
		if _, ok := decodeChangesFast(got); ok {
			fast++
		}
	}
	if fast == 0 {
		t.Fatal("the hand-written decoder took none of the pages")
	}
}

// TestDecodeChangesFastTakesUsualPages checks that the pages a server
// writes for the usual records are read by hand, so the fast path is
// what a pull runs.
func TestDecodeChangesFastTakesUsualPages(t *testing.T) {
	page := &ChangesResponse{Cursor: "e1.42.abcd", More: true, HLC: 7, Changes: []Record{{
		Type: "work_order", ID: "0190a6c4-1b2c-7d3e-8f40-000000000001", Number: "WO-1001", Version: 3, Seq: 42,
		Fields:  map[string]json.RawMessage{"status": json.RawMessage(`"assigned"`), "title": json.RawMessage(`"Boiler"`)},
		Review:  []string{"status"},
		Updated: time.Date(2026, 11, 24, 10, 0, 0, 123000000, time.UTC),
		Conflicts: []fieldsync.Conflict{{ID: "c1", Field: "status",
			Server: fieldsync.ConflictValue{Value: json.RawMessage(`"done"`), By: "office"}}},
		Attachments: []fieldsync.Attachment{{ID: "a1", SHA256: "00", Size: 3, ContentType: "image/jpeg", Role: "photo"}},
	}, {Type: "work_order", ID: "0190a6c4-1b2c-7d3e-8f40-000000000002", Version: 1, Seq: 43, Gone: GoneUnassigned}}}
	body, err := AppendChangesResponse(nil, page)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodeChangesFast(body)
	if !ok {
		t.Fatalf("the fast decoder refused a usual page: %s", body)
	}
	if !reflect.DeepEqual(got, page) {
		t.Fatalf("decoded:\n%#v\nwant:\n%#v", got, page)
	}
}

// FuzzDecodeChanges holds DecodeChangesResponse to json.Unmarshal: the
// same pages accepted, decoded the same; whatever the fast path takes,
// encoding/json takes too and reads the same way.
func FuzzDecodeChanges(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 8 {
		body, err := AppendChangesResponse(nil, randomPage(rng))
		if err == nil {
			f.Add(body)
		}
	}
	f.Add([]byte(`{"changes":[{"type":"t","id":"a","version":1,"seq":1,"updated":"2026-01-01T00:00:00Z","Type":"u"}],"cursor":"c","more":false}`))
	f.Add([]byte(`{"changes":null,"cursor":"c","more":false}`))
	f.Add([]byte(`{"changes":[{"type":"t","type":"u"}]}`))
	f.Add([]byte(`{"changes":[{"fields":{"a":1,"a":2}}]}`))
	f.Add([]byte(`{"hlc":1.5}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var std ChangesResponse
		stdErr := json.Unmarshal(data, &std)
		got, err := DecodeChangesResponse(data)
		if (err != nil) != (stdErr != nil) {
			t.Fatalf("DecodeChangesResponse error %v, encoding/json %v", err, stdErr)
		}
		if err == nil && !reflect.DeepEqual(got, &std) {
			t.Fatalf("decoded:\n%#v\nencoding/json:\n%#v", got, &std)
		}
		if fast, ok := decodeChangesFast(data); ok {
			if stdErr != nil {
				t.Fatalf("the fast path took what encoding/json refuses: %v", stdErr)
			}
			if !reflect.DeepEqual(fast, &std) {
				t.Fatalf("fast path:\n%#v\nencoding/json:\n%#v", fast, &std)
			}
		}
	})
}
