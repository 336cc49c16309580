package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/auth"
	"github.com/fieldsync/fieldsync/protocol"
)

// The users every test organisation is made with.
const (
	TestOfficeUser = "selftest-office" // a dispatcher, no password
	TestWorker     = "selftest-worker" // a field worker, no password
)

// MaxTestOrgs is how many test organisations may exist at once: a leaked
// operator token cannot fill the disk with them.
const MaxTestOrgs = 20

// CreateOperator makes an operator credential named name and returns
// its token, shown this once: only its SHA-256 is stored. It answers
// EInvalidRequest for a name of the wrong shape and EAlreadyExists for a
// name taken (revoked ones included).
func (s *Store) CreateOperator(ctx context.Context, name string) (string, auth.Operator, error) {
	if !protocol.ValidUserName(name) {
		return "", auth.Operator{}, invalid("operator name %q: want 1-64 lowercase letters, digits, '_', '.', '-'", name)
	}
	token := auth.NewToken(auth.TokenOperator)
	now := s.cfg.Now()
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM operators WHERE name = ?`, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fieldsync.Errorf(fieldsync.EAlreadyExists, "an operator credential named %q exists already: pick another name, or revoke it first", name)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO operators (name, hash, created_at) VALUES (?, ?, ?)`, name, auth.HashToken(token), ms(now))
		return err
	})
	if err != nil {
		return "", auth.Operator{}, err
	}
	return token, auth.Operator{Name: name, Created: time.UnixMilli(ms(now)).UTC()}, nil
}

// ListOperators lists the operator credentials by name, revoked ones
// included.
func (s *Store) ListOperators(ctx context.Context) ([]auth.Operator, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, created_at, last_used_at, revoked_at FROM operators ORDER BY name`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []auth.Operator
	for rows.Next() {
		var o auth.Operator
		var created int64
		var used, revoked sql.NullInt64
		if err := rows.Scan(&o.Name, &created, &used, &revoked); err != nil {
			return nil, unavailable(err)
		}
		o.Created, o.LastUsed, o.Revoked = time.UnixMilli(created).UTC(), fromMs(used), fromMs(revoked)
		out = append(out, o)
	}
	return out, unavailable(rows.Err())
}

// RevokeOperator revokes an operator credential, at once. Revoking a
// revoked one changes nothing. It answers ENotFound for an unknown name.
func (s *Store) RevokeOperator(ctx context.Context, name string) error {
	now := ms(s.cfg.Now())
	return s.withTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM operators WHERE name = ?`, name).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return notFound("no operator credential named %q", name)
		}
		_, err := tx.ExecContext(ctx, `UPDATE operators SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL`, now, name)
		return err
	})
}

// authenticateOperator is Authenticate for an operator token: a
// principal of no organisation and no role, named after the credential.
func (s *Store) authenticateOperator(ctx context.Context, token string) (auth.Principal, error) {
	var (
		id            int64
		name          string
		used, revoked sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx, `SELECT id, name, last_used_at, revoked_at FROM operators WHERE hash = ?`, auth.HashToken(token)).
		Scan(&id, &name, &used, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return auth.Principal{}, fieldsync.Errorf(fieldsync.ETokenInvalid,
			"this operator token is not known here: make one on the server's host with fieldsync admin operator-token")
	}
	if err != nil {
		return auth.Principal{}, unavailable(err)
	}
	if revoked.Valid {
		return auth.Principal{}, fieldsync.Errorf(fieldsync.ETokenRevoked,
			"this operator token was revoked: make a new one on the server's host with fieldsync admin operator-token")
	}
	now := s.cfg.Now()
	if !used.Valid || ms(now)-used.Int64 >= seenEvery.Milliseconds() {
		if _, err := s.db.ExecContext(ctx, `UPDATE operators SET last_used_at = ? WHERE id = ?`, ms(now), id); err != nil {
			s.cfg.Logger.Warn("operator last use not recorded", "operator", name, "err", err)
		}
	}
	return auth.Principal{User: name, TokenKind: auth.TokenOperator}, nil
}

