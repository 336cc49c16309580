package auth

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Rate is a token bucket's refill rate and size.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Default rates. A device syncs in a few requests a minute and pushes in
// batches, so 20 a second with bursts of 40 only stops a runaway client;
// enrolment and login are per client address and far rarer.
var (
	DefaultPrincipalRate = Rate{PerSecond: 20, Burst: 40}
	DefaultAddressRate   = Rate{PerSecond: 1, Burst: 10}
)

// Validate names a rate that cannot work.
func (r Rate) Validate() error {
	if !(r.PerSecond > 0) || math.IsInf(r.PerSecond, 0) || r.Burst < 1 {
		return fmt.Errorf("rate %g/s burst %d: want a positive rate and a burst of 1 or more", r.PerSecond, r.Burst)
	}
	return nil
}

// maxBuckets bounds the keys a Limiter remembers.
const maxBuckets = 100_000

// Limiter is a token bucket per key (a device, a user session, a client
// address), in memory. A bucket refills at the rate up to its burst; a
// request takes one token. Safe for concurrent use.
type Limiter struct {
	rate    Rate
	now     func() time.Time
	mu      sync.Mutex
	buckets map[string]*bucket
	max     int
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewLimiter returns a Limiter at rate r reading the clock now (nil:
// time.Now). A rate that cannot work is replaced by DefaultPrincipalRate.
func NewLimiter(r Rate, now func() time.Time) *Limiter {
	if r.Validate() != nil {
		r = DefaultPrincipalRate
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{rate: r, now: now, buckets: map[string]*bucket{}, max: maxBuckets}
}

// Allow takes a token from key's bucket. When the bucket is empty it
// answers false and how long until a token is back.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.sweep(now)
		}
		b = &bucket{tokens: float64(l.rate.Burst), last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(float64(l.rate.Burst), b.tokens+el.Seconds()*l.rate.PerSecond)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate.PerSecond * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// Empty reports whether key's bucket has no token now, and how long
// until one is back, without taking one. A key never seen is not empty.
func (l *Limiter) Empty(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return false, 0
	}
	tokens := b.tokens
	if el := now.Sub(b.last); el > 0 {
		tokens = math.Min(float64(l.rate.Burst), tokens+el.Seconds()*l.rate.PerSecond)
	}
	if tokens >= 1 {
		return false, 0
	}
	return true, max(time.Duration((1-tokens)/l.rate.PerSecond*float64(time.Second)), time.Millisecond)
}

// sweep forgets the buckets that are full again (forgetting them changes
// nothing), then, if still too many, any until half are left: such a key
// gets a full bucket back, the price of bounded memory.
func (l *Limiter) sweep(now time.Time) {
	full := time.Duration(float64(l.rate.Burst) / l.rate.PerSecond * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) <= l.max/2 {
			break
		}
		delete(l.buckets, k)
	}
}
