package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ncruces/go-sqlite3"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/protocol"
)

// The op log (migrations/0004_oplog.sql): table oplog, device numbers in
// devices, op ids as 16 bytes when they are lowercase UUIDs, and each
// record's history as a chain through records.last_op and oplog.prev_op.

// blob is a value bound as an SQLite BLOB.
type blob []byte

// opKey is an op id as the op log stores it.
func opKey(id string) any {
	if b, ok := uuidBytes(id); ok {
		return blob(b[:])
	}
	return id
}

// uuidBytes parses a lowercase UUID in its canonical 36-character form;
// nothing else, so that formatting the bytes gives back the same string.
func uuidBytes(s string) ([16]byte, bool) {
	var b [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return b, false
	}
	j := 0
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue
		}
		hi, ok1 := fromHex(s[i])
		lo, ok2 := fromHex(s[i+1])
		if !ok1 || !ok2 {
			return b, false
		}
		b[j] = hi<<4 | lo
		j++
		i++
	}
	return b, true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// formatUUID is the inverse of uuidBytes.
func formatUUID(b []byte) string {
	const digits = "0123456789abcdef"
	var out [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = digits[c>>4], digits[c&15]
		j += 2
	}
	return string(out[:])
}

// opIDText is the SQL of an oplog row's op id (alias o) as text.
const opIDText = `CASE WHEN typeof(o.op_id) = 'blob' THEN lower(substr(hex(o.op_id), 1, 8) || '-' || substr(hex(o.op_id), 9, 4) || '-' ||
	substr(hex(o.op_id), 13, 4) || '-' || substr(hex(o.op_id), 17, 4) || '-' || substr(hex(o.op_id), 21, 12)) ELSE o.op_id END`

// opSelect reads ops in the column order scanOp and scanOpRaw expect;
// the op log is aliased o.
const opSelect = `SELECT ` + opCols + ` FROM oplog o JOIN devices d ON d.no = o.device_no`

// opCols are the columns of opSelect.
const opCols = opIDText + `, d.id, o.seq, o.prev_seq, o.entity_type, o.entity_id, o.kind, o.base_version,
	o.fields, o.local_time, o.received_at, o.result, o.change_seq`

// numRecordColumns is the number of columns in recordColumns: queries
// that read more than a record put their extra columns after those.
var numRecordColumns = strings.Count(recordColumns, ",") + 1

func scanOp(row scanner) (fieldsync.OpEntry, error) {
	var e fieldsync.OpEntry
	var kind, fields, result string
	var local, received int64
	err := row.Scan(&e.Op.ID, &e.Op.DeviceID, &e.Op.Seq, &e.Op.PrevSeq, &e.Op.EntityType, &e.Op.EntityID,
		&kind, &e.Op.BaseVersion, &fields, &local, &received, &result, &e.ChangeSeq)
	if err != nil {
		return e, err
	}
	return decodeOp(e, kind, []byte(fields), []byte(result), local, received)
}

func decodeOp(e fieldsync.OpEntry, kind string, fields, result []byte, local, received int64) (fieldsync.OpEntry, error) {
	e.Op.Kind = fieldsync.OpKind(kind)
	e.Op.LocalTime = time.UnixMilli(local).UTC()
	e.ReceivedAt = time.UnixMilli(received).UTC()
	if err := json.Unmarshal(fields, &e.Op.Fields); err != nil {
		return e, fmt.Errorf("op %s fields: %w", e.Op.ID, err)
	}
	var w protocol.Result
	if err := json.Unmarshal(result, &w); err != nil {
		return e, fmt.Errorf("op %s result: %w", e.Op.ID, err)
	}
	e.Result = protocol.ToResult(&w)
	return e, nil
}

// scanOpRaw reads an op row of opSelect from a raw statement.
func scanOpRaw(st *sqlite3.Stmt) (fieldsync.OpEntry, error) {
	var e fieldsync.OpEntry
	e.Op.ID = st.ColumnText(0)
	e.Op.DeviceID = st.ColumnText(1)
	e.Op.Seq = st.ColumnInt64(2)
	e.Op.PrevSeq = st.ColumnInt64(3)
	e.Op.EntityType = st.ColumnText(4)
	e.Op.EntityID = st.ColumnText(5)
	e.Op.BaseVersion = st.ColumnInt64(7)
	e.ChangeSeq = st.ColumnInt64(12)
	return decodeOp(e, st.ColumnText(6), st.ColumnRawText(8), st.ColumnRawText(11), st.ColumnInt64(9), st.ColumnInt64(10))
}

