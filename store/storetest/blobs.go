package storetest

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
)

// blobTests are the cases about attachments and verified blobs.
var blobTests = []struct {
	name string
	fn   func(t *testing.T, s *suite)
}{
	{"AttachmentsRoundTrip", testAttachmentsRoundTrip},
	{"BlobRoundTrip", testBlobRoundTrip},
	{"BlobRollsBack", testBlobRollsBack},
	{"RecordsWithBlob", testRecordsWithBlob},
}

// sha returns a valid SHA-256-shaped hex string made from n.
func sha(n int) string {
	return strings.Repeat("0", 56) + fmt.Sprintf("%08x", n)
}

func attachment(n int, hash, status string) fieldsync.Attachment {
	return fieldsync.Attachment{
		ID: opID(1000 + n), SHA256: hash, Size: int64(1000 + n), ContentType: "image/jpeg",
		Role: fieldsync.RolePhoto, Name: fmt.Sprintf("photo %d ✓.jpg", n), Status: status,
		By: "dev-1", At: epochT.Add(time.Duration(n) * time.Second),
	}
}

// checkAttachments compares a stored record's attachments with the ones
// written; times are kept to the millisecond or better.
func checkAttachments(t *testing.T, got, want fieldsync.Record) {
	t.Helper()
	if len(got.Attachments) != len(want.Attachments) {
		t.Fatalf("record %s/%s: %d attachments, want %d: %+v", want.Type, want.ID, len(got.Attachments), len(want.Attachments), got.Attachments)
	}
	for i := range want.Attachments {
		g, w := got.Attachments[i], want.Attachments[i]
		if !g.At.Equal(w.At.Truncate(time.Millisecond)) && !g.At.Equal(w.At) {
			t.Errorf("attachment %d at: got %v, want %v", i, g.At, w.At)
		}
		g.At, w.At = time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("attachment %d: got %+v, want %+v", i, g, w)
		}
	}
}

func testAttachmentsRoundTrip(t *testing.T, s *suite) {
	st := s.open(t)
	with := record("job", "with", 3, map[string]string{"title": `"x"`})
	with.Attachments = []fieldsync.Attachment{attachment(1, sha(1), fieldsync.AttachmentReady), attachment(2, sha(2), fieldsync.AttachmentUploading)}
	with.Attachments[1].Name = ""
	without := record("job", "without", 1, nil)
	seqs := put(t, st, with, without)
	with.Seq, without.Seq = seqs[0], seqs[1]

	recs, _, err := st.Changes(ctx(t), 0, 10)
	if err != nil || len(recs) != 2 {
		t.Fatalf("changes: %d records, %v", len(recs), err)
	}
	checkRecord(t, recs[0], with)
	checkAttachments(t, recs[0], with)
	checkAttachments(t, recs[1], without)
	got, err := st.Record(ctx(t), "job", "with")
	if err != nil {
		t.Fatal(err)
	}
	checkAttachments(t, got, with)

	// A later write of the record replaces the list as a whole (the apply
	// logic only ever appends to it or changes a status).
	with.Attachments[1].Status = fieldsync.AttachmentReady
	with.Attachments = append(with.Attachments, attachment(3, sha(1), fieldsync.AttachmentReady))
	with.Version++
	put(t, st, with)
	err = st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		r, ok, err := tx.Record("job", "with")
		if err != nil || !ok {
			return fmt.Errorf("tx.Record: %v, found %v", err, ok)
		}
		checkAttachments(t, r, with)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.reopen != nil {
		st = s.reopen(t, st)
		got, err := st.Record(ctx(t), "job", "with")
		if err != nil {
			t.Fatalf("after reopen: %v", err)
		}
		checkAttachments(t, got, with)
	}
}

