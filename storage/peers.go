package storage

import (
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// Peer store defaults. BEP 5 is silent on all of them; see docs/protocol.md, Peer store and
// docs/protocol.md, Limits for what libtorrent (45 min, 2000 infohashes, 500 peers) and
// others do.
const (
	// DefaultPeerTTL is how long a peer is kept after its last announce.
	// Clients re-announce every 15 to 30 minutes.
	DefaultPeerTTL = 30 * time.Minute
	// DefaultMaxInfohashes bounds the number of infohashes stored.
	DefaultMaxInfohashes = 10000
	// DefaultMaxPeersPerInfohash bounds the peers of one infohash, per
	// address family. BEP 33 wants fewer than 6000 per infohash so its bloom
	// filters stay useful.
	DefaultMaxPeersPerInfohash = 500
	// DefaultPeerMaxBytes is the default byte budget of the whole store.
	DefaultPeerMaxBytes = 64 << 20
)

// Cost estimates charged against PeerConfig.MaxBytes, in bytes. An IPv4
// peer entry is 16 bytes and an IPv6 one 32, kept in per-infohash sorted
// slices whose capacity may exceed their length; an infohash costs a map
// entry, a heap slot and a 96-byte header. BenchmarkPeerStoreMemory
// measures about 17 B per IPv4 peer and 33 B per IPv6 peer in full
// infohashes, and about 230 B per infohash; the charges are set above that
// to cover slice and map growth, so the heap stays within MaxBytes.
const (
	PeerCost4    = 24  // bytes charged per stored IPv4 peer
	PeerCost6    = 48  // bytes charged per stored IPv6 peer
	InfohashCost = 256 // bytes charged per stored infohash, on top of its peers
)

// sweepInterval is how often Announce and Infohashes run a full expiry pass
// (libtorrent purges every 2 minutes).
const sweepInterval = time.Minute

// PeerConfig bounds a PeerStore. The zero value of each field selects the
// default, as does any negative value.
type PeerConfig struct {
	// TTL is how long a peer stays after its last announce (default
	// DefaultPeerTTL, 30 min).
	TTL time.Duration
	// MaxInfohashes is the most infohashes stored (default 10000).
	MaxInfohashes int
	// MaxPeersPerInfohash is the most peers stored per infohash and address
	// family: an infohash holds up to this many IPv4 and as many IPv6
	// peers (default 500).
	MaxPeersPerInfohash int
	// MaxBytes is the byte budget of the whole store (default 64 MiB),
	// counted as PeerCost4 or PeerCost6 per peer plus InfohashCost per
	// infohash.
	MaxBytes int64
	// MaxPerSource is the most peer entries one source network (the /24 of
	// an IPv4 peer, the /48 of an IPv6 one) may have stored, over all
	// infohashes, so also the most infohashes it can occupy; an announce
	// that would add an entry beyond it is refused (ErrQuota). Re-announces
	// are always accepted. Default MaxInfohashes/DefaultSourceShare (2%,
	// 200), at least 1; negative disables the quota.
	MaxPerSource int
	// LimitLoopback applies MaxPerSource to loopback peers too, which are
	// exempt by default so local test networks work.
	LimitLoopback bool
}

func (c PeerConfig) withDefaults() PeerConfig {
	if c.TTL <= 0 {
		c.TTL = DefaultPeerTTL
	}
	if c.MaxInfohashes <= 0 {
		c.MaxInfohashes = DefaultMaxInfohashes
	}
	if c.MaxPeersPerInfohash <= 0 {
		c.MaxPeersPerInfohash = DefaultMaxPeersPerInfohash
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultPeerMaxBytes
	}
	c.MaxPerSource = sourceQuota(c.MaxPerSource, c.MaxInfohashes)
	return c
}

// PeerStats is a snapshot of a PeerStore's gauges and counters. Peers whose
// TTL passed count in Peers and Bytes until they are swept.
type PeerStats struct {
	Infohashes int   // infohashes stored
	Peers      int   // peers stored, both families
	Bytes      int64 // estimated bytes held (see PeerCost4, PeerCost6, InfohashCost)
	Sources    int   // source networks (/24, /48) that infohashes are charged to
	TopSource  int   // infohashes charged to the network holding the most

	Announces uint64 // announces stored as a new (infohash, IP) entry
	Refreshes uint64 // announces that updated an existing entry in place
	Expired   uint64 // peers removed because their TTL passed

	// EvictedPeers counts peers dropped, oldest announce first, to make room
	// in a full infohash family.
	EvictedPeers uint64
	// EvictedPeersBytes counts peers dropped, oldest announce first, when
	// the byte budget was full and no infohash could be evicted, for
	// another peer of the same infohash and family.
	EvictedPeersBytes uint64
	// EvictedInfohashes counts infohashes dropped, with all their peers,
	// to make room (count or byte bound), from the source network that
	// created the most stored infohashes.
	EvictedInfohashes uint64
	// RefusedInfohashes counts announces dropped because MaxInfohashes was
	// reached and no network created more stored infohashes than the
	// announcer's.
	RefusedInfohashes uint64
	// RefusedBytes counts announces dropped because MaxBytes was reached
	// and neither an infohash nor an older peer of the same family and
	// infohash could be evicted.
	RefusedBytes uint64
	// RefusedQuota counts announces dropped because the peer's network
	// held MaxPerSource entries.
	RefusedQuota uint64
	// RefusedInvalid counts announces dropped for an invalid or unspecified
	// address or port 0.
	RefusedInvalid uint64
}

// PeerStore keeps the peers announced to us per infohash (BEP 5
// announce_peer), for get_peers replies, BEP 33 scrapes and BEP 51 samples.
//
// Entries are unique per (infohash, IP) as BEP 33 requires: a re-announce
// from the same IP updates port, seed flag and time in place. IPv4 and IPv6
// peers of an infohash are kept apart (BEP 32: values follow the family of
// the transport); IPv4-mapped IPv6 addresses count as IPv4. A peer expires
// TTL after its last announce.
//
// Quota: a source network (/24, /48) holds at most MaxPerSource entries
// (loopback exempt unless LimitLoopback); an announce beyond it is refused.
// Each infohash is charged to the network whose peer created it.
//
// Eviction policy when a bound is hit:
//   - A full infohash family (MaxPeersPerInfohash) drops its
//     oldest-announced peer for the newcomer.
//   - When the infohash count (MaxInfohashes) or the byte budget (MaxBytes)
//     is full, an infohash charged to the network with the most infohashes
//     is evicted, if that network has strictly more than the announcer's;
//     of its infohashes, unreferenced ones go first, newest first, then the
//     least recently referenced. A re-announce, a peer from another network
//     joining, or a get_peers from another network (PeersFrom) references
//     an infohash. Otherwise the announce is refused (for a byte-budget
//     refusal of a stored infohash, its own oldest peer of the same family
//     is replaced instead if there is one). So a burst from a few networks
//     can only displace infohashes of networks holding more than they do.
//
// Expiry is lazy and amortised: a lookup of an infohash first drops its
// expired peers, and Announce and Infohashes run a full sweep at most once a
// minute (of the now they are given), so memory stays bounded without the
// caller having to call Expire.
//
// A PeerStore is safe for concurrent use.
type PeerStore struct {
	cfg PeerConfig
	ttl int64 // cfg.TTL in nanoseconds

	mu        sync.Mutex
	swarms    map[krpc.ID]*swarm
	order     farthestFirst       // the same swarms, as a max-heap on distance to self
	bySource  groups[*swarm]      // the same swarms, per creating network (quota.go)
	entries   map[sourceKey]int32 // peer entries per source network
	peers     int
	bytes     int64
	nextSweep int64 // unix nanoseconds; a full sweep is due at or after it
	stats     PeerStats

	onRemove func(ih krpc.ID, addr netip.AddrPort) // SetOnRemove hook, nil if none
	toReport []removedPeer                         // evictions not yet reported to onRemove
}

// NewPeerStore returns an empty store for a node whose id is self (used to
// decide which infohashes to keep when full), bounded by cfg.
func NewPeerStore(self krpc.ID, cfg PeerConfig) *PeerStore {
	cfg = cfg.withDefaults()
	return &PeerStore{
		cfg:      cfg,
		ttl:      int64(cfg.TTL),
		swarms:   make(map[krpc.ID]*swarm),
		order:    farthestFirst{self: self},
		bySource: newGroups[*swarm](),
		entries:  make(map[sourceKey]int32),
	}
}

// Config returns the bounds in force, defaults filled in.
func (s *PeerStore) Config() PeerConfig { return s.cfg }

// Announce records that peer announced itself for ih at now (BEP 5
// announce_peer, with the port already resolved for implied_port, seed per
// BEP 33). It may evict or refuse as described on PeerStore; every outcome
// is counted in Stats. Its error says whether it stored the peer: nil
// exactly when the peer is stored (added, or refreshed if it was there),
// else an error wrapping ErrQuota, ErrStoreFull, or ErrInvalidPeer and
// nothing of the peer is kept.
//
// Peers and infohashes evicted by Announce are reported to the SetOnRemove
// hook, if any, after the store's lock is released and before Announce
// returns.
func (s *PeerStore) Announce(ih krpc.ID, peer netip.AddrPort, seed bool, now time.Time) error {
	t := now.UnixNano()
	s.mu.Lock()
	err := s.announceLocked(ih, peer, seed, t, t)
	s.unlockAndReport()
	return err
}

// ErrInvalidPeer is returned (wrapped) by PeerStore.Announce for an invalid
// or unspecified address or port 0.
var ErrInvalidPeer = errors.New("storage: invalid peer address")

// announceLocked is Announce of a peer last announced at t, with the store's
// clock at now (both unix nanoseconds); s.mu is held.
func (s *PeerStore) announceLocked(ih krpc.ID, peer netip.AddrPort, seed bool, t, now int64) error {
	ip := peer.Addr().Unmap()
	if !ip.IsValid() || ip.IsUnspecified() || peer.Port() == 0 {
		s.stats.RefusedInvalid++
		return fmt.Errorf("announce %s for %s: %w", peer, ih, ErrInvalidPeer)
	}
	s.sweepIfDue(now)
	a := announce{ih: ih, src: sourceOf(ip), exempt: quotaExempt(ip, s.cfg.LimitLoopback), t: t}
	var err error
	if ip.Is4() {
		err = announcePeer(s, &a, keyOf4(ip), peer.Port(), seed, PeerCost4, (*swarm).list4)
	} else {
		err = announcePeer(s, &a, keyOf6(ip), peer.Port(), seed, PeerCost6, (*swarm).list6)
	}
	if err != nil {
		return fmt.Errorf("announce %s for %s: %w", peer, ih, err)
	}
	return nil
}

// QuotaRefuses reports whether Announce(ih, peer, ...) would be refused by
// the per-source quota: peer's network holds MaxPerSource entries and peer
// is not stored under ih already (a re-announce always goes through). A node
// that writes announces to disk before it keeps them asks first, so that a
// flood over quota costs no disk write. The refusal is counted as
// Announce's would be.
func (s *PeerStore) QuotaRefuses(ih krpc.ID, peer netip.AddrPort, now time.Time) bool {
	ip := peer.Addr().Unmap()
	if quotaExempt(ip, s.cfg.LimitLoopback) || s.cfg.MaxPerSource < 0 {
		return false
	}
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(s.entries[sourceOf(ip)]) < s.cfg.MaxPerSource {
		return false
	}
	if sw := s.lookup(ih, t); sw != nil {
		stored := false
		each := func(a netip.AddrPort, _ bool) { stored = stored || a.Addr().Unmap() == ip }
		sw.v4.each(each)
		sw.v6.each(each)
		if stored {
			return false
		}
	}
	s.stats.RefusedQuota++
	return true
}

// announce is what announcePeer needs to know of an announce besides the
// peer itself.
type announce struct {
	ih     krpc.ID
	src    sourceKey // the peer's network
	exempt bool      // the quota does not apply
	t      int64     // unix ns of the announce
}

// overQuota reports whether a new entry from a.src would exceed the quota,
// counting the refusal; s.mu is held.
func (s *PeerStore) overQuota(a *announce) bool {
	if a.exempt || s.cfg.MaxPerSource < 0 || int(s.entries[a.src]) < s.cfg.MaxPerSource {
		return false
	}
	s.stats.RefusedQuota++
	return true
}

// announcePeer is Announce for one address family; s.mu is held. list selects
// the family's peer list of a swarm and cost is the family's per-peer cost.
func announcePeer[K ipKey[K]](s *PeerStore, a *announce, ip K, port uint16, seed bool, cost int64, list func(*swarm) *peerList[K]) error {
	ih, t := a.ih, a.t
	fresh := peerEntry[K]{ip: ip, port: port, seed: seed, last: t}
	sw := s.lookup(ih, t)
	if sw == nil {
		if s.overQuota(a) {
			return ErrQuota
		}
		// A new infohash: make room by evicting from the network that
		// created the most infohashes, or refuse.
		need := cost + InfohashCost
		for len(s.swarms) >= s.cfg.MaxInfohashes || s.bytes+need > s.cfg.MaxBytes {
			v, _, ok := s.bySource.victim(a.src)
			if !ok {
				if len(s.swarms) >= s.cfg.MaxInfohashes {
					s.stats.RefusedInfohashes++
				} else {
					s.stats.RefusedBytes++
				}
				return ErrStoreFull
			}
			s.evictSwarm(v)
		}
		sw = &swarm{ih: ih, oldest: t, newest: t, src: a.src,
			u: usage{stored: t, lastRef: t, dist: ih.Xor(s.order.self)}}
		s.swarms[ih] = sw
		heap.Push(&s.order, sw)
		s.bySource.add(a.src, sw, t)
		s.bytes += InfohashCost
		*list(sw) = peerList[K]{fresh}
		s.added(a.src, cost)
		return nil
	}

	l := list(sw)
	i, found := l.find(ip)
	if found {
		// BEP 33: unique per (infohash, IP); update port, seed flag and time.
		(*l)[i] = fresh
		sw.oldest = min(sw.oldest, t)
		sw.newest = max(sw.newest, t)
		s.touch(sw, t)
		s.stats.Refreshes++
		return nil
	}
	if s.overQuota(a) {
		return ErrQuota
	}
	if a.src != sw.src {
		s.touch(sw, t) // another network joined
	}
	if len(*l) >= s.cfg.MaxPeersPerInfohash || !s.roomFor(sw, a.src, cost) {
		if len(*l) == 0 {
			// Only reachable through the byte budget: nothing of ours to
			// replace and no infohash to evict.
			s.stats.RefusedBytes++
			return ErrStoreFull
		}
		if len(*l) >= s.cfg.MaxPeersPerInfohash {
			s.stats.EvictedPeers++
		} else {
			s.stats.EvictedPeersBytes++
		}
		// Replace the oldest peer of this family: cost neutral.
		if s.onRemove != nil {
			s.reportRemoved(ih, l.oldestAddr())
		}
		j, old := l.evictOldest()
		if j < i {
			i--
		}
		s.removed(old.src(), cost, 1)
	}
	*l = slices.Insert(*l, i, fresh)
	sw.oldest = min(sw.oldest, t)
	sw.newest = max(sw.newest, t)
	s.added(a.src, cost)
	return nil
}

// touch records a reference to sw at t; s.mu is held.
func (s *PeerStore) touch(sw *swarm, t int64) {
	sw.u.touch(t)
	s.bySource.fix(sw.src, sw)
}

// roomFor evicts infohashes other than sw, from the network that created
// the most while it created more than src, until cost more bytes fit in
// the budget, and reports whether they do; s.mu is held.
func (s *PeerStore) roomFor(sw *swarm, src sourceKey, cost int64) bool {
	if s.bytes+cost <= s.cfg.MaxBytes {
		return true
	}
	s.bySource.remove(sw.src, sw)
	defer s.bySource.add(sw.src, sw, sw.u.stored)
	for s.bytes+cost > s.cfg.MaxBytes {
		v, _, ok := s.bySource.victim(src)
		if !ok {
			return false
		}
		s.evictSwarm(v)
	}
	return true
}

func (s *PeerStore) added(src sourceKey, cost int64) {
	s.peers++
	s.bytes += cost
	s.entries[src]++
	s.stats.Announces++
}

// removed accounts for n peers of network src, of cost each, gone.
func (s *PeerStore) removed(src sourceKey, cost int64, n int) {
	s.peers -= n
	s.bytes -= cost * int64(n)
	if n == 0 {
		return
	}
	if c := s.entries[src] - int32(n); c > 0 {
		s.entries[src] = c
	} else {
		delete(s.entries, src)
	}
}

// removedList accounts for the peers of l gone; s.mu is held.
func removedList[K ipKey[K]](s *PeerStore, l peerList[K], cost int64) {
	for _, p := range l {
		s.removed(p.ip.src(), cost, 1)
	}
}

// evictSwarm drops sw and its peers to make room; s.mu is held.
func (s *PeerStore) evictSwarm(sw *swarm) {
	if s.onRemove != nil {
		s.reportRemoved(sw.ih, netip.AddrPort{})
	}
	removedList(s, sw.v4, PeerCost4)
	removedList(s, sw.v6, PeerCost6)
	s.deleteSwarm(sw)
	s.stats.EvictedInfohashes++
}

// deleteSwarm unlinks sw (whose peers are already accounted for); s.mu is held.
func (s *PeerStore) deleteSwarm(sw *swarm) {
	heap.Remove(&s.order, int(sw.pos))
	s.bySource.remove(sw.src, sw)
	delete(s.swarms, sw.ih)
	s.bytes -= InfohashCost
}

// lookup returns the swarm of ih with its expired peers dropped, or nil if
// there is none (left); s.mu is held.
func (s *PeerStore) lookup(ih krpc.ID, t int64) *swarm {
	sw := s.swarms[ih]
	if sw == nil || sw.oldest > t-s.ttl {
		return sw // nothing stored, or nothing expired (oldest is a lower bound)
	}
	if s.expirePeers(sw, t-s.ttl) {
		s.deleteSwarm(sw)
		return nil
	}
	return sw
}

// expirePeers drops the peers of sw announced at or before cutoff and
// reports whether sw is left empty (the caller unlinks it); s.mu is held.
func (s *PeerStore) expirePeers(sw *swarm, cutoff int64) (empty bool) {
	gone := func(k sourceKey, cost int64) { s.removed(k, cost, 1) }
	n4, old4, new4 := expireList(&sw.v4, cutoff, gone, PeerCost4)
	n6, old6, new6 := expireList(&sw.v6, cutoff, gone, PeerCost6)
	s.stats.Expired += uint64(n4 + n6)
	sw.oldest, sw.newest = min(old4, old6), max(new4, new6)
	return len(sw.v4)+len(sw.v6) == 0
}

// Expire removes every peer whose TTL has passed at now, and the infohashes
// left without peers. Callers need not call it (see PeerStore), but may, for
// instance to make Stats exact.
func (s *PeerStore) Expire(now time.Time) {
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(t)
}

// sweepIfDue sweeps if sweepInterval passed since the last sweep, or if the
// clock went back by more than that (a stale nextSweep must not stall
// sweeping); s.mu is held.
func (s *PeerStore) sweepIfDue(t int64) {
	if t >= s.nextSweep || t < s.nextSweep-2*int64(sweepInterval) {
		s.sweep(t)
	}
}

// sweep is Expire; s.mu is held. It costs one comparison per infohash plus
// a pass over the peers of the infohashes that have expired peers.
func (s *PeerStore) sweep(t int64) {
	s.nextSweep = t + int64(sweepInterval)
	cutoff := t - s.ttl
	kept := s.order.s[:0]
	for _, sw := range s.order.s {
		if sw.oldest <= cutoff && s.expirePeers(sw, cutoff) {
			s.bySource.remove(sw.src, sw)
			delete(s.swarms, sw.ih)
			s.bytes -= InfohashCost
			continue
		}
		sw.pos = int32(len(kept))
		kept = append(kept, sw)
	}
	clear(s.order.s[len(kept):])
	if len(kept) != len(s.order.s) {
		s.order.s = kept
		heap.Init(&s.order)
	}
}

// Peers returns a uniformly random sample, in random order, of at most limit
// distinct live peers of ih of one family: IPv6 if ipv6, else IPv4 (BEP 32:
// values follow the transport's family). The caller picks limit to fit the
// reply in its packet budget (docs/protocol.md, Limits: libtorrent sends 100 IPv4 or 25
// IPv6). rnd supplies the randomness (it is used under the store's lock, so
// a *rand.Rand private to the caller is fine); nil means the math/rand/v2
// top-level functions.
func (s *PeerStore) Peers(ih krpc.ID, ipv6 bool, limit int, now time.Time, rnd *rand.Rand) []netip.AddrPort {
	return s.PeersFrom(netip.Addr{}, ih, ipv6, limit, now, rnd)
}

// PeersFrom is Peers for a get_peers from the address from. A lookup from
// another network than the one ih is charged to references ih, which
// protects it from eviction (see PeerStore).
func (s *PeerStore) PeersFrom(from netip.Addr, ih krpc.ID, ipv6 bool, limit int, now time.Time, rnd *rand.Rand) []netip.AddrPort {
	if limit <= 0 {
		return nil
	}
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.lookup(ih, t)
	if sw == nil {
		return nil
	}
	if from.IsValid() && sourceOf(from) != sw.src {
		s.touch(sw, t)
	}
	if ipv6 {
		return samplePeers(sw.v6, limit, rnd)
	}
	return samplePeers(sw.v4, limit, rnd)
}

// NonSeeds is Peers restricted to the peers that did not announce as seeds:
// the values a get_peers with noseed=1 asks for (BEP 33: "the responding
// node should try to fill the values list with non-seed items").
func (s *PeerStore) NonSeeds(ih krpc.ID, ipv6 bool, limit int, now time.Time, rnd *rand.Rand) []netip.AddrPort {
	return s.NonSeedsFrom(netip.Addr{}, ih, ipv6, limit, now, rnd)
}

// NonSeedsFrom is NonSeeds for a get_peers from the address from, which
// references ih as PeersFrom does.
func (s *PeerStore) NonSeedsFrom(from netip.Addr, ih krpc.ID, ipv6 bool, limit int, now time.Time, rnd *rand.Rand) []netip.AddrPort {
	if limit <= 0 {
		return nil
	}
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.lookup(ih, t)
	if sw != nil && from.IsValid() && sourceOf(from) != sw.src {
		s.touch(sw, t)
	}
	switch {
	case sw == nil:
		return nil
	case ipv6:
		return sampleNonSeeds(sw.v6, limit, rnd)
	default:
		return sampleNonSeeds(sw.v4, limit, rnd)
	}
}

func sampleNonSeeds[K ipKey[K]](l peerList[K], limit int, rnd *rand.Rand) []netip.AddrPort {
	var pos []int32
	for i, p := range l {
		if !p.seed {
			pos = append(pos, int32(i))
		}
	}
	if len(pos) == 0 {
		return nil
	}
	var scratch [512]int32
	idx := randomIndices(len(pos), limit, rnd, scratch[:])
	out := make([]netip.AddrPort, len(idx))
	for i, j := range idx {
		p := l[pos[j]]
		out[i] = netip.AddrPortFrom(p.ip.addr(), p.port)
	}
	return out
}

func samplePeers[K ipKey[K]](l peerList[K], limit int, rnd *rand.Rand) []netip.AddrPort {
	if len(l) == 0 {
		return nil
	}
	var scratch [512]int32
	idx := randomIndices(len(l), limit, rnd, scratch[:])
	out := make([]netip.AddrPort, len(idx))
	for i, j := range idx {
		out[i] = netip.AddrPortFrom(l[j].ip.addr(), l[j].port)
	}
	return out
}

// Counts returns how many live peers of ih, both families, announced as
// seeds and as leechers (BEP 33 seed flag; absent or 0 means leecher).
func (s *PeerStore) Counts(ih krpc.ID, now time.Time) (seeds, leechers int) {
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.lookup(ih, t)
	if sw == nil {
		return 0, 0
	}
	s4, l4 := sw.v4.counts()
	s6, l6 := sw.v6.counts()
	return s4 + s6, l4 + l6
}

// Each calls fn for every live peer of ih, IPv4 ones first, with its seed
// flag (BEP 33 builds its BFsd and BFpe bloom filters from these; filter by
// family with addr.Addr().Is4()). fn runs under the store's lock: it must
// not call the PeerStore.
func (s *PeerStore) Each(ih krpc.ID, now time.Time, fn func(addr netip.AddrPort, seed bool)) {
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.lookup(ih, t)
	if sw == nil {
		return
	}
	sw.v4.each(fn)
	sw.v6.each(fn)
}

// Infohashes returns a uniformly random sample, in random order, of at most
// limit distinct infohashes that have live peers at now (BEP 51
// sample_infohashes; Stats().Infohashes gives its num). rnd is as for Peers.
func (s *PeerStore) Infohashes(limit int, now time.Time, rnd *rand.Rand) []krpc.ID {
	if limit <= 0 {
		return nil
	}
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepIfDue(t)
	var scratch [512]int32
	for {
		n := len(s.order.s)
		if n == 0 {
			return nil
		}
		idx := randomIndices(n, limit, rnd, scratch[:])
		out := make([]krpc.ID, len(idx))
		for i, j := range idx {
			sw := s.order.s[j]
			if sw.newest <= t-s.ttl {
				// Between sweeps an infohash may have only expired peers
				// left: sweep them all and draw again (at most once, as
				// nothing stored is dead right after a sweep).
				s.sweep(t)
				out = nil
				break
			}
			out[i] = sw.ih
		}
		if out != nil {
			return out
		}
	}
}

// Stats returns a snapshot of the gauges and counters.
func (s *PeerStore) Stats() PeerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Infohashes = len(s.swarms)
	st.Peers = s.peers
	st.Bytes = s.bytes
	st.Sources, st.TopSource = s.bySource.top()
	return st
}

