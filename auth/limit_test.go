package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// clock is a test clock moved by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestLimiterBurstAndRecovery: the default rate lets a burst of 40 pass,
// refuses the 41st with the time until the next token, and lets requests
// through again at 20 a second once the clock moves on.
func TestLimiterBurstAndRecovery(t *testing.T) {
	c := newClock()
	l := NewLimiter(DefaultPrincipalRate, c.Now)
	for i := 0; i < 40; i++ {
		if ok, _ := l.Allow("d:acme/dev1"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("d:acme/dev1")
	if ok {
		t.Fatal("request 41 of the burst allowed")
	}
	if wait != 50*time.Millisecond {
		t.Fatalf("retry after %v: want 50ms (one token at 20/s)", wait)
	}
	if ok, _ := l.Allow("d:acme/dev2"); !ok {
		t.Fatal("another device is limited by the first one's burst")
	}
	c.Advance(wait)
	if ok, _ := l.Allow("d:acme/dev1"); !ok {
		t.Fatal("refused after waiting the time it said")
	}
	if ok, _ := l.Allow("d:acme/dev1"); ok {
		t.Fatal("two requests allowed after one token's wait")
	}
	c.Advance(time.Hour)
	n := 0
	for {
		if ok, _ := l.Allow("d:acme/dev1"); !ok {
			break
		}
		n++
	}
	if n != 40 {
		t.Fatalf("after a long pause %d requests passed: want the burst, 40", n)
	}
}

func TestLimiterClockBackwards(t *testing.T) {
	c := newClock()
	l := NewLimiter(Rate{PerSecond: 1, Burst: 1}, c.Now)
	l.Allow("k")
	c.Advance(-time.Hour)
	if ok, wait := l.Allow("k"); ok || wait <= 0 {
		t.Fatalf("a clock going back refilled the bucket: %v %v", ok, wait)
	}
}

// TestLimiterBounded: keys beyond the bound are forgotten, idle ones
// first.
func TestLimiterBounded(t *testing.T) {
	c := newClock()
	l := NewLimiter(Rate{PerSecond: 1, Burst: 2}, c.Now)
	l.max = 100
	for i := 0; i < 1000; i++ {
		l.Allow(fmt.Sprint("k", i))
		if len(l.buckets) > l.max {
			t.Fatalf("%d buckets kept, bound %d", len(l.buckets), l.max)
		}
	}
}

func TestRateValidate(t *testing.T) {
	for _, r := range []Rate{{0, 1}, {-1, 1}, {1, 0}} {
		if r.Validate() == nil {
			t.Errorf("rate %+v accepted", r)
		}
	}
	if NewLimiter(Rate{}, nil).rate != DefaultPrincipalRate {
		t.Fatal("a zero rate did not fall back to the default")
	}
}
