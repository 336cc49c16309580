// Package sqlitedb opens SQLite databases the way every part of the
// project needs them: WAL, fully synced commits, foreign keys, a busy
// timeout, immediate write transactions, and forward-only migrations
// embedded in the binary.
package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/url"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/driver"
	"github.com/pressly/goose/v3"
)

// Options tune Open. The zero value is the durable default.
type Options struct {
	// Init runs on every new connection before the pragmas, e.g. to set
	// an encryption key.
	Init func(*sqlite3.Conn) error
	// VFS names an SQLite VFS (e.g. "adiantum"); empty for the default.
	VFS string
	// MaxConns caps the pool; 0 means 4.
	MaxConns int
}

// Open opens (creating if needed) the database at path and migrates it to
// the latest version found in migrations (files NNNN_name.sql at its root).
func Open(ctx context.Context, path string, migrations fs.FS, opt Options) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(20000)")
	q.Add("_pragma", "journal_mode(wal)")
	q.Add("_pragma", "synchronous(full)")
	q.Add("_pragma", "foreign_keys(on)")
	q.Set("_txlock", "immediate")
	if opt.VFS != "" {
		q.Set("vfs", opt.VFS)
	}
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	var db *sql.DB
	var err error
	if opt.Init != nil {
		db, err = driver.Open(dsn, opt.Init)
	} else {
		db, err = driver.Open(dsn)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	n := opt.MaxConns
	if n <= 0 {
		n = 4
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, migrations)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return db, nil
}
