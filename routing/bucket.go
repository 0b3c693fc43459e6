package routing

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// insert places e, which is tracked but in no list, into its bucket:
// live if there is room (splitting the last bucket when needed) or a bad
// node to replace, else into the replacement cache. It returns the bucket's
// questionable nodes when e had to wait in the cache. Caller holds t.mu.
func (t *Table) insert(e *entry, now time.Time) (toPing []krpc.NodeInfo) {
	splitFrom := -1
	for {
		i := t.bucketIndex(e.info.ID)
		b := t.buckets[i]
		if len(b.nodes) < t.capacity(i) {
			if t.subnetOK(b, e, nil) {
				t.addLive(b, e, now)
			} else {
				t.addRepl(b, e)
			}
			break
		}
		if t.canSplit(i) {
			if splitFrom < 0 {
				splitFrom = i
			}
			t.split(now)
			continue
		}
		if bad := t.worstBad(b, now); bad != nil && t.subnetOK(b, e, bad) {
			t.drop(bad)
			t.addLive(b, e, now)
			break
		}
		// BEP 42 prefer mode: a node whose id matches its address takes
		// the slot of one whose id does not, which waits in the cache.
		if t.cfg.Prefer != nil && t.cfg.Prefer(e.info) {
			if u := t.unpreferred(b); u != nil && t.subnetOK(b, e, u) {
				b.deleteNode(u)
				b.goodUntil = time.Time{}
				t.live--
				t.addRepl(b, u)
				t.addLive(b, e, now)
				break
			}
		}
		t.addRepl(b, e)
		toPing = t.questionable(b, now)
		break
	}
	if splitFrom >= 0 {
		// Buckets created by the split may have room for cached nodes.
		for _, b := range t.buckets[splitFrom:] {
			t.fill(b, now)
		}
	}
	return toPing
}

func (t *Table) bucketIndex(id krpc.ID) int {
	return min(CommonPrefixLen(t.self, id), len(t.buckets)-1)
}

func (t *Table) bucketOf(id krpc.ID) *bucket { return t.buckets[t.bucketIndex(id)] }

// canSplit reports whether bucket i may split: only the last bucket, the one
// covering our own id, ever splits (BEP 5).
func (t *Table) canSplit(i int) bool {
	return i == len(t.buckets)-1 && len(t.buckets) < MaxBuckets
}

// split divides the last bucket: nodes sharing exactly last bits with us
// stay, the rest move to a new last bucket.
func (t *Table) split(now time.Time) {
	last := len(t.buckets) - 1
	old := t.buckets[last]
	nb := &bucket{lastChanged: now}
	old.lastChanged = now
	moves := func(e *entry) bool { return CommonPrefixLen(t.self, e.info.ID) > last }
	for _, e := range old.nodes {
		if moves(e) {
			nb.addNode(e)
		}
	}
	for _, e := range old.repl {
		if moves(e) {
			nb.repl = append(nb.repl, e)
		}
	}
	old.nodes = slices.DeleteFunc(old.nodes, moves)
	old.keys = old.keys[:0]
	for _, e := range old.nodes {
		old.keys = append(old.keys, idKey(&e.info.ID))
	}
	old.goodUntil = time.Time{}
	old.repl = slices.DeleteFunc(old.repl, moves)
	t.buckets = append(t.buckets, nb)
}

// extendedFactor is how many times K bucket i holds in an extended table:
// 16 and 8 for the two farthest buckets and 4 for every other, as
// libtorrent's routing_table::bucket_limit has it for the farthest three
// (it gives the fourth 2 and K to the rest). The deeper buckets hold 4K so
// that a node knows most of the nodes a few bits from its own id: a lookup
// then ends a round sooner, because the node nearest its target names the
// target's K closest in one answer (docs/sim.md, "Deep buckets of 4K").
func extendedFactor(i int) int {
	switch i {
	case 0:
		return 16
	case 1:
		return 8
	default:
		return 4
	}
}

// capacity returns how many live nodes bucket i holds: K for the last
// bucket, which splits when full as BEP 5 has it, so the table knows our
// own neighbourhood as well as a fixed table does; more for the farthest
// buckets of an extended table once they have split off.
func (t *Table) capacity(i int) int {
	if t.cfg.FixedBuckets || i == len(t.buckets)-1 {
		return t.cfg.K
	}
	return t.cfg.K * extendedFactor(i)
}

