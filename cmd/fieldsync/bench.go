package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fieldsync/fieldsync/internal/bench"
)

const benchUsage = `usage: fieldsync bench [--json] [--ops N] [--records N] [--saves N] [--dir DIR]

Measures the sync core on this machine, in one run: the fsync floor
(4 KiB append + fdatasync), local save latency of one user action through
the device engine, push of a backlog and pull of records between a real
device and a real server over loopback HTTP, bytes on the wire per status
update, the loopback round trip and the peak memory of the process.
Progress goes to stderr. Results go to stdout: a table with each figure's
floor, ratio and target, or with --json one JSON array of
{"name","value","unit"} objects.

`

// runBench runs `fieldsync bench`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print one JSON array of {name, value, unit} to stdout")
	ops := fs.Int("ops", 10000, "ops in the push backlog")
	records := fs.Int("records", 10000, "records pulled into a fresh device")
	saves := fs.Int("saves", 2000, "local saves timed")
	dir := fs.String("dir", "", "working directory, kept afterwards (default: a temporary directory, removed)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	if *ops < 1 || *records < 1 || *saves < 1 {
		return errors.New("bench: --ops, --records and --saves must be 1 or more")
	}

	work := *dir
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
	})
	endProgress()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(metrics)
	}
	return bench.WriteTable(stdout, metrics)
}
