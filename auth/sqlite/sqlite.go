// Package sqlite is the identity store on an embedded SQLite database
// (DATA/identity.db): organisations, users and their password hashes,
// enrolled devices, token hashes and enrolment-code hashes. It is one
// database for the whole installation; each organisation's sync data
// lives in a store of its own.
//
// Every read of a token goes to the database, so a revocation made by
// another process (fieldsync admin) is effective on the next request.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/internal/sqlitedb"
	"github.com/fieldsync/fieldsync/protocol"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Config tunes Open. The zero value is the documented default.
type Config struct {
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default: discard
	// PasswordParams hash new passwords (default auth.DefaultPasswordParams);
	// stored hashes carry their own and are upgraded at the next login.
	PasswordParams auth.Argon2Params
	// CodeParams hash enrolment codes (default auth.DefaultCodeParams).
	// Changing them invalidates codes issued before.
	CodeParams auth.Argon2Params
	// SessionTTL is how long a login session lasts (default 12 h).
	SessionTTL time.Duration
	// EnrolmentTTL is how long an enrolment code is valid (default 24 h).
	EnrolmentTTL time.Duration
	// HashConcurrency caps the Argon2 computations at once, and so their
	// memory (default 2: 128 MiB with the default password parameters).
	HashConcurrency int
}

// Validate names the first field that cannot work.
func (c *Config) Validate() error {
	if err := c.PasswordParams.Validate(); err != nil {
		return fmt.Errorf("PasswordParams: %w", err)
	}
	if c.PasswordParams.SaltLen < 8 || c.PasswordParams.SaltLen > 64 {
		return fmt.Errorf("PasswordParams: salt length %d: want 8 to 64", c.PasswordParams.SaltLen)
	}
	if err := c.CodeParams.Validate(); err != nil {
		return fmt.Errorf("CodeParams: %w", err)
	}
	if c.SessionTTL < time.Minute || c.EnrolmentTTL < time.Minute {
		return errors.New("SessionTTL and EnrolmentTTL: want a minute or more")
	}
	if c.HashConcurrency < 1 {
		return errors.New("HashConcurrency: want 1 or more")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.PasswordParams == (auth.Argon2Params{}) {
		c.PasswordParams = auth.DefaultPasswordParams
	}
	if c.CodeParams == (auth.Argon2Params{}) {
		c.CodeParams = auth.DefaultCodeParams
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.EnrolmentTTL == 0 {
		c.EnrolmentTTL = 24 * time.Hour
	}
	if c.HashConcurrency == 0 {
		c.HashConcurrency = 2
	}
	return c
}

// Store is the identity store. It is safe for concurrent use, and by
// several processes on the same file.
type Store struct {
	db   *sql.DB
	cfg  Config
	key  []byte        // the installation's key for enrolment-code hashes
	hash chan struct{} // Argon2 slots

	dummyOnce sync.Once
	dummy     string // a password hash to verify against when there is no user
}

var (
	_ auth.Authenticator = (*Store)(nil)
	_ auth.Enroller      = (*Store)(nil)
	_ auth.LoginService  = (*Store)(nil)
)

// seenEvery is how often a device's last-seen time is written.
const seenEvery = time.Minute

// officeDevice is the device id the sync server records office edits
// under: no device may enrol with it.
const officeDevice = "office"

// Open opens or creates the identity store at path.
func Open(ctx context.Context, path string, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("identity store: %w", err)
	}
	sub, _ := fs.Sub(migrations, "migrations")
	db, err := sqlitedb.Open(ctx, path, sub, sqlitedb.Options{})
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, cfg: cfg, hash: make(chan struct{}, cfg.HashConcurrency)}
	if err := s.loadKey(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) loadKey(ctx context.Context) error {
	key := make([]byte, 32)
	rand.Read(key)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('code_key', ?) ON CONFLICT DO NOTHING`, key); err != nil {
		return fmt.Errorf("identity store key: %w", err)
	}
	return s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'code_key'`).Scan(&s.key)
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// unavailable marks a database failure as retryable, keeping the cause in
// the chain for the log.
func unavailable(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var fe *fieldsync.Error
	if errors.As(err, &fe) {
		return err
	}
	return &storeError{err}
}

type storeError struct{ err error }

func (e *storeError) Error() string { return "identity store: " + e.err.Error() }
func (e *storeError) Unwrap() []error {
	return []error{e.err, fieldsync.Errorf(fieldsync.EUnavailable, "the identity database is busy or failing; try again")}
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMs(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

// withTx runs fn in an immediate transaction and commits it.
func (s *Store) withTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return unavailable(err)
	}
	return unavailable(tx.Commit())
}

// argon runs fn in one of the Argon2 slots, waiting for one.
func (s *Store) argon(ctx context.Context, fn func()) error {
	select {
	case s.hash <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.hash }()
	fn()
	return nil
}

func notFound(format string, args ...any) error {
	return fieldsync.Errorf(fieldsync.ENotFound, format, args...)
}

func invalid(format string, args ...any) error {
	return fieldsync.Errorf(fieldsync.EInvalidRequest, format, args...)
}

// orgID returns the id of the organisation named org.
func orgID(ctx context.Context, q querier, org string) (int64, error) {
	var id int64
	err := q.QueryRowContext(ctx, `SELECT id FROM orgs WHERE name = ?`, org).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, notFound("no organisation %q", org)
	}
	return id, err
}