// randomIndices returns min(k, n) distinct indices in [0, n), a uniformly
// random subset in uniformly random order, stored in buf when it is large
// enough (len(buf) must be at least floydMax).
func randomIndices(n, k int, rnd *rand.Rand, buf []int32) []int32 {
	k = min(k, n)
	if k <= floydMax && n > len(buf) {
		// Floyd's algorithm: k draws, membership checked by a linear scan
		// of the (short) result.
		p := buf[:0]
		for j := n - k; j < n; j++ {
			v := int32(randIntN(rnd, j+1))
			if slices.Contains(p, v) {
				v = int32(j)
			}
			p = append(p, v)
		}
		// Floyd's subset is uniform but its order is not.
		for i := len(p) - 1; i > 0; i-- {
			j := randIntN(rnd, i+1)
			p[i], p[j] = p[j], p[i]
		}
		return p
	}
	// Partial Fisher-Yates shuffle of the identity permutation.
	var p []int32
	if n <= len(buf) {
		p = buf[:n]
	} else {
		p = make([]int32, n)
	}
	for i := range p {
		p[i] = int32(i)
	}
	for i := range k {
		j := i + randIntN(rnd, n-i)
		p[i], p[j] = p[j], p[i]
	}
	return p[:k]
}

const floydMax = 32

