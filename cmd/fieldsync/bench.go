package main

import (
	"context"
	"errors"
	"io"
)

// runBench runs `fieldsync bench`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("bench: not yet")
}