// userRow is a user's row, by organisation and name.
type userRow struct {
	id       int64
	role     auth.Role
	password string
	revoked  sql.NullInt64
}

func findUser(ctx context.Context, q querier, org, user string) (userRow, error) {
	var u userRow
	err := q.QueryRowContext(ctx, `SELECT u.id, u.role, u.password, u.revoked_at FROM users u JOIN orgs o ON o.id = u.org_id
		WHERE o.name = ? AND u.name = ?`, org, user).Scan(&u.id, &u.role, &u.password, &u.revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return u, notFound("no user %q in organisation %q", user, org)
	}
	return u, err
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// CreateOrg creates an organisation. It answers EInvalidRequest for a
// name of the wrong shape and EAlreadyExists for a name taken.
func (s *Store) CreateOrg(ctx context.Context, name string) (auth.Org, error) {
	if !protocol.ValidOrgName(name) {
		return auth.Org{}, invalid("organisation %q: want 1-63 lowercase letters, digits and '-', starting with a letter", name)
	}
	now := s.cfg.Now()
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := orgID(ctx, tx, name); err == nil {
			return fieldsync.Errorf(fieldsync.EAlreadyExists, "organisation %q exists already", name)
		} else if fieldsync.ErrorCode(err) != fieldsync.ENotFound {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO orgs (name, created_at) VALUES (?, ?)`, name, ms(now))
		return err
	})
	if err != nil {
		return auth.Org{}, err
	}
	return auth.Org{Name: name, Created: time.UnixMilli(ms(now)).UTC()}, nil
}

// ListOrgs lists the organisations by name, test organisations
// included (auth.Org.Test tells them).
func (s *Store) ListOrgs(ctx context.Context) ([]auth.Org, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, created_at, test_expires_at FROM orgs ORDER BY name`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []auth.Org
	for rows.Next() {
		var o auth.Org
		var created int64
		var test sql.NullInt64
		if err := rows.Scan(&o.Name, &created, &test); err != nil {
			return nil, unavailable(err)
		}
		o.Created, o.TestExpires = time.UnixMilli(created).UTC(), fromMs(test)
		out = append(out, o)
	}
	return out, unavailable(rows.Err())
}

// CreateUser adds a user to an organisation. password may be empty for a
// user who never logs in (a field worker with enrolled devices only);
// otherwise it must pass auth.CheckPassword. It answers ENotFound for an
// unknown organisation, EInvalidRequest for a bad name, role or password,
// and EAlreadyExists for a name taken (revoked users included: a name in
// records names one person forever).
func (s *Store) CreateUser(ctx context.Context, org, name string, role auth.Role, password string) (auth.User, error) {
	if !protocol.ValidUserName(name) {
		return auth.User{}, invalid("user %q: want 1-64 lowercase letters, digits, '_', '.', '-'", name)
	}
	if !role.Valid() {
		return auth.User{}, invalid("role %q: want field_worker, dispatcher or admin", role)
	}
	hash, err := s.passwordHash(ctx, password)
	if err != nil {
		return auth.User{}, err
	}
	now := s.cfg.Now()
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		oid, err := orgID(ctx, tx, org)
		if err != nil {
			return err
		}
		if _, err := findUser(ctx, tx, org, name); err == nil {
			return fieldsync.Errorf(fieldsync.EAlreadyExists, "user %q exists already in organisation %q", name, org)
		} else if fieldsync.ErrorCode(err) != fieldsync.ENotFound {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO users (org_id, name, role, password, created_at) VALUES (?, ?, ?, ?, ?)`,
			oid, name, string(role), hash, ms(now))
		return err
	})
	if err != nil {
		return auth.User{}, err
	}
	return auth.User{Org: org, Name: name, Role: role, HasPassword: hash != "", Created: time.UnixMilli(ms(now)).UTC()}, nil
}

// passwordHash checks and hashes a password; "" stays "" (no login).
func (s *Store) passwordHash(ctx context.Context, password string) (string, error) {
	if password == "" {
		return "", nil
	}
	if err := auth.CheckPassword(password); err != nil {
		return "", err
	}
	var hash string
	var err error
	if aerr := s.argon(ctx, func() { hash, err = auth.HashPassword(password, s.cfg.PasswordParams) }); aerr != nil {
		return "", aerr
	}
	return hash, err
}

// SetPassword replaces a user's password ("" removes it: no more login)
// and ends the user's open sessions; device tokens are not touched.
func (s *Store) SetPassword(ctx context.Context, org, user, password string) error {
	hash, err := s.passwordHash(ctx, password)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	return s.withTx(ctx, func(tx *sql.Tx) error {
		u, err := findUser(ctx, tx, org, user)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET password = ? WHERE id = ?`, hash, u.id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND kind = 'user' AND revoked_at IS NULL`, ms(now), u.id)
		return err
	})
}

// errLoginFailed is the one answer to every failed login.
func errLoginFailed() error {
	return fieldsync.Errorf(fieldsync.ELoginFailed, "wrong organisation, user name or password")
}

// Login checks a user's password and opens a session: a user token that
// expires after Config.SessionTTL. Every failure — no such organisation
// or user, no password, a revoked user, a wrong password — answers
// ELoginFailed after the same Argon2 work, so the answer and its timing
// do not tell which.
func (s *Store) Login(ctx context.Context, org, user, password string) (auth.Issued, error) {
	u, err := findUser(ctx, s.db, org, user)
	if err != nil && fieldsync.ErrorCode(err) != fieldsync.ENotFound {
		return auth.Issued{}, unavailable(err)
	}
	usable := err == nil && u.password != "" && !u.revoked.Valid
	stored := u.password
	if !usable {
		stored = s.dummyHash()
	}
	var ok bool
	var verr error
	if aerr := s.argon(ctx, func() { ok, verr = auth.VerifyPassword(password, stored) }); aerr != nil {
		return auth.Issued{}, aerr
	}
	if verr != nil {
		s.cfg.Logger.Error("login: unreadable password hash", "org", org, "user", user, "err", verr)
		return auth.Issued{}, errLoginFailed()
	}
	if !ok || !usable {
		return auth.Issued{}, errLoginFailed()
	}
	if auth.NeedsRehash(u.password, s.cfg.PasswordParams) {
		s.rehash(ctx, u.id, password)
	}
	now := s.cfg.Now()
	token := auth.NewToken(auth.TokenUser)
	expires := time.UnixMilli(ms(now.Add(s.cfg.SessionTTL))).UTC()
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tokens (hash, kind, user_id, created_at, expires_at) VALUES (?, 'user', ?, ?, ?)`,
			auth.HashToken(token), u.id, ms(now), ms(expires))
		return err
	})
	if err != nil {
		return auth.Issued{}, err
	}
	return auth.Issued{Token: token, Expires: expires,
		Principal: auth.Principal{Org: org, User: user, Role: u.role, TokenKind: auth.TokenUser}}, nil
}

