package cputime

import (
	"runtime"
	"testing"
	"time"
)

// TestMeterCountsBusyWork spins inside a span until the meter sees CPU
// time (bounded by a deadline), then checks that a stopped meter stays
// still.
func TestMeterCountsBusyWork(t *testing.T) {
	if runtime.GOOS == "windows" || Process() == 0 {
		t.Skip("no CPU time on this system")
	}
	var m Meter
	m.Start()
	deadline := time.Now().Add(10 * time.Second)
	for m.Total() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("10 s of busy work counted no CPU time")
		}
	}
	m.Stop()
	got := m.Total()
	if again := m.Total(); again != got {
		t.Fatalf("a stopped meter moved from %v to %v", got, again)
	}
	if per := m.PerOp(0); per != 0 {
		t.Fatalf("PerOp(0) = %v, want 0", per)
	}
}
