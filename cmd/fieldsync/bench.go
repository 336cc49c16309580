package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/fieldsync/fieldsync/internal/bench"
)

const benchUsage = `Usage: fieldsync bench [--json] [--ops N] [--records N] [--saves N] [--dir DIR]
                       [--growth-max N] [--plot FILE]

Measure, in one run on this machine: the fsync floor (4 KiB append +
fdatasync), the latency of one user action saved durably through the device
engine, the push of a backlog of ops and the pull of records between a real
device and a real server over loopback HTTP, the bytes on the wire per
status update, the loopback round trip, and the peak memory of the process
(server and device run in it). Then the catch-up of a day-offline backlog
through emulated 3G and 2G links, and how push and pull times grow with the
backlog, from 100 ops to --growth-max, drawn into --plot (default
growth.png in DIR, or in the current directory without --dir). Progress goes to stderr. The results go to
stdout: a table with each figure's floor, ratio and target, or with --json
one JSON array of {"name","value","unit"} objects. BENCHMARKS.md explains
each figure.

Example:
  fieldsync bench --json > bench.json
`

// runBench runs `fieldsync bench`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("bench", benchUsage)
	asJSON := cmd.Bool("json", false, "print one JSON array of {name, value, unit} objects")
	ops := cmd.Int("ops", 10000, "`N` ops in the push backlog")
	records := cmd.Int("records", 10000, "`N` records pulled into a fresh device")
	saves := cmd.Int("saves", 2000, "`N` local saves timed")
	dir := cmd.String("dir", "", "working `DIR`, kept afterwards (default: a temporary directory, removed)")
	growthMax := cmd.Int("growth-max", 100000, "largest backlog `N` of the growth run; 0 skips the catch-up and growth runs")
	plotFile := cmd.String("plot", "", "PNG `FILE` of the growth run (default growth.png in the working directory DIR)")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	if *ops < 1 || *records < 1 || *saves < 1 {
		return cmd.usageError("--ops, --records and --saves must be 1 or more")
	}

	work := *dir
	if work == "" && *plotFile == "" {
		*plotFile = "growth.png"
	}
	if work == "" {
		tmp, err := os.MkdirTemp("", "fieldsync-bench-")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(tmp)
		work = tmp
	} else if err := os.MkdirAll(work, 0o700); err != nil {
		return fmt.Errorf("bench: %w", err)
	}

	progress, endProgress := bench.ProgressLine(stderr)
	metrics, err := bench.Run(ctx, bench.Config{
		Dir: work, Ops: *ops, Records: *records, Saves: *saves, Progress: progress,
		Catchup: extra(*growthMax, &bench.CatchupConfig{}), Growth: extra(*growthMax, &bench.GrowthConfig{Max: *growthMax, Plot: *plotFile}),
	})
	endProgress()
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(metrics)
	}
	if err := bench.WriteTable(stdout, metrics); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	return bench.WriteGrowth(stdout, metrics)
}

// extra returns c, or nil when growthMax is 0: the catch-up and growth
// runs are skipped.
func extra[T any](growthMax int, c *T) *T {
	if growthMax <= 0 {
		return nil
	}
	return c
}
