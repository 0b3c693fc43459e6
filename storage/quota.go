package storage

// Per-source quotas and the eviction order the item and peer stores share.
// Every stored item and every infohash is charged to the network it came
// from: the /24 of an IPv4 source, the /48 of an IPv6 one. A network may hold
// at most MaxPerSource entries; when a store is at its bound, room is taken
// from the network holding the most, and only if it holds more than the
// writer's. So a network never displaces the entries of a network holding
// as few as it does, and a burst from a few networks is refused once each
// holds as much as the largest of the others.

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/dhtd/dhtd/krpc"
)

// ErrQuota is returned (wrapped) by ItemStore.PutFrom and PeerStore.Announce
// when the source network (/24 for IPv4, /48 for IPv6) already holds its
// quota (ItemConfig.MaxPerSource, PeerConfig.MaxPerSource) and the write
// would add a new entry. Test with errors.Is.
var ErrQuota = errors.New("storage: source network over its storage quota")

// DefaultSourceShare is the default quota of one source network as a
// divisor of the store's count bound: 1/50, so 2% of the store (200 of the
// default 10000 items or infohashes).
const DefaultSourceShare = 50

// sourceKey is the network a write came from: the first 24 bits of an IPv4
// address or the first 48 bits of an IPv6 one, with the family (4 or 6) in
// the top byte. The zero key stands for writes of unknown origin (restored
// from disk, or stored without a source).
type sourceKey uint64

func sourceKey4(net uint64) sourceKey { return sourceKey(4<<56 | net) }
func sourceKey6(net uint64) sourceKey { return sourceKey(6<<56 | net) }

// sourceOf returns the source network of ip (IPv4-mapped addresses count as
// IPv4); an invalid ip gives the unknown key.
func sourceOf(ip netip.Addr) sourceKey {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		b := ip.As4()
		return sourceKey4(uint64(b[0])<<16 | uint64(b[1])<<8 | uint64(b[2]))
	case ip.Is6():
		b := ip.As16()
		return sourceKey6(binary.BigEndian.Uint64(b[:8]) >> 16)
	}
	return 0
}

// addr returns the first address of the network k stands for (which
// sourceOf maps back to k), or the invalid address for the unknown key.
func (k sourceKey) addr() netip.Addr {
	switch k >> 56 {
	case 4:
		n := uint64(k)
		return netip.AddrFrom4([4]byte{byte(n >> 16), byte(n >> 8), byte(n), 0})
	case 6:
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], uint64(k)<<16)
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

// valid reports whether k is a key sourceOf can return: the unknown key, or
// a family of 4 or 6 with no bits beyond its network.
func (k sourceKey) valid() bool {
	switch k >> 56 {
	case 0:
		return k == 0
	case 4:
		return uint64(k)&(1<<56-1) < 1<<24
	case 6:
		return uint64(k)&(1<<56-1) < 1<<48
	}
	return false
}

// quotaExempt reports whether writes from ip skip the per-source quota:
// those of unknown origin, and loopback ones unless limitLoopback is set.
// Exempt writes still count in their network's share for eviction.
func quotaExempt(ip netip.Addr, limitLoopback bool) bool {
	ip = ip.Unmap()
	return !ip.IsValid() || (!limitLoopback && ip.IsLoopback())
}

// sourceQuota returns the effective per-source quota from the configured
// value and the store's count bound: the default share if zero, none (-1)
// if negative.
func sourceQuota(configured, bound int) int {
	switch {
	case configured < 0:
		return -1
	case configured == 0:
		return max(1, bound/DefaultSourceShare)
	}
	return configured
}

// usage is what the eviction order knows of a stored entry.
type usage struct {
	refs    uint32  // re-puts, re-announces, and reads by other networks
	stored  int64   // unix ns when first stored
	lastRef int64   // unix ns of the last ref (stored if none)
	dist    krpc.ID // XOR distance to our id: the last tie-break
	gidx    int32   // index in its group's heap
}

// touch records a ref (a re-put, re-announce, or a read by another network).
func (u *usage) touch(now int64) {
	if u.refs < 1<<31 {
		u.refs++
	}
	u.lastRef = max(u.lastRef, now)
}

// evictsBefore reports whether u goes before o within one network's
// entries: unreferenced entries first, the newest of them first (a burst
// goes before what was there before it); then referenced ones, least
// recently referenced first, then fewest refs; then the one farther from
// our id.
func (u *usage) evictsBefore(o *usage) bool {
	if (u.refs == 0) != (o.refs == 0) {
		return u.refs == 0
	}
	if u.refs == 0 {
		if u.stored != o.stored {
			return u.stored > o.stored
		}
	} else {
		if u.lastRef != o.lastRef {
			return u.lastRef < o.lastRef
		}
		if u.refs != o.refs {
			return u.refs < o.refs
		}
	}
	return o.dist.Less(u.dist)
}

