package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/server"
	"github.com/fieldsync/fieldsync/tenant"
)

const demoUsage = `Usage: fieldsync demo [--addr 127.0.0.1:8080] [--dir ./fieldsync-demo]

Run the whole system on this machine: a sync server with its data in
DIR/data (organisation "demo" with an admin "adam", a dispatcher "dora"
and a field worker "ana"; the passwords are in DIR/passwords/), five
sample work orders assigned to ana (made the first time), and one field
agent, enrolled as ana's device, syncing the device directory DIR/device. Prints the
server's URL, the agent's status URL, and commands to try in another
terminal: change a status on the device, add a comment, make the office
set the same status (a conflict), settle it with a note, look at the
queue and the history, run the pre-launch selftest (with an operator
token kept in DIR/operator-token) and a fault drill. If the port of
--addr is taken, a free one is used instead. Ctrl-C stops everything
cleanly; run it again to continue with the same data.
`

// runDemo runs `fieldsync demo`.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("demo", demoUsage)
	addr := cmd.String("addr", "127.0.0.1:8080", "the server's `HOST:PORT`")
	dir := cmd.String("dir", "./fieldsync-demo", "keep the demo's data in `DIR`")
	interval := cmd.Duration("interval", 5*time.Second, "the agent pulls the office's changes at least every `DURATION`")
	level := cmd.String("log-level", "info", "log `LEVEL`: debug, info, warn or error")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	if *interval <= 0 {
		return cmd.usageError("--interval must be more than 0")
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return cmd.usageError(err.Error())
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	ln, err := listen(*addr)
	if err != nil {
		host, _, _ := net.SplitHostPort(*addr)
		if host == "" {
			host = "127.0.0.1"
		}
		fallback := net.JoinHostPort(host, "0")
		ln2, err2 := listen(fallback)
		if err2 != nil {
			return fmt.Errorf("demo: %w", err)
		}
		fmt.Fprintf(stdout, "%v\nusing a free port instead: %s\n\n", err, ln2.Addr())
		ln = ln2
	}
	dataDir := filepath.Join(*dir, "data")
	front, err := tenant.Open(ctx, tenant.Config{Dir: dataDir, Logger: log.With("part", "server")})
	if err != nil {
		ln.Close()
		return fmt.Errorf("demo: %w", err)
	}
	defer front.Close()
	creds, err := demoIdentities(ctx, front, *dir)
	if err != nil {
		ln.Close()
		return fmt.Errorf("demo: users: %w", err)
	}
	srv, st, err := front.Org(demoOrg)
	if err != nil {
		ln.Close()
		return fmt.Errorf("demo: %w", err)
	}
	sample, seeded, err := seedDemo(ctx, st, srv)
	if err != nil {
		ln.Close()
		return fmt.Errorf("demo: sample work orders: %w", err)
	}
	serverURL := listenURL(ln)

	statusLn, err := listenStatus("127.0.0.1:0")
	if err != nil {
		ln.Close()
		return fmt.Errorf("demo: %w", err)
	}
	deviceDir := filepath.Join(*dir, "device")
	eng, err := client.Open(ctx, client.Config{
		Dir: deviceDir, ServerURL: serverURL, Logger: log.With("part", "agent"), Interval: *interval,
	})
	if err != nil {
		ln.Close()
		statusLn.Close()
		return fmt.Errorf("demo: open the device: %w", err)
	}
	defer eng.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- serve(ctx, ln, front, log) }()
	if err := demoEnrol(ctx, front, eng, serverURL); err != nil {
		statusLn.Close()
		cancel()
		<-errc
		return fmt.Errorf("demo: enrol the device: %w", err)
	}
	go func() { errc <- runAgentLoops(ctx, eng, statusLn, log) }()

	printDemo(stdout, demoInfo{
		serverURL: serverURL, statusURL: listenURL(statusLn) + "/status", dir: *dir, deviceDir: deviceDir,
		dbPath: tenant.OrgPath(dataDir, demoOrg), sample: sample, seeded: seeded, deviceID: eng.DeviceID(), creds: creds,
	})

	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	if first != nil {
		return fmt.Errorf("demo: %w", first)
	}
	fmt.Fprintln(stdout, "demo stopped; everything is saved in", *dir)
	return nil
}

