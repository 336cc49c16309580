package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var statusURLRE = regexp.MustCompile(`(http://127\.0\.0\.1:\d+/status)`)

// TestAgent runs `fieldsync agent` on a device with work saved offline:
// it delivers that at once, then what other commands save meanwhile, and
// serves the device's status.
func TestAgent(t *testing.T) {
	clearEnv(t)
	srv, _ := startServer(t)
	dir := t.TempDir()
	id1, _ := create(t, dir, "title=Saved before the agent", "status=new")

	agent := startCommand(t, "agent", "--dir", dir, "--server", srv, "--interval", "50ms")
	statusURL := agent.waitOutput(statusURLRE)[1]
	contains(t, "agent output", agent.stdout.String(), "syncing with "+srv)

	delivered := func(n int) func() (bool, string) {
		return func() (bool, string) {
			var st statusJSON
			getJSON(t, statusURL, &st)
			return st.Pending == 0 && st.Counts["delivered"] == n && st.LastSync != nil, fmt.Sprintf("%+v", st)
		}
	}
	eventually(t, "the agent delivers the op saved before it started", delivered(1))
	if _, code := getRecord(t, srv, id1); code != 200 {
		t.Fatalf("server has no %s: HTTP %d", id1, code)
	}

	// Another process saves on the same device: the agent sends it on its
	// next round.
	id2, _ := create(t, dir, "title=Saved while the agent runs", "status=new")
	eventually(t, "the agent delivers the op saved while it runs", delivered(2))
	rec, code := getRecord(t, srv, id2)
	if code != 200 || rec.Record.Number != "WO-1002" {
		t.Fatalf("server record %s: HTTP %d %+v", id2, code, rec.Record)
	}

	if err := agent.stop(); err != nil {
		t.Fatalf("agent stopped with %v", err)
	}
	contains(t, "agent log", agent.stderr.String(), "msg=synced", "sent=1", "delivered=1")
}

