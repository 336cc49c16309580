package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/server"
)

// fixedNow is the server clock of the attach tests.
var fixedNow = time.Date(2024, 7, 3, 9, 30, 0, 0, time.UTC)

func attachEnv(t *testing.T) *blobEnv {
	t.Helper()
	b := newBlobEnv(t, server.Config{Now: func() time.Time { return fixedNow }})
	b.push(t, "dev-1", createOp(1, "wo-1", map[string]string{"title": `"Boiler"`}))
	return b
}

// record returns a work order as the server holds it.
func (b *blobEnv) record(t *testing.T, id string) protocol.Record {
	t.Helper()
	return b.history(t, "work_order", id).Record
}

// changedSince pulls the changes after cursor and returns the work order
// id among them (failing if it is not there) and the new cursor.
func (b *blobEnv) changedSince(t *testing.T, cursor, id string) (protocol.Record, string) {
	t.Helper()
	resp := b.changes(t, cursor, 0)
	for _, r := range resp.Changes {
		if r.ID == id {
			return r, resp.Cursor
		}
	}
	t.Fatalf("%s is not among the changes after %q", id, cursor)
	return protocol.Record{}, ""
}

func TestAttachBeforeBytes(t *testing.T) {
	r := testRand(t)
	b := attachEnv(t)
	cursor := b.changes(t, "", 0).Cursor
	data, sha := jpegFile(r, 50_000)
	value := attachmentJSON(sha, len(data))
	res := b.push(t, "dev-1", attachOp(2, 1, "wo-1", value))
	if res[0].Status != "applied" || res[0].Version != 2 || res[0].Number != "WO-1001" {
		t.Fatalf("attach: %+v", res[0])
	}
	rec, cursor := b.changedSince(t, cursor, "wo-1")
	if len(rec.Attachments) != 1 {
		t.Fatalf("attachments %+v", rec.Attachments)
	}
	var want fieldsync.Attachment
	if err := json.Unmarshal([]byte(value), &want); err != nil {
		t.Fatal(err)
	}
	want.Status, want.By, want.At = fieldsync.AttachmentUploading, "dev-1", fixedNow
	if got := rec.Attachments[0]; got != want {
		t.Fatalf("attachment\n got %+v\nwant %+v", got, want)
	}
	seqBefore := rec.Seq

	b.mustUpload(t, data, sha)
	rec, _ = b.changedSince(t, cursor, "wo-1")
	if rec.Seq <= seqBefore || rec.Version != 3 {
		t.Fatalf("after the upload: seq %d (was %d), version %d", rec.Seq, seqBefore, rec.Version)
	}
	want.Status = fieldsync.AttachmentReady
	if len(rec.Attachments) != 1 || rec.Attachments[0] != want {
		t.Fatalf("attachments after the upload %+v", rec.Attachments)
	}
	// The device's next update on its base still merges cleanly.
	res = b.push(t, "dev-1", updateOp(3, 2, 2, "wo-1", map[string]string{"status": `"in progress"`}))
	if res[0].Status != "applied" {
		t.Fatalf("update after the upload: %+v", res[0])
	}
	if a := b.record(t, "wo-1").Attachments; len(a) != 1 || a[0] != want {
		t.Fatalf("an update changed the attachments: %+v", a)
	}
}

func TestAttachAfterBytes(t *testing.T) {
	r := testRand(t)
	b := attachEnv(t)
	data, sha := jpegFile(r, 20_000)
	b.mustUpload(t, data, sha)
	res := b.push(t, "dev-1", attachOp(2, 1, "wo-1", attachmentJSON(sha, len(data))))
	if res[0].Status != "applied" {
		t.Fatalf("attach: %+v", res[0])
	}
	if a := b.record(t, "wo-1").Attachments; len(a) != 1 || a[0].Status != fieldsync.AttachmentReady {
		t.Fatalf("attachments %+v", a)
	}
	// A size that differs from the bytes held is refused.
	res = b.push(t, "dev-1", attachOp(3, 2, "wo-1", attachmentJSON(sha, len(data)+1)))
	if res[0].Status != "rejected" || res[0].Code != string(fieldsync.EInvalidField) {
		t.Fatalf("attach with another size: %+v", res[0])
	}
}