// dummyHash is a hash to verify against when there is no password, so a
// failed login costs the same whatever the reason.
func (s *Store) dummyHash() string {
	s.dummyOnce.Do(func() {
		b := make([]byte, 16)
		rand.Read(b)
		s.dummy, _ = auth.HashPassword(string(b), s.cfg.PasswordParams)
	})
	return s.dummy
}

// rehash stores a password hash made with the current parameters; a
// failure leaves the old hash, which still works.
func (s *Store) rehash(ctx context.Context, userID int64, password string) {
	hash, err := s.passwordHash(ctx, password)
	if err == nil {
		_, err = s.db.ExecContext(ctx, `UPDATE users SET password = ? WHERE id = ?`, hash, userID)
	}
	if err != nil {
		s.cfg.Logger.Warn("login: password rehash failed", "err", err)
	}
}

// Logout ends the user session of token. An unknown token is not an
// error.
func (s *Store) Logout(ctx context.Context, token string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE hash = ? AND kind = 'user' AND revoked_at IS NULL`,
		ms(s.cfg.Now()), auth.HashToken(token))
	return unavailable(err)
}

// IssueEnrolment makes a one-time enrolment code for user, valid for
// Config.EnrolmentTTL. issuedBy names who asked (kept for the record).
// Only the code's keyed hash is stored: the code is shown once. It
// answers ENotFound for an unknown organisation or user and EForbidden
// for a revoked user.
func (s *Store) IssueEnrolment(ctx context.Context, org, user, issuedBy string) (auth.Enrolment, error) {
	now := s.cfg.Now()
	expires := time.UnixMilli(ms(now.Add(s.cfg.EnrolmentTTL))).UTC()
	for attempt := 0; ; attempt++ {
		code := auth.NewEnrolmentCode()
		hash, err := s.codeHash(ctx, code)
		if err != nil {
			return auth.Enrolment{}, err
		}
		taken := false
		err = s.withTx(ctx, func(tx *sql.Tx) error {
			u, err := findUser(ctx, tx, org, user)
			if err != nil {
				return err
			}
			if u.revoked.Valid {
				return fieldsync.Errorf(fieldsync.EForbidden, "user %q is revoked: no device can be enrolled for them", user)
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM enrolments WHERE hash = ?`, hash).Scan(&n); err != nil || n > 0 {
				taken = n > 0
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO enrolments (hash, user_id, issued_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
				hash, u.id, issuedBy, ms(now), ms(expires))
			return err
		})
		if err != nil {
			return auth.Enrolment{}, err
		}
		if !taken {
			return auth.Enrolment{Code: code, Org: org, User: user, Expires: expires}, nil
		}
		if attempt >= 3 {
			return auth.Enrolment{}, errors.New("issue enrolment: no free code after 4 draws")
		}
	}
}