func testBlobRoundTrip(t *testing.T, s *suite) {
	st := s.open(t)
	b := fieldsync.Blob{SHA256: sha(7), Size: 12345, ContentType: "application/pdf", StoredAt: epochT.Add(1500 * time.Microsecond)}
	if _, err := st.Blob(ctx(t), b.SHA256); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Fatalf("Blob of an unknown hash = %v, want %s", err, fieldsync.ENotFound)
	}
	err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		if _, ok, err := tx.Blob(b.SHA256); err != nil || ok {
			return fmt.Errorf("tx.Blob of an unknown hash: found %v, %v", ok, err)
		}
		if err := tx.PutBlob(b); err != nil {
			return err
		}
		got, ok, err := tx.Blob(b.SHA256)
		if err != nil || !ok {
			return fmt.Errorf("own PutBlob not visible in the transaction: found %v, %v", ok, err)
		}
		checkBlob(t, got, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.Blob(ctx(t), b.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	checkBlob(t, got, b)

	// PutBlob is idempotent: the first record stays.
	other := b
	other.Size, other.ContentType, other.StoredAt = 1, "image/png", epochT.Add(time.Hour)
	err = st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		if err := tx.PutBlob(other); err != nil {
			return fmt.Errorf("PutBlob of a known hash: %w", err)
		}
		return tx.PutBlob(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err = st.Blob(ctx(t), b.SHA256); err != nil {
		t.Fatal(err)
	}
	checkBlob(t, got, b)
	if s.reopen != nil {
		st = s.reopen(t, st)
		if got, err = st.Blob(ctx(t), b.SHA256); err != nil {
			t.Fatalf("after reopen: %v", err)
		}
		checkBlob(t, got, b)
	}
	if _, err := st.Blob(ctx(t), sha(8)); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Errorf("Blob of another hash = %v, want %s", err, fieldsync.ENotFound)
	}
}

func checkBlob(t *testing.T, got, want fieldsync.Blob) {
	t.Helper()
	if !got.StoredAt.Equal(want.StoredAt.Truncate(time.Millisecond)) && !got.StoredAt.Equal(want.StoredAt) {
		t.Errorf("blob stored at %v, want %v", got.StoredAt, want.StoredAt)
	}
	got.StoredAt, want.StoredAt = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("blob: got %+v, want %+v", got, want)
	}
}

func testBlobRollsBack(t *testing.T, s *suite) {
	st := s.open(t)
	err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		if err := tx.PutBlob(fieldsync.Blob{SHA256: sha(1), Size: 1, ContentType: "image/png", StoredAt: epochT}); err != nil {
			return err
		}
		r := record("job", "a", 1, nil)
		r.Attachments = []fieldsync.Attachment{attachment(1, sha(1), fieldsync.AttachmentReady)}
		if _, err := tx.PutRecord(&r); err != nil {
			return err
		}
		return errBoom
	})
	if err == nil {
		t.Fatal("Update returned no error")
	}
	if _, err := st.Blob(ctx(t), sha(1)); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Errorf("a rolled-back blob is readable: %v", err)
	}
	err = st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		refs, err := tx.RecordsWithBlob(sha(1))
		if err == nil && len(refs) > 0 {
			return fmt.Errorf("a rolled-back record is found by its attachment: %v", refs)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testRecordsWithBlob(t *testing.T, s *suite) {
	st := s.open(t)
	a := record("job", "a", 1, nil)
	a.Attachments = []fieldsync.Attachment{attachment(1, sha(1), fieldsync.AttachmentUploading), attachment(2, sha(1), fieldsync.AttachmentUploading)}
	b := record("visit", "b", 1, nil)
	b.Attachments = []fieldsync.Attachment{attachment(3, sha(2), fieldsync.AttachmentReady), attachment(4, sha(1), fieldsync.AttachmentUploading)}
	c := record("job", "c", 1, map[string]string{"title": `"no attachments"`})
	deleted := record("job", "gone", 2, nil)
	deleted.Deleted = true
	deleted.Attachments = []fieldsync.Attachment{attachment(5, sha(1), fieldsync.AttachmentUploading)}
	put(t, st, a, b, c, deleted)
	// An update that keeps the attachments keeps the record findable.
	a.Version = 2
	put(t, st, a)

	want := map[string][][2]string{
		sha(1): {{"job", "a"}, {"job", "gone"}, {"visit", "b"}},
		sha(2): {{"visit", "b"}},
		sha(3): nil,
	}
	err := st.Update(ctx(t), func(tx fieldsync.StoreTx) error {
		for hash, w := range want {
			got, err := tx.RecordsWithBlob(hash)
			if err != nil {
				return err
			}
			slices.SortFunc(got, func(x, y [2]string) int { return strings.Compare(x[0]+"/"+x[1], y[0]+"/"+y[1]) })
			if !slices.Equal(got, w) {
				t.Errorf("RecordsWithBlob(%s…) = %v, want %v", hash[56:], got, w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
