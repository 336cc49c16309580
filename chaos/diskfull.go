package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fieldsync/fieldsync/internal/linkemu"
)

// Disk-full methods.
const (
	DiskTmpfs  = "tmpfs"  // a real 8 MiB filesystem, mounted for the scenario (needs root)
	DiskRlimit = "rlimit" // RLIMIT_FSIZE on a device worker process
)

// diskFull: the device's disk fills while the worker saves ops and
// photos. Saving must then fail with a message that says so, nothing
// saved before may be lost, and once space is freed everything delivers.
func diskFull(ctx context.Context, r *run) error {
	srv, err := r.startServer(ctx)
	if err != nil {
		return err
	}
	method := r.opts.DiskMethod
	if method == "" {
		method = DiskRlimit
		if os.Geteuid() == 0 {
			method = DiskTmpfs
		}
	}
	link, err := r.startLink(linkemu.Config{Upstream: srv.addr})
	if err != nil {
		return err
	}
	addr := link.Addr()
	var failure string
	dir := filepath.Join(r.dir, "disk", "device")
	switch method {
	case DiskTmpfs:
		failure, err = r.fillTmpfs(ctx, addr)
		if err != nil && strings.Contains(err.Error(), "mount") {
			r.note("tmpfs unavailable (%v): RLIMIT_FSIZE instead", err)
			method, dir = DiskRlimit, filepath.Join(r.dir, "device")
			failure, err = r.fillRlimit(ctx, dir)
		}
	case DiskRlimit:
		dir = filepath.Join(r.dir, "device")
		failure, err = r.fillRlimit(ctx, dir)
	default:
		return fmt.Errorf("disk-full method %q: want %s or %s", method, DiskTmpfs, DiskRlimit)
	}
	if err != nil {
		return err
	}
	r.note("disk filled by %s", method)
	// Every save returned or failed in view: a failed save must leave
	// nothing in the outbox.
	r.hist.LedgerComplete = true
	r.note("saving failed with: %s", failure)
	if m := strings.ToLower(failure); !strings.Contains(m, "full") && !strings.Contains(m, "space") {
		r.note("the message does not say the disk is full")
	}
	if !clearFullMessage(failure, method == DiskRlimit) {
		r.res.Findings = append(r.res.Findings, Finding{Check: "disk_full",
			Detail: fmt.Sprintf("saving on a full disk failed without saying the disk is full: %q", failure)})
	}
	if method == DiskRlimit {
		// Space freed: the device runs again without the limit.
		e, err := r.openDevice(ctx, engineConfig(dir, "http://"+addr))
		if err != nil {
			return err
		}
		w := newWorker(r.rng, e, 8)
		r.ledger(w)
		if err := r.afterFree(ctx, w); err != nil {
			return err
		}
		return r.drain(ctx, e, 60*time.Second)
	}
	return nil
}

// clearFullMessage says whether an error tells a person the disk is the
// trouble: the device engine reports a write it could not make for want
// of space (or past a file size limit) as storage_full, saying so.
func clearFullMessage(msg string, _ bool) bool {
	m := strings.ToLower(msg)
	for _, s := range []string{"storage is full", "no space", "storage_full", "limit"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// afterFree saves a few more ops once space is back: saving works again.
func (r *run) afterFree(ctx context.Context, w *worker) error {
	views, err := w.e.List(ctx, workOrder)
	if err != nil {
		return err
	}
	for _, v := range views {
		w.records = append(w.records, v.ID)
	}
	for range 5 {
		if err := w.step(ctx); err != nil {
			return fmt.Errorf("saving after space was freed: %w", err)
		}
	}
	return nil
}

// fillTmpfs mounts a small tmpfs, leaves little room on it with a ballast
// file, saves until a save fails, frees the ballast and drains.
func (r *run) fillTmpfs(ctx context.Context, addr string) (string, error) {
	mnt := filepath.Join(r.dir, "disk")
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return "", err
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=8m"); err != nil {
		return "", fmt.Errorf("mount tmpfs: %w", err)
	}
	r.onClose(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			r.logf("unmount %s: %v", mnt, err)
		}
	})
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, (8<<20)-r.scale(1200, 2400)<<10), 0o600); err != nil {
		return "", fmt.Errorf("write ballast: %w", err)
	}
	e, err := r.openDevice(ctx, engineConfig(filepath.Join(mnt, "device"), "http://"+addr))
	if err != nil {
		return "", err
	}
	w := newWorker(r.rng, e, 8)
	r.ledger(w)
	// A few photos first, then ops until the database cannot grow.
	for range 4 {
		if err := w.photo(ctx, 24); err != nil {
			return "", fmt.Errorf("a photo before the disk filled: %w", err)
		}
	}
	failure := ""
	for i := 0; i < 50000 && failure == ""; i++ {
		if err := w.step(ctx); err != nil {
			failure = err.Error()
		}
	}
	if failure == "" {
		return "", fmt.Errorf("the disk never filled")
	}
	r.fault("disk_full", 1)
	r.logf("disk full after %d ops: %s", len(r.hist.Saved), failure)
	// A photo cannot be stored either, and says so.
	if err := w.photo(ctx, 24); err == nil {
		r.res.Findings = append(r.res.Findings, Finding{Check: "disk_full", Detail: "a photo was saved on a full disk"})
	} else {
		r.note("a photo on the full disk failed with: %s", err)
		if !clearFullMessage(err.Error(), false) {
			r.res.Findings = append(r.res.Findings, Finding{Check: "disk_full",
				Detail: fmt.Sprintf("a photo on a full disk failed without saying the disk is full: %q", err)})
		}
	}
	if err := os.Remove(ballast); err != nil {
		return "", err
	}
	if err := r.afterFree(ctx, w); err != nil {
		return failure, err
	}
	return failure, r.drain(ctx, e, 60*time.Second)
}

// fillRlimit runs the device as a worker process whose files may not grow
// past 1 MiB, until a save fails.
func (r *run) fillRlimit(ctx context.Context, dir string) (string, error) {
	p, err := r.startWorker("--role", "device", "--dir", dir, "--seed", fmt.Sprint(r.opts.Seed),
		"--ops", "100000", "--photo-every", "6", "--fsize", fmt.Sprint(1<<20))
	if err != nil {
		return "", err
	}
	line, err := r.readUntil(ctx, p, 90*time.Second, "FAILED", "DONE")
	if err != nil {
		return "", err
	}
	p.killWait()
	r.drainLines(p)
	if !strings.HasPrefix(line, "FAILED") {
		return "", fmt.Errorf("the device's files never reached the limit")
	}
	r.fault("disk_full", 1)
	failure := strings.TrimPrefix(line, "FAILED ")
	r.logf("disk full after %d ops: %s", len(r.hist.Saved), failure)
	return failure, nil
}
