//go:build linux

// Package netns makes a real network link inside this machine: a Linux
// network namespace for the device, joined to the host's by a veth pair,
// shaped by the kernel (tc tbf: a rate cap with a small queue, so a burst
// beyond it is dropped as a congested radio link drops it) and cut by
// taking the link down. Traffic crosses the kernel's real TCP stack, with
// its own retransmissions, timeouts and resets, unlike the in-process
// proxy of internal/linkemu.
//
// It needs root (CAP_NET_ADMIN) and the ip and tc commands of iproute2;
// Available says whether this machine has them. Everything it makes is
// its own (a namespace and a veth pair with random names, a /30 subnet of
// 10.213.0.0/16) and Close removes it.
package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Config shapes the link. Rates are in bits per second; 0 leaves that
// direction unshaped.
type Config struct {
	// Up is the rate from the device to the host, Down from the host to
	// the device.
	Up, Down int64
	// Queue is the bytes each direction queues beyond its rate before
	// the kernel drops packets (default: 16 KiB). A small queue makes
	// bursts lose packets.
	Queue int
}

// Link is a device namespace and the veth pair that joins it to the host.
type Link struct {
	ns         string // the namespace's name (ip netns)
	hostIf     string // the host's end of the pair
	devIf      string // the device's end, inside ns
	HostAddr   string // the host's address on the link (listen here)
	DeviceAddr string // the device's address on the link
	nsFile     *os.File

	mu     sync.Mutex
	closed bool
}

// Available reports why this machine cannot make a link, or nil when it
// can: not root, or no ip or tc command.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("making a network namespace needs root")
	}
	for _, cmd := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Errorf("the %s command (iproute2) is not installed", cmd)
		}
	}
	return nil
}

// run runs a command and returns its error with what it printed.
func run(ctx context.Context, name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %v: %w: %s", name, args, err, bytes.TrimSpace(out.Bytes()))
	}
	return out.String(), nil
}

// New makes a link. On failure it removes what it made.
func New(ctx context.Context, cfg Config) (l *Link, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	tag := hex.EncodeToString(b[:3])
	sweepOrphans(ctx)
	l = &Link{ns: fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), tag), hostIf: "fsh" + tag, devIf: "fsd" + tag}
	// A /30 in 10.213.0.0/16 from the random bytes: .1 the host, .2 the
	// device.
	base := int(b[3]&0x3f) * 4
	l.HostAddr = fmt.Sprintf("10.213.%d.%d", b[0], base+1)
	l.DeviceAddr = fmt.Sprintf("10.213.%d.%d", b[0], base+2)
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	steps := [][]string{
		{"ip", "netns", "add", l.ns},
		{"ip", "link", "add", l.hostIf, "type", "veth", "peer", "name", l.devIf},
		{"ip", "link", "set", l.devIf, "netns", l.ns},
		{"ip", "addr", "add", l.HostAddr + "/30", "dev", l.hostIf},
		{"ip", "-n", l.ns, "addr", "add", l.DeviceAddr + "/30", "dev", l.devIf},
		{"ip", "-n", l.ns, "link", "set", "lo", "up"},
		{"ip", "link", "set", l.hostIf, "up"},
		{"ip", "-n", l.ns, "link", "set", l.devIf, "up"},
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	queue := cfg.Queue
	if queue <= 0 {
		queue = 16 << 10
	}
	// Down shapes what leaves the host (toward the device), Up what
	// leaves the device.
	if cfg.Down > 0 {
		if err := l.shape(ctx, nil, l.hostIf, cfg.Down, queue); err != nil {
			return nil, err
		}
	}
	if cfg.Up > 0 {
		if err := l.shape(ctx, []string{"-n", l.ns}, l.devIf, cfg.Up, queue); err != nil {
			return nil, err
		}
	}
	l.nsFile, err = os.Open(filepath.Join("/var/run/netns", l.ns))
	if err != nil {
		return nil, fmt.Errorf("open the namespace: %w", err)
	}
	return l, nil
}

// nsPrefix begins the name of every namespace New makes, followed by the
// maker's process id.
const nsPrefix = "fsync-"

