package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/fieldsync/fieldsync/protocol"
)

// decompress returns body decoded from enc ("gzip" or ""), as far as it
// can be decoded: a cut gzip stream gives what its bytes hold.
func decompress(body []byte, enc string) []byte {
	if enc != "gzip" {
		return body
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil
	}
	data, _ := io.ReadAll(zr)
	return data
}

// pushRequestOf decodes the push request of an exchange.
func pushRequestOf(t *testing.T, ex Exchange) protocol.PushRequest {
	t.Helper()
	var req protocol.PushRequest
	if err := json.Unmarshal(decompress(ex.RequestBody, ex.RequestEnc), &req); err != nil {
		t.Fatalf("push request %d: %v", ex.N, err)
	}
	return req
}

// pushResultsOf decodes the whole answer the server gave to a push.
func pushResultsOf(t *testing.T, ex Exchange) []protocol.Result {
	t.Helper()
	var resp protocol.PushResponse
	if err := json.Unmarshal(decompress(ex.ResponseBody, ex.ResponseEnc), &resp); err != nil {
		t.Fatalf("push answer %d (HTTP %d): %v", ex.N, ex.Status, err)
	}
	return resp.Results
}

// completeResults counts the results of a push answer that are whole in
// its first n bytes (as sent, compressed if it was): what a client that
// decodes item by item can keep from an answer cut after n bytes. It
// also returns the number of results in the whole answer.
func completeResults(body []byte, enc string, n int) (complete, total int, err error) {
	full := decompress(body, enc)
	prefix := decompress(body[:n], enc)
	dec := json.NewDecoder(bytes.NewReader(full))
	for _, want := range []any{json.Delim('{'), "results", json.Delim('[')} {
		tok, err := dec.Token()
		if err != nil || tok != want {
			return 0, 0, fmt.Errorf("answer does not start with {\"results\":[: %v %v", tok, err)
		}
	}
	for dec.More() {
		var r json.RawMessage
		if err := dec.Decode(&r); err != nil {
			return 0, 0, err
		}
		total++
		if dec.InputOffset() <= int64(len(prefix)) {
			complete++
		}
	}
	return complete, total, nil
}

// pushExchanges returns the exchanges of push requests, in the order they
// finished.
func pushExchanges(p *Proxy) []Exchange {
	var out []Exchange
	for _, ex := range p.Exchanges() {
		if ex.Path == protocol.PathPush {
			out = append(out, ex)
		}
	}
	return out
}