// wantsNode reports whether bucket b would take a new confirmed node: it
// has room, can split, or holds a node that is not good.
func (t *Table) wantsNode(b *bucket, now time.Time) bool {
	if len(b.nodes) < t.capacity(slices.Index(t.buckets, b)) || (b == t.buckets[len(t.buckets)-1] && len(t.buckets) < MaxBuckets) {
		return true
	}
	return !t.goodNow(b, now, t.stamp(now))
}

// goodNow reports whether every live node of b is good at now (ns its
// stamp), so that the upkeep's scans (Questionable, Retry) can pass b
// over: known from b.goodUntil while that holds, else by a look at each
// node, which sets b.goodUntil when they are. A table's upkeep then reads
// the entries of its few changing buckets, not of all of them every
// minute (at 100,000 simulated nodes the scans were 5% of the run).
func (t *Table) goodNow(b *bucket, now time.Time, ns stamp) bool {
	return now.Before(b.goodUntil) || (len(b.nodes) > 0 && t.allGood(b, ns))
}

// allGood reports whether every live node of b is good at ns and, if so,
// notes in b.goodUntil when the first of them stops being good.
func (t *Table) allGood(b *bucket, ns stamp) bool {
	var until stamp
	for _, e := range b.nodes {
		if e.state(ns, &t.cfg) != Good {
			return false
		}
		// Good until GoodWindow after the later of its last answer and
		// its last query (stateOf), failures aside, which clear goodUntil.
		u := e.lastResponse // set: a good node has answered
		if e.lastQuery != 0 && e.lastQuery > u {
			u = e.lastQuery
		}
		if u += stamp(t.cfg.GoodWindow); until == 0 || u < until {
			until = u
		}
	}
	if until != 0 {
		b.goodUntil = t.time(until)
	}
	return true
}

// worstBad returns b's bad node with the most failures (oldest answer on a
// tie), or nil.
func (t *Table) worstBad(b *bucket, now time.Time) *entry {
	var worst *entry
	ns := t.stamp(now)
	for _, e := range b.nodes {
		if e.state(ns, &t.cfg) != Bad {
			continue
		}
		if worst == nil || e.failures > worst.failures ||
			e.failures == worst.failures && before(e.lastResponse, worst.lastResponse) {
			worst = e
		}
	}
	return worst
}

// unpreferred returns the least recently seen live node of b that
// cfg.Prefer rejects, or nil.
func (t *Table) unpreferred(b *bucket) *entry {
	var u *entry
	for _, e := range b.nodes {
		if !t.cfg.Prefer(e.info) && (u == nil || e.lastSeen() < u.lastSeen()) {
			u = e
		}
	}
	return u
}

// questionable returns b's questionable nodes, least recently seen first.
func (t *Table) questionable(b *bucket, now time.Time) []krpc.NodeInfo {
	var qs []*entry
	ns := t.stamp(now)
	for _, e := range b.nodes {
		if e.state(ns, &t.cfg) == Questionable {
			qs = append(qs, e)
		}
	}
	if len(qs) == 0 {
		return nil
	}
	slices.SortStableFunc(qs, func(x, y *entry) int { return cmp.Compare(x.lastSeen(), y.lastSeen()) })
	return infos(qs, 0)
}

// fill promotes b's confirmed cached nodes, most recently seen first, while
// b has room.
func (t *Table) fill(b *bucket, now time.Time) {
	for len(b.nodes) < t.capacity(slices.Index(t.buckets, b)) {
		var best *entry
		for _, e := range b.repl {
			if e.confirmed() && t.subnetOK(b, e, nil) && (best == nil || e.lastSeen() > best.lastSeen()) {
				best = e
			}
		}
		if best == nil {
			return
		}
		b.repl = deleteEntry(b.repl, best)
		t.addLive(b, best, now)
	}
}

func (t *Table) addLive(b *bucket, e *entry, now time.Time) {
	e.live = true
	b.addNode(e)
	b.lastChanged = now
	b.goodUntil = time.Time{}
	t.live++
}

// addRepl puts tracked entry e in b's replacement cache. When the cache is
// full the oldest unconfirmed entry is evicted; if there is none, a
// confirmed e evicts the oldest confirmed entry and an unconfirmed e is
// dropped, so unproven nodes never push out proven ones.
func (t *Table) addRepl(b *bucket, e *entry) {
	e.live = false
	if len(b.repl) >= t.cfg.ReplacementSize {
		victim := oldest(b.repl, false)
		if victim == nil && e.confirmed() {
			victim = oldest(b.repl, true)
		}
		if victim == nil {
			t.untrack(e)
			t.spare = e
			return
		}
		b.repl = deleteEntry(b.repl, victim)
		t.untrack(victim)
		t.spare = victim
	}
	b.repl = append(b.repl, e)
}