// CreateTestOrg makes a temporary test organisation that lives for ttl
// (1 s to protocol.MaxTestOrgTTL): named name (which must pass
// protocol.ValidTestOrgName), or "selftest-<random>" when name is empty;
// with a dispatcher (TestOfficeUser) holding a session that lasts as
// long, and a field worker (TestWorker) with a one-time enrolment code.
// by names the operator credential that asked. It answers
// EInvalidRequest for a bad name or ttl, EAlreadyExists for a name
// taken, and ERateLimited when MaxTestOrgs exist already.
func (s *Store) CreateTestOrg(ctx context.Context, name string, ttl time.Duration, by string) (auth.TestOrg, error) {
	if name == "" {
		var b [5]byte
		rand.Read(b[:])
		name = protocol.TestOrgPrefix + hex.EncodeToString(b[:])
	}
	if !protocol.ValidTestOrgName(name) {
		return auth.TestOrg{}, invalid("test organisation %q: want %q then lowercase letters, digits and '-'", name, protocol.TestOrgPrefix)
	}
	if ttl < time.Second || ttl > protocol.MaxTestOrgTTL {
		return auth.TestOrg{}, invalid("a test organisation lives 1 s to %s, not %s", protocol.MaxTestOrgTTL, ttl)
	}
	code := auth.NewEnrolmentCode()
	codeHash, err := s.codeHash(ctx, code)
	if err != nil {
		return auth.TestOrg{}, err
	}
	token := auth.NewToken(auth.TokenUser)
	now := s.cfg.Now()
	expires := time.UnixMilli(ms(now.Add(ttl))).UTC()
	codeExpires := min(ms(expires), ms(now.Add(s.cfg.EnrolmentTTL)))
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		var live int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM orgs WHERE test_expires_at IS NOT NULL`).Scan(&live); err != nil {
			return err
		}
		if live >= MaxTestOrgs {
			return fieldsync.Errorf(fieldsync.ERateLimited,
				"there are %d test organisations already, the most allowed at once: delete some, or wait for them to expire", live)
		}
		if _, err := orgID(ctx, tx, name); err == nil {
			return fieldsync.Errorf(fieldsync.EAlreadyExists, "organisation %q exists already: pick another name, or leave it out", name)
		} else if fieldsync.ErrorCode(err) != fieldsync.ENotFound {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO orgs (name, created_at, test_expires_at, test_by) VALUES (?, ?, ?, ?)`,
			name, ms(now), ms(expires), by)
		if err != nil {
			return err
		}
		oid, err := res.LastInsertId()
		if err != nil {
			return err
		}
		var users [2]int64
		for i, u := range []struct {
			name string
			role auth.Role
		}{{TestOfficeUser, auth.RoleDispatcher}, {TestWorker, auth.RoleFieldWorker}} {
			res, err := tx.ExecContext(ctx, `INSERT INTO users (org_id, name, role, created_at) VALUES (?, ?, ?, ?)`, oid, u.name, string(u.role), ms(now))
			if err != nil {
				return err
			}
			if users[i], err = res.LastInsertId(); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (hash, kind, user_id, created_at, expires_at) VALUES (?, 'user', ?, ?, ?)`,
			auth.HashToken(token), users[0], ms(now), ms(expires)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO enrolments (hash, user_id, issued_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
			codeHash, users[1], "operator "+by, ms(now), codeExpires)
		return err
	})
	if err != nil {
		return auth.TestOrg{}, err
	}
	return auth.TestOrg{Org: name, Expires: expires, OfficeUser: TestOfficeUser, OfficeToken: token, Worker: TestWorker, Code: code}, nil
}

// testOrgID returns the id of a test organisation: ENotFound for an
// unknown one, EForbidden for a real organisation.
func testOrgID(ctx context.Context, q querier, name string) (int64, error) {
	var id int64
	var test sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT id, test_expires_at FROM orgs WHERE name = ?`, name).Scan(&id, &test)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, notFound("no organisation %q", name)
	}
	if err != nil {
		return 0, err
	}
	if !test.Valid {
		return 0, fieldsync.Errorf(fieldsync.EForbidden,
			"organisation %q is not a test organisation: only test organisations (made through the operator API) can be deleted this way", name)
	}
	return id, nil
}

// ExpireTestOrg ends a test organisation now, before removing it: its
// expiry is brought to now (unless already past), so every token of it
// stops working at once, and its unused enrolment codes are spent. It
// answers ENotFound for an unknown organisation and EForbidden for one
// that is not a test organisation, changing nothing.
func (s *Store) ExpireTestOrg(ctx context.Context, name string) error {
	now := ms(s.cfg.Now())
	return s.withTx(ctx, func(tx *sql.Tx) error {
		oid, err := testOrgID(ctx, tx, name)
		if err != nil {
			return err
		}
		for _, q := range []string{
			`UPDATE orgs SET test_expires_at = min(test_expires_at, ?1) WHERE id = ?2`,
			`UPDATE tokens SET revoked_at = ?1 WHERE revoked_at IS NULL AND user_id IN (SELECT id FROM users WHERE org_id = ?2)`,
			`UPDATE enrolments SET used_at = ?1 WHERE used_at IS NULL AND user_id IN (SELECT id FROM users WHERE org_id = ?2)`,
		} {
			if _, err := tx.ExecContext(ctx, q, now, oid); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteTestOrg removes a test organisation's identity rows: its
// enrolment codes, tokens, devices, users and the organisation itself,
// in one transaction. The organisation's store files are the caller's
// (tenant.Front removes them first). It answers ENotFound for an
// unknown organisation and EForbidden for one that is not a test
// organisation, changing nothing.
func (s *Store) DeleteTestOrg(ctx context.Context, name string) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		oid, err := testOrgID(ctx, tx, name)
		if err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM enrolments WHERE user_id IN (SELECT id FROM users WHERE org_id = ?)`,
			`DELETE FROM tokens WHERE user_id IN (SELECT id FROM users WHERE org_id = ?)`,
			`DELETE FROM devices WHERE org_id = ?`,
			`DELETE FROM users WHERE org_id = ?`,
			`DELETE FROM orgs WHERE id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, oid); err != nil {
				return err
			}
		}
		return nil
	})
}

// ExpiredTestOrgs lists up to limit test organisations whose expiry has
// passed, the longest expired first.
func (s *Store) ExpiredTestOrgs(ctx context.Context, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM orgs WHERE test_expires_at IS NOT NULL AND test_expires_at <= ?
		ORDER BY test_expires_at, name LIMIT ?`, ms(s.cfg.Now()), limit)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, unavailable(err)
		}
		out = append(out, name)
	}
	return out, unavailable(rows.Err())
}
