// Package sqlitedb opens SQLite databases the way every part of the
// project needs them: WAL, fully synced commits, foreign keys, a busy
// timeout, immediate write transactions, and forward-only migrations
// embedded in the binary.
package sqlitedb

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"

	"github.com/ncruces/go-sqlite3"
	"github.com/ncruces/go-sqlite3/driver"
	_ "github.com/ncruces/go-sqlite3/vfs/adiantum" // the "adiantum" VFS, for Options.Key
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
	// Key, when set (32 bytes), encrypts the database, its WAL and its
	// temporary files with the "adiantum" VFS. Each new connection sets
	// it with PRAGMA hexkey before anything reads the file, then runs
	// the pragmas, then Init. A wrong key fails with "file is not a
	// database".
	Key []byte
}

// Open opens (creating if needed) the database at path and migrates it to
// the latest version found in migrations (files NNNN_name.sql at its root).
func Open(ctx context.Context, path string, migrations fs.FS, opt Options) (*sql.DB, error) {
	q := url.Values{}
	pragmas := []string{"busy_timeout(20000)", "journal_mode(wal)", "synchronous(full)", "foreign_keys(on)"}
	if len(opt.Key) == 0 {
		for _, p := range pragmas {
			q.Add("_pragma", p)
		}
	} else {
		opt.VFS = "adiantum"
		opt.Init = keyedInit(opt.Key, pragmas, opt.Init)
	}
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

// keyedInit sets the key on a new connection, then runs the pragmas
// (which read the file, so they cannot come first) and init.
func keyedInit(key []byte, pragmas []string, init func(*sqlite3.Conn) error) func(*sqlite3.Conn) error {
	set := "PRAGMA hexkey='" + hex.EncodeToString(key) + "'; PRAGMA temp_store = memory;"
	for _, p := range pragmas {
		set += " PRAGMA " + p + ";"
	}
	return func(c *sqlite3.Conn) error {
		if err := c.Exec(set); err != nil {
			return err
		}
		if init != nil {
			return init(c)
		}
		return nil
	}
}