func randIntN(rnd *rand.Rand, n int) int {
	if rnd == nil {
		return rand.IntN(n)
	}
	return rnd.IntN(n)
}

// swarm is what is stored for one infohash.
type swarm struct {
	ih     krpc.ID
	src    sourceKey // the network of the peer that created it
	u      usage     // eviction order (quota.go)
	pos    int32     // index in PeerStore.order
	oldest int64     // lower bound of the oldest last-announce time (unix ns) of v4 and v6
	newest int64     // upper bound of the newest last-announce time
	v4     peerList[key4]
	v6     peerList[key6]
}

func (sw *swarm) use() *usage            { return &sw.u }
func (sw *swarm) list4() *peerList[key4] { return &sw.v4 }
func (sw *swarm) list6() *peerList[key6] { return &sw.v6 }

// farthestFirst is a container/heap of swarms whose root is the infohash
// farthest (XOR, BEP 5) from self.
type farthestFirst struct {
	self krpc.ID
	s    []*swarm
}

// farther reports whether a is strictly farther from h.self than b.
func (h *farthestFirst) farther(a, b krpc.ID) bool {
	for i := range a {
		da, db := a[i]^h.self[i], b[i]^h.self[i]
		if da != db {
			return da > db
		}
	}
	return false
}

func (h *farthestFirst) Len() int           { return len(h.s) }
func (h *farthestFirst) Less(i, j int) bool { return h.farther(h.s[i].ih, h.s[j].ih) }
func (h *farthestFirst) Swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	h.s[i].pos, h.s[j].pos = int32(i), int32(j)
}
func (h *farthestFirst) Push(x any) {
	sw := x.(*swarm)
	sw.pos = int32(len(h.s))
	h.s = append(h.s, sw)
}
func (h *farthestFirst) Pop() any {
	n := len(h.s) - 1
	sw := h.s[n]
	h.s[n] = nil
	h.s = h.s[:n]
	return sw
}

