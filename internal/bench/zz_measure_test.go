package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
)

func TestZZMeasure(t *testing.T) {
	if os.Getenv("FS_MEASURE") == "" {
		t.Skip()
	}
	cfg := Config{Dir: t.TempDir()}
	cfg.defaults()
	add := func(n string, v float64, u string) { fmt.Printf("%s\t%.4g\t%s\n", n, v, u) }
	if os.Getenv("FS_MEASURE") == "catchup" {
		if err := runCatchup(context.Background(), &cfg, CatchupConfig{}, add); err != nil {
			t.Fatal(err)
		}
	} else {
		var ms []Metric
		if err := runGrowth(context.Background(), &cfg, GrowthConfig{Max: 100000, Plot: "/tmp/x/growth.png"}, func(n string, v float64, u string) { ms = append(ms, Metric{n, v, u}); add(n, v, u) }); err != nil {
			t.Fatal(err)
		}
		WriteGrowth(os.Stdout, ms)
	}
}
