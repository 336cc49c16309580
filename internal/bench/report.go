package bench

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"
)

// Target is a goal for one metric. Ratio targets compare the metric with
// its floor (Floor names the floor metric); the others compare the value.
type Target struct {
	Metric string
	Floor  string  // the floor metric it is read against; "" for none
	Max    float64 // the value (or ratio, when Ratio) must be below or at Max; 0: no upper bound
	Min    float64 // the value must be at least Min; 0: no lower bound
	Ratio  bool    // Max applies to value/floor
	Strict bool    // Max is exclusive
}

// Targets are the goals the core must meet on a 2-core machine.
var Targets = []Target{
	{Metric: FsyncFloorMS},
	{Metric: LocalSaveP50MS, Floor: FsyncFloorMS, Max: 1.5, Ratio: true},
	{Metric: LocalSaveP99MS, Floor: FsyncFloorMS},
	{Metric: PushOpsPerS, Min: 20000},
	{Metric: PushOpMS},
	{Metric: PushCPUPerOp},
	{Metric: PullRecordsPerS, Min: 50000},
	{Metric: WireBytesPerOp, Max: 200, Strict: true},
	{Metric: WireBytesPerRec},
	{Metric: LoopbackRTTMS},
	{Metric: PhotoPrepareMS},
	{Metric: PhotoGoodputRatio, Min: 0.85},
	{Metric: PhotoWastedRatio, Max: 0.05, Strict: true},
	{Metric: PhotoGoodputBPS},
	{Metric: PhotoLinkBytesPerS},
	{Metric: PhotoBytesEach},
	{Metric: PhotoLinkCuts},
	{Metric: Catchup3GRatio, Min: 0.8},
	{Metric: Catchup3GOpRatio},
	{Metric: Catchup3GBlobRatio},
	{Metric: Catchup3GSeconds},
	{Metric: Catchup2GRatio, Min: 0.7},
	{Metric: Catchup2GOpRatio},
	{Metric: Catchup2GBlobRatio},
	{Metric: Catchup2GSeconds},
	{Metric: Catchup2GStalls},
	{Metric: CatchupOpJSONBytes},
	{Metric: WireBytesPerOpRatio, Max: 1, Strict: true},
	{Metric: GrowthPerOpRatio},
	{Metric: RSSPeakMB, Max: 100, Strict: true},
	{Metric: RSSPeakAllMB},
}

// Describe says the target in words, "" when there is none.
func (t Target) Describe() string {
	switch {
	case t.Ratio:
		return "≤ " + num(t.Max) + "× floor"
	case t.Min > 0:
		return "≥ " + num(t.Min)
	case t.Max > 0 && t.Strict:
		return "< " + num(t.Max)
	case t.Max > 0:
		return "≤ " + num(t.Max)
	}
	return ""
}

// Met reports whether value (with its floor, when the target has one)
// meets the target; ok is false when there is no target.
func (t Target) Met(value, floor float64) (met, ok bool) {
	switch {
	case t.Ratio:
		return floor > 0 && value/floor <= t.Max, true
	case t.Min > 0:
		return value >= t.Min, true
	case t.Max > 0 && t.Strict:
		return value < t.Max, true
	case t.Max > 0:
		return value <= t.Max, true
	}
	return false, false
}

func num(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// WriteTable prints metrics as a readable table: value, unit, the floor
// it is read against and the ratio to it, the target, and whether it is met.
func WriteTable(w io.Writer, metrics []Metric) error {
	byName := map[string]Metric{}
	for _, m := range metrics {
		byName[m.Name] = m
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tvalue\tunit\tfloor\tratio\ttarget\tmet")
	for _, t := range Targets {
		m, ok := byName[t.Metric]
		if !ok {
			continue
		}
		floorCol, ratioCol, metCol := "-", "-", "-"
		var floor float64
		if f, ok := byName[t.Floor]; ok && t.Floor != "" {
			floor = f.Value
			floorCol = num(f.Value) + " " + f.Unit
			if f.Value > 0 {
				ratioCol = num(m.Value/f.Value) + "×"
			}
		}
		if met, ok := t.Met(m.Value, floor); ok {
			metCol = "no"
			if met {
				metCol = "yes"
			}
		}
		target := t.Describe()
		if target == "" {
			target = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, num(m.Value), m.Unit, floorCol, ratioCol, target, metCol)
	}
	// Metrics without a row of their own (ratios, names added later).
	listed := map[string]bool{}
	for _, t := range Targets {
		listed[t.Metric] = true
	}
	for _, m := range metrics {
		if !listed[m.Name] {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\n", m.Name, num(m.Value), m.Unit)
		}
	}
	return tw.Flush()
}

// ProgressLine returns a Progress function that keeps one line on w up to
// date (at most ten times a second, and at the end of every stage), and a
// function that ends the line.
func ProgressLine(w io.Writer) (report func(stage string, done, total int), end func()) {
	var mu sync.Mutex
	var stage string
	var last time.Time
	var width int
	report = func(s string, done, total int) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if s == stage && done < total && now.Sub(last) < 100*time.Millisecond {
			return
		}
		if s != stage && stage != "" {
			fmt.Fprintln(w)
			width = 0
		}
		stage, last = s, now
		line := fmt.Sprintf("%-32s %d", s, done)
		if total > 0 {
			line += fmt.Sprintf("/%d (%d%%)", total, done*100/total)
		}
		pad := max(width-len(line), 0)
		width = len(line)
		fmt.Fprintf(w, "\r%s%*s", line, pad, "")
	}
	end = func() {
		mu.Lock()
		defer mu.Unlock()
		if stage != "" {
			fmt.Fprintln(w)
			stage = ""
		}
	}
	return report, end
}
