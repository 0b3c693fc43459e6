package routing

import (
	"cmp"
	"encoding/binary"
	"slices"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// sortAllAbove is the result size above which Closest sorts every candidate
// instead of keeping a bounded sorted selection (whose insertion cost grows
// with n).
const sortAllAbove = 32

// Closest returns the n live, non-bad nodes closest to target by XOR
// distance (BEP 5), closest first. It considers every live node, so the
// result is exactly the n closest the table knows. Fewer are returned when
// the table holds fewer.
func (t *Table) Closest(target krpc.ID, n int) []krpc.NodeInfo {
	return t.ClosestFunc(target, n, nil)
}

// AppendClosest is Closest appending to dst: a caller that reuses dst
// (the read loop answering find_node) allocates nothing.
func (t *Table) AppendClosest(dst []krpc.NodeInfo, target krpc.ID, n int) []krpc.NodeInfo {
	return t.appendClosest(dst, target, n, nil)
}

// ClosestFunc is Closest restricted to the nodes for which keep returns
// true; a nil keep keeps every non-bad node. keep runs with the table
// locked and must not call the table. For example, to return only good
// nodes:
//
//	t.ClosestFunc(target, 8, func(e Entry) bool { return e.State(now) == Good })
func (t *Table) ClosestFunc(target krpc.ID, n int, keep func(Entry) bool) []krpc.NodeInfo {
	return t.appendClosest(nil, target, n, keep)
}

// appendClosest appends ClosestFunc's result to dst.
func (t *Table) appendClosest(dst []krpc.NodeInfo, target krpc.ID, n int, keep func(Entry) bool) []krpc.NodeInfo {
	if n <= 0 {
		return dst
	}
	t.mu.Lock()
	defer t.mu.Unlock()

	if n > sortAllAbove || n >= t.live {
		all := make([]candidate, 0, t.live)
		for _, b := range t.buckets {
			for _, e := range b.nodes {
				if t.closestOK(e, keep) {
					all = append(all, candidate{distanceTo(&target, &e.info.ID), e})
				}
			}
		}
		slices.SortFunc(all, func(a, b candidate) int { return a.d.cmp(b.d) })
		return appendCandidateInfos(dst, all[:min(n, len(all))])
	}
	if keep == nil {
		if out, ok := t.closestByKey(dst, target, n); ok {
			return out
		}
	}
	// Bounded insertion into a sorted selection of at most n <= sortAllAbove
	// candidates, kept on the stack, over the buckets in visitNearFirst's
	// order.
	var buf [sortAllAbove]candidate
	best := buf[:0]
	hi := idKey(&target)
	visit := func(b *bucket) {
		for i, k := range b.keys {
			// A node farther than the selection's farthest in the first
			// 8 bytes is farther in all 20: skip it without loading it.
			if len(best) == n && k^hi > best[n-1].d.hi {
				continue
			}
			e := b.nodes[i]
			if !t.closestOK(e, keep) {
				continue
			}
			d := distanceTo(&target, &e.info.ID)
			if len(best) == n && d.cmp(best[n-1].d) >= 0 {
				continue
			}
			j := len(best)
			if j < n {
				best = append(best, candidate{})
			} else {
				j = n - 1
			}
			for ; j > 0 && d.cmp(best[j-1].d) < 0; j-- {
				best[j] = best[j-1]
			}
			best[j] = candidate{d, e}
		}
	}
	t.visitNearFirst(target, n, func() int { return len(best) }, visit)
	return appendCandidateInfos(dst, best)
}

// visitNearFirst calls visit on the buckets in groups of strictly
// increasing distance to target, and stops after the group in which have
// (the size of the caller's selection) reaches n, instead of touching
// every node. With p the prefix length target shares with us and last the
// last bucket: bucket min(p, last) is closest (its nodes agree with target
// on bit p); then buckets p+1..last (they differ from target first at bit
// p); then buckets p-1, p-2, ..., 0 (a node of bucket i differs from
// target first at bit i). Caller holds t.mu.
func (t *Table) visitNearFirst(target krpc.ID, n int, have func() int, visit func(*bucket)) {
	last := len(t.buckets) - 1
	p := CommonPrefixLen(t.self, target)
	if p >= last {
		visit(t.buckets[last])
		p = last
	} else {
		visit(t.buckets[p])
		if have() < n {
			for i := p + 1; i <= last; i++ {
				visit(t.buckets[i])
			}
		}
	}
	for i := p - 1; i >= 0 && have() < n; i-- {
		visit(t.buckets[i])
	}
}

// keyCand is a candidate of closestByKey: the first 8 bytes of its XOR
// distance to the target and its entry (not loaded).
type keyCand struct {
	d uint64
	e *entry
}

// closestByKey is the bounded selection of appendClosest on the buckets'
// id keys alone (bucket.keys), visiting the buckets in the same groups: it
// loads only the entries it selects, not every entry of the target's
// bucket (up to 128, a cache miss apiece in a large process). It reports
// false, having appended nothing, when a selected node is bad or two keys
// tie where the order matters (ids sharing their first 8 bytes of
// distance: only the full ids decide); the caller then selects again with
// every entry loaded. Caller holds t.mu; n <= sortAllAbove.
func (t *Table) closestByKey(dst []krpc.NodeInfo, target krpc.ID, n int) ([]krpc.NodeInfo, bool) {
	var buf [sortAllAbove]keyCand
	best := buf[:0]
	hi := idKey(&target)
	tie := false
	visit := func(b *bucket) {
		for i, k := range b.keys {
			d := k ^ hi
			if len(best) == n {
				if d > best[n-1].d {
					continue
				}
				if d == best[n-1].d {
					tie = true
					continue
				}
			}
			j := len(best)
			if j < n {
				best = append(best, keyCand{})
			} else {
				j = n - 1
			}
			for ; j > 0 && d <= best[j-1].d; j-- {
				if d == best[j-1].d {
					tie = true
				}
				best[j] = best[j-1]
			}
			best[j] = keyCand{d, b.nodes[i]}
		}
	}
	t.visitNearFirst(target, n, func() int { return len(best) }, visit)
	if tie {
		return dst, false
	}
	for _, c := range best {
		if !t.closestOK(c.e, nil) {
			// A bad node would have been passed over, and the node after
			// the selection taken in its place.
			return dst, false
		}
	}
	if dst == nil {
		dst = make([]krpc.NodeInfo, 0, len(best))
	}
	for _, c := range best {
		dst = append(dst, c.e.info)
	}
	return dst, true
}

// closestOK reports whether live entry e may be returned by ClosestFunc.
// Caller holds t.mu.
func (t *Table) closestOK(e *entry, keep func(Entry) bool) bool {
	if int(e.failures) >= t.cfg.MaxFailures {
		return false // bad
	}
	return keep == nil || keep(t.export(e))
}

// distance is an XOR distance (BEP 5) split into machine words so that
// comparing two distances costs at most three integer comparisons.
type distance struct {
	hi, mid uint64
	lo      uint32
}

func distanceTo(target, id *krpc.ID) distance {
	be := binary.BigEndian
	return distance{
		hi:  be.Uint64(target[0:8]) ^ be.Uint64(id[0:8]),
		mid: be.Uint64(target[8:16]) ^ be.Uint64(id[8:16]),
		lo:  be.Uint32(target[16:20]) ^ be.Uint32(id[16:20]),
	}
}

func (a distance) cmp(b distance) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	if c := cmp.Compare(a.mid, b.mid); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

type candidate struct {
	d distance
	e *entry
}

// appendCandidateInfos appends the NodeInfo of every candidate to dst;
// with a nil dst the result is a new slice of exactly len(cs).
func appendCandidateInfos(dst []krpc.NodeInfo, cs []candidate) []krpc.NodeInfo {
	if dst == nil {
		dst = make([]krpc.NodeInfo, 0, len(cs))
	}
	for _, c := range cs {
		dst = append(dst, c.e.info)
	}
	return dst
}

// Get returns the live entry with the given id.
func (t *Table) Get(id krpc.ID) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.byID.id(id); e != nil && e.live {
		return t.export(e), true
	}
	return Entry{}, false
}

