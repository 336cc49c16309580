package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/fieldsync/fieldsync/schema"
)

// errHelpShown ends a command whose --help was printed; run turns it into
// success.
var errHelpShown = errors.New("help shown")

// command is one subcommand's flags and usage text. Flags are defined on
// its FlagSet by the subcommand itself: nothing global.
type command struct {
	name  string
	usage string // synopsis and description; the flags are listed after it
	*flag.FlagSet
}

func newCommand(name, usage string) *command {
	fs := flag.NewFlagSet("fieldsync "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &command{name: name, usage: usage, FlagSet: fs}
}

// parse parses args, flags and positional arguments in any order. On
// --help it prints the usage to stdout and returns errHelpShown.
func (c *command) parse(args []string, stdout io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := c.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printUsage(stdout)
				return nil, errHelpShown
			}
			return nil, c.usageError(err.Error())
		}
		args = c.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// usageError is a mistake in how the command was called.
func (c *command) usageError(msg string) error {
	return fmt.Errorf("%s: %s; see fieldsync %s --help", c.name, msg, c.name)
}

// noArgs refuses positional arguments.
func (c *command) noArgs(pos []string) error {
	if len(pos) > 0 {
		return c.usageError(fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	return nil
}

func (c *command) printUsage(w io.Writer) {
	fmt.Fprint(w, c.usage)
	var lines []string
	c.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		line += "\n      " + strings.ReplaceAll(usage, "\n", "\n      ")
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			line += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		lines = append(lines, line)
	})
	if len(lines) > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
	fmt.Fprint(w, "  --help, -h\n      show this help\n")
}

// envOr returns the environment variable key, or def when it is unset or
// empty: a flag's default, so that a flag given wins over both.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// setFlags collects repeated --set name=value flags.
type setFlags struct {
	names  []string
	values map[string]string
}

func (s *setFlags) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(s.names, ",")
}

func (s *setFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	if s.values == nil {
		s.values = map[string]string{}
	}
	if _, dup := s.values[name]; dup {
		return fmt.Errorf("field %q set twice", name)
	}
	s.names = append(s.names, name)
	s.values[name] = value
	return nil
}

// fields turns the collected values into JSON field values for type typ.
func (s *setFlags) fields(typ string) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(s.names))
	for _, n := range s.names {
		out[n] = fieldValue(typ, n, s.values[n])
	}
	return out
}

// fieldValue turns a value typed on the command line into JSON: a value
// that parses as JSON is taken as JSON, anything else as a string. A field
// that the bundled schema knows as text (or a list of text) takes any
// value as text, so that `--set title=2024` stays the string "2024"; a
// JSON string ("…") is still taken as JSON.
func fieldValue(typ, field, v string) json.RawMessage {
	trimmed := bytes.TrimSpace([]byte(v))
	isJSON := len(trimmed) > 0 && json.Valid(trimmed)
	if isJSON && trimmed[0] == '"' {
		return json.RawMessage(trimmed)
	}
	if isJSON && !textField(typ, field) {
		var buf bytes.Buffer
		if json.Compact(&buf, trimmed) == nil {
			return json.RawMessage(buf.Bytes())
		}
	}
	b, _ := json.Marshal(v)
	return b
}

// textField reports whether the bundled schema has typ.field as text, or
// as a list of text items.
func textField(typ, field string) bool {
	t, ok := schema.Default().Type(typ)
	if !ok {
		return false
	}
	f, ok := t.Fields[field]
	if !ok {
		return false
	}
	if f.Type == schema.TypeList && f.Item != nil {
		f = f.Item
	}
	switch f.Type {
	case schema.TypeString, schema.TypeEnum, schema.TypeTime:
		return true
	}
	return false
}

// sortedFieldNames orders fields for people: title and status first.
func sortedFieldNames(fields map[string]json.RawMessage) []string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	rank := func(n string) int {
		switch n {
		case "title":
			return 0
		case "status":
			return 1
		}
		return 2
	}
	sort.Slice(names, func(i, j int) bool {
		if ri, rj := rank(names[i]), rank(names[j]); ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	return names
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
