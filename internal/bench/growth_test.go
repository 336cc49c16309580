package bench

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGrowthSizes(t *testing.T) {
	cases := []struct {
		max  int
		want []int
	}{
		{100, []int{100}},
		{100_000, []int{100, 1000, 10_000, 100_000}},
		{2500, []int{100, 1000, 2500}},
		{50, []int{50}},
	}
	for _, c := range cases {
		if got := growthSizes(c.max); !slices.Equal(got, c.want) {
			t.Errorf("growthSizes(%d) = %v, want %v", c.max, got, c.want)
		}
	}
}

// TestGrowthTiny runs the growth measure up to 300 ops, end to end, and
// checks the figures, the table and the plot: a valid PNG of the
// documented size.
func TestGrowthTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	cfg := Config{Dir: dir}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	var metrics []Metric
	plotPath := filepath.Join(dir, "plot.png")
	err := runGrowth(ctx, &cfg, GrowthConfig{Max: 300, Plot: plotPath}, func(name string, v float64, unit string) {
		metrics = append(metrics, Metric{name, v, unit})
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"growth_100_push_s", "growth_100_pull_s", "growth_100_us_per_op",
		"growth_300_push_s", "growth_300_pull_s", "growth_300_us_per_op", GrowthPerOpRatio,
	}
	byName := map[string]float64{}
	for _, m := range metrics {
		byName[m.Name] = m.Value
	}
	for _, name := range want {
		if v, ok := byName[name]; !ok || !(v > 0) {
			t.Errorf("%s = %v (reported %v): want a positive value", name, v, ok)
		}
	}

	var table bytes.Buffer
	if err := WriteGrowth(&table, metrics); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "100") || !strings.Contains(lines[2], "300") {
		t.Errorf("growth table: want a header and rows for 100 and 300 ops, got:\n%s", table.String())
	}

	f, err := os.Open(plotPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the plot is not a valid PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != PlotWidth || b.Dy() != PlotHeight {
		t.Errorf("plot is %d×%d, want %d×%d", b.Dx(), b.Dy(), PlotWidth, PlotHeight)
	}
}

func TestWriteGrowthNone(t *testing.T) {
	var b bytes.Buffer
	if err := WriteGrowth(&b, []Metric{{Name: FsyncFloorMS, Value: 1, Unit: "ms"}}); err != nil || b.Len() != 0 {
		t.Errorf("WriteGrowth with no growth metrics wrote %q, %v", b.String(), err)
	}
}