func (t *tx) queryOp(q string, args ...any) (fieldsync.OpEntry, bool, error) {
	var e fieldsync.OpEntry
	ok, err := t.row(q, func(st *sqlite3.Stmt) (err error) {
		e, err = scanOpRaw(st)
		return err
	}, args...)
	return e, ok, err
}

// deviceNo returns the number of a device id, 0 for a device the log has
// never seen unless create is set, which numbers it. Numbers are cached
// for the transaction: a batch comes from one device.
func (t *tx) deviceNo(id string, create bool) (int64, error) {
	if n, ok := t.devices[id]; ok && (n != 0 || !create) {
		return n, nil
	}
	var n int64
	_, err := t.row(`SELECT no FROM devices WHERE id = ?`, func(st *sqlite3.Stmt) error {
		n = st.ColumnInt64(0)
		return nil
	}, id)
	if err != nil {
		return 0, err
	}
	if n == 0 && create {
		if err := t.exec(`INSERT INTO devices (id) VALUES (?)`, id); err != nil {
			return 0, err
		}
		n = t.c.LastInsertRowID()
	}
	t.devices[id] = n
	return n, nil
}

// maxSeq returns the highest sequence number recorded for the device
// numbered dev (0 for none), cached for the transaction.
func (t *tx) maxSeq(dev int64) (int64, error) {
	if dev == 0 {
		return 0, nil
	}
	if n, ok := t.maxSeqs[dev]; ok {
		return n, nil
	}
	var n int64
	if _, err := t.row(`SELECT coalesce(max(seq), 0) FROM oplog WHERE device_no = ?`, func(st *sqlite3.Stmt) error {
		n = st.ColumnInt64(0)
		return nil
	}, dev); err != nil {
		return 0, err
	}
	t.maxSeqs[dev] = n
	return n, nil
}

func (t *tx) OpByID(opID string) (fieldsync.OpEntry, bool, error) {
	return t.queryOp(opSelect+` WHERE o.op_id = ?`, opKey(opID))
}

func (t *tx) OpByDeviceSeq(device string, seq int64) (fieldsync.OpEntry, bool, error) {
	dev, err := t.deviceNo(device, false)
	if err != nil || dev == 0 {
		return fieldsync.OpEntry{}, false, err
	}
	return t.queryOp(opSelect+` WHERE o.device_no = ? AND o.seq = ?`, dev, seq)
}

// CheckOp answers, in one query, the three op-log questions asked of an
// incoming op: the result recorded for its id (nil if none), the op id
// that already holds its (device, seq) ("" if none), and whether the
// device's op prev is recorded (true when prev is 0). Recorded ops that
// are only tested for presence are not decoded. A sequence number above
// the device's highest recorded one is not looked up: devices number
// their ops in order, so that is the usual case.
func (t *tx) CheckOp(opID, device string, seq, prev int64) (*fieldsync.Result, string, bool, error) {
	dev, err := t.deviceNo(device, false)
	if err != nil {
		return nil, "", false, err
	}
	top, err := t.maxSeq(dev)
	if err != nil {
		return nil, "", false, err
	}
	q := `SELECT (SELECT result FROM oplog WHERE op_id = ?1),
		(SELECT ` + opIDText + ` FROM oplog o WHERE o.device_no = ?2 AND o.seq = ?3),
		?4 = 0 OR EXISTS (SELECT 1 FROM oplog WHERE device_no = ?2 AND seq = ?4)`
	if seq > top {
		q = `SELECT (SELECT result FROM oplog WHERE op_id = ?1), NULL,
		?4 = 0 OR EXISTS (SELECT 1 FROM oplog WHERE device_no = ?2 AND seq = ?4)`
	}
	var recorded *fieldsync.Result
	var holder string
	var prevFound bool
	_, err = t.row(q,
		func(st *sqlite3.Stmt) error {
			holder = st.ColumnText(1)
			prevFound = st.ColumnBool(2)
			if st.ColumnType(0) == sqlite3.NULL {
				return nil
			}
			var w protocol.Result
			if err := json.Unmarshal(st.ColumnRawText(0), &w); err != nil {
				return fmt.Errorf("op %s result: %w", opID, err)
			}
			r := protocol.ToResult(&w)
			recorded = &r
			return nil
		}, opKey(opID), dev, seq, prev)
	if err != nil {
		return nil, "", false, err
	}
	return recorded, holder, prevFound, nil
}

