package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is an io.Writer that a command running in another goroutine
// writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// background runs a long-lived command (server, agent, demo) in a
// goroutine until the test ends or stop is called.
type background struct {
	t              *testing.T
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan error
	stopped        bool
	err            error
}

func startCommand(t *testing.T, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- run(ctx, args, b.stdout, b.stderr) }()
	t.Cleanup(func() {
		if !b.stopped {
			if err := b.stop(); err != nil {
				t.Errorf("%s: stopped with %v", args[0], err)
			}
		}
	})
	return b
}

// stop cancels the command and returns what it returned.
func (b *background) stop() error {
	b.t.Helper()
	if b.stopped {
		return b.err
	}
	b.stopped = true
	b.cancel()
	select {
	case b.err = <-b.done:
	case <-time.After(30 * time.Second):
		b.t.Fatalf("the command did not stop within 30s of its context ending; stdout:\n%s\nstderr:\n%s", b.stdout, b.stderr)
	}
	return b.err
}

// waitOutput waits until re matches the command's stdout and returns the
// submatches; it fails if the command ends first or nothing matches in
// time.
func (b *background) waitOutput(re *regexp.Regexp) []string {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(b.stdout.String()); m != nil {
			return m
		}
		select {
		case err := <-b.done:
			b.stopped, b.err = true, err
			b.t.Fatalf("the command ended (%v) before printing %s; stdout:\n%s\nstderr:\n%s", err, re, b.stdout, b.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("no %s in the output within 30s; stdout:\n%s\nstderr:\n%s", re, b.stdout, b.stderr)
		}
	}
}

var listeningRE = regexp.MustCompile(`listening on (http://\S+)`)

// startServer runs `fieldsync server` on a free port and returns its URL.
func startServer(t *testing.T) (string, *background) {
	t.Helper()
	db := filepath.Join(t.TempDir(), "server.db")
	b := startCommand(t, "server", "--no-auth", "--addr", "127.0.0.1:0", "--db", db, "--log-level", "warn")
	return b.waitOutput(listeningRE)[1], b
}

// cli runs one short command and returns its stdout, stderr and error.
func cli(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// mustCLI runs one command that must succeed and returns its stdout.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := cli(t, args...)
	if err != nil {
		t.Fatalf("fieldsync %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// cliErr runs one command that must fail and returns its error message.
func cliErr(t *testing.T, args ...string) string {
	t.Helper()
	out, _, err := cli(t, args...)
	if err == nil {
		t.Fatalf("fieldsync %s succeeded; want an error. stdout:\n%s", strings.Join(args, " "), out)
	}
	return err.Error()
}

func contains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: no %q in:\n%s", what, w, got)
		}
	}
}

// containsText is contains with runs of spaces counted as one, for
// output laid out in columns.
func containsText(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	squashed := strings.Join(strings.Fields(got), " ")
	for _, w := range wants {
		if !strings.Contains(squashed, strings.Join(strings.Fields(w), " ")) {
			t.Errorf("%s: no %q in:\n%s", what, w, got)
		}
	}
}

// eventually polls cond until it holds or 30s pass.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so within 30s; last state: %s", what, state)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a bounded wait
	}
}

// getJSON GETs url and decodes a 200 answer into v.
func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok := os.Getenv("FIELDSYNC_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok) // a server with authentication
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, data)
		}
	}
	return resp.StatusCode
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// clearEnv makes sure the environment does not answer for a flag.
func clearEnv(t *testing.T) {
	for _, k := range []string{"FIELDSYNC_DIR", "FIELDSYNC_SERVER", "FIELDSYNC_ADDR", "FIELDSYNC_DB",
		"FIELDSYNC_DATA", "FIELDSYNC_TOKEN", "FIELDSYNC_TLS_PIN", "FIELDSYNC_ORG"} {
		t.Setenv(k, "")
	}
}

