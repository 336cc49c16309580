package sqlite_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/auth/sqlite"
	"github.com/fieldsync/fieldsync/protocol"
)

func TestOperatorToken(t *testing.T) {
	f := newFixture(t)
	tok, op, err := f.s.CreateOperator(f.ctx, "ops")
	f.must(err)
	if !strings.HasPrefix(tok, auth.OperatorTokenPrefix) || op.Name != "ops" {
		t.Fatalf("token %q, operator %+v", tok[:4], op)
	}
	if kind, err := auth.ParseToken(tok); err != nil || kind != auth.TokenOperator {
		t.Fatalf("ParseToken: %s %v", kind, err)
	}
	p, err := f.s.Authenticate(f.ctx, tok)
	f.must(err)
	if p != (auth.Principal{User: "ops", TokenKind: auth.TokenOperator}) {
		t.Fatalf("principal %+v: want the operator of no organisation", p)
	}
	_, _, err = f.s.CreateOperator(f.ctx, "ops")
	wantCode(t, err, fieldsync.EAlreadyExists)
	_, _, err = f.s.CreateOperator(f.ctx, "Bad Name")
	wantCode(t, err, fieldsync.EInvalidRequest)

	// Only the hash is kept.
	f.must(f.s.Close())
	files, _ := filepath.Glob(filepath.Join(f.dir, "identity.db*"))
	for _, name := range files {
		data, err := os.ReadFile(name)
		f.must(err)
		if bytes.Contains(data, []byte(tok)) || bytes.Contains(data, mustDecode(t, tok[4:])) {
			t.Fatalf("the operator token is in clear in %s", filepath.Base(name))
		}
	}
	f.s = f.open()

	ops, err := f.s.ListOperators(f.ctx)
	f.must(err)
	if len(ops) != 1 || ops[0].Name != "ops" || ops[0].LastUsed.IsZero() || !ops[0].Revoked.IsZero() {
		t.Fatalf("operators %+v", ops)
	}
	f.must(f.s.RevokeOperator(f.ctx, "ops"))
	_, err = f.s.Authenticate(f.ctx, tok)
	wantCode(t, err, fieldsync.ETokenRevoked)
	wantCode(t, f.s.RevokeOperator(f.ctx, "nobody"), fieldsync.ENotFound)
	_, err = f.s.Authenticate(f.ctx, auth.NewToken(auth.TokenOperator))
	wantCode(t, err, fieldsync.ETokenInvalid)
}

func TestTestOrgLifecycle(t *testing.T) {
	f := newFixture(t)
	f.org()
	to, err := f.s.CreateTestOrg(f.ctx, "", time.Hour, "ops")
	f.must(err)
	if !protocol.ValidTestOrgName(to.Org) || !to.Expires.Equal(f.clock.Now().Add(time.Hour)) {
		t.Fatalf("test organisation %q until %s", to.Org, to.Expires)
	}
	orgs, err := f.s.ListOrgs(f.ctx)
	f.must(err)
	i := slices.IndexFunc(orgs, func(o auth.Org) bool { return o.Name == to.Org })
	if i < 0 || !orgs[i].Test() || orgs[slices.IndexFunc(orgs, func(o auth.Org) bool { return o.Name == "acme" })].Test() {
		t.Fatalf("organisations %+v: want %s marked test, acme not", orgs, to.Org)
	}
	office, err := f.s.Authenticate(f.ctx, to.OfficeToken)
	f.must(err)
	if office.Org != to.Org || office.Role != auth.RoleDispatcher || office.User != sqlite.TestOfficeUser {
		t.Fatalf("office principal %+v", office)
	}
	dev, err := f.s.Enroll(f.ctx, to.Code, "selftest", "")
	f.must(err)
	if dev.Org != to.Org || dev.User != sqlite.TestWorker || dev.Role != auth.RoleFieldWorker {
		t.Fatalf("device principal %+v", dev.Principal)
	}

	// A name given must be a test one, and free.
	_, err = f.s.CreateTestOrg(f.ctx, "acme", time.Hour, "ops")
	wantCode(t, err, fieldsync.EInvalidRequest)
	_, err = f.s.CreateTestOrg(f.ctx, to.Org, time.Hour, "ops")
	wantCode(t, err, fieldsync.EAlreadyExists)
	_, err = f.s.CreateTestOrg(f.ctx, "", 5*time.Hour, "ops")
	wantCode(t, err, fieldsync.EInvalidRequest)

	// A real organisation is neither expired nor deleted this way.
	wantCode(t, f.s.ExpireTestOrg(f.ctx, "acme"), fieldsync.EForbidden)
	wantCode(t, f.s.DeleteTestOrg(f.ctx, "acme"), fieldsync.EForbidden)
	wantCode(t, f.s.DeleteTestOrg(f.ctx, "selftest-none"), fieldsync.ENotFound)
	if users, err := f.s.ListUsers(f.ctx, "acme"); err != nil || len(users) != 3 {
		t.Fatalf("acme's users after refused deletes: %v %v", users, err)
	}

	// Expiry: its tokens stop at once, and it is listed for removal.
	if names, err := f.s.ExpiredTestOrgs(f.ctx, 10); err != nil || len(names) != 0 {
		t.Fatalf("expired before its time: %v %v", names, err)
	}
	f.clock.Advance(time.Hour)
	_, err = f.s.Authenticate(f.ctx, dev.Token)
	wantCode(t, err, fieldsync.ETokenExpired)
	_, err = f.s.Authenticate(f.ctx, to.OfficeToken)
	wantCode(t, err, fieldsync.ETokenExpired)
	if names, err := f.s.ExpiredTestOrgs(f.ctx, 10); err != nil || !slices.Equal(names, []string{to.Org}) {
		t.Fatalf("expired: %v %v, want [%s]", names, err, to.Org)
	}

	f.must(f.s.DeleteTestOrg(f.ctx, to.Org))
	if _, err := f.s.ListUsers(f.ctx, to.Org); fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		t.Fatalf("users of the deleted organisation: %v", err)
	}
	_, err = f.s.Authenticate(f.ctx, dev.Token)
	wantCode(t, err, fieldsync.ETokenInvalid)
	if names, _ := f.s.ExpiredTestOrgs(f.ctx, 10); len(names) != 0 {
		t.Fatalf("still listed: %v", names)
	}
}

// TestExpireTestOrgNow: ending a test organisation before its time stops
// its tokens and codes at once.
func TestExpireTestOrgNow(t *testing.T) {
	f := newFixture(t)
	to, err := f.s.CreateTestOrg(f.ctx, "selftest-now", time.Hour, "ops")
	f.must(err)
	f.must(f.s.ExpireTestOrg(f.ctx, to.Org))
	if _, err := f.s.Authenticate(f.ctx, to.OfficeToken); fieldsync.ErrorCode(err) != fieldsync.ETokenRevoked && fieldsync.ErrorCode(err) != fieldsync.ETokenExpired {
		t.Fatalf("the office token after expiry: %v", err)
	}
	_, err = f.s.Enroll(f.ctx, to.Code, "late", "")
	wantCode(t, err, fieldsync.EEnrolmentInvalid)
}

func TestTestOrgsBounded(t *testing.T) {
	f := newFixture(t)
	for range sqlite.MaxTestOrgs {
		_, err := f.s.CreateTestOrg(f.ctx, "", time.Minute, "ops")
		f.must(err)
	}
	_, err := f.s.CreateTestOrg(f.ctx, "", time.Minute, "ops")
	wantCode(t, err, fieldsync.ERateLimited)
}
