package chaos

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/server"
)

// History is everything the oracle judges: what the devices reported as
// saved, what each device holds at the end, and what the server holds.
// Scenarios collect it from the real stores; tests may build one by hand.
type History struct {
	// Saved lists the ops the devices reported as saved, in the order
	// each device reported them.
	Saved []SavedOp
	// Attached lists the attachments the devices reported as saved.
	Attached []SavedAttachment
	// Devices is each device's final state, by device id.
	Devices map[string]DeviceState
	// Server is the server's op log, per record in the order the server
	// decided the ops.
	Server []RecordHistory
	// Blobs maps each blob's SHA-256 to the SHA-256 of the bytes the
	// server actually stores under it ("" when it stores none).
	Blobs map[string]string
	// Policies maps entity type → field → conflict policy.
	Policies map[string]map[string]string
	// LedgerComplete says every save's outcome was seen (no device was
	// killed mid-save), so an outbox op not in Saved is one a failed save
	// left behind.
	LedgerComplete bool
	// Drained says the run ended with every device fully synced, so
	// nothing may still be pending.
	Drained bool
}

// SavedOp is one op a device reported as saved.
type SavedOp struct {
	ID, Device string
	Seq        int64
	Type       string
	Entity     string
	Kind       string
}

// SavedAttachment is one attachment a device reported as saved.
type SavedAttachment struct {
	ID, Device, SHA256 string
	Type, Entity       string
	OpID               string
}

// DeviceState is what a device holds at the end of a run.
type DeviceState struct {
	Ops     []client.OpInfo // the outbox, in device order
	Counts  map[string]int  // Status().Counts
	Reviews int             // Status().NeedsReview()
	Pending int             // Status().Storage.Pending: attachments not yet on the server
}

// RecordHistory is one server record and its op log.
type RecordHistory struct {
	Record fieldsync.Record
	Ops    []fieldsync.OpEntry // in the order the server decided them
}

// Finding is one thing the oracle found wrong.
type Finding struct {
	Check  string `json:"check"`  // exactly_once, lost, order, phantom, attachment, conflict, status
	Detail string `json:"detail"` // what, with ids
}

func (f Finding) String() string { return f.Check + ": " + f.Detail }

// Tally is what the oracle counted while checking.
type Tally struct {
	OpsCreated          int
	OpsDelivered        int
	Duplicates          int
	Lost                int
	ConflictsOpen       int
	AttachmentsVerified int
}

// Check judges a history: every op a device reported as saved is on the
// server exactly once, in device order per record; nothing is on the
// server that no device (or the office) sent; every attachment is whole
// and verified; every clash on a manual field is surfaced as a conflict,
// none resolved silently; and each device's counts match the server.
// An empty list of findings is a pass.
func Check(h History) ([]Finding, Tally) {
	c := &checker{h: h, byID: map[string]entryAt{}}
	c.index()
	c.exactlyOnce()
	c.order()
	c.phantoms()
	c.attachments()
	c.conflicts()
	c.statuses()
	return c.findings, c.tally
}

type entryAt struct {
	rec   int // index in h.Server
	pos   int // position in its op log
	entry fieldsync.OpEntry
}

type checker struct {
	h        History
	byID     map[string]entryAt
	findings []Finding
	tally    Tally
}

func (c *checker) add(check, format string, args ...any) {
	c.findings = append(c.findings, Finding{Check: check, Detail: fmt.Sprintf(format, args...)})
}

// index maps op ids to their server entries, counting ids recorded twice.
func (c *checker) index() {
	for ri, rh := range c.h.Server {
		for pi, e := range rh.Ops {
			if prev, ok := c.byID[e.Op.ID]; ok {
				c.tally.Duplicates++
				c.add("exactly_once", "op %s is in the server's op log twice (%s/%s and %s/%s)",
					e.Op.ID, c.h.Server[prev.rec].Record.Type, c.h.Server[prev.rec].Record.ID, rh.Record.Type, rh.Record.ID)
				continue
			}
			c.byID[e.Op.ID] = entryAt{rec: ri, pos: pi, entry: e}
		}
	}
}