// member is a stored entry charged to a source network.
type member interface {
	comparable
	use() *usage
}

// group is the entries charged to one source network, as a heap whose root
// is the first to evict.
type group[T member] struct {
	key     sourceKey
	members []T
	lastAdd int64 // unix ns of the newest charge
	idx     int   // index in groups.order
}

func (g *group[T]) Len() int           { return len(g.members) }
func (g *group[T]) Less(i, j int) bool { return g.members[i].use().evictsBefore(g.members[j].use()) }
func (g *group[T]) Swap(i, j int) {
	g.members[i], g.members[j] = g.members[j], g.members[i]
	g.members[i].use().gidx, g.members[j].use().gidx = int32(i), int32(j)
}
func (g *group[T]) Push(x any) {
	m := x.(T)
	m.use().gidx = int32(len(g.members))
	g.members = append(g.members, m)
}
func (g *group[T]) Pop() any {
	var zero T
	n := len(g.members) - 1
	m := g.members[n]
	g.members[n] = zero
	g.members = g.members[:n]
	m.use().gidx = -1
	return m
}

// groupOrder is a heap of groups whose root is the network to take room
// from first: the one holding the most, and of those the one that added
// last.
type groupOrder[T member] []*group[T]

func (h groupOrder[T]) Len() int { return len(h) }
func (h groupOrder[T]) Less(i, j int) bool {
	if a, b := len(h[i].members), len(h[j].members); a != b {
		return a > b
	}
	return h[i].lastAdd > h[j].lastAdd
}
func (h groupOrder[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *groupOrder[T]) Push(x any) {
	g := x.(*group[T])
	g.idx = len(*h)
	*h = append(*h, g)
}
func (h *groupOrder[T]) Pop() any {
	old := *h
	g := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return g
}

// groups charges entries to source networks. Memory is one group per
// network with at least one entry, so it is bounded by the entries.
type groups[T member] struct {
	byKey map[sourceKey]*group[T]
	order groupOrder[T]
}

func newGroups[T member]() groups[T] {
	return groups[T]{byKey: make(map[sourceKey]*group[T])}
}

// top returns how many source networks hold entries, and how many entries
// the network holding the most has.
func (gs *groups[T]) top() (sources, most int) {
	if len(gs.order) > 0 {
		most = len(gs.order[0].members)
	}
	return len(gs.byKey), most
}

// count returns how many entries are charged to k.
func (gs *groups[T]) count(k sourceKey) int {
	if g := gs.byKey[k]; g != nil {
		return len(g.members)
	}
	return 0
}

// add charges m to k at now.
func (gs *groups[T]) add(k sourceKey, m T, now int64) {
	g := gs.byKey[k]
	if g == nil {
		g = &group[T]{key: k}
		gs.byKey[k] = g
		heap.Push(&gs.order, g)
	}
	heap.Push(g, m)
	g.lastAdd = max(g.lastAdd, now)
	heap.Fix(&gs.order, g.idx)
}

// remove uncharges m from k.
func (gs *groups[T]) remove(k sourceKey, m T) {
	g := gs.byKey[k]
	if g == nil || m.use().gidx < 0 {
		return
	}
	heap.Remove(g, int(m.use().gidx))
	if len(g.members) == 0 {
		heap.Remove(&gs.order, g.idx)
		delete(gs.byKey, k)
		return
	}
	heap.Fix(&gs.order, g.idx)
}

// fix restores m's place after its usage changed.
func (gs *groups[T]) fix(k sourceKey, m T) {
	if g := gs.byKey[k]; g != nil && m.use().gidx >= 0 {
		heap.Fix(g, int(m.use().gidx))
	}
}

// victim returns the entry to evict so that a write charged to putter
// fits: the first of the network holding the most, if that network holds
// strictly more than putter does. Otherwise there is no fair victim: every
// network holds at most as much as putter, and ok is false.
func (gs *groups[T]) victim(putter sourceKey) (m T, k sourceKey, ok bool) {
	if len(gs.order) == 0 {
		return m, k, false
	}
	g := gs.order[0]
	if len(g.members) <= gs.count(putter) {
		return m, k, false
	}
	return g.members[0], g.key, true
}
