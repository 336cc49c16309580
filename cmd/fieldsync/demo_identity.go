package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"

	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/tenant"
)

// The demo's organisation and people.
const (
	demoOrg        = "demo"
	demoAdmin      = "adam"
	demoDispatcher = "dora"
	demoWorker     = "ana"
)

// demoCredentials are where the demo's passwords and the dispatcher's
// session are.
type demoCredentials struct {
	passwordDir  string // one file per user with a password
	sessionFile  string // the session the printed login keeps
	operatorFile string // the operator token, for the printed selftest
}

// demoIdentities makes the demo's organisation and users the first time
// (random passwords, kept one per file in dir/passwords/, mode 0600).
func demoIdentities(ctx context.Context, front *tenant.Front, dir string) (demoCredentials, error) {
	ids := front.Identity()
	creds := demoCredentials{passwordDir: filepath.Join(dir, "passwords"), sessionFile: filepath.Join(dir, "office-session.json"),
		operatorFile: filepath.Join(dir, "operator-token")}
	if err := demoOperator(ctx, front, creds.operatorFile); err != nil {
		return creds, err
	}
	orgs, err := ids.ListOrgs(ctx)
	if err != nil {
		return creds, err
	}
	for _, o := range orgs {
		if o.Name == demoOrg {
			return creds, nil
		}
	}
	if _, err := ids.CreateOrg(ctx, demoOrg); err != nil {
		return creds, err
	}
	if err := os.MkdirAll(creds.passwordDir, 0o700); err != nil {
		return creds, err
	}
	for _, u := range []struct {
		name string
		role auth.Role
	}{{demoAdmin, auth.RoleAdmin}, {demoDispatcher, auth.RoleDispatcher}, {demoWorker, auth.RoleFieldWorker}} {
		pw := ""
		if u.role.Office() {
			pw = randomPassword()
			if err := os.WriteFile(filepath.Join(creds.passwordDir, u.name), []byte(pw+"\n"), 0o600); err != nil {
				return creds, err
			}
		}
		if _, err := ids.CreateUser(ctx, demoOrg, u.name, u.role, pw); err != nil {
			return creds, err
		}
	}
	return creds, nil
}

// demoOperator makes an operator credential for the printed selftest and
// keeps its token in file (mode 0600), unless the file is there already.
// The token is shown only once, so a demo directory that lost the file
// gets a new credential under another name.
func demoOperator(ctx context.Context, front *tenant.Front, file string) error {
	if _, err := os.Stat(file); err == nil {
		return nil
	}
	var b [3]byte
	rand.Read(b[:])
	token, _, err := front.Identity().CreateOperator(ctx, "demo-"+hex.EncodeToString(b[:]))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	return os.WriteFile(file, []byte(token+"\n"), 0o600)
}

func randomPassword() string {
	var b [15]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// demoEnrol enrols the demo's device as the field worker's with the
// engine's own enrolment (a code issued and redeemed at once), unless it
// is enrolled with this server already.
func demoEnrol(ctx context.Context, front *tenant.Front, eng *client.Engine, serverURL string) error {
	en, err := eng.Enrolment(ctx)
	if err != nil {
		return err
	}
	if !en.Enrolled.IsZero() && en.Server == serverURL {
		return nil
	}
	code, err := front.Identity().IssueEnrolment(ctx, demoOrg, demoWorker, demoDispatcher)
	if err != nil {
		return err
	}
	return eng.Enroll(ctx, code.Code, "demo device")
}
