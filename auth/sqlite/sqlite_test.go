package sqlite_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/auth/sqlite"
)

// cheap are Argon2 parameters small enough for tests.
var cheap = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// clock is a test clock moved by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	path  string
	clock *clock
	s     *sqlite.Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	f := &fixture{t: t, ctx: ctx, dir: dir, path: filepath.Join(dir, "identity.db"),
		clock: &clock{now: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}}
	f.s = f.open()
	return f
}

func (f *fixture) open() *sqlite.Store {
	f.t.Helper()
	s, err := sqlite.Open(f.ctx, f.path, sqlite.Config{Now: f.clock.Now, PasswordParams: cheap, CodeParams: cheap})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

func (f *fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// org makes organisation acme with worker ana, worker ben and
// dispatcher dora (password "dora's password").
func (f *fixture) org() {
	f.t.Helper()
	_, err := f.s.CreateOrg(f.ctx, "acme")
	f.must(err)
	for _, u := range []struct {
		name string
		role auth.Role
		pw   string
	}{{"ana", auth.RoleFieldWorker, ""}, {"ben", auth.RoleFieldWorker, ""}, {"dora", auth.RoleDispatcher, "dora's password"}} {
		_, err := f.s.CreateUser(f.ctx, "acme", u.name, u.role, u.pw)
		f.must(err)
	}
}

func (f *fixture) code(user string) auth.Enrolment {
	f.t.Helper()
	e, err := f.s.IssueEnrolment(f.ctx, "acme", user, "dora")
	f.must(err)
	return e
}

func (f *fixture) enroll(user, deviceID string) auth.Issued {
	f.t.Helper()
	iss, err := f.s.Enroll(f.ctx, f.code(user).Code, user+"'s tablet", deviceID)
	f.must(err)
	return iss
}

func wantCode(t *testing.T, err error, code fieldsync.Code) {
	t.Helper()
	var fe *fieldsync.Error
	if !errors.As(err, &fe) || fe.Code != code || fe.Message == "" {
		t.Fatalf("error %v: want code %s with a message", err, code)
	}
}

func TestEnrollAndAuthenticate(t *testing.T) {
	f := newFixture(t)
	f.org()
	iss := f.enroll("ana", "")
	if iss.Org != "acme" || iss.User != "ana" || iss.Role != auth.RoleFieldWorker || iss.TokenKind != auth.TokenDevice || iss.DeviceID == "" {
		t.Fatalf("issued %+v", iss)
	}
	p, err := f.s.Authenticate(f.ctx, iss.Token)
	f.must(err)
	if p != iss.Principal {
		t.Fatalf("authenticated as %+v, issued for %+v", p, iss.Principal)
	}
	forged := iss.Token[:4] + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	_, err = f.s.Authenticate(f.ctx, forged)
	wantCode(t, err, fieldsync.ETokenInvalid)
	_, err = f.s.Authenticate(f.ctx, "fsu_"+iss.Token[4:])
	wantCode(t, err, fieldsync.ETokenInvalid)
	_, err = f.s.Authenticate(f.ctx, "nonsense")
	wantCode(t, err, fieldsync.ETokenInvalid)
}

// TestSecretsNeverStoredInClear issues every kind of secret, then looks
// for each, in every encoding it travels in, in every file of the
// database (the WAL included).
func TestSecretsNeverStoredInClear(t *testing.T) {
	f := newFixture(t)
	f.org()
	enr := f.code("ana")
	dev, err := f.s.Enroll(f.ctx, enr.Code, "tablet", "")
	f.must(err)
	sess, err := f.s.Login(f.ctx, "acme", "dora", "dora's password")
	f.must(err)
	canon, _ := auth.NormalizeEnrolmentCode(enr.Code)
	secrets := map[string][]byte{
		"device token":        []byte(dev.Token),
		"session token":       []byte(sess.Token),
		"enrolment code":      []byte(enr.Code),
		"canonical code":      []byte(canon),
		"password":            []byte("dora's password"),
		"device token bytes":  mustDecode(t, dev.Token[4:]),
		"session token bytes": mustDecode(t, sess.Token[4:]),
	}
	check := func() {
		files, _ := filepath.Glob(filepath.Join(f.dir, "identity.db*"))
		if len(files) == 0 {
			t.Fatal("no database files")
		}
		for _, name := range files {
			data, err := os.ReadFile(name)
			f.must(err)
			for what, s := range secrets {
				if bytes.Contains(data, s) {
					t.Errorf("%s found in clear in %s", what, filepath.Base(name))
				}
			}
		}
	}
	check() // WAL still holding the writes
	f.must(f.s.Close())
	check() // after the checkpoint at close
	f.s = f.open()
	if _, err := f.s.Authenticate(f.ctx, dev.Token); err != nil {
		t.Fatalf("the device token does not work after reopening: %v", err)
	}
}

func mustDecode(t *testing.T, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnrolmentCodeSingleUse(t *testing.T) {
	f := newFixture(t)
	f.org()
	e := f.code("ana")
	if _, err := f.s.Enroll(f.ctx, e.Code, "tablet", ""); err != nil {
		t.Fatal(err)
	}
	_, err := f.s.Enroll(f.ctx, e.Code, "second tablet", "")
	wantCode(t, err, fieldsync.EEnrolmentInvalid)
	_, err = f.s.Enroll(f.ctx, "ABCDE-FGHJK", "tablet", "")
	wantCode(t, err, fieldsync.EEnrolmentInvalid)
	_, err = f.s.Enroll(f.ctx, "not a code at all", "tablet", "")
	wantCode(t, err, fieldsync.EEnrolmentInvalid)
}

// TestEnrolmentCodeAsTyped: case, spaces and look-alike letters are
// forgiven.
func TestEnrolmentCodeAsTyped(t *testing.T) {
	f := newFixture(t)
	f.org()
	e := f.code("ana")
	typed := []byte(e.Code)
	for i, c := range typed {
		switch c {
		case '0':
			typed[i] = 'o'
		case '1':
			typed[i] = 'l'
		default:
			typed[i] = bytes.ToLower([]byte{c})[0]
		}
	}
	if _, err := f.s.Enroll(f.ctx, " "+string(typed)+" ", "tablet", ""); err != nil {
		t.Fatalf("code %q typed as %q: %v", e.Code, typed, err)
	}
}

// TestConcurrentRedeem: one code redeemed at once by several devices
// enrols exactly one.
func TestConcurrentRedeem(t *testing.T) {
	f := newFixture(t)
	f.org()
	e := f.code("ana")
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.s.Enroll(f.ctx, e.Code, "tablet", "")
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch fieldsync.ErrorCode(err) {
		case "":
			ok++
		case fieldsync.EEnrolmentInvalid:
		default:
			t.Errorf("redeem: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d devices enrolled with one code", ok)
	}
	devs, err := f.s.ListDevices(f.ctx, "acme")
	f.must(err)
	if len(devs) != 1 {
		t.Fatalf("%d devices listed", len(devs))
	}
}

func TestEnrolmentCodeExpires(t *testing.T) {
	f := newFixture(t)
	f.org()
	e := f.code("ana")
	if want := f.clock.Now().Add(24 * time.Hour); !e.Expires.Equal(want) {
		t.Fatalf("code expires %v, want %v", e.Expires, want)
	}
	f.clock.Advance(24*time.Hour - time.Millisecond)
	early := f.code("ana")
	f.clock.Advance(time.Millisecond)
	_, err := f.s.Enroll(f.ctx, e.Code, "tablet", "")
	wantCode(t, err, fieldsync.EEnrolmentExpired)
	if _, err := f.s.Enroll(f.ctx, early.Code, "tablet", ""); err != nil {
		t.Fatalf("a code issued later still works: %v", err)
	}
}

// TestRevocationImmediate: a device revoked through one handle on the
// database (fieldsync admin) is refused at the next request by another
// (the running server), with the code that tells the worker what to do.
func TestRevocationImmediate(t *testing.T) {
	f := newFixture(t)
	f.org()
	server := f.open()
	iss := f.enroll("ana", "")
	other := f.enroll("ana", "")
	if _, err := server.Authenticate(f.ctx, iss.Token); err != nil {
		t.Fatal(err)
	}
	f.must(f.s.RevokeDevice(f.ctx, "acme", iss.DeviceID))
	_, err := server.Authenticate(f.ctx, iss.Token)
	wantCode(t, err, fieldsync.ETokenRevoked)
	if _, err := server.Authenticate(f.ctx, other.Token); err != nil {
		t.Fatalf("the user's other device was revoked too: %v", err)
	}
	f.must(f.s.RevokeDevice(f.ctx, "acme", iss.DeviceID)) // again: no change, no error
	wantCode(t, f.s.RevokeDevice(f.ctx, "acme", "no-such-device"), fieldsync.ENotFound)
	wantCode(t, f.s.RevokeDevice(f.ctx, "globex", iss.DeviceID), fieldsync.ENotFound)
}

// TestReEnrolmentKeepsDeviceID: a revoked device enrolled again with a
// new code under its own id keeps that id; its old token stays dead.
func TestReEnrolmentKeepsDeviceID(t *testing.T) {
	f := newFixture(t)
	f.org()
	first := f.enroll("ana", "0190c0de-0000-7000-8000-000000000001")
	if first.DeviceID != "0190c0de-0000-7000-8000-000000000001" {
		t.Fatalf("device id %q: want the one the device sent", first.DeviceID)
	}
	f.must(f.s.RevokeDevice(f.ctx, "acme", first.DeviceID))
	again := f.enroll("ana", first.DeviceID)
	if again.DeviceID != first.DeviceID {
		t.Fatalf("re-enrolled as %q, was %q", again.DeviceID, first.DeviceID)
	}
	p, err := f.s.Authenticate(f.ctx, again.Token)
	f.must(err)
	if p.DeviceID != first.DeviceID {
		t.Fatalf("new token names device %q", p.DeviceID)
	}
	_, err = f.s.Authenticate(f.ctx, first.Token)
	wantCode(t, err, fieldsync.ETokenRevoked)
	// Enrolling again without a revocation (a lost token) replaces the token.
	third := f.enroll("ana", first.DeviceID)
	_, err = f.s.Authenticate(f.ctx, again.Token)
	wantCode(t, err, fieldsync.ETokenRevoked)
	if _, err := f.s.Authenticate(f.ctx, third.Token); err != nil {
		t.Fatal(err)
	}
	devs, err := f.s.ListDevices(f.ctx, "acme")
	f.must(err)
	if len(devs) != 1 || !devs[0].Revoked.IsZero() {
		t.Fatalf("devices after re-enrolment: %+v", devs)
	}
}

// TestDeviceOfAnotherUser: a device id enrolled for ana cannot be taken
// by ben, and the refused code stays usable.
func TestDeviceOfAnotherUser(t *testing.T) {
	f := newFixture(t)
	f.org()
	ana := f.enroll("ana", "shared-tablet")
	e := f.code("ben")
	_, err := f.s.Enroll(f.ctx, e.Code, "tablet", ana.DeviceID)
	wantCode(t, err, fieldsync.EForbidden)
	if _, err := f.s.Authenticate(f.ctx, ana.Token); err != nil {
		t.Fatalf("ana's token stopped working: %v", err)
	}
	if _, err := f.s.Enroll(f.ctx, e.Code, "tablet", ""); err != nil {
		t.Fatalf("the refused code was used up: %v", err)
	}
	_, err = f.s.Enroll(f.ctx, f.code("ben").Code, "tablet", "office")
	wantCode(t, err, fieldsync.EInvalidRequest)
	_, err = f.s.Enroll(f.ctx, f.code("ben").Code, "\x00", "")
	wantCode(t, err, fieldsync.EInvalidRequest)
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	f.org()
	iss, err := f.s.Login(f.ctx, "acme", "dora", "dora's password")
	f.must(err)
	if iss.TokenKind != auth.TokenUser || iss.DeviceID != "" || iss.Role != auth.RoleDispatcher {
		t.Fatalf("session %+v", iss)
	}
	if want := f.clock.Now().Add(12 * time.Hour); !iss.Expires.Equal(want) {
		t.Fatalf("expires %v, want %v", iss.Expires, want)
	}
	p, err := f.s.Authenticate(f.ctx, iss.Token)
	f.must(err)
	if p != iss.Principal {
		t.Fatalf("%+v != %+v", p, iss.Principal)
	}
	for _, c := range [][3]string{
		{"acme", "dora", "wrong password"},
		{"acme", "nobody", "dora's password"},
		{"globex", "dora", "dora's password"},
		{"acme", "ana", ""}, // no password set
		{"acme", "ana", "anything at all"},
	} {
		_, err := f.s.Login(f.ctx, c[0], c[1], c[2])
		wantCode(t, err, fieldsync.ELoginFailed)
	}
	f.clock.Advance(12 * time.Hour)
	_, err = f.s.Authenticate(f.ctx, iss.Token)
	wantCode(t, err, fieldsync.ETokenExpired)
}

func TestPasswordChangeEndsSessions(t *testing.T) {
	f := newFixture(t)
	f.org()
	dev := f.enroll("dora", "")
	sess, err := f.s.Login(f.ctx, "acme", "dora", "dora's password")
	f.must(err)
	f.must(f.s.SetPassword(f.ctx, "acme", "dora", "a new long password"))
	_, err = f.s.Authenticate(f.ctx, sess.Token)
	wantCode(t, err, fieldsync.ETokenRevoked)
	if _, err := f.s.Authenticate(f.ctx, dev.Token); err != nil {
		t.Fatalf("a password change revoked a device: %v", err)
	}
	_, err = f.s.Login(f.ctx, "acme", "dora", "dora's password")
	wantCode(t, err, fieldsync.ELoginFailed)
	if _, err := f.s.Login(f.ctx, "acme", "dora", "a new long password"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.s.SetPassword(f.ctx, "acme", "dora", "short"), fieldsync.EInvalidRequest)
}

// TestRevokeUser: sessions, devices and unused codes of the user stop at
// once; the user stays listed.
func TestRevokeUser(t *testing.T) {
	f := newFixture(t)
	f.org()
	dev := f.enroll("dora", "")
	sess, err := f.s.Login(f.ctx, "acme", "dora", "dora's password")
	f.must(err)
	unused := f.code("dora")
	ana := f.enroll("ana", "")
	f.must(f.s.RevokeUser(f.ctx, "acme", "dora"))
	for _, tok := range []string{dev.Token, sess.Token} {
		_, err := f.s.Authenticate(f.ctx, tok)
		wantCode(t, err, fieldsync.ETokenRevoked)
	}
	_, err = f.s.Enroll(f.ctx, unused.Code, "tablet", "")
	wantCode(t, err, fieldsync.EEnrolmentInvalid)
	_, err = f.s.Login(f.ctx, "acme", "dora", "dora's password")
	wantCode(t, err, fieldsync.ELoginFailed)
	_, err = f.s.IssueEnrolment(f.ctx, "acme", "dora", "admin")
	wantCode(t, err, fieldsync.EForbidden)
	if _, err := f.s.Authenticate(f.ctx, ana.Token); err != nil {
		t.Fatalf("another user's device was revoked: %v", err)
	}
	users, err := f.s.ListUsers(f.ctx, "acme")
	f.must(err)
	var dora auth.User
	for _, u := range users {
		if u.Name == "dora" {
			dora = u
		}
	}
	if dora.Revoked.IsZero() || !dora.HasPassword || dora.Role != auth.RoleDispatcher {
		t.Fatalf("dora after revocation: %+v", dora)
	}
	devs, err := f.s.ListDevices(f.ctx, "acme")
	f.must(err)
	for _, d := range devs {
		if d.User == "dora" && d.Revoked.IsZero() {
			t.Fatalf("dora's device %s not revoked", d.ID)
		}
	}
	wantCode(t, f.s.RevokeUser(f.ctx, "acme", "nobody"), fieldsync.ENotFound)
}

func TestLastSeen(t *testing.T) {
	f := newFixture(t)
	f.org()
	iss := f.enroll("ana", "")
	seen := func() time.Time {
		devs, err := f.s.ListDevices(f.ctx, "acme")
		f.must(err)
		return devs[0].LastSeen
	}
	if !seen().IsZero() {
		t.Fatal("a device never seen has a last-seen time")
	}
	t0 := f.clock.Now()
	_, err := f.s.Authenticate(f.ctx, iss.Token)
	f.must(err)
	if !seen().Equal(t0) {
		t.Fatalf("last seen %v, want %v", seen(), t0)
	}
	f.clock.Advance(30 * time.Second)
	_, err = f.s.Authenticate(f.ctx, iss.Token)
	f.must(err)
	if !seen().Equal(t0) {
		t.Fatal("last seen written again within a minute")
	}
	f.clock.Advance(30 * time.Second)
	_, err = f.s.Authenticate(f.ctx, iss.Token)
	f.must(err)
	if !seen().Equal(t0.Add(time.Minute)) {
		t.Fatalf("last seen %v after a minute", seen())
	}
}

func TestCreateChecks(t *testing.T) {
	f := newFixture(t)
	f.org()
	_, err := f.s.CreateOrg(f.ctx, "acme")
	wantCode(t, err, fieldsync.EAlreadyExists)
	for _, bad := range []string{"", "Acme", "1acme", "acme/../x", "ac me", "acme_co"} {
		_, err := f.s.CreateOrg(f.ctx, bad)
		wantCode(t, err, fieldsync.EInvalidRequest)
	}
	_, err = f.s.CreateUser(f.ctx, "acme", "ana", auth.RoleAdmin, "")
	wantCode(t, err, fieldsync.EAlreadyExists)
	_, err = f.s.CreateUser(f.ctx, "acme", "Ana", auth.RoleAdmin, "")
	wantCode(t, err, fieldsync.EInvalidRequest)
	_, err = f.s.CreateUser(f.ctx, "acme", "carl", "root", "")
	wantCode(t, err, fieldsync.EInvalidRequest)
	_, err = f.s.CreateUser(f.ctx, "acme", "carl", auth.RoleAdmin, "short")
	wantCode(t, err, fieldsync.EInvalidRequest)
	_, err = f.s.CreateUser(f.ctx, "globex", "carl", auth.RoleAdmin, "")
	wantCode(t, err, fieldsync.ENotFound)
	_, err = f.s.IssueEnrolment(f.ctx, "acme", "nobody", "dora")
	wantCode(t, err, fieldsync.ENotFound)
	orgs, err := f.s.ListOrgs(f.ctx)
	f.must(err)
	if len(orgs) != 1 || orgs[0].Name != "acme" {
		t.Fatalf("orgs %+v", orgs)
	}
}

// TestOrganisationsApart: the same user and device names in two
// organisations are two identities.
func TestOrganisationsApart(t *testing.T) {
	f := newFixture(t)
	f.org()
	_, err := f.s.CreateOrg(f.ctx, "globex")
	f.must(err)
	_, err = f.s.CreateUser(f.ctx, "globex", "ana", auth.RoleFieldWorker, "")
	f.must(err)
	a := f.enroll("ana", "tablet-1")
	e, err := f.s.IssueEnrolment(f.ctx, "globex", "ana", "gil")
	f.must(err)
	g, err := f.s.Enroll(f.ctx, e.Code, "tablet", "tablet-1")
	f.must(err)
	if g.Org != "globex" || a.Org != "acme" {
		t.Fatalf("orgs %q %q", a.Org, g.Org)
	}
	f.must(f.s.RevokeDevice(f.ctx, "globex", "tablet-1"))
	if _, err := f.s.Authenticate(f.ctx, a.Token); err != nil {
		t.Fatalf("revoking globex's tablet-1 revoked acme's: %v", err)
	}
}

// TestDefaultParams opens with the defaults and logs in once: the
// documented cost works end to end.
func TestDefaultParams(t *testing.T) {
	if testing.Short() {
		t.Skip("Argon2 at 64 MiB")
	}
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "identity.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.CreateOrg(ctx, "acme")
	if err == nil {
		_, err = s.CreateUser(ctx, "acme", "adam", auth.RoleAdmin, "a long enough password")
	}
	if err == nil {
		_, err = s.Login(ctx, "acme", "adam", "a long enough password")
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	_, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "identity.db"),
		sqlite.Config{PasswordParams: auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32}})
	if err == nil {
		t.Fatal("password parameters without a salt accepted")
	}
}