// key4 and key6 are IP addresses in a compact, pointer-free, ordered form
// (netip.Addr is 24 bytes and holds a pointer for the zone).
type (
	key4 uint32
	key6 struct{ hi, lo uint64 }
)

func keyOf4(ip netip.Addr) key4 {
	b := ip.As4()
	return key4(binary.BigEndian.Uint32(b[:]))
}

func keyOf6(ip netip.Addr) key6 {
	b := ip.As16()
	return key6{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (k key4) src() sourceKey { return sourceKey4(uint64(k >> 8)) }
func (k key6) src() sourceKey { return sourceKey6(k.hi >> 16) }

func (k key4) compare(o key4) int { return cmp.Compare(k, o) }
func (k key6) compare(o key6) int {
	if c := cmp.Compare(k.hi, o.hi); c != 0 {
		return c
	}
	return cmp.Compare(k.lo, o.lo)
}

func (k key4) addr() netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(k))
	return netip.AddrFrom4(b)
}

func (k key6) addr() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.AddrFrom16(b)
}

// ipKey is implemented by key4 and key6.
type ipKey[K any] interface {
	comparable
	compare(K) int
	addr() netip.Addr
	src() sourceKey
}

// peerEntry is one stored announce: 16 bytes for IPv4, 32 for IPv6.
type peerEntry[K ipKey[K]] struct {
	ip   K
	port uint16
	seed bool
	last int64 // unix nanoseconds of the last announce
}

