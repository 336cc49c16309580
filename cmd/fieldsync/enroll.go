package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

const enrollUsage = `Usage: fieldsync enroll [--dir DIR] --server URL --code CODE [--name NAME] [--tls-pin SHA256]

Enrol this device with the server, with a one-time code from the office
("fieldsync admin enrol-code --user NAME" prints it; valid 24 hours). The
device keeps its own id, so what it already holds is delivered under it.
The device token the server answers with is kept in the device store and
sent with every sync from then on; it is never printed. The server URL
and the pinned fingerprint are kept too, so later "fieldsync sync" and
"fieldsync agent" on this directory need no --server.

A device the office revoked, or one whose token no longer works, enrols
again the same way with a new code: its queue is kept, and delivered at
the next sync.

--tls-pin (or --pin-sha256) is the SHA-256 fingerprint of the server's
certificate, as "fieldsync server --tls-self-signed" prints it: only that
certificate is accepted, now and at every later sync. Without it, an
https server's certificate must be signed by an authority this machine
trusts.

Example:
  fieldsync enroll --dir ./tablet --server https://10.0.0.5:8443 --code 7K3QD-M9XWP --tls-pin 3a:5f:…
`

// runEnroll runs `fieldsync enroll`.
func runEnroll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("enroll", enrollUsage)
	dir := dirFlag(cmd)
	serverURL := cmd.String("server", envOr("FIELDSYNC_SERVER", ""), serverURLUsage)
	code := cmd.String("code", "", "the one-time enrolment `CODE` from the office")
	host, _ := os.Hostname()
	name := cmd.String("name", host, "the device's `NAME` as the office sees it")
	tlsPin := tlsPinFlag(cmd)
	timeout := cmd.Duration("timeout", 60*time.Second, "give up after `DURATION`")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	if *code == "" {
		return cmd.usageError("name the enrolment code with --code (the office prints it with fieldsync admin enrol-code)")
	}
	if *name == "" {
		return cmd.usageError("name the device with --name")
	}
	url, err := checkServerURL(cmd, *serverURL)
	if err != nil {
		return err
	}
	if url == "" {
		return cmd.usageError("name the server with --server URL or FIELDSYNC_SERVER")
	}
	eng, err := openDevice(ctx, *dir, true, client.Config{ServerURL: url, RequestTimeout: *timeout,
		TLS: client.TLSConfig{PinSHA256: tlsPin.value()}})
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	defer eng.Close()
	if err := eng.Enroll(ctx, *code, *name); err != nil {
		return enrollError(err, url)
	}
	st, err := eng.Status(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	en := st.Enrolment
	fmt.Fprintf(stdout, "enrolled device %s (%q) for %s in %s at %s\n", eng.DeviceID(), en.DeviceName, en.User, en.Org, en.Server)
	if en.Pin != "" {
		fmt.Fprintln(stdout, "the server's certificate is pinned")
	}
	fmt.Fprintln(stdout, "the device token is kept in the device store; it is not shown")
	if n := st.Pending(); n > 0 {
		fmt.Fprintf(stdout, "in queue: %s, delivered at the next sync (fieldsync sync --dir %s)\n", plural(n, "op", "ops"), shellQuote(*dir))
	}
	return nil
}

// enrollError says why an enrolment failed and what to do.
func enrollError(err error, url string) error {
	if errors.Is(err, context.Canceled) {
		return errors.New("enroll: stopped; nothing was stored")
	}
	msg := fieldsync.ErrorMessage(err)
	switch fieldsync.ErrorCode(err) {
	case fieldsync.EEnrolmentInvalid, fieldsync.EEnrolmentExpired:
		return fmt.Errorf("enroll: the server at %s refused the code: %s.\nAsk the office for a new code (fieldsync admin enrol-code --user NAME)", url, msg)
	case fieldsync.EForbidden:
		return fmt.Errorf("enroll: the server at %s refused: %s", url, msg)
	case fieldsync.EInternal:
		return fmt.Errorf("enroll: %v", err)
	}
	if fieldsync.ErrorCode(err).Retryable() {
		return fmt.Errorf("enroll: %s (server %s); nothing was stored, try again", msg, url)
	}
	return fmt.Errorf("enroll: %s (server %s)", msg, url)
}

// checkServerURL trims a --server value and checks its scheme; "" stays
// "" (the device's enrolled server, if any, is then used).
func checkServerURL(cmd *command, raw string) (string, error) {
	url := strings.TrimRight(raw, "/")
	if url == "" {
		return "", nil
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return "", cmd.usageError(fmt.Sprintf("server URL %q: want http://host:port or https://…", raw))
	}
	return url, nil
}

// pinValue is the --tls-pin flag, also spelled --pin-sha256.
type pinValue struct{ s string }

func (p *pinValue) String() string {
	if p == nil {
		return ""
	}
	return p.s
}

// Set implements flag.Value: the fingerprint is checked at once.
func (p *pinValue) Set(v string) error {
	if _, err := client.NormalizePin(v); err != nil {
		return err
	}
	p.s = v
	return nil
}

func (p *pinValue) value() string { return p.s }

// tlsPinFlag defines --tls-pin and its other name --pin-sha256.
func tlsPinFlag(cmd *command) *pinValue {
	p := &pinValue{}
	if v := os.Getenv("FIELDSYNC_TLS_PIN"); v != "" {
		p.s = v // checked when the device opens
	}
	cmd.Var(p, "tls-pin", "accept only the server certificate with this SHA-256 `FINGERPRINT` (env FIELDSYNC_TLS_PIN)")
	cmd.Var(p, "pin-sha256", "the same as --tls-pin")
	return p
}

// noServerError is the usage error of a sync command given no server for
// a device that is not enrolled with one.
func noServerError(cmd *command) error {
	return cmd.usageError("name the server with --server URL or FIELDSYNC_SERVER (an enrolled device keeps its server: fieldsync enroll)")
}

// serverOrEnrolled checks a --server value; when there is none, the
// device must exist, since only its enrolment can name the server (the
// engine reads it when the device opens).
func serverOrEnrolled(cmd *command, raw, dir string) (string, error) {
	url, err := checkServerURL(cmd, raw)
	if err != nil || url != "" {
		return url, err
	}
	if _, err := os.Stat(filepath.Join(dir, "device.db")); err != nil {
		return "", noServerError(cmd)
	}
	return "", nil
}

// authHint tells a person what to do when the server refuses the
// device's token: the queue is kept, a new enrolment delivers it.
func authHint(dir string, pending int) string {
	return fmt.Sprintf("%s safe on this device and queued; ask the office for a new code and run: fieldsync enroll --dir %s --code CODE",
		plural(pending, "op is", "ops are"), shellQuote(dir))
}
