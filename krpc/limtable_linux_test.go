//go:build linux

package krpc

import (
	"runtime"
	"testing"
	"unsafe"
)

// TestIPLimiterTableOffHeap: the limiter's table (1 MiB with the default
// slots) is not allocated from the Go heap, so it does not count in the
// collector's goal; it starts zeroed and works.
func TestIPLimiterTableOffHeap(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l := NewIPLimiter(IPLimiterConfig{})
	runtime.ReadMemStats(&after)
	size := uint64(len(l.slots)) * uint64(unsafe.Sizeof(ipBucket{}))
	if size < 1<<20 {
		t.Fatalf("table of %d bytes, want the default 1 MiB", size)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got >= size/2 {
		t.Fatalf("the Go heap allocated %d bytes for a %d-byte table", got, size)
	}
	for i, b := range l.slots {
		if b != (ipBucket{}) {
			t.Fatalf("slot %d = %+v, want zero", i, b)
		}
	}
	runtime.KeepAlive(l)
}