// demoRecord is the sample record the printed commands use.
type demoRecord struct {
	id, number string
}

// seedDemo makes the sample work orders through the office API when the
// store is new, and returns the one the printed commands use.
func seedDemo(ctx context.Context, st fieldsync.Store, srv *server.Server) (demoRecord, int, error) {
	recs, _, err := st.Changes(ctx, 0, 1000)
	if err != nil {
		return demoRecord{}, 0, err
	}
	if len(recs) > 0 {
		best := demoRecord{}
		bestN := int64(-1)
		for _, r := range recs {
			if r.Type != defaultType || r.Deleted {
				continue
			}
			n, _ := strconv.ParseInt(strings.TrimLeft(r.Number, "ABCDEFGHIJKLMNOPQRSTUVWXYZ-"), 10, 64)
			if bestN < 0 || n < bestN {
				best, bestN = demoRecord{id: r.ID, number: r.Number}, n
			}
		}
		if bestN < 0 {
			return demoRecord{}, 0, errors.New("the demo's database has no work orders left: remove its directory to start afresh")
		}
		return best, 0, nil
	}
	var first demoRecord
	for i, wo := range sampleWorkOrders() {
		// Every sample starts assigned to the demo's field worker.
		wo["status"] = "assigned"
		wo["assignee"] = demoWorker
		fields := map[string]json.RawMessage{}
		for k, v := range wo {
			fields[k], _ = json.Marshal(v)
		}
		res, id, err := srv.Create(ctx, defaultType, fields)
		if err != nil {
			return demoRecord{}, 0, err
		}
		if res.Code != "" {
			return demoRecord{}, 0, fmt.Errorf("%s: %s", res.Code, res.Message)
		}
		if i == 0 {
			first = demoRecord{id: id, number: res.Number}
		}
	}
	return first, len(sampleWorkOrders()), nil
}

func sampleWorkOrders() []map[string]string {
	return []map[string]string{
		{
			"title":       "Annual boiler service",
			"description": "Gas boiler in the basement plant room: service, flue check, pressure test.",
			"address":     "14 Rue des Tanneurs, 69002 Lyon",
			"contact":     "Claire Martin (building manager), +33 4 72 00 11 22",
		},
		{
			"title":       "Leaking valve on 3rd floor riser",
			"description": "Tenant reports water under the riser cupboard; isolate and replace the valve.",
			"address":     "Hillside Apartments, 221 Oak Street, Springfield",
			"contact":     "Dan Ortiz (caretaker), 555-0142",
		},
		{
			"title":       "Quarterly elevator inspection",
			"description": "Lift 2: doors, brakes, emergency phone; sign the logbook.",
			"address":     "Harbour Medical Centre, 5 Quay Road, Bristol BS1 4DJ",
			"contact":     "Facilities desk, 0117 496 0321",
		},
		{
			"title":       "No heating in classroom 2B",
			"description": "Radiators cold since Monday; check the zone valve and thermostat.",
			"address":     "Greenfield Primary School, 8 Mill Lane, Leeds LS6 2AB",
			"contact":     "Priya Shah (site manager), 0113 496 0777",
		},
		{
			"title":       "Install smart electricity meter",
			"description": "Replace the meter in unit 4; customer present from 9:00.",
			"address":     "Unit 4, Riverside Business Park, Cork T12 X2Y3",
			"contact":     "Seán Murphy, +353 21 496 0456",
		},
	}
}

type demoInfo struct {
	serverURL, statusURL string
	dir, deviceDir       string
	dbPath               string
	sample               demoRecord
	seeded               int
	deviceID             string
	creds                demoCredentials
}

