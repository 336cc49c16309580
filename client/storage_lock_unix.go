//go:build unix

package client

import (
	"errors"
	"os"
	"syscall"
)

// filesLock guards the attachment files against removal while they are
// written: Attach holds it shared from the first file written until its
// transaction committed; orphan clean-up and Reclaim hold it exclusive.
// It works across processes that open the same device directory.
type filesLock struct{ f *os.File }

// lockFiles takes the lock; with wait unset it gives up at once when the
// lock is held in a conflicting mode and returns nil, nil.
func lockFiles(path string, exclusive, wait bool) (*filesLock, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if !wait {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, err
	}
	return &filesLock{f: f}, nil
}

func (l *filesLock) unlock() {
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}
