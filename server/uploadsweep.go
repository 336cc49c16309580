package server

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/filelocker"
)

// An upload a device never finishes (the device was lost, reset, or gave
// the attachment up) leaves its bytes in uploads/. Such uploads are
// removed once nothing has been written to them for Config.UploadExpiry;
// a device that comes back after that gets 404 for the upload and starts
// it again from the first byte, which the protocol already handles.

// DefaultUploadExpiry is how long an upload may rest untouched before the
// server removes it.
const DefaultUploadExpiry = 7 * 24 * time.Hour

// uploadSweepEvery is how often, at most, the server looks for abandoned
// uploads: when an upload is created and the last look is older.
const uploadSweepEvery = time.Hour

// maybeSweepUploads sweeps the uploads folder when the last sweep is
// older than uploadSweepEvery and no other sweep is running.
func (s *Server) maybeSweepUploads(ctx context.Context) {
	b := s.blobs
	if b == nil || b.expiry <= 0 || !b.sweepMu.TryLock() {
		return
	}
	defer b.sweepMu.Unlock()
	now := s.now()
	if !b.lastSweep.IsZero() && now.Sub(b.lastSweep) < uploadSweepEvery {
		return
	}
	b.lastSweep = now
	n, err := s.sweepUploads(ctx, now)
	if err != nil {
		s.log.Warn("removing abandoned uploads", "err", err, "removed", n)
	} else if n > 0 {
		s.log.Info("abandoned uploads removed", "removed", n, "untouched_for", b.expiry)
	}
}

// SweepUploads removes the uploads that nothing has been written to for
// Config.UploadExpiry and returns how many it removed. An upload that a
// request holds at the moment is left alone. The server also does this
// by itself, at most hourly, when an upload is created.
func (s *Server) SweepUploads(ctx context.Context) (int, error) {
	if s.blobs == nil || s.blobs.expiry <= 0 {
		return 0, nil
	}
	s.blobs.sweepMu.Lock()
	defer s.blobs.sweepMu.Unlock()
	now := s.now()
	s.blobs.lastSweep = now
	return s.sweepUploads(ctx, now)
}

func (s *Server) sweepUploads(ctx context.Context, now time.Time) (int, error) {
	b := s.blobs
	entries, err := os.ReadDir(b.uploads)
	if err != nil {
		return 0, err
	}
	// An upload is <id> (its bytes) and <id>.info (its length and
	// metadata), with <id>.lock while a request holds it.
	latest := map[string]time.Time{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasSuffix(name, ".lock") || strings.HasSuffix(name, ".stop") {
			continue
		}
		id := strings.TrimSuffix(name, ".info")
		if !validUploadID(id) {
			continue // not the upload store's
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return 0, err
		}
		if t := info.ModTime(); t.After(latest[id]) {
			latest[id] = t
		}
	}
	cutoff := now.Add(-b.expiry)
	locker := filelocker.New(b.uploads)
	removed := 0
	var errs []error
	for id, t := range latest {
		if ctx.Err() != nil {
			return removed, ctx.Err()
		}
		if !t.Before(cutoff) {
			continue
		}
		lock, err := locker.NewLock(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err = lock.Lock(lctx, func() {})
		cancel()
		if err != nil {
			continue // in use right now: not abandoned
		}
		for _, p := range []string{filepath.Join(b.uploads, id), filepath.Join(b.uploads, id+".info")} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if err := lock.Unlock(); err != nil {
			errs = append(errs, err)
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
