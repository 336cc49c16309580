//go:build !linux

// Package netns makes a real network link inside this machine from Linux
// network namespaces; elsewhere it reports that it cannot.
package netns

import (
	"context"
	"errors"
	"net"
)

var errNotLinux = errors.New("network namespaces are a Linux feature")

// Config shapes the link (see the Linux build).
type Config struct {
	Up, Down int64
	Queue    int
}

// Link is not available off Linux.
type Link struct{ HostAddr, DeviceAddr string }

// Stats is what the kernel's shaping did.
type Stats struct{ Up, Down, Dropped int64 }

// Available reports that this system has no network namespaces.
func Available() error { return errNotLinux }

// New fails off Linux.
func New(context.Context, Config) (*Link, error) { return nil, errNotLinux }

func (*Link) Down(context.Context) error           { return errNotLinux }
func (*Link) Up(context.Context) error             { return errNotLinux }
func (*Link) Stats(context.Context) (Stats, error) { return Stats{}, errNotLinux }
func (*Link) Close() error                         { return nil }
func (*Link) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, errNotLinux
}