func TestAttachRepeated(t *testing.T) {
	b := attachEnv(t)
	sha := strings.Repeat("1a", 32)
	value := attachmentJSON(sha, 1234)
	op := attachOp(2, 1, "wo-1", value)
	first := b.push(t, "dev-1", op)[0]
	again := b.push(t, "dev-1", op)[0]
	if again.Status != "duplicate" || again.Recorded == nil || again.Recorded.Status != "applied" || again.Recorded.Version != first.Version {
		t.Fatalf("the same op again: %+v", again)
	}
	// The same attachment in a new op (the device queued it twice): no change.
	res := b.push(t, "dev-1", attachOp(3, 2, "wo-1", value))[0]
	if res.Status != "applied" || res.Version != first.Version {
		t.Fatalf("the same attachment again: %+v", res)
	}
	// The same attachment id with other bytes: refused.
	var a fieldsync.Attachment
	json.Unmarshal([]byte(value), &a)
	other := fmt.Sprintf(`{"id":%q,"sha256":%q,"size":1234,"content_type":"image/jpeg","role":"photo"}`, a.ID, strings.Repeat("2b", 32))
	res = b.push(t, "dev-1", attachOp(4, 3, "wo-1", other))[0]
	if res.Status != "rejected" || res.Code != string(fieldsync.EAlreadyExists) || !strings.Contains(res.Message, "new attachment id") {
		t.Fatalf("the same id with other bytes: %+v", res)
	}
	rec := b.record(t, "wo-1")
	if len(rec.Attachments) != 1 || rec.Attachments[0].SHA256 != sha || rec.Version != first.Version {
		t.Fatalf("record after repeats: version %d, attachments %+v", rec.Version, rec.Attachments)
	}
}

func TestAttachMissingOrDeletedRecord(t *testing.T) {
	b := attachEnv(t)
	sha := strings.Repeat("3c", 32)
	res := b.push(t, "dev-1", attachOp(2, 0, "wo-none", attachmentJSON(sha, 10)))[0]
	if res.Status != "rejected" || res.Code != string(fieldsync.ERecordMissing) {
		t.Fatalf("attach to a missing record: %+v", res)
	}
	del := wop{ID: newOpID(), Seq: 3, Prev: 1, Type: "work_order", Entity: "wo-1", Kind: "delete", Base: 1, At: 1720000000000}
	if res := b.push(t, "dev-1", del)[0]; res.Status != "applied" {
		t.Fatalf("delete: %+v", res)
	}
	// Proof of work is kept, even on a deleted record.
	res = b.push(t, "dev-2", attachOp(1, 0, "wo-1", attachmentJSON(sha, 10)))[0]
	if res.Status != "applied" || res.Version != 3 || !strings.Contains(res.Message, "deleted") {
		t.Fatalf("attach to a deleted record: %+v", res)
	}
	rec := b.record(t, "wo-1")
	if !rec.Deleted || len(rec.Attachments) != 1 || rec.Attachments[0].By != "dev-2" {
		t.Fatalf("deleted record: %+v", rec)
	}
}

