//go:build unix

package client

import (
	"errors"
	"os"
	"syscall"

	"github.com/fieldsync/fieldsync"
)

// syncLock is held by the one process that syncs a device directory at a
// time, so two processes never send the same ops at once and an op found
// "sending" under the lock is known to be left over from a crash.
type syncLock struct{ f *os.File }

func lockSync(path string) (*syncLock, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fieldsync.Errorf(fieldsync.EUnavailable, "another process is syncing this device; its work is safe")
		}
		return nil, err
	}
	return &syncLock{f: f}, nil
}

func (l *syncLock) unlock() {
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}
