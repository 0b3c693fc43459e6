package sim

import "net/netip"

// Scattered addresses: the i-th peer's address is 16.0.0.0 plus i times
// an odd multiplier modulo 2^27 (a bijection, so the addresses are
// distinct and spread over 2^27 of them, /24s and all), port 6881.
const (
	scatterBase = 16 << 24
	scatterBits = 27
	scatterMul  = 2654435761
	scatterInv  = 109784913 // scatterMul × scatterInv = 1 modulo 2^27
	scatterPort = 6881
)

// ScatteredAddr returns the address of the i-th peer of a network (of at
// most 2^27) that places its peers at scattered addresses, as the
// scenarios do: the network finds such a peer from its address with one
// multiplication, where others need a table lookup.
func ScatteredAddr(i int32) netip.AddrPort {
	v := scatterBase + (uint32(i)*scatterMul)&(1<<scatterBits-1)
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), scatterPort)
}

// scatteredIndex returns the index i whose ScatteredAddr is a, if a is
// one.
func scatteredIndex(a netip.AddrPort) (int32, bool) {
	if a.Port() != scatterPort || !a.Addr().Is4() {
		return 0, false
	}
	ip := a.Addr().As4()
	v := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
	if v-scatterBase >= 1<<scatterBits {
		return 0, false
	}
	return int32(((v - scatterBase) * scatterInv) & (1<<scatterBits - 1)), true
}