// TestDemo runs `fieldsync demo` on a taken port (it falls back to a free
// one), checks what it prints, that its agent syncs the sample work orders
// and a change made with a printed command, and that a second run
// continues with the same data.
func TestDemo(t *testing.T) {
	clearEnv(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := filepath.Join(t.TempDir(), "demo")
	device := filepath.Join(dir, "device")

	demo := startCommand(t, "demo", "--addr", taken.Addr().String(), "--dir", dir, "--interval", "50ms", "--log-level", "warn")
	m := demo.waitOutput(regexp.MustCompile(`(?s)server +(http://\S+)\n +field agent +(http://\S+/status).*Ctrl-C stops the demo`))
	srv, statusURL := m[1], m[2]
	out := demo.stdout.String()
	contains(t, "demo output", out, "already in use", "using a free port instead", "made 5 sample work orders",
		"list   --dir "+device, "--server "+srv, `--id WO-1001 --set status="completed on site"`, "--field comments",
		"status --dir "+device, "office edit --server "+srv, "--base 1 --set status=closed", "office show --server "+srv,
		"settle --dir "+device+` --id WO-1001 --field status --value "waiting for parts" --note "completed, but parts required"`,
		"login --server "+srv+" --org demo --user dora --password-file "+filepath.Join(dir, "passwords", "dora"),
		`curl -s -H "Authorization: Bearer $(grep -o 'fsu_[A-Za-z0-9_-]*' `+filepath.Join(dir, "office-session.json")+`)" `+srv+"/v1/records/work_order/", "curl -s "+statusURL,
		`selftest --server `+srv+` --operator-token "$(cat `+filepath.Join(dir, "operator-token")+`)"`, "chaos --scenario basement --seed 1")
	// The printed selftest passes against the demo's server and leaves
	// no organisation behind.
	opToken, err := os.ReadFile(filepath.Join(dir, "operator-token"))
	if err != nil {
		t.Fatal(err)
	}
	contains(t, "the printed selftest", mustCLI(t, "selftest", "--server", srv, "--operator-token", strings.TrimSpace(string(opToken))),
		"all checks passed", "test organisation deleted")
	// The printed login gives the office its session; the tests read the
	// server with it too.
	t.Setenv("FIELDSYNC_SESSION", filepath.Join(dir, "office-session.json"))
	contains(t, "the printed login", mustCLI(t, "login", "--server", srv, "--org", "demo", "--user", "dora",
		"--password-file", filepath.Join(dir, "passwords", "dora")), "logged in", "dispatcher")
	sess, ok, err := loadSession(filepath.Join(dir, "office-session.json"))
	if err != nil || !ok {
		t.Fatalf("session: %v %v", ok, err)
	}
	t.Setenv("FIELDSYNC_TOKEN", sess.Token)
	// The dispatcher issues a code; a second device of ana enrols with it.
	issued := mustCLI(t, "office", "enrol-code", "--server", srv, "--user", "ana")
	contains(t, "office enrol-code", issued, "enrolment code for ana (demo)", "works once")
	enrolCode := regexp.MustCompile(`--code (\S+)`).FindStringSubmatch(issued)[1]
	contains(t, "enroll with the office's code", mustCLI(t, "enroll", "--dir", filepath.Join(dir, "second"), "--server", srv, "--code", enrolCode),
		"enrolled device", "for ana in demo")
	if strings.Index(out, "office edit") > strings.Index(out, "settle --dir") {
		t.Errorf("the demo prints the settle command before the conflict it settles:\n%s", out)
	}
	if strings.Contains(out, taken.Addr().String()+"\n  field") {
		t.Errorf("the demo claims the taken address:\n%s", out)
	}
	sample := regexp.MustCompile(`/v1/records/work_order/(\S+)`).FindStringSubmatch(out)[1]
	rec, code := getRecord(t, srv, sample)
	if code != 200 || rec.Record.Number != "WO-1001" || fieldString(t, rec.Record.Fields, "status") != "assigned" {
		t.Fatalf("the printed record on the server: HTTP %d %+v", code, rec.Record)
	}
	for _, f := range []string{"title", "address", "contact"} {
		if fieldString(t, rec.Record.Fields, f) == "" {
			t.Errorf("sample work order has no %s", f)
		}
	}

	eventually(t, "the demo's agent syncs the samples", func() (bool, string) {
		var st statusJSON
		getJSON(t, statusURL, &st)
		return st.LastSync != nil, fmt.Sprintf("%+v", st)
	})
	out = mustCLI(t, "list", "--dir", device)
	if n := strings.Count(out, "assigned"); n != 5 {
		t.Errorf("the device lists %d assigned work orders, want 5:\n%s", n, out)
	}

	// The printed update, made by another process on the demo's device,
	// reaches the server through the demo's agent.
	mustCLI(t, "update", "--dir", device, "--id", "WO-1001", "--set", "status=completed on site")
	eventually(t, "the demo's agent delivers the update", func() (bool, string) {
		r, _ := getRecord(t, srv, sample)
		return string(r.Record.Fields["status"]) == `"completed on site"`, string(r.Record.Fields["status"])
	})
	// The printed office edit from version 1 is a conflict on status; the
	// agent brings it to the device.
	out = mustCLI(t, "office", "edit", "--server", srv, "--id", sample, "--base", "1", "--set", "status=closed")
	contains(t, "the printed office edit", out, "conflict", "kept completed on site", "yours closed")
	eventually(t, "the demo's agent pulls the conflict", func() (bool, string) {
		st := statusJSONOf(t, device)
		return st.NeedsReview == 1, fmt.Sprintf("%+v", st)
	})
	// The printed settlement reaches the server through the agent.
	out = mustCLI(t, "settle", "--dir", device, "--id", "WO-1001", "--field", "status",
		"--value", "waiting for parts", "--note", "completed, but parts required")
	contains(t, "the printed settle", out, "saved on this device", `"waiting for parts"`)
	eventually(t, "the demo's agent delivers the settlement", func() (bool, string) {
		r := getConflicts(t, srv, sample)
		if len(r.Record.Conflicts) != 1 || r.Record.Conflicts[0].Settled == nil {
			return false, fmt.Sprintf("%+v", r.Record.Conflicts)
		}
		s := r.Record.Conflicts[0].Settled
		return string(s.Value) == `"waiting for parts"` && s.Note == "completed, but parts required" &&
			string(r.Record.Fields["status"]) == `"waiting for parts"`, fmt.Sprintf("%+v %s", s, r.Record.Fields["status"])
	})

	if err := demo.stop(); err != nil {
		t.Fatalf("demo stopped with %v", err)
	}
	contains(t, "demo output", demo.stdout.String(), "demo stopped")

	// A second run continues: no new samples, the same first record.
	again := startCommand(t, "demo", "--addr", "127.0.0.1:0", "--dir", dir, "--interval", "50ms", "--log-level", "warn")
	again.waitOutput(regexp.MustCompile(`Ctrl-C stops the demo`))
	out = again.stdout.String()
	contains(t, "second demo", out, "continuing with the data in "+dir, "/v1/records/work_order/"+sample)
	if strings.Contains(out, "made 5") {
		t.Errorf("the second run made samples again:\n%s", out)
	}
	if err := again.stop(); err != nil {
		t.Fatalf("second demo stopped with %v", err)
	}
	if n := strings.Count(mustCLI(t, "list", "--dir", device), "WO-10"); n != 5 {
		t.Errorf("after two runs the device lists %d work orders, want 5", n)
	}
}
