package bench

import (
	"context"
	"testing"
	"time"
)

// fastLinks are the catch-up links sped up for tests: the same shape (a
// rate, a latency, and loss on the second) at a rate that keeps a test
// short.
var fastLinks = CatchupConfig{
	Ops3G: 30, Photos3G: 2, PhotoDim3G: 160, Ops2G: 20, Photos2G: 1, PhotoDim2G: 120,
	Link3G: LinkProfile{Rate: 4_000_000, Latency: 2 * time.Millisecond},
	Link2G: LinkProfile{Rate: 2_000_000, Latency: 5 * time.Millisecond, Loss: 0.05, RTO: 5 * time.Millisecond},
}

// TestCatchupTiny runs both catch-ups on a tiny backlog through fast
// emulated links, end to end, and checks that every figure is there and
// positive. It checks no timing.
func TestCatchupTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := Config{Dir: t.TempDir()}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	got := map[string]Metric{}
	err := runCatchup(ctx, &cfg, fastLinks, func(name string, v float64, unit string) {
		if _, ok := got[name]; ok {
			t.Errorf("metric %s reported twice", name)
		}
		got[name] = Metric{name, v, unit}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		Catchup3GRatio, Catchup3GOpRatio, Catchup3GBlobRatio, Catchup3GSeconds,
		Catchup2GRatio, Catchup2GOpRatio, Catchup2GBlobRatio, Catchup2GSeconds,
		CatchupOpJSONBytes, WireBytesPerOpRatio,
	} {
		m, ok := got[name]
		if !ok || !(m.Value > 0) || m.Unit == "" {
			t.Errorf("%s = %+v: want a positive value with a unit", name, m)
		}
	}
	if m, ok := got[Catchup2GStalls]; !ok || m.Value < 0 {
		t.Errorf("%s = %+v: want a count", Catchup2GStalls, m)
	}
}

// TestRunWithCatchupAndGrowth checks that Run adds the catch-up and
// growth figures when asked, and only then.
func TestRunWithCatchupAndGrowth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	cc := fastLinks
	metrics, err := Run(ctx, Config{
		Dir: dir, Ops: 20, Records: 20, Saves: 5, Fsyncs: 5, Trips: 5, WireOps: 10,
		Photos: 1, LinkRate: 20_000_000, CutEvery: time.Minute,
		Catchup: &cc, Growth: &GrowthConfig{Max: 200},
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range metrics {
		seen[m.Name] = true
	}
	for _, name := range []string{Catchup3GRatio, Catchup2GRatio, WireBytesPerOpRatio, GrowthPerOpRatio, "growth_100_push_s", "growth_200_pull_s"} {
		if !seen[name] {
			t.Errorf("Run with Catchup and Growth reported no %s", name)
		}
	}
}

func TestCatchupTargets(t *testing.T) {
	byName := map[string]Target{}
	for _, tg := range Targets {
		byName[tg.Metric] = tg
	}
	cases := []struct {
		metric string
		value  float64
		met    bool
	}{
		{Catchup3GRatio, 0.8, true},
		{Catchup3GRatio, 0.79, false},
		{Catchup2GRatio, 0.7, true},
		{Catchup2GRatio, 0.69, false},
		{WireBytesPerOpRatio, 0.99, true},
		{WireBytesPerOpRatio, 1, false},
	}
	for _, c := range cases {
		met, ok := byName[c.metric].Met(c.value, 0)
		if !ok || met != c.met {
			t.Errorf("%s = %v: met %v, %v; want %v", c.metric, c.value, met, ok, c.met)
		}
	}
}
