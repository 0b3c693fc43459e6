package routing

import (
	"math/bits"
	"net/netip"
	"slices"

	"github.com/dhtd/dhtd/krpc"
)

// idBits is the number of bits in a node id (BEP 5: 160-bit space).
const idBits = krpc.IDLen * 8

// CommonPrefixLen returns the number of leading bits a and b share, 0..160.
// The bucket a node belongs to is indexed by its common prefix length with
// our own id (docs/protocol.md, Ids and distance and Table shape).
func CommonPrefixLen(a, b krpc.ID) int {
	for i := range a {
		if x := a[i] ^ b[i]; x != 0 {
			return i*8 + bits.LeadingZeros8(x)
		}
	}
	return idBits
}

// CompareDistance compares the XOR distances of a and b to target (BEP 5:
// distance is XOR read as an unsigned big-endian integer). It returns -1 if
// a is closer to target than b, +1 if b is closer, and 0 if a == b.
func CompareDistance(target, a, b krpc.ID) int {
	for i := range target {
		da, db := a[i]^target[i], b[i]^target[i]
		if da != db {
			if da < db {
				return -1
			}
			return 1
		}
	}
	return 0
}

// RandomIDInBucket returns a random id that falls in bucket i of a table
// owned by self (docs/protocol.md, Refresh, BEP 5 bucket refresh): its first i bits equal
// self's, bit i is flipped unless the bucket is the last (catch-all) one, and
// the remaining bits are random. i is clamped to 0..160; for a non-last
// bucket with i == 160 there is no bit to flip and self is returned.
func RandomIDInBucket(self krpc.ID, i int, last bool) krpc.ID {
	i = min(max(i, 0), idBits)
	id := krpc.RandomID()
	full := i / 8
	copy(id[:full], self[:full])
	if rem := i % 8; rem != 0 {
		mask := byte(0xff) << (8 - rem) // the top rem bits come from self
		id[full] = self[full]&mask | id[full]&^mask
	}
	if !last && i < idBits {
		bit := byte(0x80) >> (i % 8)
		id[i/8] = id[i/8]&^bit | (self[i/8]^bit)&bit
	}
	return id
}

// SortByDistance sorts nodes in place by increasing XOR distance of their
// ids to target (BEP 5). Nodes with equal ids keep their relative order.
func SortByDistance(target krpc.ID, nodes []krpc.NodeInfo) {
	slices.SortStableFunc(nodes, func(a, b krpc.NodeInfo) int {
		return CompareDistance(target, a.ID, b.ID)
	})
}

// Subnet returns the /24 (IPv4) or /64 (IPv6) that holds ip: the unit of
// the anti-Sybil limits (docs/protocol.md, Admission, practice libtorrent).
func Subnet(ip netip.Addr) netip.Prefix { return subnetOf(ip.Unmap()) }
