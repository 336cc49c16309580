package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/tenant"
)

const loginUsage = `Usage: fieldsync login --server URL --org ORG --user USER [--password-file FILE] [--session FILE] [--tls-pin SHA256]

Log in to the server as a person (a dispatcher or an admin) and keep the
session token for "fieldsync office": it is written to the session file
(default: fieldsync/session.json in the user's configuration directory;
env FIELDSYNC_SESSION), readable by this user only. A session lasts 12
hours. The password is asked on the terminal without echo, or read from
the first line of --password-file, or from one line of standard input.

--tls-pin names the SHA-256 fingerprint of a self-signed server
certificate (printed by fieldsync server --tls-self-signed): only that
certificate is accepted. The pin is kept with the session.
`

// session is what fieldsync login keeps for fieldsync office.
type session struct {
	Server  string    `json:"server"`
	Org     string    `json:"org"`
	User    string    `json:"user"`
	Role    string    `json:"role"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	TLSPin  string    `json:"tls_pin,omitempty"`
}

// defaultSessionPath is where fieldsync login keeps the session.
func defaultSessionPath() string {
	if p := os.Getenv("FIELDSYNC_SESSION"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ".fieldsync-session.json"
	}
	return filepath.Join(dir, "fieldsync", "session.json")
}

// runLogin runs `fieldsync login`.
func runLogin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("login", loginUsage)
	server := cmd.String("server", envOr("FIELDSYNC_SERVER", ""), serverURLUsage)
	org := cmd.String("org", envOr("FIELDSYNC_ORG", ""), "the organisation `ORG` (env FIELDSYNC_ORG)")
	user := cmd.String("user", "", "the user `NAME`")
	pwFile := cmd.String("password-file", "", "read the password from the first line of `FILE`")
	path := cmd.String("session", defaultSessionPath(), "keep the session in `FILE`")
	pin := cmd.String("tls-pin", envOr("FIELDSYNC_TLS_PIN", ""), "accept only the server certificate with this SHA-256 `FINGERPRINT` (env FIELDSYNC_TLS_PIN)")
	timeout := cmd.Duration("timeout", 30*time.Second, "give up after `DURATION`")
	pos, err := cmd.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := cmd.noArgs(pos); err != nil {
		return err
	}
	if *org == "" || *user == "" {
		return cmd.usageError("name the organisation and the user with --org and --user")
	}
	oc, err := newOfficeHTTP(cmd, *server, "", *pin, *timeout)
	if err != nil {
		return err
	}
	password, err := readSecret(*pwFile, "password", false, stderr)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	var resp protocol.LoginResponse
	if err := oc.do(ctx, http.MethodPost, protocol.PathLogin, &protocol.LoginRequest{Org: *org, User: *user, Password: password}, &resp); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	s := session{Server: oc.base, Org: resp.Org, User: resp.User, Role: resp.Role, Token: resp.Token, Expires: resp.Expires, TLSPin: *pin}
	if err := saveSession(*path, &s); err != nil {
		return fmt.Errorf("login: keep the session: %w", err)
	}
	fmt.Fprintf(stdout, "logged in to %s as %s (%s, organisation %s) until %s\nsession kept in %s\n",
		oc.base, resp.User, resp.Role, resp.Org, resp.Expires.Local().Format(time.DateTime), *path)
	return nil
}

// saveSession writes s to path, readable by this user only.
func saveSession(path string, s *session) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// loadSession reads the session kept by fieldsync login; ok is false
// when there is none.
func loadSession(path string) (session, bool, error) {
	var s session
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, false, fmt.Errorf("session file %s: %w", path, err)
	}
	return s, true, nil
}

// newOfficeHTTP makes the office's HTTP client: the bearer token on every
// request, and with pin, only the server certificate of that fingerprint.
func newOfficeHTTP(c *command, server, token, pin string, timeout time.Duration) (*officeClient, error) {
	if server == "" {
		return nil, c.usageError("name the server with --server URL or FIELDSYNC_SERVER")
	}
	u := strings.TrimRight(server, "/")
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return nil, c.usageError(fmt.Sprintf("server URL %q: want http://host:port or https://…", server))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if pin != "" {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: tenant.PinnedVerifier(pin), MinVersion: tls.VersionTLS12}
	}
	return &officeClient{base: u, token: token, http: &http.Client{Timeout: timeout, Transport: tr}}, nil
}
