//go:build !unix

package client

// filesLock is a no-op where flock is not available: there, only one
// process should use a device directory at a time.
type filesLock struct{}

func lockFiles(path string, exclusive, wait bool) (*filesLock, error) { return &filesLock{}, nil }

func (l *filesLock) unlock() {}