var orphanRe = regexp.MustCompile(`^` + nsPrefix + `(\d+)-[0-9a-f]+$`)

// sweepOrphans removes the namespaces (and with them their veth pairs)
// left by processes that were killed before they could Close them.
func sweepOrphans(ctx context.Context) {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		m := orphanRe.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", m[1])); err == nil {
			continue // its maker still runs
		}
		run(ctx, "ip", "netns", "del", e.Name())
	}
}

// shape puts a token bucket on an interface: rate bits/s, a burst of a
// few packets, and queue bytes before the kernel drops.
func (l *Link) shape(ctx context.Context, nsArgs []string, dev string, rate int64, queue int) error {
	args := append(append([]string{}, nsArgs...), "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", strconv.FormatInt(rate, 10)+"bit", "burst", "6kb", "limit", strconv.Itoa(queue))
	_, err := run(ctx, "tc", args...)
	return err
}

// Down cuts the link: both ends go down, open connections stall and new
// ones are refused, as when the radio is lost.
func (l *Link) Down(ctx context.Context) error {
	if _, err := run(ctx, "ip", "link", "set", l.hostIf, "down"); err != nil {
		return err
	}
	_, err := run(ctx, "ip", "-n", l.ns, "link", "set", l.devIf, "down")
	return err
}

// Up brings the link back.
func (l *Link) Up(ctx context.Context) error {
	if _, err := run(ctx, "ip", "link", "set", l.hostIf, "up"); err != nil {
		return err
	}
	_, err := run(ctx, "ip", "-n", l.ns, "link", "set", l.devIf, "up")
	return err
}

// Stats is what the kernel's shaping did. The byte counts are those of
// the shaped directions (Config.Up, Config.Down).
type Stats struct {
	Up      int64 // bytes the device sent through its shaped queue
	Down    int64 // bytes the host sent toward the device
	Dropped int64 // packets dropped at a full queue, both ways
}

var (
	sentRe    = regexp.MustCompile(`Sent (\d+) bytes`)
	droppedRe = regexp.MustCompile(`dropped (\d+)`)
)

// Stats reads the shaped queues' counters in both directions.
func (l *Link) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	for _, q := range []struct {
		args []string
		sent *int64
	}{
		{[]string{"-s", "qdisc", "show", "dev", l.hostIf}, &st.Down},
		{[]string{"-n", l.ns, "-s", "qdisc", "show", "dev", l.devIf}, &st.Up},
	} {
		out, err := run(ctx, "tc", q.args...)
		if err != nil {
			return st, err
		}
		for _, m := range sentRe.FindAllStringSubmatch(out, -1) {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			*q.sent += n
		}
		for _, m := range droppedRe.FindAllStringSubmatch(out, -1) {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			st.Dropped += n
		}
	}
	return st, nil
}

// DialContext dials from inside the device's namespace: the connection's
// socket belongs to it, so its traffic crosses the link. It is the
// device's http.Transport DialContext.
func (l *Link) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type dialed struct {
		c   net.Conn
		err error
	}
	out := make(chan dialed, 1)
	// The socket is made on a thread moved into the namespace. That
	// thread is never moved back: the goroutine ends locked to it, and
	// the runtime then ends the thread.
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(l.nsFile.Fd()), unix.CLONE_NEWNET); err != nil {
			out <- dialed{nil, fmt.Errorf("enter the device's namespace: %w", err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		out <- dialed{c, err}
	}()
	r := <-out
	return r.c, r.err
}

// Close removes the namespace and the veth pair.
func (l *Link) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.nsFile != nil {
		l.nsFile.Close()
	}
	ctx := context.Background()
	// Deleting one end of a veth pair deletes both; the namespace goes
	// with what is left in it.
	_, err1 := run(ctx, "ip", "link", "del", l.hostIf)
	_, err2 := run(ctx, "ip", "netns", "del", l.ns)
	if err2 != nil {
		return err2
	}
	if err1 != nil {
		// The pair may not have been made yet; the namespace removal
		// takes the device's end with it.
		if _, err := os.Stat(filepath.Join("/sys/class/net", l.hostIf)); err == nil {
			return err1
		}
	}
	return nil
}
