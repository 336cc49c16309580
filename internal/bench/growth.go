package bench

import (
	"context"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/fieldsync/fieldsync/client"
)

// GrowthConfig sizes the backlog-growth run: backlogs of 100, 1,000,
// 10,000… ops up to Max, each pushed by one device and pulled by another.
type GrowthConfig struct {
	Max  int    // largest backlog in ops (default 100,000); a Max that is not a power of ten is run too
	Plot string // PNG file to draw the times in (default growth.png in Config.Dir)
}

// The growth metrics: for a backlog of N ops, "growth_N_push_s",
// "growth_N_pull_s" and "growth_N_us_per_op" (push and pull together, per
// op), and one ratio.
const (
	growthPrefix = "growth_"
	// GrowthPerOpRatio is the time per op (push and pull) of the largest
	// backlog over that of the 1,000-op one (the smallest when Max is
	// below 1,000): 1 when the time grows in proportion to the backlog.
	GrowthPerOpRatio = "growth_time_per_op_ratio"
)

// Plot size in pixels.
const (
	PlotWidth  = 900
	PlotHeight = 560
)

func (g *GrowthConfig) defaults(dir string) {
	if g.Max <= 0 {
		g.Max = 100_000
	}
	if g.Plot == "" {
		g.Plot = filepath.Join(dir, "growth.png")
	}
}

// growthSizes returns 100, 1,000, 10,000… up to max, and max itself.
func growthSizes(max int) []int {
	var sizes []int
	for n := 100; n <= max; n *= 10 {
		sizes = append(sizes, n)
	}
	if len(sizes) == 0 || sizes[len(sizes)-1] != max {
		sizes = append(sizes, max)
	}
	return sizes
}

// GrowthRow is one backlog of the growth run.
type GrowthRow struct {
	Ops  int
	Push time.Duration // device A's sync until its last batch's answers were stored
	Pull time.Duration // a fresh device B's first sync: every record the backlog made
}

// PerOp is push and pull together, per op.
func (r GrowthRow) PerOp() time.Duration { return (r.Push + r.Pull) / time.Duration(r.Ops) }

// runGrowth measures every backlog size, draws the plot and adds the
// metrics.
func runGrowth(ctx context.Context, cfg *Config, gc GrowthConfig, add func(string, float64, string)) error {
	gc.defaults(cfg.Dir)
	var rows []GrowthRow
	for _, n := range growthSizes(gc.Max) {
		row, err := growthStep(ctx, cfg, n)
		if err != nil {
			return fmt.Errorf("%d ops: %w", n, err)
		}
		rows = append(rows, row)
		p := growthPrefix + strconv.Itoa(n)
		add(p+"_push_s", row.Push.Seconds(), "s")
		add(p+"_pull_s", row.Pull.Seconds(), "s")
		add(p+"_us_per_op", float64(row.PerOp())/float64(time.Microsecond), "µs")
	}
	ref := rows[0]
	for _, r := range rows {
		if r.Ops == 1000 {
			ref = r
		}
	}
	add(GrowthPerOpRatio, float64(rows[len(rows)-1].PerOp())/float64(ref.PerOp()), "x")
	return drawGrowth(gc.Plot, rows)
}

// growthStep builds a backlog of n ops on a device (not timed): one new
// work order for every ten ops, then status updates and one comment on
// it. It times the device's sync to a fresh server, then a second, fresh
// device's first sync, which pulls every record the backlog made.
func growthStep(ctx context.Context, cfg *Config, n int) (GrowthRow, error) {
	row := GrowthRow{Ops: n}
	dir := filepath.Join(cfg.Dir, "growth-"+strconv.Itoa(n))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	ts, err := startServer(ctx, filepath.Join(dir, "server.db"))
	if err != nil {
		return row, err
	}
	defer ts.close()
	stage := "growth " + strconv.Itoa(n)

	var mu sync.Mutex
	var pushEnd time.Time
	a, err := client.Open(ctx, client.Config{
		Dir: filepath.Join(dir, "device-a"), ServerURL: ts.url,
		Progress: func(p client.Progress) {
			if p.Stage == "push" {
				mu.Lock()
				pushEnd = time.Now()
				mu.Unlock()
				cfg.Progress(stage+": push", p.Done, p.Total)
			}
		},
	})
	if err != nil {
		return row, err
	}
	defer a.Close()
	var id string
	records := 0
	for i := range n {
		switch {
		case i%10 == 0:
			op, err := a.Create(ctx, "work_order", map[string]any{
				"title": "Boiler service " + strconv.Itoa(i/10), "status": "new", "address": "12 Harbour Road, Unit " + strconv.Itoa(i/10),
			})
			if err != nil {
				return row, err
			}
			id = op.EntityID
			records++
		case i%10 == 9:
			if _, err := a.Append(ctx, "work_order", id, "comments", "checked valve "+strconv.Itoa(i)+": pressure 2.1 bar"); err != nil {
				return row, err
			}
		default:
			if _, err := a.Update(ctx, "work_order", id, map[string]any{"status": statuses[i%len(statuses)]}); err != nil {
				return row, err
			}
		}
		cfg.Progress(stage+": building backlog", i+1, n)
	}

	settle()
	start := time.Now()
	rep, err := a.Sync(ctx)
	if err != nil {
		return row, err
	}
	mu.Lock()
	row.Push = pushEnd.Sub(start)
	mu.Unlock()
	if rep.Delivered != n || row.Push <= 0 {
		return row, fmt.Errorf("pushed %d ops, %d delivered", n, rep.Delivered)
	}

	b, err := client.Open(ctx, client.Config{
		Dir: filepath.Join(dir, "device-b"), ServerURL: ts.url,
		Progress: func(p client.Progress) {
			if p.Stage == "pull" {
				cfg.Progress(stage+": pull", p.Done, records)
			}
		},
	})
	if err != nil {
		return row, err
	}
	defer b.Close()
	settle()
	start = time.Now()
	rep, err = b.Sync(ctx)
	row.Pull = time.Since(start)
	if err != nil {
		return row, err
	}
	if rep.Pulled != records {
		return row, fmt.Errorf("pulled %d records of %d", rep.Pulled, records)
	}
	return row, nil
}

