package client

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/ncruces/go-sqlite3"

	"github.com/fieldsync/fieldsync"
)

// lowSpace is the free space under which a failed write is put down to a
// full disk rather than a broken one.
const lowSpace = 1 << 20

// diskFull turns a failed write into EStorageFull with a message a person
// can act on, when the cause is a full disk (or a file size limit): SQLite
// reports such writes as SQLITE_FULL or, through its file layer, as a
// plain I/O error, so the free space of the device folder decides.
// Anything else is returned as it is.
func (e *Engine) diskFull(err error) error {
	if err == nil {
		return nil
	}
	full := errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EDQUOT)
	switch {
	case errors.Is(err, sqlite3.FULL):
		full = true
	case errors.Is(err, sqlite3.IOERR_WRITE), errors.Is(err, sqlite3.IOERR_FSYNC), errors.Is(err, sqlite3.IOERR_TRUNCATE),
		errors.Is(err, sqlite3.IOERR_SHMSIZE), errors.Is(err, sqlite3.IOERR):
		// A write SQLite could not make: the disk is full when there is
		// (next to) no space left, or the process may not grow a file
		// (a file size limit, as some devices set).
		if free, ok := freeBytes(e.cfg.Dir); ok && free < lowSpace || fileSizeLimited() {
			full = true
		}
	}
	if !full {
		return err
	}
	const what = "this change was not saved; free some space (fieldsync status shows what can be reclaimed) and save it again — everything saved before is kept"
	msg := "the device's storage is full: " + what
	if free, ok := freeBytes(e.cfg.Dir); ok {
		msg = fmt.Sprintf("the device's storage is full (%s free): %s", FormatBytes(free), what)
		if free >= lowSpace && fileSizeLimited() {
			msg = "the device's storage quota is reached (this app may not grow its files further): " + what
		}
	}
	return &fieldsync.Error{Code: fieldsync.EStorageFull, Message: msg}
}
