//go:build linux

package krpc

import (
	"runtime"
	"syscall"
	"unsafe"
)

// newBucketTable returns n zeroed buckets for l. The table is fixed and
// holds no pointers, so it lives in an anonymous mapping of its own
// rather than in the Go heap: its pages are zero-filled on first touch as
// a heap allocation's are (only the slots that sources hash to become
// resident), but its size (1 MiB by default) does not count as live heap,
// which would otherwise raise the collector's goal by that much and let
// as much garbage pile up between collections. The mapping is released
// when l is collected. If the mapping fails, the table is an ordinary heap
// slice.
func newBucketTable(l *IPLimiter, n int) []ipBucket {
	size := n * int(unsafe.Sizeof(ipBucket{}))
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
	if err != nil {
		return make([]ipBucket, n)
	}
	runtime.AddCleanup(l, func(mem []byte) { _ = syscall.Munmap(mem) }, mem)
	return unsafe.Slice((*ipBucket)(unsafe.Pointer(unsafe.SliceData(mem))), n)
}
