package fieldsync

import (
	"sync"
	"time"
)

// HLC is a hybrid logical clock reading: Unix milliseconds in the high 48
// bits and a logical counter in the low 16. Readings of one clock are
// strictly increasing, and a clock that has observed a reading never
// issues a smaller one, so "later" means "made after having seen", not
// "stamped by a faster wall clock". Zero means unknown.
type HLC int64

// HLCFromTime returns the reading of wall time t with a zero counter.
func HLCFromTime(t time.Time) HLC { return HLC(t.UnixMilli() << 16) }

// Time returns the physical part of h.
func (h HLC) Time() time.Time { return time.UnixMilli(int64(h) >> 16).UTC() }

// Clock issues HLC readings. It is safe for concurrent use.
type Clock struct {
	mu   sync.Mutex
	last HLC
	now  func() time.Time
}

// NewClock returns a clock on wall time now (time.Now when nil) that has
// already observed last.
func NewClock(now func() time.Time, last HLC) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now, last: last}
}

// Now returns a reading above every reading issued or observed before.
func (c *Clock) Now() HLC {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := HLCFromTime(c.now())
	if h <= c.last {
		h = c.last + 1
	}
	c.last = h
	return h
}

// Observe records a reading seen elsewhere, so later readings exceed it.
func (c *Clock) Observe(h HLC) {
	c.mu.Lock()
	if h > c.last {
		c.last = h
	}
	c.mu.Unlock()
}

// Last returns the highest reading issued or observed.
func (c *Clock) Last() HLC {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}