// codeHash hashes an enrolment code as typed, in an Argon2 slot.
func (s *Store) codeHash(ctx context.Context, code string) ([]byte, error) {
	canon, ok := auth.NormalizeEnrolmentCode(code)
	if !ok {
		return nil, fieldsync.Errorf(fieldsync.EEnrolmentInvalid,
			"this is not an enrolment code: a code is 10 letters and digits, like ABCDE-FGHJK")
	}
	var hash []byte
	err := s.argon(ctx, func() { hash = auth.HashEnrolmentCode(canon, s.key, s.cfg.CodeParams) })
	return hash, err
}

// Enroll redeems an enrolment code: the device gets a token bound to
// deviceID. A device enrolling again (after a revocation, or a lost
// token) names the id it has: when that id belongs to the same user, the
// device keeps it — with its op history and its queue — its old tokens
// are revoked and the new one replaces them. An empty deviceID gets a new
// one. It answers EEnrolmentInvalid for an unknown or used code (or a
// revoked user), EEnrolmentExpired for an expired one, EInvalidRequest
// for a bad device name or id, and EForbidden for a device id that
// belongs to another user; a refused code stays unused.
func (s *Store) Enroll(ctx context.Context, code, deviceName, deviceID string) (auth.Issued, error) {
	if !protocol.ValidDeviceName(deviceName) {
		return auth.Issued{}, invalid("device name: want 1-%d printable characters", protocol.MaxDeviceNameRune)
	}
	if deviceID != "" && (!protocol.ValidID(deviceID) || deviceID == officeDevice) {
		return auth.Issued{}, invalid("device id %q cannot be used: want 1-64 letters, digits, '_', '.', '-' (and not %q)", deviceID, officeDevice)
	}
	if deviceID == "" {
		deviceID = uuid.Must(uuid.NewV7()).String()
	}
	hash, err := s.codeHash(ctx, code)
	if err != nil {
		return auth.Issued{}, err
	}
	now := s.cfg.Now()
	token := auth.NewToken(auth.TokenDevice)
	var p auth.Principal
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		var e struct {
			userID, orgID     int64
			expires           int64
			used, userRevoked sql.NullInt64
			user, org         string
			role              auth.Role
		}
		err := tx.QueryRowContext(ctx, `SELECT e.user_id, o.id, e.expires_at, e.used_at, u.revoked_at, u.name, o.name, u.role
			FROM enrolments e JOIN users u ON u.id = e.user_id JOIN orgs o ON o.id = u.org_id WHERE e.hash = ?`, hash).
			Scan(&e.userID, &e.orgID, &e.expires, &e.used, &e.userRevoked, &e.user, &e.org, &e.role)
		if errors.Is(err, sql.ErrNoRows) || err == nil && (e.used.Valid || e.userRevoked.Valid) {
			return fieldsync.Errorf(fieldsync.EEnrolmentInvalid,
				"this enrolment code is not valid: it may be mistyped or already used; ask the office for a new one")
		}
		if err != nil {
			return err
		}
		if ms(now) >= e.expires {
			return fieldsync.Errorf(fieldsync.EEnrolmentExpired, "this enrolment code expired at %s; ask the office for a new one",
				time.UnixMilli(e.expires).UTC().Format(time.RFC3339))
		}
		dev, err := bindDevice(ctx, tx, e.orgID, e.userID, deviceID, deviceName, now)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (hash, kind, user_id, device, created_at) VALUES (?, 'device', ?, ?, ?)`,
			auth.HashToken(token), e.userID, dev, ms(now)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE enrolments SET used_at = ?, device = ? WHERE hash = ? AND used_at IS NULL`, ms(now), dev, hash)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("enrolment code used twice at once (%d rows): %v", n, err)
		}
		p = auth.Principal{Org: e.org, User: e.user, Role: e.role, DeviceID: deviceID, TokenKind: auth.TokenDevice}
		return nil
	})
	if err != nil {
		return auth.Issued{}, err
	}
	return auth.Issued{Token: token, Principal: p}, nil
}