// newEntry returns the entry the replacement cache last evicted, if any,
// or a new one, for the caller to overwrite: every unknown node that
// queries us takes an entry, and most push another out of the cache.
func (t *Table) newEntry() *entry {
	if e := t.spare; e != nil {
		t.spare = nil
		return e
	}
	return new(entry)
}

// oldest returns the least recently seen entry of es whose confirmed status
// is confirmed, or nil.
func oldest(es []*entry, confirmed bool) *entry {
	var o *entry
	for _, e := range es {
		if e.confirmed() == confirmed && (o == nil || e.lastSeen() < o.lastSeen()) {
			o = e
		}
	}
	return o
}

// drop removes e from its bucket (live list or cache) and the indexes.
func (t *Table) drop(e *entry) {
	b := t.bucketOf(e.info.ID)
	if e.live {
		b.deleteNode(e)
		b.goodUntil = time.Time{}
		t.live--
		e.live = false
	} else {
		b.repl = deleteEntry(b.repl, e)
	}
	t.untrack(e)
}

func (t *Table) track(e *entry) {
	t.byAddr.add(t.byAddr.hashAddr(e.info.Addr), e)
	t.byID.add(t.byID.hashID(&e.info.ID), e)
	if t.perIP != nil {
		t.perIP[e.info.Addr.Addr()]++
	}
}

func (t *Table) untrack(e *entry) {
	t.byAddr.remove(t.byAddr.hashAddr(e.info.Addr), e)
	t.byID.remove(t.byID.hashID(&e.info.ID), e)
	if t.perIP == nil {
		return
	}
	ip := e.info.Addr.Addr()
	if t.perIP[ip]--; t.perIP[ip] <= 0 {
		delete(t.perIP, ip)
	}
}

// before reports whether stamp a is earlier than b, never being earliest.
func before(a, b stamp) bool {
	if a == 0 || b == 0 {
		return a == 0 && b != 0
	}
	return a < b
}

// ipFull reports whether ip already has MaxPerIP entries.
func (t *Table) ipFull(ip netip.Addr) bool {
	return t.cfg.MaxPerIP > 0 && t.perIP[ip] >= t.cfg.MaxPerIP && t.limited(ip)
}

// limited reports whether the address limits apply to ip.
func (t *Table) limited(ip netip.Addr) bool { return t.cfg.LimitLoopback || !ip.IsLoopback() }

// roomForIP reports whether a proven node at ip may be added under
// MaxPerIP, first evicting unconfirmed cache entries at ip (oldest first)
// if that is what stands in the way: a proven address beats unproven claims.
func (t *Table) roomForIP(ip netip.Addr) bool {
	for t.ipFull(ip) {
		var victim *entry
		for _, b := range t.buckets {
			for _, e := range b.repl {
				if !e.confirmed() && e.info.Addr.Addr() == ip && (victim == nil || e.lastSeen() < victim.lastSeen()) {
					victim = e
				}
			}
		}
		if victim == nil {
			return false
		}
		t.drop(victim)
	}
	return true
}

// subnetOK reports whether e may join b's live nodes under
// MaxPerSubnetPerBucket, not counting except (a node about to be replaced).
func (t *Table) subnetOK(b *bucket, e, except *entry) bool {
	if t.cfg.MaxPerSubnetPerBucket <= 0 || !t.limited(e.info.Addr.Addr()) {
		return true
	}
	sn := subnetOf(e.info.Addr.Addr())
	n := 0
	for _, o := range b.nodes {
		if o != except && o != e && sn.Contains(o.info.Addr.Addr().WithZone("")) {
			n++
		}
	}
	return n < t.cfg.MaxPerSubnetPerBucket
}

// addNode appends e to b's live nodes and its key to b.keys.
func (b *bucket) addNode(e *entry) {
	b.nodes = append(b.nodes, e)
	b.keys = append(b.keys, idKey(&e.info.ID))
}

// deleteNode removes e from b's live nodes and its key from b.keys.
func (b *bucket) deleteNode(e *entry) {
	if i := slices.Index(b.nodes, e); i >= 0 {
		b.nodes = slices.Delete(b.nodes, i, i+1)
		b.keys = slices.Delete(b.keys, i, i+1)
	}
}

// idKey returns the first 8 bytes of id, big-endian: the hi word of
// distanceTo.
func idKey(id *krpc.ID) uint64 { return binary.BigEndian.Uint64(id[0:8]) }

func deleteEntry(es []*entry, e *entry) []*entry {
	if i := slices.Index(es, e); i >= 0 {
		return slices.Delete(es, i, i+1)
	}
	return es
}
