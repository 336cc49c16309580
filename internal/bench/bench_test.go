package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRunTiny runs every measurement on a tiny workload, end to end (real
// SQLite files, a real server over loopback HTTP), and checks the shape of
// the report: every name once, the JSON form, positive values. It checks
// no timing.
func TestRunTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	var stages []string
	metrics, err := Run(ctx, Config{
		Dir: dir, Ops: 40, Records: 30, Saves: 10, Fsyncs: 10, Trips: 10, WireOps: 20,
		Photos: 2, LinkRate: 20_000_000, CutEvery: 30 * time.Millisecond, PrepareRuns: 1,
		Progress: func(stage string, done, total int) {
			if done < 1 || total > 0 && done > total {
				t.Errorf("progress %s: %d of %d", stage, done, total)
			}
			if len(stages) == 0 || stages[len(stages)-1] != stage {
				stages = append(stages, stage)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		FsyncFloorMS, LocalSaveP50MS, LocalSaveP99MS, LocalSaveRatio, LocalSaveP99Ratio, PushOpsPerS, PushOpMS,
		PushCPUPerOp, PullRecordsPerS, WireBytesPerOp, WireBytesPerRec, LoopbackRTTMS,
		PhotoPrepareMS, PhotoGoodputRatio, PhotoWastedRatio, PhotoGoodputBPS, PhotoLinkBytesPerS, PhotoBytesEach, PhotoLinkCuts,
		RSSPeakMB, RSSPeakAllMB,
	}
	seen := map[string]int{}
	for _, m := range metrics {
		seen[m.Name]++
		// A tiny run may see no cut, and so no bytes sent twice.
		mayBeZero := m.Name == PhotoLinkCuts || m.Name == PhotoWastedRatio
		if !(m.Value > 0 || mayBeZero && m.Value == 0) || m.Unit == "" {
			t.Errorf("%s = %v %q: want a positive value with a unit", m.Name, m.Value, m.Unit)
		}
	}
	for _, name := range want {
		if seen[name] != 1 {
			t.Errorf("metric %s reported %d times, want once", name, seen[name])
		}
	}
	for _, stage := range []string{"fsync floor", "local saves", "push", "pull", "loopback round trips", "photo preparation", "photos: uploading"} {
		if !strings.Contains(strings.Join(stages, "|"), stage) {
			t.Errorf("no progress for stage %q (got %q)", stage, stages)
		}
	}

	// The JSON form is one array of {"name","value","unit"} objects.
	data, err := json.Marshal(metrics)
	if err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	if err := json.Unmarshal(data, &objs); err != nil {
		t.Fatalf("JSON form is not an array of objects: %v: %s", err, data)
	}
	for _, o := range objs {
		if len(o) != 3 {
			t.Errorf("object %v: want exactly name, value, unit", o)
		}
		if _, ok := o["name"].(string); !ok {
			t.Errorf("object %v: name is not a string", o)
		}
		if v, ok := o["value"].(float64); !ok || !(v > 0) {
			t.Errorf("object %v: value is not a positive number", o)
		}
		if _, ok := o["unit"].(string); !ok {
			t.Errorf("object %v: unit is not a string", o)
		}
	}

	var table bytes.Buffer
	if err := WriteTable(&table, metrics); err != nil {
		t.Fatal(err)
	}
	for _, name := range want {
		if !strings.Contains(table.String(), name) {
			t.Errorf("table has no row for %s:\n%s", name, table.String())
		}
	}

	// Everything the run made in dir is its own working files.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "fsync-floor.dat" {
			t.Errorf("the fsync floor file was left behind")
		}
	}
}

func TestRunNeedsDir(t *testing.T) {
	if _, err := Run(context.Background(), Config{}); err == nil {
		t.Fatal("Run with no Dir: want an error")
	}
}

func TestTargets(t *testing.T) {
	byName := map[string]Target{}
	for _, tg := range Targets {
		byName[tg.Metric] = tg
	}
	cases := []struct {
		metric       string
		value, floor float64
		met          bool
	}{
		{LocalSaveP50MS, 0.3, 0.2, true},
		{LocalSaveP50MS, 0.31, 0.2, false},
		{PushOpsPerS, 20000, 0, true},
		{PushOpsPerS, 19999, 0, false},
		{PullRecordsPerS, 50000, 0, true},
		{PullRecordsPerS, 49999, 0, false},
		{WireBytesPerOp, 199.9, 0, true},
		{WireBytesPerOp, 200, 0, false},
		{RSSPeakMB, 99, 0, true},
		{RSSPeakMB, 100, 0, false},
	}
	for _, c := range cases {
		met, ok := byName[c.metric].Met(c.value, c.floor)
		if !ok || met != c.met {
			t.Errorf("%s = %v (floor %v): met %v, %v; want %v", c.metric, c.value, c.floor, met, ok, c.met)
		}
	}
	if _, ok := byName[FsyncFloorMS].Met(1, 0); ok {
		t.Errorf("the fsync floor has a target; it is a floor")
	}
}

func TestPercentile(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[len(ds)-1-i] = time.Duration(i+1) * time.Millisecond
	}
	if got := percentile(ds, 50); got != 50*time.Millisecond {
		t.Errorf("p50 = %v, want 50ms", got)
	}
	if got := percentile(ds, 99); got != 99*time.Millisecond {
		t.Errorf("p99 = %v, want 99ms", got)
	}
	if got := percentile(ds[:1], 99); got != 100*time.Millisecond {
		t.Errorf("p99 of one = %v, want 100ms", got)
	}
	if ds[0] != 100*time.Millisecond {
		t.Errorf("percentile sorted its input in place")
	}
}

func TestProgressLine(t *testing.T) {
	var buf bytes.Buffer
	report, end := ProgressLine(&buf)
	report("push", 1, 10)
	report("push", 10, 10)
	report("pull", 5, 0)
	end()
	out := buf.String()
	for _, want := range []string{"push", "10/10 (100%)", "pull", "5"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress output %q lacks %q", out, want)
		}
	}
	if !strings.HasSuffix(out, "\n") {
		t.Errorf("progress output %q does not end its line", out)
	}
}