func printDemo(w io.Writer, d demoInfo) {
	prog := progName()
	dev := shellQuote(d.deviceDir)
	srv := d.serverURL
	id := d.sample.id
	num := d.sample.number
	if num == "" {
		num = id
	}
	if d.seeded > 0 {
		fmt.Fprintf(w, "fieldsync demo: made %d sample work orders (%s)\n", d.seeded, d.dbPath)
	} else {
		fmt.Fprintf(w, "fieldsync demo: continuing with the data in %s\n", d.dir)
	}
	pw := shellQuote(d.creds.passwordDir)
	fmt.Fprintf(w, `
  server        %s
  field agent   %s   (device %s of %s, data in %s)
  organisation  %s (data in %s): %s (admin) and %s (dispatcher), passwords in %s; %s (field worker)

First, in another terminal, log in as the dispatcher for the office commands:

  export FIELDSYNC_SESSION=%s
  %s login --server %s --org %s --user %s --password-file %s

Then try (the device commands work with no network too):
`, srv, d.statusURL, shortID(d.deviceID), demoWorker, d.deviceDir,
		demoOrg, shellQuote(filepath.Dir(filepath.Dir(d.dbPath))), demoAdmin, demoDispatcher, pw, demoWorker,
		shellQuote(d.creds.sessionFile), prog, srv, demoOrg, demoDispatcher, shellQuote(filepath.Join(d.creds.passwordDir, demoDispatcher)))
	fmt.Fprintf(w, `
  # the field worker's device
  %[5]s list   --dir %[6]s
  %[5]s update --dir %[6]s --id %[7]s --set status="completed on site"
  %[5]s append --dir %[6]s --id %[7]s --field comments --value "Pressure ok, 1.4 bar"
  %[5]s status --dir %[6]s
  %[5]s sync   --dir %[6]s --server %[8]s

  # the office, still on version 1, sets the status too: status is settled by
  # a person, so nothing is overwritten and both values wait in a conflict
  %[5]s office edit --server %[8]s --id %[9]s --base 1 --set status=closed
  %[5]s office show --server %[8]s --id %[9]s
  %[5]s sync   --dir %[6]s --server %[8]s
  %[5]s status --dir %[6]s
  %[5]s show   --dir %[6]s --id %[7]s

  # settle it on the device (offline too: it waits in the queue like any change)
  %[5]s settle --dir %[6]s --id %[7]s --field status --value "waiting for parts" --note "completed, but parts required"
  %[5]s sync   --dir %[6]s --server %[8]s
  %[5]s office show --server %[8]s --id %[9]s

  # the queue, then one op's whole trail (an op id from ops)
  %[5]s ops    --dir %[6]s
  %[5]s op     --dir %[6]s OPID

  # the raw API with the dispatcher's session token, and the agent's status
  curl -s -H "Authorization: Bearer $(grep -o 'fsu_[A-Za-z0-9_-]*' %[10]s)" %[8]s/v1/records/work_order/%[9]s
  curl -s %[2]s

  # the pre-launch checklist against this server, in a test organisation
  # of its own, removed afterwards; then a fault drill, judged by its oracle
  %[5]s selftest --server %[8]s --operator-token "$(cat %[11]s)"
  %[5]s chaos --scenario basement --seed 1

Ctrl-C stops the demo.
`, srv, d.statusURL, shortID(d.deviceID), d.deviceDir, prog, dev, num, srv, id, shellQuote(d.creds.sessionFile), shellQuote(d.creds.operatorFile))
}

// progName is how the printed commands call this program: the go run
// line when it runs from a build cache, else the name it was called by.
func progName() string {
	exe := os.Args[0]
	if strings.Contains(exe, "go-build") || strings.HasSuffix(exe, ".test") {
		return "go run ./cmd/fieldsync"
	}
	return shellQuote(exe)
}
