package node

import (
	"testing"
	"time"
)

// TestDebugLinesBounded: at most debugLinesPerSecond lines a second; the
// lines suppressed are counted on the next one allowed.
func TestDebugLinesBounded(t *testing.T) {
	var d debugLines
	t0 := time.Unix(1000, 0)
	allowed := 0
	for i := range 3 * debugLinesPerSecond {
		if ok, _ := d.allow(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			allowed++
		}
	}
	if allowed != debugLinesPerSecond {
		t.Errorf("%d lines allowed in one second, want %d", allowed, debugLinesPerSecond)
	}
	ok, suppressed := d.allow(t0.Add(time.Second))
	if !ok || suppressed != 2*debugLinesPerSecond {
		t.Errorf("next second: allowed %v, suppressed %d; want true, %d", ok, suppressed, 2*debugLinesPerSecond)
	}
}
