package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
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
	passwordDir string // one file per user with a password
	sessionFile string // the session the printed login keeps
}

// demoIdentities makes the demo's organisation and users the first time
// (random passwords, kept one per file in dir/passwords/, mode 0600).
func demoIdentities(ctx context.Context, front *tenant.Front, dir string) (demoCredentials, error) {
	ids := front.Identity()
	creds := demoCredentials{passwordDir: filepath.Join(dir, "passwords"), sessionFile: filepath.Join(dir, "office-session.json")}
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
