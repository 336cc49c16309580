package chaos

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

// workerEnv marks this test binary started as a chaos worker process.
const workerEnv = "FIELDSYNC_CHAOS_WORKER"

// TestMain lets the test binary be the worker processes the scenarios
// start and kill: with workerEnv set it runs RunWorker with its
// arguments instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		if err := RunWorker(context.Background(), os.Args[1:], os.Stdout); err != nil {
			os.Stderr.WriteString("chaos worker: " + err.Error() + "\n")
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testWorker(args []string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	return cmd
}

// testSeed is fixed unless FIELDSYNC_SEED replays another.
func testSeed(t *testing.T) uint64 {
	seed := uint64(20261124)
	if s := os.Getenv("FIELDSYNC_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FIELDSYNC_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with FIELDSYNC_SEED=%d)", seed, seed)
	return seed
}

// TestScenarios runs every scenario once, shrunk, and expects the oracle
// to find nothing.
func TestScenarios(t *testing.T) {
	seed := testSeed(t)
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			if err := Unavailable(name); err != nil {
				if os.Getenv("FIELDSYNC_NETNS") != "" {
					t.Fatalf("FIELDSYNC_NETNS is set but: %v", err)
				}
				t.Skipf("%v (root only; FIELDSYNC_NETNS=1 makes it required)", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := Run(ctx, name, Options{Seed: seed, Short: true, Dir: t.TempDir(), Worker: testWorker, Log: testLog{t}})
			if err != nil {
				t.Fatal(err)
			}
			out, _ := json.Marshal(res)
			t.Logf("%s", out)
			if res.Error != "" {
				t.Fatalf("scenario did not finish: %s", res.Error)
			}
			for _, f := range res.Findings {
				t.Errorf("finding: %s", f)
			}
			if res.OpsCreated == 0 || res.OpsDelivered != res.OpsCreated {
				t.Errorf("ops created %d, delivered %d", res.OpsCreated, res.OpsDelivered)
			}
			if !res.Passed {
				t.Errorf("not passed")
			}
			if name == "lost-responses" {
				// Each kind of fault at the door fired, or the drill
				// tested nothing of it.
				for _, k := range []string{faultCutBefore, faultCutAfter, faultDuplicate, "outage"} {
					if res.FaultKinds[k] == 0 {
						t.Errorf("no %s fault injected (faults %v)", k, res.FaultKinds)
					}
				}
			}
		})
	}
}

