package main

import (
	"context"
	"fmt"
	"io"
)

const helpUsage = `Usage: fieldsync help [COMMAND]

List the commands, or show the help of one command (the same as
fieldsync COMMAND --help).
`

// runHelp runs `fieldsync help`.
func runHelp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("help", helpUsage)
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return cmd.usageError("name one command")
	}
	if len(pos) == 1 {
		if pos[0] == "help" {
			return runHelp(ctx, []string{"--help"}, stdout, stderr)
		}
		for _, c := range commands() {
			if c.name == pos[0] {
				return c.run(ctx, []string{"--help"}, stdout, stderr)
			}
		}
		return fmt.Errorf("help: unknown command %q; see fieldsync help", pos[0])
	}
	fmt.Fprint(stdout, "fieldsync: offline synchronization for field workers, with no data loss.\n\n")
	fmt.Fprint(stdout, "Usage: fieldsync COMMAND [flags]\n")
	printCommands(stdout)
	fmt.Fprint(stdout, `
Every command has --help. Start with: fieldsync demo

Environment (a flag wins over its variable):
  FIELDSYNC_DIR     the device directory (--dir)
  FIELDSYNC_SERVER  the server URL (--server)
  FIELDSYNC_ADDR    the server's listen address (server --addr)
  FIELDSYNC_DB      the server's database file (server --db)
  FIELDSYNC_DATA    the server's data directory, with identity.db (admin --data)
`)
	return nil
}

func printCommands(w io.Writer) {
	width := 0
	for _, c := range commands() {
		width = max(width, len(c.name))
	}
	group := ""
	for _, c := range commands() {
		if c.group != group {
			group = c.group
			fmt.Fprintf(w, "\n%s:\n", group)
		}
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
}