// bindDevice enrols deviceID for the user: a new device row, or the
// user's own device again (active, renamed, its old tokens revoked).
func bindDevice(ctx context.Context, tx *sql.Tx, orgID, userID int64, deviceID, name string, now time.Time) (int64, error) {
	var dev, owner int64
	err := tx.QueryRowContext(ctx, `SELECT id, user_id FROM devices WHERE org_id = ? AND device_id = ?`, orgID, deviceID).Scan(&dev, &owner)
	if errors.Is(err, sql.ErrNoRows) {
		res, err := tx.ExecContext(ctx, `INSERT INTO devices (org_id, device_id, user_id, name, enrolled_at) VALUES (?, ?, ?, ?, ?)`,
			orgID, deviceID, userID, name, ms(now))
		if err != nil {
			return 0, err
		}
		return res.LastInsertId()
	}
	if err != nil {
		return 0, err
	}
	if owner != userID {
		return 0, fieldsync.Errorf(fieldsync.EForbidden,
			"device %s is enrolled for another user: it cannot be enrolled for this one (its queued work is theirs); ask the office", deviceID)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE devices SET name = ?, enrolled_at = ?, revoked_at = NULL WHERE id = ?`, name, ms(now), dev); err != nil {
		return 0, err
	}
	_, err = tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE device = ? AND revoked_at IS NULL`, ms(now), dev)
	return dev, err
}