// exactlyOnce checks that every saved op reached the server and took
// effect once: an append item or attachment bearing its id appears once.
func (c *checker) exactlyOnce() {
	c.tally.OpsCreated = len(c.h.Saved)
	for _, s := range c.h.Saved {
		e, ok := c.byID[s.ID]
		if !ok {
			c.tally.Lost++
			c.add("lost", "op %s (device %.8s seq %d, %s on %s) was reported saved but the server never recorded it",
				s.ID, s.Device, s.Seq, s.Kind, s.Entity)
			continue
		}
		if e.entry.Op.DeviceID != s.Device || e.entry.Op.Seq != s.Seq || e.entry.Op.EntityID != s.Entity {
			c.add("exactly_once", "op %s is recorded as device %.8s seq %d on %s, but was saved as device %.8s seq %d on %s",
				s.ID, e.entry.Op.DeviceID, e.entry.Op.Seq, e.entry.Op.EntityID, s.Device, s.Seq, s.Entity)
		}
		c.tally.OpsDelivered++
	}
	for _, rh := range c.h.Server {
		seen := map[string]int{}
		for f, raw := range rh.Record.Fields {
			var items []fieldsync.AppendItem
			if raw == nil || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
				continue
			}
			for _, it := range items {
				seen[f+"\x00"+it.ID]++
			}
		}
		for _, a := range rh.Record.Attachments {
			seen["\x01"+a.ID]++
		}
		for k, n := range seen {
			if n > 1 {
				c.tally.Duplicates += n - 1
				field, id, _ := strings.Cut(k, "\x00")
				c.add("exactly_once", "%s/%s: item %s appears %d times in %q", rh.Record.Type, rh.Record.ID, id, n, field)
			}
		}
	}
}

// order checks that each device's ops on a record were decided in device
// order, and each after the device's previous op on that record.
func (c *checker) order() {
	for _, rh := range c.h.Server {
		last := map[string]int64{}
		for _, e := range rh.Ops {
			d := e.Op.DeviceID
			if e.Op.Seq <= last[d] {
				c.add("order", "%s/%s: device %.8s seq %d was decided after its seq %d", rh.Record.Type, rh.Record.ID, d, e.Op.Seq, last[d])
			}
			last[d] = max(last[d], e.Op.Seq)
		}
	}
}

// phantoms checks that every op on the server is one a device holds (or
// the office made), and that every field's last writer is a recorded op.
func (c *checker) phantoms() {
	held := map[string]client.OpInfo{}
	for _, d := range c.h.Devices {
		for _, o := range d.Ops {
			held[o.ID] = o
		}
	}
	for _, rh := range c.h.Server {
		for _, e := range rh.Ops {
			if e.Op.DeviceID == server.OfficeDevice {
				continue
			}
			o, ok := held[e.Op.ID]
			if !ok {
				if len(c.h.Devices) > 0 {
					c.add("phantom", "%s/%s: op %s (device %.8s seq %d) is on the server but no device holds it",
						rh.Record.Type, rh.Record.ID, e.Op.ID, e.Op.DeviceID, e.Op.Seq)
				}
				continue
			}
			if o.Seq != e.Op.Seq || o.EntityID != e.Op.EntityID || o.Kind != string(e.Op.Kind) {
				c.add("phantom", "op %s differs between device (seq %d %s on %s) and server (seq %d %s on %s)",
					e.Op.ID, o.Seq, o.Kind, o.EntityID, e.Op.Seq, e.Op.Kind, e.Op.EntityID)
			}
		}
		for f, m := range rh.Record.Meta {
			if m.OpID == "" {
				continue
			}
			if _, ok := c.byID[m.OpID]; !ok {
				c.add("phantom", "%s/%s: field %q was last written by op %s, which is not in the op log", rh.Record.Type, rh.Record.ID, f, m.OpID)
			}
		}
	}
}

// attachments checks each saved attachment is on its record with the same
// SHA-256, and the bytes the server stores hash to it.
func (c *checker) attachments() {
	recs := map[[2]string]fieldsync.Record{}
	for _, rh := range c.h.Server {
		recs[[2]string{rh.Record.Type, rh.Record.ID}] = rh.Record
	}
	for _, a := range c.h.Attached {
		rec, ok := recs[[2]string{a.Type, a.Entity}]
		i := slices.IndexFunc(rec.Attachments, func(x fieldsync.Attachment) bool { return x.ID == a.ID })
		if !ok || i < 0 {
			c.add("attachment", "attachment %s (sha %.12s) of %s is not on the server's record", a.ID, a.SHA256, a.Entity)
			continue
		}
		if got := rec.Attachments[i].SHA256; got != a.SHA256 {
			c.add("attachment", "attachment %s: the server's sha %.12s differs from the device's %.12s", a.ID, got, a.SHA256)
			continue
		}
		stored, ok := c.h.Blobs[a.SHA256]
		switch {
		case !ok || stored == "":
			c.add("attachment", "attachment %s: the server holds no verified blob %.12s", a.ID, a.SHA256)
		case stored != a.SHA256:
			c.add("attachment", "attachment %s: the blob stored as %.12s hashes to %.12s", a.ID, a.SHA256, stored)
		default:
			c.tally.AttachmentsVerified++
		}
	}
}