// drawGrowth draws push, pull and their sum against the backlog, both
// axes logarithmic, with a dotted line of time in proportion to the
// backlog through the first total for reference, into a PNG at path.
func drawGrowth(path string, rows []GrowthRow) error {
	p := plot.New()
	p.Title.Text = "Catch-up time as the backlog grows"
	p.X.Label.Text = "ops in the backlog"
	p.Y.Label.Text = "seconds"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true

	series := func(f func(GrowthRow) time.Duration) plotter.XYs {
		xys := make(plotter.XYs, len(rows))
		for i, r := range rows {
			xys[i].X, xys[i].Y = float64(r.Ops), max(f(r).Seconds(), 1e-4)
		}
		return xys
	}
	total := series(func(r GrowthRow) time.Duration { return r.Push + r.Pull })
	for i, s := range []struct {
		name string
		xys  plotter.XYs
	}{
		{"push (device A)", series(func(r GrowthRow) time.Duration { return r.Push })},
		{"pull (fresh device B)", series(func(r GrowthRow) time.Duration { return r.Pull })},
		{"push + pull", total},
	} {
		line, points, err := plotter.NewLinePoints(s.xys)
		if err != nil {
			return err
		}
		c := plotColors[i]
		line.Color, points.Color = c, c
		line.Width = vg.Points(1.5)
		points.Shape = draw.CircleGlyph{}
		p.Add(line, points)
		p.Legend.Add(s.name, line, points)
	}

	// Reference: time in proportion to the backlog, from the first total.
	ref := make(plotter.XYs, len(total))
	for i := range total {
		ref[i].X, ref[i].Y = total[i].X, total[0].Y*total[i].X/total[0].X
	}
	refLine, err := plotter.NewLine(ref)
	if err != nil {
		return err
	}
	refLine.Color = plotColors[3]
	refLine.Dashes = []vg.Length{vg.Points(2), vg.Points(3)}
	p.Add(refLine)
	p.Legend.Add("in proportion to the backlog", refLine)

	labels := make([]string, len(total))
	for i, r := range rows {
		labels[i] = fmt.Sprintf("%s ops: %.2f s", groupDigits(r.Ops), total[i].Y)
	}
	lab, err := plotter.NewLabels(plotter.XYLabels{XYs: total, Labels: labels})
	if err != nil {
		return err
	}
	for i := range lab.TextStyle {
		lab.TextStyle[i].XAlign = text.XRight
	}
	lab.Offset = vg.Point{X: -vg.Points(6), Y: vg.Points(4)}
	p.Add(lab)

	const dpi = 96
	img := vgimg.NewWith(vgimg.UseWH(vg.Length(PlotWidth)*vg.Inch/dpi, vg.Length(PlotHeight)*vg.Inch/dpi), vgimg.UseDPI(dpi))
	p.Draw(draw.New(img))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var plotColors = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, color.RGBA{0x70, 0x70, 0x70, 0xff},
}

// groupDigits writes n with thousands separated by commas.
func groupDigits(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// WriteGrowth prints the growth metrics among metrics as a table, one row
// per backlog size; it prints nothing when there are none.
func WriteGrowth(w io.Writer, metrics []Metric) error {
	type row struct{ push, pull, perOp float64 }
	rows := map[int]*row{}
	for _, m := range metrics {
		rest, ok := strings.CutPrefix(m.Name, growthPrefix)
		if !ok {
			continue
		}
		num, field, ok := strings.Cut(rest, "_")
		n, err := strconv.Atoi(num)
		if !ok || err != nil {
			continue
		}
		if rows[n] == nil {
			rows[n] = &row{}
		}
		switch field {
		case "push_s":
			rows[n].push = m.Value
		case "pull_s":
			rows[n].pull = m.Value
		case "us_per_op":
			rows[n].perOp = m.Value
		}
	}
	if len(rows) == 0 {
		return nil
	}
	sizes := make([]int, 0, len(rows))
	for n := range rows {
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backlog ops\tpush s\tpull s\tpush+pull s\tµs per op\t")
	for _, n := range sizes {
		r := rows[n]
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.1f\t\n", groupDigits(n), r.push, r.pull, r.push+r.pull, r.perOp)
	}
	return tw.Flush()
}