// A record's history is a chain of op rows: records.last_op names the
// latest, each op's prev_op the one before. The op that changes a record
// is recorded right after the change (PutRecord, then RecordOp), so
// PutRecord already points last_op at the row that op will get and keeps
// a link; RecordOp then needs no second write to the record. If anything
// else comes first, settle puts last_op back.

// chainState is what a transaction knows of the op-log chains.
type chainState struct {
	devices map[string]int64 // device id -> number; 0: none yet
	maxSeqs map[int64]int64  // device number -> highest seq recorded
	nextOp  int64            // row of the next op; 0 until loaded
	cur     recordHead       // the record last read or written
	link    *link            // a change whose op is not recorded yet
}

// recordHead is a record's place in the chains, as this transaction left
// it.
type recordHead struct {
	typ, id string
	known   bool  // the fields below are loaded
	row     int64 // the record's rowid; 0 if it does not exist
	lastOp  int64 // records.last_op
}

// link is a record whose last_op was set to the row its op will get.
type link struct {
	typ, id string
	recRow  int64 // the record's rowid
	prevOp  int64 // its last_op before
	opRow   int64 // the row its op will get
}

// head returns the chain head of a record, from the cache or the store.
func (t *tx) head(typ, id string) (recordHead, error) {
	if t.cur.known && t.cur.typ == typ && t.cur.id == id {
		return t.cur, nil
	}
	h := recordHead{typ: typ, id: id, known: true}
	if e, ok := t.cached(recordKey{typ, id}); ok {
		h.row, h.lastOp = e.row, e.lastOp
		t.cur = h
		return h, nil
	}
	_, err := t.row(`SELECT rowid, last_op FROM records WHERE type = ? AND id = ?`, func(st *sqlite3.Stmt) error {
		h.row, h.lastOp = st.ColumnInt64(0), st.ColumnInt64(1)
		return nil
	}, typ, id)
	if err != nil {
		return recordHead{}, err
	}
	t.cur = h
	return h, nil
}

// nextOpRow returns the row the next recorded op gets: rows are handed
// out in order, one writer at a time.
func (t *tx) nextOpRow() (int64, error) {
	if t.nextOp == 0 {
		if _, err := t.row(`SELECT coalesce(max(row), 0) FROM oplog`, func(st *sqlite3.Stmt) error {
			t.nextOp = st.ColumnInt64(0) + 1
			return nil
		}); err != nil {
			return 0, err
		}
	}
	return t.nextOp, nil
}

// linkAhead notes that PutRecord pointed the record at h.row to opRow.
func (t *tx) linkAhead(h recordHead, opRow int64) {
	t.link = &link{typ: h.typ, id: h.id, recRow: h.row, prevOp: h.lastOp, opRow: opRow}
	h.lastOp = opRow
	t.cur = h
}

// settle undoes a link whose op was not recorded next.
func (t *tx) settle() error {
	l := t.link
	if l == nil {
		return nil
	}
	t.link = nil
	if err := t.exec(`UPDATE records SET last_op = ? WHERE rowid = ?`, l.prevOp, l.recRow); err != nil {
		return err
	}
	if t.cur.known && t.cur.row == l.recRow {
		t.cur.lastOp = l.prevOp
	}
	t.movedHead(recordKey{l.typ, l.id}, l.prevOp)
	return nil
}