// TestDiskFullRlimit runs disk-full with RLIMIT_FSIZE, the method used
// when not running as root.
func TestDiskFullRlimit(t *testing.T) {
	if testing.Short() {
		t.Skip("short: the default method ran in TestScenarios")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Run(ctx, "disk-full", Options{Seed: testSeed(t), Short: true, Dir: t.TempDir(), Worker: testWorker, DiskMethod: DiskRlimit})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if !res.Passed {
		t.Fatalf("findings %v, error %q", res.Findings, res.Error)
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// goodHistory is a small clean history: a device created a record,
// changed its status, added a comment; the office changed the status
// from a newer version, and the device's later change clashed.
func goodHistory() History {
	dev := "dev-1"
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	op := func(id string, seq int64, kind fieldsync.OpKind, base int64, fields map[string]json.RawMessage) fieldsync.Op {
		return fieldsync.Op{ID: id, DeviceID: dev, Seq: seq, EntityType: workOrder, EntityID: "r1", Kind: kind, BaseVersion: base, Fields: fields}
	}
	applied := func(id string, v int64) fieldsync.Result {
		return fieldsync.Result{OpID: id, Status: fieldsync.StatusApplied, Version: v}
	}
	entries := []fieldsync.OpEntry{
		{Op: op("o1", 1, fieldsync.KindCreate, 0, map[string]json.RawMessage{"title": raw(`"T"`), "status": raw(`"new"`)}), Result: applied("o1", 1)},
		{Op: op("o2", 2, fieldsync.KindAppend, 1, map[string]json.RawMessage{"comments": raw(`"hello"`)}), Result: applied("o2", 2)},
		{Op: fieldsync.Op{ID: "x1", DeviceID: "office", Seq: 1, EntityType: workOrder, EntityID: "r1", Kind: fieldsync.KindUpdate, BaseVersion: 2,
			Fields: map[string]json.RawMessage{"status": raw(`"assigned"`)}}, Result: applied("x1", 3)},
		{Op: op("o3", 3, fieldsync.KindUpdate, 2, map[string]json.RawMessage{"status": raw(`"in progress"`)}), Result: fieldsync.Result{
			OpID: "o3", Status: fieldsync.StatusConflict, Version: 4, Conflicts: []fieldsync.FieldConflict{{Field: "status"}}}},
	}
	rec := fieldsync.Record{Type: workOrder, ID: "r1", Version: 4,
		Fields: map[string]json.RawMessage{
			"title": raw(`"T"`), "status": raw(`"assigned"`),
			"comments": raw(`[{"id":"o2","value":"hello"}]`),
		},
		Meta: map[string]fieldsync.FieldMeta{"status": {Version: 3, By: "office", OpID: "x1"}},
		Conflicts: []fieldsync.Conflict{{ID: "c1", Field: "status",
			Server: fieldsync.ConflictValue{Value: raw(`"assigned"`), By: "office"},
			Theirs: []fieldsync.ConflictValue{{Value: raw(`"in progress"`), By: dev, OpID: "o3"}}}},
	}
	var saved []SavedOp
	var outbox []client.OpInfo
	for _, e := range entries {
		if e.Op.DeviceID != dev {
			continue
		}
		saved = append(saved, SavedOp{ID: e.Op.ID, Device: dev, Seq: e.Op.Seq, Type: workOrder, Entity: "r1", Kind: string(e.Op.Kind)})
		st := client.OpDelivered
		if e.Result.Status == fieldsync.StatusConflict {
			st = client.OpConflict
		}
		outbox = append(outbox, client.OpInfo{Seq: e.Op.Seq, ID: e.Op.ID, Type: workOrder, EntityID: "r1", Kind: string(e.Op.Kind), Status: st})
	}
	return History{
		Saved:    saved,
		Devices:  map[string]DeviceState{dev: {Ops: outbox, Counts: map[string]int{client.OpDelivered: 2, client.OpConflict: 1}, Reviews: 1}},
		Server:   []RecordHistory{{Record: rec, Ops: entries}},
		Blobs:    map[string]string{},
		Policies: policies(),
		Drained:  true,
	}
}

// TestOracleCatchesFaults feeds the oracle broken histories and expects
// it to name each fault.
func TestOracleCatchesFaults(t *testing.T) {
	if f, tally := Check(goodHistory()); len(f) != 0 {
		t.Fatalf("clean history: findings %v", f)
	} else if tally.OpsDelivered != 3 || tally.ConflictsOpen != 1 {
		t.Fatalf("clean history: tally %+v", tally)
	}
	cases := []struct {
		name   string
		check  string
		break_ func(h *History)
	}{
		{"op applied twice", "exactly_once", func(h *History) {
			h.Server[0].Record.Fields["comments"] = json.RawMessage(`[{"id":"o2","value":"hello"},{"id":"o2","value":"hello"}]`)
		}},
		{"op logged twice", "exactly_once", func(h *History) {
			h.Server[0].Ops = append(h.Server[0].Ops, h.Server[0].Ops[1])
		}},
		{"lost op", "lost", func(h *History) {
			h.Server[0].Ops = append(h.Server[0].Ops[:1], h.Server[0].Ops[2:]...)
		}},
		{"silently overwritten manual field", "conflict", func(h *History) {
			e := &h.Server[0].Ops[3]
			e.Result = fieldsync.Result{OpID: "o3", Status: fieldsync.StatusApplied, Version: 4}
			h.Server[0].Record.Fields["status"] = json.RawMessage(`"in progress"`)
			h.Server[0].Record.Conflicts = nil
			d := h.Devices["dev-1"]
			d.Ops[2].Status = client.OpDelivered
			d.Counts = map[string]int{client.OpDelivered: 3}
			d.Reviews = 0
			h.Devices["dev-1"] = d
		}},
		{"manual field changed with no op", "conflict", func(h *History) {
			h.Server[0].Record.Fields["status"] = json.RawMessage(`"closed"`)
		}},
		{"out of device order", "order", func(h *History) {
			ops := h.Server[0].Ops
			ops[1], ops[3] = ops[3], ops[1]
		}},
		{"op no device sent", "phantom", func(h *History) {
			x := h.Server[0].Ops[1]
			x.Op.ID, x.Op.Seq = "ghost", 9
			h.Server[0].Ops = append(h.Server[0].Ops, x)
		}},
		{"device shows delivered what the server lacks", "status", func(h *History) {
			d := h.Devices["dev-1"]
			d.Ops = append(d.Ops, client.OpInfo{Seq: 4, ID: "o4", Type: workOrder, EntityID: "r1", Kind: "update", Status: client.OpDelivered})
			d.Counts = map[string]int{client.OpDelivered: 3, client.OpConflict: 1}
			h.Devices["dev-1"] = d
		}},
		{"wrong counts", "status", func(h *History) {
			h.Devices["dev-1"].Counts[client.OpDelivered] = 5
		}},
		{"attachment bytes differ", "attachment", func(h *History) {
			h.Attached = []SavedAttachment{{ID: "a1", Device: "dev-1", SHA256: "aa11", Type: workOrder, Entity: "r1", OpID: "o2"}}
			h.Server[0].Record.Attachments = []fieldsync.Attachment{{ID: "a1", SHA256: "aa11"}}
			h.Blobs["aa11"] = "bb22"
		}},
		{"attachment missing", "attachment", func(h *History) {
			h.Attached = []SavedAttachment{{ID: "a1", Device: "dev-1", SHA256: "aa11", Type: workOrder, Entity: "r1", OpID: "o2"}}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := goodHistory()
			c.break_(&h)
			findings, _ := Check(h)
			found := false
			for _, f := range findings {
				t.Logf("finding: %s", f)
				found = found || f.Check == c.check
			}
			if !found {
				t.Errorf("no %q finding among %v", c.check, findings)
			}
		})
	}
}
