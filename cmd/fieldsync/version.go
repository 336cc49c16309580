package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/fieldsync/fieldsync/protocol"
)

const versionUsage = `Usage: fieldsync version

Print the version of this build, the Go release it was built with, and the
sync protocol versions it speaks.
`

// runVersion runs `fieldsync version`.
func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("version", versionUsage)
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	version, revision, modified := "(devel)", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if revision != "" {
		version += " " + shortRev(revision)
		if modified {
			version += "+changes"
		}
	}
	fmt.Fprintf(stdout, "fieldsync %s (%s, %s/%s; protocol %d to %d)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH,
		protocol.MinVersion, protocol.Version)
	return nil
}

func shortRev(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}