func (t *tx) RecordOp(e fieldsync.OpEntry) error {
	fields := []byte("{}")
	if e.Op.Fields != nil {
		var err error
		if fields, err = encodeFields(e.Op.Fields); err != nil {
			return err
		}
	}
	w := protocol.FromResult(&e.Result)
	result, err := w.MarshalJSON() // compact already: encoding/json would only scan it again
	if err != nil {
		return err
	}
	dev, err := t.deviceNo(e.Op.DeviceID, true)
	if err != nil {
		return err
	}
	row, err := t.nextOpRow()
	if err != nil {
		return err
	}
	// The record's chain: the link PutRecord left for this op, or else the
	// record's head, moved to this op. An op on a record that does not
	// exist stays outside any chain (prev_op NULL).
	var prevOp any
	moveHead := int64(0)
	if l := t.link; l != nil && l.typ == e.Op.EntityType && l.id == e.Op.EntityID && l.opRow == row {
		t.link = nil
		prevOp = l.prevOp
	} else {
		if err := t.settle(); err != nil {
			return err
		}
		h, err := t.head(e.Op.EntityType, e.Op.EntityID)
		if err != nil {
			return err
		}
		if h.row != 0 {
			prevOp, moveHead = h.lastOp, h.row
		}
	}
	err = t.exec(`INSERT INTO oplog (row, op_id, device_no, seq, prev_seq, entity_type, entity_id, kind, base_version,
		fields, local_time, received_at, status, result, change_seq, prev_op) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		row, opKey(e.Op.ID), dev, e.Op.Seq, e.Op.PrevSeq, e.Op.EntityType, e.Op.EntityID,
		string(e.Op.Kind), e.Op.BaseVersion, fields, e.Op.LocalTime.UnixMilli(), e.ReceivedAt.UnixMilli(),
		string(e.Result.Status), result, e.ChangeSeq, prevOp)
	if err != nil {
		return err
	}
	t.nextOp++
	if n, ok := t.maxSeqs[dev]; ok && e.Op.Seq > n {
		t.maxSeqs[dev] = e.Op.Seq
	}
	if moveHead != 0 {
		if err := t.exec(`UPDATE records SET last_op = ? WHERE rowid = ?`, row, moveHead); err != nil {
			return err
		}
		t.cur.lastOp = row
		t.movedHead(recordKey{e.Op.EntityType, e.Op.EntityID}, row)
	}
	return nil
}

// ChangeTag implements fieldsync.Store.
func (s *Store) ChangeTag(ctx context.Context, seq int64) (string, bool, error) {
	var id string
	err := s.db.QueryRowContext(ctx, `SELECT `+opIDText+` FROM oplog o WHERE o.change_seq = ? AND o.change_seq > 0`, seq).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, unavailable(err)
	}
	return fieldsync.ChangeTag(id), true, nil
}

// OpEntry implements fieldsync.Store.
func (s *Store) OpEntry(ctx context.Context, opID string) (fieldsync.OpEntry, error) {
	e, err := scanOp(s.db.QueryRowContext(ctx, opSelect+` WHERE o.op_id = ?`, opKey(opID)))
	if errors.Is(err, sql.ErrNoRows) {
		return e, fieldsync.Errorf(fieldsync.ENotFound, "the server has no op %s", opID)
	}
	if err != nil {
		return e, unavailable(err)
	}
	return e, nil
}

// recordOpsQuery reads a record's history: its chain, followed from the
// record's last op back (only through ops of the record), and the ops
// recorded while it did not exist, in decision order.
const recordOpsQuery = `WITH RECURSIVE chain (row) AS (
		SELECT last_op FROM records WHERE type = ?1 AND id = ?2 AND last_op > 0
		UNION ALL
		SELECT o.prev_op FROM chain c JOIN oplog o ON o.row = c.row
		WHERE o.prev_op > 0 AND o.entity_type = ?1 AND o.entity_id = ?2
	), history (row) AS (
		SELECT row FROM chain
		UNION ALL
		SELECT row FROM oplog WHERE entity_type = ?1 AND entity_id = ?2 AND prev_op IS NULL
	)
	SELECT ` + opCols + ` FROM history h CROSS JOIN oplog o ON o.row = h.row JOIN devices d ON d.no = o.device_no
	WHERE o.entity_type = ?1 AND o.entity_id = ?2 ORDER BY h.row`

// RecordOps implements fieldsync.Store.
func (s *Store) RecordOps(ctx context.Context, typ, id string) ([]fieldsync.OpEntry, error) {
	rows, err := s.db.QueryContext(ctx, recordOpsQuery, typ, id)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []fieldsync.OpEntry
	for rows.Next() {
		e, err := scanOp(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
