// Package cputime reads the CPU time the process has used, for
// benchmarks that report CPU per unit of work: a figure that moves far
// less than wall time when other work competes for the cores.
package cputime

import "time"

// Meter adds up the process's CPU time (user and system, all threads)
// over the spans between Start and Stop.
type Meter struct {
	start   time.Duration
	running bool
	total   time.Duration
}

// Start begins a span; a running span is left as it is.
func (m *Meter) Start() {
	if !m.running {
		m.start, m.running = Process(), true
	}
}

// Stop ends the running span and adds it to the total.
func (m *Meter) Stop() {
	if m.running {
		m.total += Process() - m.start
		m.running = false
	}
}

// Total returns the CPU time of the spans so far, the running one
// included.
func (m *Meter) Total() time.Duration {
	if m.running {
		return m.total + Process() - m.start
	}
	return m.total
}

// PerOp returns the total in microseconds per op (0 when n is 0).
func (m *Meter) PerOp(n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(m.Total().Microseconds()) / float64(n)
}