// Authenticate implements auth.Authenticator: the principal of a token
// that was issued, is not revoked (nor its user or device) and, for a
// user session, has not expired. It refreshes the device's last-seen time
// at most once a minute.
func (s *Store) Authenticate(ctx context.Context, token string) (auth.Principal, error) {
	kind, err := auth.ParseToken(token)
	if err != nil {
		return auth.Principal{}, err
	}
	if kind == auth.TokenOperator {
		return s.authenticateOperator(ctx, token)
	}
	var (
		p                                auth.Principal
		storedKind                       string
		expires, tokRevoked, userRevoked sql.NullInt64
		dev                              sql.NullInt64
		deviceID                         sql.NullString
		devRevoked, lastSeen             sql.NullInt64
		testExpires                      sql.NullInt64
	)
	err = s.db.QueryRowContext(ctx, `SELECT t.kind, t.expires_at, t.revoked_at, u.name, u.role, u.revoked_at, o.name,
			d.id, d.device_id, d.revoked_at, d.last_seen_at, o.test_expires_at
		FROM tokens t JOIN users u ON u.id = t.user_id JOIN orgs o ON o.id = u.org_id LEFT JOIN devices d ON d.id = t.device
		WHERE t.hash = ?`, auth.HashToken(token)).
		Scan(&storedKind, &expires, &tokRevoked, &p.User, &p.Role, &userRevoked, &p.Org, &dev, &deviceID, &devRevoked, &lastSeen, &testExpires)
	if errors.Is(err, sql.ErrNoRows) || err == nil && storedKind != string(kind) {
		return auth.Principal{}, fieldsync.Errorf(fieldsync.ETokenInvalid,
			"this token is not known here: enrol the device again, or log in again")
	}
	if err != nil {
		return auth.Principal{}, unavailable(err)
	}
	p.TokenKind = kind
	p.DeviceID = deviceID.String
	now := s.cfg.Now()
	switch {
	case kind == auth.TokenDevice && (tokRevoked.Valid || userRevoked.Valid || devRevoked.Valid):
		return auth.Principal{}, fieldsync.Errorf(fieldsync.ETokenRevoked,
			"this device was revoked by your organisation: it can no longer send or receive. Everything it holds is kept on it; "+
				"enrol it again with a new code from the office to deliver it")
	case tokRevoked.Valid || userRevoked.Valid:
		return auth.Principal{}, fieldsync.Errorf(fieldsync.ETokenRevoked, "this session was ended (logged out, password changed or user revoked): log in again")
	case testExpires.Valid && ms(now) >= testExpires.Int64:
		return auth.Principal{}, fieldsync.Errorf(fieldsync.ETokenExpired,
			"test organisation %s expired at %s and is being removed: its tokens no longer work", p.Org,
			time.UnixMilli(testExpires.Int64).UTC().Format(time.RFC3339))
	case expires.Valid && ms(now) >= expires.Int64:
		return auth.Principal{}, fieldsync.Errorf(fieldsync.ETokenExpired, "this session expired at %s: log in again",
			time.UnixMilli(expires.Int64).UTC().Format(time.RFC3339))
	}
	if dev.Valid && (!lastSeen.Valid || ms(now)-lastSeen.Int64 >= seenEvery.Milliseconds()) {
		if _, err := s.db.ExecContext(ctx, `UPDATE devices SET last_seen_at = ? WHERE id = ?`, ms(now), dev.Int64); err != nil {
			s.cfg.Logger.Warn("device last seen not recorded", "org", p.Org, "device", p.DeviceID, "err", err)
		}
	}
	return p, nil
}

