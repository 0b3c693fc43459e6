//go:build !linux

package krpc

// newBucketTable returns n zeroed buckets for l, in the Go heap.
func newBucketTable(_ *IPLimiter, n int) []ipBucket { return make([]ipBucket, n) }
