package fieldsync

import (
	"context"
	"time"
)

// Store is the server's storage. Implementations live under store/ and all
// pass the conformance suite in store/storetest. A Store is safe for
// concurrent use.
type Store interface {
	// Epoch identifies this store's history. It is made when the store is
	// created and never changes; devices keep it in their cursor.
	Epoch() string
	// Update runs fn in one write transaction: everything fn does commits
	// together or not at all. Errors from fn roll back and are returned.
	Update(ctx context.Context, fn func(StoreTx) error) error
	// Changes returns up to limit records whose feed position is after
	// `after`, in feed order, and the highest position in the store.
	Changes(ctx context.Context, after int64, limit int) ([]Record, int64, error)
	// ChangeTag returns a short tag of the change at feed position seq, if
	// the store still knows it, so a cursor from another history can be
	// told apart from one of this store.
	ChangeTag(ctx context.Context, seq int64) (string, bool, error)
	// Record returns one record; ENotFound when there is none.
	Record(ctx context.Context, typ, id string) (Record, error)
	// OpEntry returns the recorded entry of an op id; ENotFound when none.
	OpEntry(ctx context.Context, opID string) (OpEntry, error)
	// RecordOps returns the recorded ops of one record in the order the
	// server decided them.
	RecordOps(ctx context.Context, typ, id string) ([]OpEntry, error)
	// Blob returns the verified blob with that SHA-256; ENotFound when
	// the store holds none.
	Blob(ctx context.Context, sha string) (Blob, error)
	Close() error
}

// StoreTx is what the apply logic may do inside one write transaction.
// It is used by one goroutine only.
type StoreTx interface {
	// OpByID returns the recorded entry of an op id.
	OpByID(opID string) (OpEntry, bool, error)
	// OpByDeviceSeq returns the recorded entry of a device's sequence number.
	OpByDeviceSeq(deviceID string, seq int64) (OpEntry, bool, error)
	// Record returns the record, deleted ones included.
	Record(typ, id string) (Record, bool, error)
	// PutRecord writes rec, gives it the next feed position (rec.Seq) and
	// returns that position.
	PutRecord(rec *Record) (int64, error)
	// NextNumber returns the next value of a named counter, starting at
	// start for a counter never used.
	NextNumber(counter string, start int64) (int64, error)
	// RecordOp records the op and its result. Op ids and (device, seq)
	// pairs are unique.
	RecordOp(e OpEntry) error
	// Blob returns the verified blob with that SHA-256, if any.
	Blob(sha string) (Blob, bool, error)
	// PutBlob records a verified blob. It is idempotent: a blob already
	// recorded keeps its first record.
	PutBlob(b Blob) error
	// RecordsWithBlob returns the (type, id) of every record having an
	// attachment with that SHA-256, as written by PutRecord.
	RecordsWithBlob(sha string) ([][2]string, error)
}

// OpEntry is an op as the server recorded it, with its result.
type OpEntry struct {
	Op         Op
	Result     Result
	ReceivedAt time.Time
	ChangeSeq  int64 // feed position of the change it made, 0 if none
}