// peerList holds the peers of one family of one infohash, sorted by IP.
type peerList[K ipKey[K]] []peerEntry[K]

// find returns the position of ip, or where to insert it.
func (l peerList[K]) find(ip K) (int, bool) {
	return slices.BinarySearchFunc(l, ip, func(p peerEntry[K], ip K) int { return p.ip.compare(ip) })
}

// evictOldest removes the peer with the oldest announce and returns where
// it was and its address.
func (l *peerList[K]) evictOldest() (int, K) {
	j := 0
	for i, p := range *l {
		if p.last < (*l)[j].last {
			j = i
		}
	}
	ip := (*l)[j].ip
	*l = slices.Delete(*l, j, j+1)
	return j, ip
}

// expireList drops the peers of *l announced at or before cutoff, keeping
// the order, calls gone with the network and cost of each, and returns how
// many it dropped and the oldest and newest announce times kept (max and
// min int64 when none are). It releases the backing array when it has
// become mostly unused.
func expireList[K ipKey[K]](l *peerList[K], cutoff int64, gone func(sourceKey, int64), cost int64) (n int, oldest, newest int64) {
	oldest, newest = 1<<63-1, -1<<63
	kept := (*l)[:0]
	for _, p := range *l {
		if p.last > cutoff {
			kept = append(kept, p)
			oldest, newest = min(oldest, p.last), max(newest, p.last)
		} else {
			gone(p.ip.src(), cost)
		}
	}
	n = len(*l) - len(kept)
	clear((*l)[len(kept):])
	switch {
	case len(kept) == 0:
		*l = nil
	case cap(kept) > 32 && len(kept) < cap(kept)/4:
		*l = slices.Clone(kept)
	default:
		*l = kept
	}
	return n, oldest, newest
}