func TestHelp(t *testing.T) {
	out := mustCLI(t, "help")
	for _, c := range commands() {
		if !regexp.MustCompile(`(?m)^  ` + c.name + ` +\S`).MatchString(out) {
			t.Errorf("fieldsync help does not list %s:\n%s", c.name, out)
		}
	}
	for _, flag := range []string{"--help", "-h"} {
		if got := mustCLI(t, flag); got != out {
			t.Errorf("fieldsync %s differs from fieldsync help:\n%s", flag, got)
		}
	}
	for _, c := range commands() {
		if c.name == "bench" {
			continue // owned by its own file; checked only for being listed
		}
		for _, flag := range []string{"--help", "-h"} {
			got := mustCLI(t, c.name, flag)
			want := "Usage: fieldsync " + c.name
			if !strings.HasPrefix(got, want) {
				t.Errorf("fieldsync %s %s: want a usage text starting %q, got:\n%s", c.name, flag, want, got)
			}
			if len(strings.Split(got, "\n")) < 4 {
				t.Errorf("fieldsync %s %s: the usage text is too short to help:\n%s", c.name, flag, got)
			}
		}
		if byHelp := mustCLI(t, "help", c.name); byHelp != mustCLI(t, c.name, "--help") {
			t.Errorf("fieldsync help %s differs from fieldsync %s --help", c.name, c.name)
		}
	}
	for _, action := range []string{"create", "edit", "settle", "show"} {
		got := mustCLI(t, "office", action, "--help")
		contains(t, "office "+action+" --help", got, "Usage: fieldsync office "+action, "--server", "Flags:")
	}
	contains(t, "create --help", mustCLI(t, "create", "--help"), "--dir", "--set", "FIELDSYNC_DIR", "in progress")
	contains(t, "settle --help", mustCLI(t, "settle", "--help"), "--keep-server", "--take-device", "--op OPID", "--value VALUE",
		"--note TEXT", "--conflict ID", "offline", "already_settled", `--value "waiting for parts" --note "completed, but parts required"`)
	contains(t, "office settle --help", mustCLI(t, "office", "settle", "--help"), "--keep-server", "--take-device", "--value VALUE",
		"--note TEXT", "GET", "POST /v1/records/TYPE/ID/settle", "already_settled")
	contains(t, "office --help", mustCLI(t, "office", "--help"), "office settle", "server-wins", "manual")
	contains(t, "version", mustCLI(t, "version"), "fieldsync ", "protocol 1")
}

