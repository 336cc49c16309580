package sqlite

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ncruces/go-sqlite3"

	"github.com/fieldsync/fieldsync"
)

// The record cache. An op reads its record, decides, and writes the
// record back; reading it means a b-tree lookup and decoding its JSON
// columns, a fifth of the work of applying the op. The store keeps the
// records it last wrote, decoded, as committed, so the next op on one of
// them starts from memory. Record hands the cached record itself to its
// caller and forgets it (the caller may change it); PutRecord keeps a copy
// of what it writes, PutRecordOwned the record itself.
//
// It is right only while every change to the records table goes through
// this store's write transactions (PutRecord and the history chain in
// oplog.go): they keep their changes aside (tx.dirty) and hand them to the
// cache when the transaction commits, and drop them when it rolls back.
// Writes from anywhere else (another process, a connection from DB()) are
// noticed through PRAGMA data_version on the write connection, which
// changes when any other connection commits, and empty the cache.

// maxCachedRecords bounds the cache (a few KiB a record).
const maxCachedRecords = 1024

type recordKey struct{ typ, id string }

// cachedRecord is a record as committed, with its place in the history
// chains. Once Record hands it out, it is no longer in the cache.
type cachedRecord struct {
	rec    fieldsync.Record
	row    int64 // rowid
	lastOp int64 // records.last_op
}

type recordCache struct {
	m           map[recordKey]*cachedRecord
	dataVersion int64 // PRAGMA data_version of the write connection, 0 unknown
}

func (c *recordCache) put(k recordKey, e *cachedRecord) {
	if len(c.m) >= maxCachedRecords {
		for k := range c.m { // drop about a quarter, at random
			delete(c.m, k)
			if len(c.m) < maxCachedRecords*3/4 {
				break
			}
		}
	}
	c.m[k] = e
}

// recordLayout is the fieldsync.Record that copyRecord copies. If the type
// changes, the cache is off (cacheFits) until copyRecord learns the new
// field: a field it did not copy would be shared between callers.
var recordLayout = []string{"Type", "ID", "Number", "Version", "Deleted", "Fields", "Meta", "Review",
	"Conflicts", "Attachments", "Seq", "UpdatedAt"}

var cacheFits = sync.OnceValue(func() bool {
	t := reflect.TypeFor[fieldsync.Record]()
	if t.NumField() != len(recordLayout) {
		return false
	}
	for i, name := range recordLayout {
		if t.Field(i).Name != name {
			return false
		}
	}
	return true
})

// copyRecord returns a copy of r that shares nothing it could change:
// maps and slices are copied (field values, being immutable JSON, are
// shared).
func copyRecord(r *fieldsync.Record) fieldsync.Record {
	c := *r
	c.Fields = maps.Clone(r.Fields)
	c.Meta = maps.Clone(r.Meta)
	c.Review = slices.Clone(r.Review)
	c.Conflicts = slices.Clone(r.Conflicts)
	for i := range c.Conflicts {
		c.Conflicts[i].Theirs = slices.Clone(c.Conflicts[i].Theirs)
		if s := c.Conflicts[i].Settled; s != nil {
			cs := *s
			c.Conflicts[i].Settled = &cs
		}
	}
	c.Attachments = slices.Clone(r.Attachments)
	return c
}

// cacheable returns r as reading it back from the database would give it,
// if that is sure without decoding: plain fields, meta and review (which
// the store's codec writes and reads byte for byte), no conflicts or
// attachments (which go through encoding/json and its time format). The
// result shares nothing with r unless owned (r is not changed again).
func cacheable(r *fieldsync.Record, owned bool) (fieldsync.Record, bool) {
	if len(r.Conflicts) > 0 || len(r.Attachments) > 0 {
		return fieldsync.Record{}, false
	}
	for k, v := range r.Fields {
		if !plainJSON(k, false) || !plainJSON(string(v), true) {
			return fieldsync.Record{}, false
		}
	}
	if !metaFast() {
		return fieldsync.Record{}, false
	}
	for k, m := range r.Meta {
		if !plainJSON(k, false) || !plainJSON(m.By, false) || !plainJSON(m.Role, false) || !plainJSON(m.OpID, false) {
			return fieldsync.Record{}, false
		}
	}
	for _, f := range r.Review {
		if !utf8.ValidString(f) {
			return fieldsync.Record{}, false
		}
	}
	c := *r
	if !owned {
		c = copyRecord(r)
	}
	if c.Review == nil {
		c.Review = []string{}
	}
	c.Conflicts, c.Attachments = nil, nil
	c.UpdatedAt = time.UnixMilli(r.UpdatedAt.UnixMilli()).UTC()
	return c, true
}

// cached returns the committed or, if this transaction changed it, the
// current state of a record, when known without reading it.
func (t *tx) cached(k recordKey) (*cachedRecord, bool) {
	if t.cache == nil {
		return nil, false
	}
	if e, dirty := t.dirty[k]; dirty {
		return e, e != nil
	}
	e, ok := t.cache.m[k]
	return e, ok
}

// take returns a record like cached, and forgets it: the caller owns
// e.rec from now on.
func (t *tx) take(k recordKey) (*cachedRecord, bool) {
	e, ok := t.cached(k)
	if !ok {
		return nil, false
	}
	if _, dirty := t.dirty[k]; dirty {
		t.dirty[k] = nil
	} else {
		delete(t.cache.m, k)
	}
	return e, true
}

// remember keeps the state of a record this transaction changed, for
// later ops and for the cache once the transaction commits; nil means
// not known (the record is then dropped from the cache at commit).
func (t *tx) remember(k recordKey, e *cachedRecord) {
	if t.cache != nil {
		t.dirty[k] = e
	}
}

// movedHead notes that the chain head of the record moved to lastOp. The
// record's entry moves out of the committed cache into the transaction's
// changes: the two must not share the record, which the next op may take
// and change before the transaction rolls back.
func (t *tx) movedHead(k recordKey, lastOp int64) {
	if t.cache == nil {
		return
	}
	e, ok := t.take(k)
	if !ok {
		t.remember(k, nil)
		return
	}
	e.lastOp = lastOp
	t.remember(k, e)
}

// commitCache hands the transaction's changes to the cache once its
// COMMIT succeeded.
func (t *tx) commitCache() {
	if t.cache == nil {
		return
	}
	for k, e := range t.dirty {
		if e == nil {
			delete(t.cache.m, k)
		} else {
			t.cache.put(k, e)
		}
	}
}

// checkDataVersion empties the cache if another connection committed
// since the last check. It runs inside the write transaction, so nothing
// else can commit until it ends.
func (t *tx) checkDataVersion() error {
	if t.cache == nil {
		return nil
	}
	var v int64
	if _, err := t.row(`PRAGMA data_version`, func(st *sqlite3.Stmt) error {
		v = st.ColumnInt64(0)
		return nil
	}); err != nil {
		return err
	}
	if v != t.cache.dataVersion {
		clear(t.cache.m)
		t.cache.dataVersion = v
	}
	return nil
}

// badConn reports whether err means the write connection is gone and a
// new one is needed.
func badConn(err error) bool {
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone)
}
