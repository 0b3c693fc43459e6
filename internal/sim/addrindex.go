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

// addrIndex finds a peer by its address: the lookup of every packet the
// network routes. IPv4 addresses (all the simulator gives out) go in an
// open-addressing table keyed by address and port, at most half full;
// others in a map. A map keyed by netip.AddrPort cost 3% of a run of
// 100,000 nodes in hashing and probing alone. Peers at their
// ScatteredAddr (most of them) need no table at all: Network.peerAt
// inverts the address.
type addrIndex struct {
	keys  []uint64 // ip<<16 | port + 1; 0: empty
	peers []int32
	n     int
	other map[netip.AddrPort]int32
}

// key4 packs an IPv4 address and port into a nonzero key.
func key4(a netip.AddrPort) uint64 {
	ip := a.Addr().As4()
	return (uint64(ip[0])<<24|uint64(ip[1])<<16|uint64(ip[2])<<8|uint64(ip[3]))<<16 | uint64(a.Port()) + 1
}

// slot is the home slot of key k: a multiplicative hash (Fibonacci
// hashing), whose high bits mix every bit of the key.
func (x *addrIndex) slot(k uint64) int {
	return int((k * 0x9e3779b97f4a7c15) >> 32 & uint64(len(x.keys)-1))
}

// get returns the peer at a.
func (x *addrIndex) get(a netip.AddrPort) (int32, bool) {
	if !a.Addr().Is4() {
		p, ok := x.other[a]
		return p, ok
	}
	if x.n == 0 {
		return 0, false
	}
	k := key4(a)
	mask := len(x.keys) - 1
	for i := x.slot(k); ; i = (i + 1) & mask {
		switch x.keys[i] {
		case k:
			return x.peers[i], true
		case 0:
			return 0, false
		}
	}
}

// set records that peer p is at a; a later set of the same address wins.
func (x *addrIndex) set(a netip.AddrPort, p int32) {
	if !a.Addr().Is4() {
		if x.other == nil {
			x.other = make(map[netip.AddrPort]int32)
		}
		x.other[a] = p
		return
	}
	if (x.n+1)*2 > len(x.keys) {
		old, oldPeers := x.keys, x.peers
		x.keys, x.peers = make([]uint64, max(64, 2*len(old))), make([]int32, max(64, 2*len(old)))
		for i, k := range old {
			if k != 0 {
				x.put(k, oldPeers[i])
			}
		}
	}
	if x.put(key4(a), p) {
		x.n++
	}
}

// put stores p under k and reports whether k is new.
func (x *addrIndex) put(k uint64, p int32) bool {
	mask := len(x.keys) - 1
	i := x.slot(k)
	for x.keys[i] != 0 && x.keys[i] != k {
		i = (i + 1) & mask
	}
	fresh := x.keys[i] == 0
	x.keys[i], x.peers[i] = k, p
	return fresh
}
