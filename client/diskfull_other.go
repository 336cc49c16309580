//go:build !unix

package client

// freeBytes is not known on this platform.
func freeBytes(string) (int64, bool) { return 0, false }

// fileSizeLimited is not known on this platform.
func fileSizeLimited() bool { return false }