// fieldState is the replayed last write of one field.
type fieldState struct {
	value   json.RawMessage
	version int64
	by      string
	set     bool
}

// conflicts replays each record's op log and checks every manual field:
// an update that clashes with a write its device had not seen must come
// back as a conflict kept on the record, and the record's final value is
// the one the replay arrives at.
func (c *checker) conflicts() {
	for _, rh := range c.h.Server {
		rec := rh.Record
		manual := c.manualFields(rec.Type)
		state := map[string]*fieldState{}
		settled := false
		for _, e := range rh.Ops {
			res := e.Result.Effective()
			if res.Status == fieldsync.StatusRejected || res.Status == fieldsync.StatusRetry {
				continue
			}
			switch e.Op.Kind {
			case fieldsync.KindSettle:
				settled = true
				continue
			case fieldsync.KindCreate, fieldsync.KindUpdate:
			default:
				continue
			}
			for f, v := range e.Op.Fields {
				if !manual[f] {
					continue
				}
				st := state[f]
				if st == nil {
					st = &fieldState{}
					state[f] = st
				}
				clash := e.Op.Kind == fieldsync.KindUpdate && st.set && st.version > e.Op.BaseVersion &&
					st.by != e.Op.DeviceID && !jsonEqual(st.value, v)
				i := slices.IndexFunc(res.Conflicts, func(fc fieldsync.FieldConflict) bool { return fc.Field == f })
				surfaced := i >= 0
				if clash && !surfaced {
					c.add("conflict", "%s/%s: op %s overwrote manual field %q (set by %.8s at v%d; op based on v%d) without a conflict",
						rec.Type, rec.ID, e.Op.ID, f, st.by, st.version, e.Op.BaseVersion)
				}
				if surfaced {
					fc := res.Conflicts[i]
					if e.Op.DeviceID != server.OfficeDevice && fc.ServerBy == e.Op.DeviceID && jsonEqual(fc.ServerValue, v) {
						// The writer of the server's side of an open
						// conflict corrected its own value.
						*st = fieldState{value: v, version: res.Version, by: e.Op.DeviceID, set: true}
						continue
					}
					// Its value is kept in the conflict (a device's later
					// value replaces its earlier one there).
					if !slices.ContainsFunc(rec.Conflicts, func(k fieldsync.Conflict) bool {
						return k.Field == f && slices.ContainsFunc(k.Theirs, func(t fieldsync.ConflictValue) bool {
							return t.OpID == e.Op.ID || t.By == e.Op.DeviceID && e.Op.DeviceID != server.OfficeDevice
						})
					}) {
						c.add("conflict", "%s/%s: op %s clashed on %q but the record keeps no conflict with its value", rec.Type, rec.ID, e.Op.ID, f)
					}
					continue
				}
				*st = fieldState{value: v, version: res.Version, by: e.Op.DeviceID, set: true}
			}
		}
		for _, k := range rec.Conflicts {
			if k.Settled == nil {
				c.tally.ConflictsOpen++
			}
		}
		if settled || rec.Deleted {
			continue
		}
		for f, st := range state {
			if got := rec.Fields[f]; !jsonEqual(got, st.value) {
				c.add("conflict", "%s/%s: manual field %q is %s on the server, but its op log leads to %s", rec.Type, rec.ID, f, got, st.value)
			}
		}
	}
}

func (c *checker) manualFields(typ string) map[string]bool {
	m := map[string]bool{}
	for f, p := range c.h.Policies[typ] {
		if p == "manual" {
			m[f] = true
		}
	}
	return m
}

