package client

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

// sampleAnswer is a push answer with one result of each status.
func sampleAnswer(t testing.TB) []byte {
	t.Helper()
	applied := protocol.Result{Op: "0190a6c4-1b2c-7d3e-8f40-000000000001", Status: "applied", Version: 1, Number: "WO-1001"}
	resp := protocol.PushResponse{Results: []protocol.Result{
		applied,
		{Op: applied.Op, Status: "duplicate", Recorded: &applied},
		{Op: "0190a6c4-1b2c-7d3e-8f40-000000000002", Status: "rejected", Code: "server_owned_field", Message: `field "amount" is set by the server only`},
		{Op: "0190a6c4-1b2c-7d3e-8f40-000000000003", Status: "conflict", Version: 3, Code: "field_conflict", Message: "status: needs review",
			Conflicts: []protocol.Conflict{{Field: "status", ServerValue: json.RawMessage(`"cancelled"`), DeviceValue: json.RawMessage(`"in progress"`), ServerVersion: 2, ServerBy: "office"}}},
		{Op: "0190a6c4-1b2c-7d3e-8f40-000000000004", Status: "retry", Code: "waiting_for_earlier", Message: "waiting"},
	}}
	data, err := json.Marshal(&resp)
	if err != nil {
		t.Fatal(err)
	}
	return append(data, '\n')
}

// checkCut checks that an error from decodeResults says "retry".
func checkCut(t *testing.T, err error) {
	t.Helper()
	if err != nil && fieldsync.ErrorCode(err) != fieldsync.EUnavailable {
		t.Fatalf("a broken answer gives %v, want a retryable %s", err, fieldsync.EUnavailable)
	}
}

func isPrefix(part, full []protocol.Result) bool {
	return len(part) <= len(full) && (len(part) == 0 || reflect.DeepEqual(part, full[:len(part)]))
}

// TestDecodeResultsEveryCut cuts a whole answer at every byte: each cut
// gives a prefix of the results and an error, until the answer is whole.
func TestDecodeResultsEveryCut(t *testing.T) {
	data := sampleAnswer(t)
	var want protocol.PushResponse
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	full, err := decodeResults(bytes.NewReader(data))
	if err != nil || !reflect.DeepEqual(full, want.Results) {
		t.Fatalf("whole answer: %v\n%+v\nwant %+v", err, full, want.Results)
	}
	end := bytes.LastIndexByte(data, '}') + 1
	lastCount := 0
	for cut := 0; cut < len(data); cut++ {
		part, err := decodeResults(bytes.NewReader(data[:cut]))
		if !isPrefix(part, full) {
			t.Fatalf("cut at %d: %+v is not a prefix of the results", cut, part)
		}
		if len(part) < lastCount {
			t.Fatalf("cut at %d: %d results, a shorter cut gave %d", cut, len(part), lastCount)
		}
		lastCount = len(part)
		if cut < end && err == nil {
			t.Fatalf("cut at %d of %d: no error", cut, end)
		}
		checkCut(t, err)
	}
	// Cut just before the closing brace: every result is complete.
	if part, err := decodeResults(bytes.NewReader(data[:end-1])); err == nil || len(part) != len(full) {
		t.Fatalf("cut before the last brace: %d of %d results, %v", len(part), len(full), err)
	}
}

// FuzzDecodeResults: decodeResults never panics; a broken answer gives
// a retryable error; what it returns for any prefix of an input is a
// prefix of what it returns for the whole input, and a prefix decoded
// without error is the whole answer.
func FuzzDecodeResults(f *testing.F) {
	data := sampleAnswer(f)
	f.Add(data, uint16(len(data)))
	f.Add(data, uint16(len(data)/2))
	f.Add([]byte(`{"results":[]}`), uint16(5))
	f.Add([]byte(`{"other":{"results":[1]},"results":[{"op":"x","status":"applied"}],"more":[]}`), uint16(40))
	f.Add([]byte(`{"results":[{"op":"x","status":"applied"},{"op":1}]}`), uint16(30))
	f.Add([]byte(`{"results":{"op":"x"}}`), uint16(30))
	f.Add([]byte(`{"results":null}`), uint16(30))
	f.Add([]byte(`[{"op":"x"}]`), uint16(30))
	f.Add([]byte(`{"results":[{"op":"x","status":"applied"}],"results":[{"op":"y"}]}`), uint16(60))
	f.Add([]byte(`{"results":[{"op":"x","status":"applied"}]} trailing`), uint16(50))
	f.Add([]byte(`<html>502 Bad Gateway</html>`), uint16(10))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		full, ferr := decodeResults(bytes.NewReader(data))
		checkCut(t, ferr)
		n := int(cut)
		if n > len(data) {
			n = len(data)
		}
		part, perr := decodeResults(bytes.NewReader(data[:n]))
		checkCut(t, perr)
		if !isPrefix(part, full) {
			t.Fatalf("cut at %d: %+v is not a prefix of %+v", n, part, full)
		}
		if ferr == nil && perr == nil && len(part) != len(full) {
			t.Fatalf("cut at %d read as a whole answer with %d of %d results", n, len(part), len(full))
		}
	})
}