// BucketIndex returns the index of the bucket id falls in now, 0 being
// the farthest from our own id; the index of an id grows as the last
// bucket splits.
func (t *Table) BucketIndex(id krpc.ID) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bucketIndex(id)
}

// Len returns the number of live nodes (replacement caches not counted).
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.live
}

// NumBuckets returns the current number of buckets, 1..MaxBuckets.
func (t *Table) NumBuckets() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.buckets)
}

// Replacements returns how many nodes wait in the buckets' replacement
// caches (BEP 5, Routing Table: candidates for a slot that frees up).
func (t *Table) Replacements() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, b := range t.buckets {
		n += len(b.repl)
	}
	return n
}

// Counts returns the number of live nodes in each state at now.
func (t *Table) Counts(now time.Time) (good, questionable, bad int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.stamp(now)
	for _, b := range t.buckets {
		for _, e := range b.nodes {
			switch e.state(ns, &t.cfg) {
			case Good:
				good++
			case Questionable:
				questionable++
			case Bad:
				bad++
			}
		}
	}
	return good, questionable, bad
}

// Questionable returns up to limit live questionable nodes for the liveness
// timer to ping, least recently seen first (BEP 5); limit <= 0 means all. The
// caller reports each outcome through Responded or Failed.
func (t *Table) Questionable(now time.Time, limit int) []krpc.NodeInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.stamp(now)
	if limit > 0 && limit <= 8 {
		// The few least recently seen, without a list of every
		// questionable node and a sort of it: the upkeep asks for two a
		// minute, from tables of hundreds of nodes.
		var buf [8]*entry
		qs := buf[:0]
		for _, b := range t.buckets {
			if t.goodNow(b, now, ns) {
				continue
			}
			for _, e := range b.nodes {
				if e.state(ns, &t.cfg) != Questionable {
					continue
				}
				if len(qs) == limit && e.lastSeen() >= qs[limit-1].lastSeen() {
					continue // ties keep the earlier, as the stable sort does
				}
				j := len(qs)
				if j < limit {
					qs = append(qs, nil)
				} else {
					j = limit - 1
				}
				for ; j > 0 && e.lastSeen() < qs[j-1].lastSeen(); j-- {
					qs[j] = qs[j-1]
				}
				qs[j] = e
			}
		}
		return infos(qs, limit)
	}
	var qs []*entry
	for _, b := range t.buckets {
		if t.goodNow(b, now, ns) {
			continue
		}
		for _, e := range b.nodes {
			if e.state(ns, &t.cfg) == Questionable {
				qs = append(qs, e)
			}
		}
	}
	slices.SortStableFunc(qs, func(x, y *entry) int { return cmp.Compare(x.lastSeen(), y.lastSeen()) })
	return infos(qs, limit)
}