// RevokeDevice revokes a device and its tokens, at once. Revoking a
// revoked device changes nothing. It answers ENotFound for a device the
// organisation does not have.
func (s *Store) RevokeDevice(ctx context.Context, org, deviceID string) error {
	now := ms(s.cfg.Now())
	return s.withTx(ctx, func(tx *sql.Tx) error {
		oid, err := orgID(ctx, tx, org)
		if err != nil {
			return err
		}
		var dev int64
		err = tx.QueryRowContext(ctx, `SELECT id FROM devices WHERE org_id = ? AND device_id = ?`, oid, deviceID).Scan(&dev)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("no device %q in organisation %q", deviceID, org)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, now, dev); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE device = ? AND revoked_at IS NULL`, now, dev)
		return err
	})
}

// RevokeUser revokes a user, at once: every session and device token of
// theirs, every device, and every enrolment code not yet used. The user
// stays listed (their name is in records and trails) but can do nothing.
// It answers ENotFound for an unknown user.
func (s *Store) RevokeUser(ctx context.Context, org, user string) error {
	now := ms(s.cfg.Now())
	return s.withTx(ctx, func(tx *sql.Tx) error {
		u, err := findUser(ctx, tx, org, user)
		if err != nil {
			return err
		}
		for _, q := range []string{
			`UPDATE users SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`,
			`UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL`,
			`UPDATE devices SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL`,
			`UPDATE enrolments SET used_at = ? WHERE user_id = ? AND used_at IS NULL`,
		} {
			if _, err := tx.ExecContext(ctx, q, now, u.id); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListUsers lists an organisation's users by name, revoked ones included.
func (s *Store) ListUsers(ctx context.Context, org string) ([]auth.User, error) {
	oid, err := orgID(ctx, s.db, org)
	if err != nil {
		return nil, unavailable(err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name, role, password != '', created_at, revoked_at FROM users WHERE org_id = ? ORDER BY name`, oid)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []auth.User
	for rows.Next() {
		u := auth.User{Org: org}
		var created int64
		var revoked sql.NullInt64
		if err := rows.Scan(&u.Name, &u.Role, &u.HasPassword, &created, &revoked); err != nil {
			return nil, unavailable(err)
		}
		u.Created, u.Revoked = time.UnixMilli(created).UTC(), fromMs(revoked)
		out = append(out, u)
	}
	return out, unavailable(rows.Err())
}

// ListDevices lists an organisation's devices by user and name, revoked
// ones included, with when each was last seen.
func (s *Store) ListDevices(ctx context.Context, org string) ([]auth.Device, error) {
	oid, err := orgID(ctx, s.db, org)
	if err != nil {
		return nil, unavailable(err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT d.device_id, u.name, d.name, d.enrolled_at, d.last_seen_at, d.revoked_at
		FROM devices d JOIN users u ON u.id = d.user_id WHERE d.org_id = ? ORDER BY u.name, d.name, d.device_id`, oid)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []auth.Device
	for rows.Next() {
		d := auth.Device{Org: org}
		var enrolled int64
		var seen, revoked sql.NullInt64
		if err := rows.Scan(&d.ID, &d.User, &d.Name, &enrolled, &seen, &revoked); err != nil {
			return nil, unavailable(err)
		}
		d.Enrolled, d.LastSeen, d.Revoked = time.UnixMilli(enrolled).UTC(), fromMs(seen), fromMs(revoked)
		out = append(out, d)
	}
	return out, unavailable(rows.Err())
}
