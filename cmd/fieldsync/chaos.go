package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/chaos"
)

const chaosUsage = `Usage: fieldsync chaos [--scenario NAME|all] [--seed N] [--json] [--dir DIR] [--short]

Run fault drills against a real device engine and a real server on this
machine, then check with an oracle that nothing was lost, duplicated,
reordered or silently overwritten. Each scenario runs in compressed time,
under a minute, and is deterministic given its seed: replay a failure with
the seed it printed. Worker processes are this binary, killed with SIGKILL
where a scenario says so. Progress goes to stderr; a report per scenario
(or with --json one object, or an array for all) to stdout. Exits non-zero
when any scenario has a finding. docs/chaos.md explains each scenario.

Scenarios:
%s
Example:
  fieldsync chaos --scenario all --seed 42
`

// runChaos runs `fieldsync chaos`.
func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var list strings.Builder
	for _, n := range chaos.Names() {
		fmt.Fprintf(&list, "  %-15s %s\n", n, chaos.Summary(n))
	}
	cmd := newCommand("chaos", fmt.Sprintf(chaosUsage, list.String()))
	name := cmd.String("scenario", "all", "scenario `NAME`, or all")
	seedFlag := cmd.String("seed", "", "random seed `N` (default: a new one, printed)")
	asJSON := cmd.Bool("json", false, "print JSON: one object per scenario, an array for all")
	dir := cmd.String("dir", "", "keep each scenario's files under `DIR` (default: a temporary directory, removed)")
	short := cmd.Bool("short", false, "smaller scenarios (fewer ops, shorter outages)")
	disk := cmd.String("disk", "", "how disk-full fills the disk: tmpfs or rlimit (default: tmpfs as root, else rlimit)")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	seed := rand.Uint64() >> 1
	if *seedFlag != "" {
		if _, err := fmt.Sscan(*seedFlag, &seed); err != nil {
			return cmd.usageError(fmt.Sprintf("--seed %q: want a whole number", *seedFlag))
		}
	}
	names := []string{*name}
	if *name == "all" {
		names = nil
		for _, n := range chaos.Names() {
			if err := chaos.Unavailable(n); err != nil {
				if os.Getenv("FIELDSYNC_NETNS") != "" {
					return fmt.Errorf("FIELDSYNC_NETNS is set, but %v", err)
				}
				fmt.Fprintf(stderr, "chaos: %s left out on this machine: %v\n", n, err)
				continue
			}
			names = append(names, n)
		}
	} else if chaos.Summary(*name) == "" {
		return cmd.usageError(fmt.Sprintf("unknown scenario %q (have %s, all)", *name, strings.Join(chaos.Names(), ", ")))
	}
	fmt.Fprintf(stderr, "chaos: seed %d (replay: fieldsync chaos --scenario %s --seed %d)\n", seed, *name, seed)
	opts := chaos.Options{Seed: seed, Dir: *dir, Short: *short, Log: stderr, DiskMethod: *disk}
	var results []chaos.Result
	failed := 0
	for _, n := range names {
		res, err := chaos.Run(ctx, n, opts)
		if err != nil {
			return err
		}
		results = append(results, res)
		if !res.Passed {
			failed++
		}
		if !*asJSON {
			printChaos(stdout, res)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		var v any = results
		if len(results) == 1 && *name != "all" {
			v = results[0]
		}
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("chaos: %d of %d scenarios failed (seed %d)", failed, len(results), seed)
	}
	return nil
}

// printChaos writes the short report of one scenario.
func printChaos(w io.Writer, r chaos.Result) {
	verdict := "PASS"
	if !r.Passed {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s %s (seed %d, %v)\n", verdict, r.Scenario, r.Seed, time.Duration(r.DurationMS)*time.Millisecond)
	fmt.Fprintf(w, "  ops: %d saved, %d delivered, %d lost, %d duplicated; %d conflicts open\n",
		r.OpsCreated, r.OpsDelivered, r.Lost, r.Duplicates, r.ConflictsOpen)
	fmt.Fprintf(w, "  attachments verified: %d; faults injected: %d; bytes sent %d, wasted %d\n",
		r.AttachmentsVerified, r.Faults, r.BytesSent, r.WastedBytes)
	if len(r.FaultKinds) > 0 {
		var kinds []string
		for k, n := range r.FaultKinds {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		slices.Sort(kinds)
		fmt.Fprintf(w, "  faults by kind: %s\n", strings.Join(kinds, ", "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
	for _, f := range r.Findings {
		fmt.Fprintf(w, "  finding: %s\n", f)
	}
}

// chaosWorkerCommand is the hidden subcommand that chaos scenarios start
// as the device or server process they kill.
const chaosWorkerCommand = "chaos-worker"

// runChaosWorker runs one chaos worker process.
func runChaosWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return chaos.RunWorker(ctx, args, stdout)
}
