package sqlite

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"testing"

	"github.com/fieldsync/fieldsync"
)

// codecSeed returns the seed of the randomised codec test: FIELDSYNC_SEED
// when set (to replay a failure), else a fresh one.
func codecSeed(t *testing.T) uint64 {
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

var codecValues = []string{
	`"in progress"`, `"a \"quoted\" word"`, `"tab\there"`, `"<b>&</b>"`, `"é"`, `"\u2028"`, `12`, `-3.5e2`,
	`true`, `null`, `[]`, `{}`, `[1, 2]`, `{"a": [1, {"b": "}"}]}`, `[{"id":"x","value":"y"}]`, `" "`, `"\\"`,
}

var codecKeys = []string{"status", "title", "a_b", "comments", "Key", "k<", "é", "sp ace", `q"uote`, ""}

// TestFieldsCodec checks that the fast fields codec gives exactly what
// encoding/json gives, for random records of odd and usual values.
func TestFieldsCodec(t *testing.T) {
	r := rand.New(rand.NewPCG(codecSeed(t), 1))
	for range 20000 {
		m := map[string]json.RawMessage{}
		for range r.IntN(6) {
			m[codecKeys[r.IntN(len(codecKeys))]] = json.RawMessage(codecValues[r.IntN(len(codecValues))])
		}
		want, werr := json.Marshal(m)
		got, gerr := encodeFields(m)
		if (werr == nil) != (gerr == nil) || string(got) != string(want) {
			t.Fatalf("encodeFields(%v) = %s, %v; json.Marshal = %s, %v", m, got, gerr, want, werr)
		}
		var dec, ref map[string]json.RawMessage
		if err := decodeFields(want, &dec); err != nil {
			t.Fatalf("decodeFields(%s): %v", want, err)
		}
		if err := json.Unmarshal(want, &ref); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(dec, ref) {
			t.Fatalf("decodeFields(%s) = %v, want %v", want, dec, ref)
		}
	}
}

// TestMetaCodec checks the fast meta decoder against encoding/json, on
// what this store writes and on inputs it must hand over.
func TestMetaCodec(t *testing.T) {
	r := rand.New(rand.NewPCG(codecSeed(t), 2))
	bys := []string{"device-1", "office", "é", `a"b`, "<x>", ""}
	for range 20000 {
		m := map[string]fieldsync.FieldMeta{}
		for range r.IntN(5) {
			// Small ranges, so that zero (left out by omitempty) is common.
			m[codecKeys[r.IntN(len(codecKeys))]] = fieldsync.FieldMeta{
				Version: r.Int64N(20) - 10, By: bys[r.IntN(len(bys))], Seq: r.Int64N(3) << r.IntN(40),
				Role: bys[r.IntN(len(bys))], HLC: fieldsync.HLC(r.Int64N(3) << r.IntN(50)), OpID: bys[r.IntN(len(bys))],
				At: r.Int64N(3) << r.IntN(42), Since: r.Int64N(3) << r.IntN(20),
			}
		}
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := encodeMeta(m); err != nil || string(got) != string(data) {
			t.Fatalf("encodeMeta(%+v) = %s, %v; json.Marshal = %s", m, got, err, data)
		}
		checkMeta(t, data)
	}
	if !metaFast() {
		t.Error("encodeMeta does not know FieldMeta's fields: teach metaLayout and parseFieldMeta the new ones")
	}
	for _, in := range []string{
		`{}`, `null`, ` { "s" : { "v" : 1 , "by" : "d" } } `, `{"s":{"v":1.0}}`, `{"s":{"v":01}}`, `{"s":{"v":+1}}`,
		`{"s":{"V":2}}`, `{"s":{"by":null}}`, `{"s":{"x":[1,{"y":"}"}]}}`, `{"s":{"v":1},"s":{"v":2}}`,
		`{"s":{"v":-0}}`, `{"s":{"v":99999999999999999999}}`, `{"s":{"by":"\u00e9"}}`, `{"s":1}`, `{"s":{"v":1}`, `[]`,
	} {
		checkMeta(t, []byte(in))
	}
}

func checkMeta(t *testing.T, data []byte) {
	t.Helper()
	var got, want map[string]fieldsync.FieldMeta
	gerr := decodeMeta(data, &got)
	werr := json.Unmarshal(data, &want)
	if (gerr == nil) != (werr == nil) || gerr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeMeta(%s) = %v, %v; json.Unmarshal = %v, %v", data, got, gerr, want, werr)
	}
}

// TestMetaFastPathCoversFieldMeta fails when FieldMeta gains a field that
// parseFieldMeta does not know: decoding stays correct (encoding/json
// takes over), but every record read would pay for it.
func TestMetaFastPathCoversFieldMeta(t *testing.T) {
	var fm fieldsync.FieldMeta
	v := reflect.ValueOf(&fm).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Int, reflect.Int64:
			f.SetInt(7)
		default:
			t.Fatalf("FieldMeta.%s is a %s: teach parseFieldMeta about it", v.Type().Field(i).Name, f.Kind())
		}
	}
	data, err := json.Marshal(fm)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := parseFieldMeta(data)
	if !ok || got != fm {
		t.Fatalf("parseFieldMeta(%s) = %+v, %v: teach it the new field", data, got, ok)
	}
}
