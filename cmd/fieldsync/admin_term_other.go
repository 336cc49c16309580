//go:build !linux

package main

import (
	"errors"
	"os"
)

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// readHidden cannot turn echo off on this system: give --password-file.
func readHidden(*os.File) (string, error) {
	return "", errors.New("cannot hide a typed password on this system: give --password-file")
}
