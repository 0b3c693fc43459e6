package krpc

import (
	"crypto/sha1"
	"math"
	"math/bits"
	"net/netip"
)

// BloomBits is m, the number of bits of a BEP 33 bloom filter.
const BloomBits = BloomLen * 8

// Add inserts ip (BEP 33: only the address, 4 bytes for IPv4, 16 for IPv6,
// no port): with h = SHA-1(ip), the bits (h[0] | h[1]<<8) % 2048 and
// (h[2] | h[3]<<8) % 2048 are set, bit i being 1<<(i%8) of byte i/8.
func (f *Bloom) Add(ip netip.Addr) {
	ip = ip.Unmap()
	var h [sha1.Size]byte
	if ip.Is4() {
		a := ip.As4()
		h = sha1.Sum(a[:])
	} else {
		a := ip.As16()
		h = sha1.Sum(a[:])
	}
	for _, i := range [2]int{int(h[0]) | int(h[1])<<8, int(h[2]) | int(h[3])<<8} {
		i %= BloomBits
		f[i/8] |= 1 << (i % 8)
	}
}

// Union sets f to the bitwise OR of f and g (BEP 33: the filter of the
// union of both sets).
func (f *Bloom) Union(g *Bloom) {
	for i := range f {
		f[i] |= g[i]
	}
}

// ZeroBits returns the number of bits not set.
func (f *Bloom) ZeroBits() int {
	n := 0
	for _, b := range f {
		n += 8 - bits.OnesCount8(b)
	}
	return n
}

// Estimate returns the estimated number of distinct IPs inserted (BEP 33):
// with c = min(m-1, zero bits), n = ln(c/m) / (k * ln(1 - 1/m)), k = 2.
// An empty filter estimates 0 (the formula would give 0.5); a saturated
// one about 7,800 (c = 1).
func (f *Bloom) Estimate() float64 {
	z := f.ZeroBits()
	if z == BloomBits {
		return 0
	}
	c := min(BloomBits-1, z)
	m := float64(BloomBits)
	return math.Log(float64(c)/m) / (2 * math.Log(1-1/m))
}