// Retry returns up to limit bad nodes that are due for another ping,
// longest waiting first; limit <= 0 means all. A bad node stays in its
// bucket while no replacement is cached (BEP 5 replaces bad nodes only
// with new ones); retrying it lets a node that was unreachable for a while
// (a partition, a restart) come back, as libtorrent retries failed nodes.
// It is due RetryBase after its last failure, doubling with each further
// failure, at most RetryMax.
func (t *Table) Retry(now time.Time, limit int) []krpc.NodeInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	var rs []*entry
	ns := t.stamp(now)
	for _, b := range t.buckets {
		if t.goodNow(b, now, ns) {
			continue
		}
		for _, e := range b.nodes {
			if e.state(ns, &t.cfg) != Bad {
				continue
			}
			wait := t.cfg.RetryMax
			if n := int(e.failures) - t.cfg.MaxFailures; n < 16 {
				wait = min(t.cfg.RetryBase<<n, t.cfg.RetryMax)
			}
			if time.Duration(ns-e.lastFailure) >= wait {
				rs = append(rs, e)
			}
		}
	}
	slices.SortStableFunc(rs, func(x, y *entry) int { return cmp.Compare(x.lastFailure, y.lastFailure) })
	return infos(rs, limit)
}

// Candidates returns up to limit replacement-cache nodes worth pinging, most
// recently seen first; limit <= 0 means all. A candidate qualifies when its
// bucket would take it: the bucket has room, can split, or holds a node that
// is not good. When a candidate answers, the caller calls Responded.
func (t *Table) Candidates(now time.Time, limit int) []krpc.NodeInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cs []*entry
	for _, b := range t.buckets {
		if len(b.repl) > 0 && t.wantsNode(b, now) {
			cs = append(cs, b.repl...)
		}
	}
	slices.SortStableFunc(cs, func(x, y *entry) int { return cmp.Compare(y.lastSeen(), x.lastSeen()) })
	return infos(cs, limit)
}

