package node

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Amplification guard: a reply to a querier that has not shown
// it owns its source address stays small, so a spoofed query cannot make
// us send a victim much more than the attacker sent.
//
// A querier has shown it owns its address when it presented a valid write
// token (announce_peer or put: the token came back from the address we
// sent it to) or answered one of our queries (the answer carried our
// random transaction id from that address). Such addresses are remembered
// for ownerTTL in a fixed table (ownerSlots entries indexed by a keyed hash,
// like krpc.IPLimiter: bounded whatever the traffic; two addresses sharing
// a slot share its fate, which only ever lets a reply be larger).
//
// Replies to other queriers are kept to Config.UnverifiedReplyBytes: a
// get_peers reply carries fewer values, and its BEP 33 bloom filters in
// place of its nodes, a
// sample_infohashes reply fewer samples, a BEP 44 get reply that holds a
// value leaves out its nodes. The value itself is never withheld: BEP 44
// gives a getter no way to prove its address first, so a stored value of
// up to 1000 bytes is the bound there, and the global reply budget
// (Config.ReplyBytesPerSecond) bounds the total.

const (
	ownerSlots = 1 << 12          // 4096 x 24 bytes = 96 KiB
	ownerTTL   = 30 * time.Minute // a token lives 5 to 10 minutes; answers recur
)

// owners remembers addresses that have shown they are who they say.
type owners struct {
	seed  maphash.Seed
	mu    sync.Mutex
	slots [ownerSlots]ownerSlot
}

type ownerSlot struct {
	ip      [16]byte
	expires int64 // unix nanoseconds; 0 for an empty slot
}

func newOwners() *owners { return &owners{seed: maphash.MakeSeed()} }

func (o *owners) slot(ip netip.Addr) (*ownerSlot, [16]byte) {
	k := ip.Unmap().As16()
	return &o.slots[maphash.Bytes(o.seed, k[:])&(ownerSlots-1)], k
}

// add records that ip has shown it owns its address, at now.
func (o *owners) add(ip netip.Addr, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, k := o.slot(ip)
	s.ip, s.expires = k, now.Add(ownerTTL).UnixNano()
}

// has reports whether ip has shown it owns its address within ownerTTL.
func (o *owners) has(ip netip.Addr, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, k := o.slot(ip)
	return s.ip == k && now.UnixNano() < s.expires
}

// replyCap returns the most bytes a reply to from may take, and whether a
// cap applies at all.
func (n *Node) replyCap(from netip.AddrPort, now time.Time) (int, bool) {
	if n.cfg.UnverifiedReplyBytes < 0 || n.owners.has(from.Addr(), now) {
		return 0, false
	}
	return n.cfg.UnverifiedReplyBytes, true
}