func (l peerList[K]) counts() (seeds, leechers int) {
	for _, p := range l {
		if p.seed {
			seeds++
		}
	}
	return seeds, len(l) - seeds
}

func (l peerList[K]) each(fn func(netip.AddrPort, bool)) {
	for _, p := range l {
		fn(netip.AddrPortFrom(p.ip.addr(), p.port), p.seed)
	}
}

// removedPeer is an eviction waiting to be reported to PeerStore.onRemove.
type removedPeer struct {
	ih   krpc.ID
	addr netip.AddrPort // zero for the whole infohash
}

// SetOnRemove sets fn, nil for none, as the hook told of every eviction
// (see PeerStore) made by Announce or Restore, so that a persistent copy
// (DB.DeletePeers) can follow the store's bounds: fn(ih, addr) for one peer
// of ih replaced by a newer one (only addr's IP matters, entries being
// unique per IP), and fn(ih, netip.AddrPort{}) when ih is evicted with all
// its peers. Peers that expire are not reported: DB.DeleteExpired removes
// those.
//
// fn is called outside the store's lock, on the goroutine of the Announce
// or Restore that evicted, before that call returns; a slow fn delays it.
// fn must not call back into the PeerStore: by the time it runs, another
// goroutine may already have stored the peer again, so it should only
// forward what it is given (for example to the DB or to a queue that feeds
// it).
func (s *PeerStore) SetOnRemove(fn func(ih krpc.ID, addr netip.AddrPort)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRemove = fn
	if fn == nil {
		s.toReport = nil
	}
}