// RefreshTargets returns, for up to limit buckets unchanged for
// RefreshInterval (limit <= 0: all), farthest first, a random id inside
// each to look up (BEP 5, docs/protocol.md, Refresh), and marks those
// buckets changed at now so they are not returned again until another
// RefreshInterval has passed; the stale buckets past limit are left for
// a later call. A new table's bucket is stale at once.
func (t *Table) RefreshTargets(now time.Time, limit int) []krpc.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []krpc.ID
	last := len(t.buckets) - 1
	for i, b := range t.buckets {
		if limit > 0 && len(ids) == limit {
			break
		}
		if now.Sub(b.lastChanged) >= t.cfg.RefreshInterval {
			ids = append(ids, RandomIDInBucket(t.self, i, i == last))
			b.lastChanged = now
		}
	}
	return ids
}

// FillTargets returns a random id in each bucket up to index deepest that
// holds fewer nodes than it can, farthest bucket first: the targets of the
// lookups that fill the table after the first lookup of a bootstrap
// (practice, libtorrent: a refresh of every bucket once the node has
// joined). Deeper buckets are left out: when the lookup of our own id
// found K nodes sharing at least deepest bits with us, it has found every
// node of the buckets beyond, and another lookup there would find nothing
// new (see FillDepth).
func (t *Table) FillTargets(deepest int) []krpc.ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []krpc.ID
	last := len(t.buckets) - 1
	for i, b := range t.buckets {
		if i <= deepest && len(b.nodes) < t.capacity(i) {
			ids = append(ids, RandomIDInBucket(t.self, i, i == last))
		}
	}
	return ids
}

// FillDepth is the deepest bucket worth filling once a lookup of self
// has found its K closest nodes, of which farthest is the farthest: the
// bits the two share (see FillTargets).
func FillDepth(self, farthest krpc.ID) int { return CommonPrefixLen(self, farthest) }

// Nodes returns every live node, bucket by bucket from the farthest, for
// persisting the table across restarts (BEP 5).
func (t *Table) Nodes() []krpc.NodeInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]krpc.NodeInfo, 0, t.live)
	for _, b := range t.buckets {
		for _, e := range b.nodes {
			out = append(out, e.info)
		}
	}
	return out
}

// infos returns the NodeInfo of the first limit entries (all if limit <= 0).
func infos(es []*entry, limit int) []krpc.NodeInfo {
	if limit > 0 && len(es) > limit {
		es = es[:limit]
	}
	out := make([]krpc.NodeInfo, len(es))
	for i, e := range es {
		out[i] = e.info
	}
	return out
}
