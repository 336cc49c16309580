//go:build unix

package client

import "golang.org/x/sys/unix"

// freeBytes returns the bytes free for an unprivileged writer in the file
// system holding dir.
func freeBytes(dir string) (int64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}

// fileSizeLimited reports whether the process may not grow files past a
// limit (RLIMIT_FSIZE), as a device with a storage quota may set.
func fileSizeLimited() bool {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &r); err != nil {
		return false
	}
	return r.Cur != unix.RLIM_INFINITY
}