// statuses checks each device's outbox against the server: what it shows
// delivered the server has, with the same outcome, and its counts add up.
func (c *checker) statuses() {
	openOnServer := 0
	for _, rh := range c.h.Server {
		for _, k := range rh.Record.Conflicts {
			if k.Settled == nil {
				openOnServer++
			}
		}
	}
	reported := map[string]bool{}
	for _, s := range c.h.Saved {
		reported[s.ID] = true
	}
	for dev, d := range c.h.Devices {
		counts := map[string]int{}
		for _, o := range d.Ops {
			counts[o.Status]++
			if c.h.LedgerComplete && !reported[o.ID] {
				c.add("phantom", "device %.8s holds op %s (seq %d, %s) that no save reported as saved", dev, o.ID, o.Seq, o.Kind)
			}
			e, onServer := c.byID[o.ID]
			want := ""
			if onServer {
				switch e.entry.Result.Effective().Status {
				case fieldsync.StatusApplied:
					want = client.OpDelivered
				case fieldsync.StatusConflict:
					want = client.OpConflict
				case fieldsync.StatusRejected:
					want = client.OpError
				}
			}
			switch o.Status {
			case client.OpDelivered, client.OpConflict, client.OpError:
				if !onServer {
					c.add("status", "device %.8s shows op %s (seq %d) as %s, but the server never recorded it", dev, o.ID, o.Seq, o.Status)
				} else if want != "" && want != o.Status {
					c.add("status", "device %.8s shows op %s (seq %d) as %s, the server decided %s", dev, o.ID, o.Seq, o.Status, e.entry.Result.Effective().Status)
				}
			case client.OpQueued, client.OpSending:
				if c.h.Drained {
					c.add("status", "device %.8s: op %s (seq %d) is still %s after the final sync", dev, o.ID, o.Seq, o.Status)
				}
			}
		}
		for _, s := range []string{client.OpQueued, client.OpSending, client.OpDelivered, client.OpConflict, client.OpError, client.OpDiscarded} {
			if counts[s] != d.Counts[s] {
				c.add("status", "device %.8s counts %d %s ops, its outbox holds %d", dev, d.Counts[s], s, counts[s])
			}
		}
		if c.h.Drained {
			if d.Pending != 0 {
				c.add("status", "device %.8s still shows %d attachments not on the server after the final sync", dev, d.Pending)
			}
			if d.Reviews != openOnServer {
				c.add("status", "device %.8s shows %d conflicts to review, the server has %d open", dev, d.Reviews, openOnServer)
			}
		}
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

// serverReader is what collecting the server's side needs of a store.
type serverReader interface {
	Changes(ctx context.Context, after int64, limit int) ([]fieldsync.Record, int64, error)
	RecordOps(ctx context.Context, typ, id string) ([]fieldsync.OpEntry, error)
	Blob(ctx context.Context, sha string) (fieldsync.Blob, error)
}

// collectServer reads every record, its op log and, for each attachment,
// the hash of the bytes stored in blobDir.
func collectServer(ctx context.Context, st serverReader, blobDir string, h *History) error {
	var after int64
	for {
		recs, _, err := st.Changes(ctx, after, 1000)
		if err != nil {
			return fmt.Errorf("read the server's records: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			after = max(after, r.Seq)
			ops, err := st.RecordOps(ctx, r.Type, r.ID)
			if err != nil {
				return fmt.Errorf("read the op log of %s: %w", r.ID, err)
			}
			h.Server = append(h.Server, RecordHistory{Record: r, Ops: ops})
			for _, a := range r.Attachments {
				if _, done := h.Blobs[a.SHA256]; done {
					continue
				}
				h.Blobs[a.SHA256] = ""
				if _, err := st.Blob(ctx, a.SHA256); err != nil {
					continue
				}
				h.Blobs[a.SHA256] = hashFile(filepath.Join(blobDir, "sha256", a.SHA256[:2], a.SHA256[2:]))
			}
		}
	}
	slices.SortFunc(h.Server, func(a, b RecordHistory) int { return cmp.Compare(a.Record.ID, b.Record.ID) })
	return nil
}

func hashFile(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return ""
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// collectDevice reads a device's outbox and status.
func collectDevice(ctx context.Context, e *client.Engine, h *History) error {
	st, err := e.Status(ctx)
	if err != nil {
		return fmt.Errorf("device status: %w", err)
	}
	total := 0
	for _, n := range st.Counts {
		total += n
	}
	ops, err := e.Ops(ctx, "", total+1000)
	if err != nil {
		return fmt.Errorf("device outbox: %w", err)
	}
	h.Devices[e.DeviceID()] = DeviceState{Ops: ops, Counts: st.Counts, Reviews: st.NeedsReview(), Pending: st.Storage.Pending}
	return nil
}
