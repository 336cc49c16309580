// Command fieldsync is the one binary of fieldsync: the sync server, the
// reference field agent, the device-side commands, the office commands,
// the demo and the benchmarks. main handles signals and the exit code;
// each subcommand lives in its own file and is wiring only.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fieldsync:", err)
		os.Exit(1)
	}
}

// runFunc is the entry point of one subcommand.
type runFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// subcommand names a command for the dispatcher and the help.
type subcommand struct {
	name    string
	summary string
	run     runFunc
	group   string
}

// Command groups, in the order the help lists them.
const (
	groupServer = "Run"
	groupDevice = "On a device (no network needed)"
	groupSync   = "Sync"
	groupOffice = "Office"
	groupOther  = "Other"
)

// commands lists every subcommand, in the order the help shows them.
func commands() []subcommand {
	return []subcommand{
		{"demo", "run a server, one field agent and sample work orders; print what to try", runDemo, groupServer},
		{"server", "run the sync server on an embedded SQLite database", runServer, groupServer},
		{"agent", "run a headless field agent that syncs a device directory", runAgent, groupServer},

		{"create", "save a new record on the device", runCreate, groupDevice},
		{"update", "change fields of a record on the device", runUpdate, groupDevice},
		{"append", "add a comment, reading or other list item to a record", runAppend, groupDevice},
		{"attach", "attach a photo, scan or signature to a record", runAttach, groupDevice},
		{"delete", "delete a record on the device", runDelete, groupDevice},
		{"show", "show one record as the device sees it", runShow, groupDevice},
		{"list", "list the records on the device", runList, groupDevice},
		{"ops", "list the device's outbox, in device order", runOps, groupDevice},
		{"op", "show one op and every attempt to send it", runOp, groupDevice},
		{"discard", "give up an op the server rejected", runDiscard, groupDevice},
		{"settle", "settle a conflict: keep the server's value, take the device's, or a new one", runSettle, groupDevice},
		{"status", "what is queued, the last sync, what needs attention", runStatus, groupDevice},
		{"pin", "change the PIN that unlocks the device's encrypted data", runPin, groupDevice},

		{"enroll", "enrol this device with the server, with a one-time code from the office", runEnroll, groupSync},
		{"sync", "send the device's queue to the server and pull its changes, once", runSync, groupSync},

		{"login", "log in to the server as a dispatcher or admin, for fieldsync office", runLogin, groupOffice},
		{"office", "the dispatcher over HTTP: office create | edit | settle | show", runOffice, groupOffice},
		{"admin", "organisations, users, devices, enrolment codes: admin init | user | device | enrol-code", runAdmin, groupOffice},

		{"selftest", "check a running server against the pre-launch checklist", runSelftest, groupOther},
		{"bench", "measure durability and sync throughput on this machine", runBench, groupOther},
		{"chaos", "run fault drills (kills, outages, full disk, wrong clocks) and check nothing is lost", runChaos, groupOther},
		{"version", "print the version", runVersion, groupOther},
		{"help", "list the commands, or show one command's help", runHelp, groupOther},
	}
}

// run dispatches to a subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printCommands(stderr)
		return errors.New("name a command; see fieldsync help")
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	case "-version", "--version":
		name = "version"
	}
	if name == chaosWorkerCommand {
		// Hidden: the processes that chaos scenarios start and kill.
		return runChaosWorker(ctx, args[1:], stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == name {
			err := c.run(ctx, args[1:], stdout, stderr)
			if errors.Is(err, errHelpShown) {
				return nil
			}
			return err
		}
	}
	return fmt.Errorf("unknown command %q; see fieldsync help", args[0])
}