// reportRemoved queues an eviction for the SetOnRemove hook; s.mu is held.
func (s *PeerStore) reportRemoved(ih krpc.ID, addr netip.AddrPort) {
	s.toReport = append(s.toReport, removedPeer{ih, addr})
}

// unlockAndReport releases s.mu, then reports the evictions queued while it
// was held to the SetOnRemove hook.
func (s *PeerStore) unlockAndReport() {
	fn, removed := s.onRemove, s.toReport
	s.toReport = nil
	s.mu.Unlock()
	for _, r := range removed {
		fn(r.ih, r.addr)
	}
}

// Restore inserts a peer as loaded from persistent storage (DB.LoadPeers)
// at now: as if it had announced at expires - TTL, so it expires at
// expires, or at now + TTL if expires is later than that (a stored expiry
// from the future, after a clock step back). A peer already expired at now
// is skipped, as is one whose IP is already stored for ih with an announce
// at least as recent. Otherwise Restore is Announce at that time: the same
// bounds, evictions (reported to the SetOnRemove hook) and refusals apply,
// and the peer counts in Stats as an announce. Peers restored with older
// announce times are the first replaced in a full infohash.
//
// Restored peers are charged to their own network, and the quota applies.
func (s *PeerStore) Restore(ih krpc.ID, peer netip.AddrPort, seed bool, expires, now time.Time) {
	if !now.Before(expires) {
		return
	}
	n := now.UnixNano()
	t := min(expires.UnixNano()-s.ttl, n)
	if t <= n-s.ttl {
		return
	}
	s.mu.Lock()
	if !s.storedSince(ih, peer.Addr().Unmap(), t) {
		_ = s.announceLocked(ih, peer, seed, t, n) // refusals are counted in Stats
	}
	s.unlockAndReport()
}

// storedSince reports whether ip is stored for ih with an announce at or
// after t; s.mu is held.
func (s *PeerStore) storedSince(ih krpc.ID, ip netip.Addr, t int64) bool {
	sw := s.swarms[ih]
	switch {
	case sw == nil || !ip.IsValid():
		return false
	case ip.Is4():
		i, ok := sw.v4.find(keyOf4(ip))
		return ok && sw.v4[i].last >= t
	default:
		i, ok := sw.v6.find(keyOf6(ip))
		return ok && sw.v6[i].last >= t
	}
}

// oldestAddr returns the address of the peer evictOldest would remove; l is
// not empty.
func (l peerList[K]) oldestAddr() netip.AddrPort {
	j := 0
	for i, p := range l {
		if p.last < l[j].last {
			j = i
		}
	}
	return netip.AddrPortFrom(l[j].ip.addr(), l[j].port)
}
