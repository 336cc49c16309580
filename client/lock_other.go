//go:build !unix

package client

// syncLock is a no-op where flock is not available: only one process
// should sync a device directory at a time there.
type syncLock struct{}

func lockSync(path string) (*syncLock, error) { return &syncLock{}, nil }

func (l *syncLock) unlock() {}