func TestAttachBadValue(t *testing.T) {
	b := attachEnv(t)
	sha := strings.Repeat("4d", 32)
	id := newOpID()
	obj := func(kv string) string {
		return `{"id":"` + id + `","sha256":"` + sha + `","size":10,"content_type":"image/png","role":"scan"` + kv + `}`
	}
	cases := []struct {
		name, value string
		code        fieldsync.Code
	}{
		{"null", `null`, fieldsync.EInvalidField},
		{"string", `"photo.jpg"`, fieldsync.EInvalidField},
		{"array", `[1]`, fieldsync.EInvalidField},
		{"unknown key", obj(`,"color":"red"`), fieldsync.EInvalidField},
		{"server-set status", obj(`,"status":"ready"`), fieldsync.EInvalidField},
		{"server-set by", obj(`,"by":"me"`), fieldsync.EInvalidField},
		{"no id", `{"sha256":"` + sha + `","size":10,"content_type":"image/png","role":"scan"}`, fieldsync.EInvalidField},
		{"id not a uuid", strings.Replace(obj(""), id, "photo-1", 1), fieldsync.EInvalidField},
		{"upper-case sha", strings.Replace(obj(""), sha, strings.ToUpper(sha), 1), fieldsync.EInvalidField},
		{"size zero", strings.Replace(obj(""), `"size":10`, `"size":0`, 1), fieldsync.EInvalidField},
		{"size as text", strings.Replace(obj(""), `"size":10`, `"size":"10"`, 1), fieldsync.EInvalidField},
		{"size over the limit", strings.Replace(obj(""), `"size":10`, fmt.Sprintf(`"size":%d`, protocol.MaxAttachmentBytes+1), 1), fieldsync.ETooLarge},
		{"content type", strings.Replace(obj(""), "image/png", "text/html", 1), fieldsync.EUnsupportedMedia},
		{"role", strings.Replace(obj(""), `"scan"`, `"selfie"`, 1), fieldsync.EInvalidField},
		{"control character in name", obj(`,"name":"a\u0007b"`), fieldsync.EInvalidField},
		{"name too long", obj(`,"name":"` + strings.Repeat("é", 128) + `"`), fieldsync.EInvalidField},
	}
	before := takeSnapshot(t, b.st)
	recBefore := b.record(t, "wo-1")
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := b.push(t, "dev-1", attachOp(int64(i+2), int64(i+1), "wo-1", c.value))[0]
			if res.Status != "rejected" || res.Code != string(c.code) || res.Message == "" {
				t.Fatalf("result %+v, want rejected with %s", res, c.code)
			}
		})
	}
	t.Run("wrong field name", func(t *testing.T) {
		op := attachOp(100, 0, "wo-1", obj(""))
		op.Fields = map[string]json.RawMessage{"photos": op.Fields[fieldsync.AttachField]}
		res := b.push(t, "dev-1", op)[0]
		if res.Status != "rejected" || res.Code != string(fieldsync.EInvalidRequest) {
			t.Fatalf("result %+v", res)
		}
	})
	t.Run("two fields", func(t *testing.T) {
		op := attachOp(101, 0, "wo-1", obj(""))
		op.Fields["title"] = json.RawMessage(`"x"`)
		r := b.request(t, http.MethodPost, protocol.PathPush, apiHeaders(), pushBody(t, "dev-1", op))
		checkError(t, r, http.StatusBadRequest, fieldsync.EInvalidRequest)
	})
	after := takeSnapshot(t, b.st)
	after.Ops = before.Ops // rejected ops are recorded with their result
	if after != before {
		t.Fatalf("refused attachments changed the store:\nbefore %+v\nafter  %+v", before, after)
	}
	if rec := b.record(t, "wo-1"); rec.Version != recBefore.Version || len(rec.Attachments) != 0 {
		t.Fatalf("record after refused attachments: %+v", rec)
	}
}

// TestAttachWithoutBlobDir: the op path does not need the upload
// endpoints; the attachment waits, uploading.
func TestAttachWithoutBlobDir(t *testing.T) {
	e := newEnv(t, server.Config{})
	e.push(t, "dev-1", createOp(1, "wo-1", map[string]string{"title": `"Boiler"`}))
	res := e.push(t, "dev-1", attachOp(2, 1, "wo-1", attachmentJSON(strings.Repeat("5e", 32), 99)))[0]
	if res.Status != "applied" {
		t.Fatalf("attach: %+v", res)
	}
	if a := e.history(t, "work_order", "wo-1").Record.Attachments; len(a) != 1 || a[0].Status != fieldsync.AttachmentUploading {
		t.Fatalf("attachments %+v", a)
	}
}