func TestUsageErrors(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	empty := t.TempDir()
	cases := []struct {
		args  []string
		wants []string
	}{
		{nil, []string{"name a command", "fieldsync help"}},
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`, "fieldsync help"}},
		{[]string{"create", "--bogus"}, []string{"flag provided but not defined: -bogus", "see fieldsync create --help"}},
		{[]string{"create", "--dir", dir}, []string{"--set name=value"}},
		{[]string{"create", "--dir", dir, "--set", "novalue"}, []string{`want name=value, got "novalue"`}},
		{[]string{"create", "--dir", dir, "--set", "a=1", "--set", "a=2"}, []string{`field "a" set twice`}},
		{[]string{"update", "--dir", dir, "--set", "status=new"}, []string{"name the record with --id"}},
		{[]string{"update", "--dir", empty, "--id", "WO-1", "--set", "status=new"}, []string{"no device store in", "fieldsync create"}},
		{[]string{"status", "--dir", empty}, []string{"no device store in"}},
		{[]string{"append", "--dir", dir, "--id", "x", "--value", "v"}, []string{"--field"}},
		{[]string{"ops", "--dir", dir, "--status", "weird"}, []string{`unknown status "weird"`}},
		{[]string{"ops", "--dir", dir, "--limit", "many"}, []string{`invalid value "many"`, "--help"}},
		{[]string{"op", "--dir", dir}, []string{"name one op id"}},
		{[]string{"discard", "--dir", dir}, []string{"name one op id"}},
		{[]string{"sync", "--dir", dir}, []string{"--server URL or FIELDSYNC_SERVER"}},
		{[]string{"sync", "--dir", dir, "--server", "ftp://x"}, []string{"want http://"}},
		{[]string{"server", "--addr", "nonsense"}, []string{`"nonsense": want host:port`}},
		{[]string{"server", "--log-level", "loud", "--addr", "127.0.0.1:0"}, []string{`log level "loud"`}},
		{[]string{"agent", "--dir", dir}, []string{"--server URL"}},
		{[]string{"agent", "--dir", dir, "--server", "http://127.0.0.1:1", "--status-addr", "0.0.0.0:0"}, []string{"127.0.0.1", "device's queue"}},
		{[]string{"office"}, []string{"create, edit, settle or show"}},
		{[]string{"settle", "--dir", dir, "--field", "status", "--keep-server"}, []string{"name the record with --id"}},
		{[]string{"settle", "--dir", dir, "--id", "x", "--keep-server"}, []string{"--field"}},
		{[]string{"settle", "--dir", dir, "--id", "x", "--field", "status"}, []string{"choose one of --keep-server, --take-device or --value VALUE"}},
		{[]string{"settle", "--dir", dir, "--id", "x", "--field", "status", "--take-device", "--value", "v"}, []string{"choose one of"}},
		{[]string{"settle", "--dir", dir, "--id", "x", "--field", "status", "--value", "v", "--op", "o"}, []string{"--op goes with --take-device"}},
		{[]string{"settle", "--dir", empty, "--id", "x", "--field", "status", "--keep-server"}, []string{"no device store in"}},
		{[]string{"office", "settle", "--server", "http://127.0.0.1:1", "--field", "status", "--keep-server"}, []string{"--id"}},
		{[]string{"office", "fly"}, []string{`unknown action "fly"`}},
		{[]string{"office", "edit", "--set", "a=1"}, []string{"--server URL"}},
		{[]string{"office", "edit", "--server", "http://127.0.0.1:1", "--set", "a=1"}, []string{"--id"}},
		{[]string{"version", "extra"}, []string{`unexpected argument "extra"`}},
		{[]string{"help", "nothing"}, []string{`unknown command "nothing"`}},
	}
	for _, c := range cases {
		msg := cliErr(t, c.args...)
		contains(t, "fieldsync "+strings.Join(c.args, " "), msg, c.wants...)
	}
	// A device store is not made by a command that only reads.
	if _, err := os.Stat(filepath.Join(empty, "device.db")); err == nil {
		t.Errorf("a failed read command created a device store in %s", empty)
	}
}

func TestFieldValue(t *testing.T) {
	cases := []struct {
		typ, field, in, want string
	}{
		{"work_order", "status", "in progress", `"in progress"`},
		{"work_order", "amount", "3", `3`},
		{"work_order", "amount", "3.5", `3.5`},
		{"work_order", "title", "2024", `"2024"`},                 // a text field keeps text
		{"work_order", "title", `"quoted"`, `"quoted"`},           // a JSON string stays JSON
		{"work_order", "comments", "42", `"42"`},                  // a list of text keeps text
		{"work_order", "readings", `{"bar": 1.4}`, `{"bar":1.4}`}, // a list of objects takes JSON
		{"work_order", "coordinates", `{"lat":1,"lon":2}`, `{"lat":1,"lon":2}`},
		{"work_order", "coordinates", `{broken`, `"{broken"`},
		{"work_order", "description", "", `""`},
		{"other", "flag", "true", `true`},
		{"other", "n", "01234", `"01234"`}, // not JSON: a zip code stays text
		{"other", "x", "null", `null`},
		{"other", "s", "hello world", `"hello world"`},
	}
	for _, c := range cases {
		if got := string(fieldValue(c.typ, c.field, c.in)); got != c.want {
			t.Errorf("fieldValue(%s, %s, %q) = %s, want %s", c.typ, c.field, c.in, got, c.want)
		}
	}
}

func TestEnvAndFlagPrecedence(t *testing.T) {
	clearEnv(t)
	envDir, flagDir := t.TempDir(), t.TempDir()
	t.Setenv("FIELDSYNC_DIR", envDir)
	mustCLI(t, "create", "--set", "title=From the environment")
	mustCLI(t, "create", "--dir", flagDir, "--set", "title=From the flag")
	if out := mustCLI(t, "list"); !strings.Contains(out, "From the environment") || strings.Contains(out, "From the flag") {
		t.Errorf("list with FIELDSYNC_DIR set: want only the environment's record:\n%s", out)
	}
	if out := mustCLI(t, "list", "--dir", flagDir); !strings.Contains(out, "From the flag") || strings.Contains(out, "From the environment") {
		t.Errorf("list --dir: want only the flag's record:\n%s", out)
	}
	// The server URL comes from the environment too, and a flag wins.
	t.Setenv("FIELDSYNC_SERVER", "http://"+closedPort(t))
	msg := cliErr(t, "sync", "--dir", flagDir)
	contains(t, "sync with FIELDSYNC_SERVER", msg, "cannot reach the server")
	msg = cliErr(t, "sync", "--dir", flagDir, "--server", "ftp://flag-wins")
	contains(t, "sync --server over FIELDSYNC_SERVER", msg, "ftp://flag-wins")
}
