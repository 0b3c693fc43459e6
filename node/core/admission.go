package core

import (
	"net/netip"
	"slices"
	"time"

	"github.com/dhtd/dhtd/routing"
)

// Admission to the routing table. A node that queries us has not proven
// its address, so it enters the table only once it answers a ping of ours
// (BEP 5, Routing Table). Those confirmation pings are scheduled by an
// AdmitQueue, so that sources that never answer cannot keep every slot
// busy and new nodes out:
//
//   - A ping that is not answered within a short timeout (the lookups'
//     short timeout, at least MinAdmitTimeout and at most the query
//     timeout) gives its slot up: a silent source holds one for a
//     fraction of a second, not the full query timeout. The ping itself
//     runs on to the query timeout, so a slow node's late answer still
//     admits it; such slow pings are bounded too (four per slot).
//   - Nodes waiting for a slot are served in order of what they have
//     shown: first those that proved their address (they answered one of
//     our queries, or presented a valid write token), then those that
//     queried us more than once while waiting, then the rest, and last
//     the nodes that a lookup's answers named and that never queried us
//     (Node.AdmitNamed); in each class the most recently heard first
//     (the likeliest to be alive).
//   - Slots are shared per bucket: in a class, a node of the bucket with
//     the fewest pings in flight goes first, so a flood aimed at one part
//     of the id space does not hold up the others; and one subnet (a /24
//     or /64, routing.Subnet) has at most one node waiting and one being
//     pinged.
//   - The waiting list is bounded; a node that does not fit, or waits
//     longer than AdmitMaxWait, is dropped (the daemon counts a querier
//     as dhtd_packets_dropped_total{reason="admission_busy"}; a named
//     node sent no packet and is not counted). It is tried again when it
//     next queries us, or is named again.
//
// The daemon and the simulator's nodes run the same schedule: the daemon
// drives it from its admission goroutine, a core Node from its events.

// Timing of the admission schedule.
const (
	MinAdmitTimeout = 250 * time.Millisecond // shortest wait for a confirmation ping's answer
	AdmitMaxWait    = 10 * time.Second       // longest a node waits for a confirmation slot
)

// AdmitClass orders the nodes waiting for a confirmation ping: lower first.
type AdmitClass uint8

// The classes of AdmitEntry.Class.
const (
	AdmitProven AdmitClass = iota // answered us before, or presented a valid token
	AdmitRepeat                   // queried us more than once while waiting
	AdmitNew                      // nothing shown yet
	AdmitNamed                    // never heard from: named by a lookup's answer (Node.AdmitNamed)
)

// AdmitKey is the unit of the schedule's per-subnet fairness.
type AdmitKey struct {
	subnet netip.Prefix
	port   uint16 // 0 unless the endpoint is its own unit
}

// FairnessKey returns a's unit: its /24 or /64 (routing.Subnet); for an
// exempt loopback address (limitLoopback unset), the endpoint itself, so
// that nodes sharing 127.0.0.1 are not served one at a time.
func FairnessKey(a netip.AddrPort, limitLoopback bool) AdmitKey {
	ip := a.Addr().Unmap()
	if !limitLoopback && ip.IsLoopback() {
		return AdmitKey{netip.PrefixFrom(ip, ip.BitLen()), a.Port()}
	}
	return AdmitKey{subnet: routing.Subnet(ip)}
}

// AdmitEntry is one node waiting for, or being sent, a confirmation ping.
type AdmitEntry struct {
	Addr   netip.AddrPort
	Subnet AdmitKey   // fairness unit (FairnessKey)
	Bucket int32      // the routing-table bucket its id falls in
	Class  AdmitClass // (a byte: the entry is held by every confirmation ping)
	slow   bool       // pinged, past the short timeout: its slot is free
	Heard  time.Time  // its last query
	Queued time.Time  // when it started waiting
}

// AdmitQueue is the confirmation schedule: which node to ping next, and
// how many pings are in flight. It does no I/O and reads no clock; its
// driver offers the queriers, pings what Next returns and reports the
// pings turning slow and ending. Its lists are short (four entries per
// slot each), so they are slices scanned in order: no map, whose order
// would make a seeded simulation differ between runs, and nothing held
// while the schedule is idle (100,000 simulated nodes each have one). Ties
// are broken by address. It is not safe for concurrent use.
type AdmitQueue struct {
	maxActive, maxPinging, maxWaiting int

	waiting []*AdmitEntry
	oldest  time.Time     // no waiting entry was queued before it
	pinging []*AdmitEntry // active and slow
	active  int           // pinging entries not slow: the slots taken
}

// NewAdmitQueue returns a schedule of maxActive concurrent confirmation
// pings (four times as many may run past their short timeout), with room
// for four times as many waiting nodes.
func NewAdmitQueue(maxActive int) *AdmitQueue {
	return &AdmitQueue{maxActive: maxActive, maxPinging: 4 * maxActive, maxWaiting: 4 * maxActive}
}

// find returns the entry of list for addr, and its index.
func find(list []*AdmitEntry, addr netip.AddrPort) (*AdmitEntry, int) {
	for i, e := range list {
		if e.Addr == addr {
			return e, i
		}
	}
	return nil, -1
}

// inSubnet returns how many entries waiting and being pinged share sn.
func (q *AdmitQueue) inSubnet(sn AdmitKey) int {
	k := 0
	for _, list := range [2][]*AdmitEntry{q.waiting, q.pinging} {
		for _, e := range list {
			if e.Subnet == sn {
				k++
			}
		}
	}
	return k
}

// pingingSubnet reports whether an entry of sn is being pinged.
func (q *AdmitQueue) pingingSubnet(sn AdmitKey) bool {
	for _, e := range q.pinging {
		if e.Subnet == sn {
			return true
		}
	}
	return false
}

// inBucket returns how many active (not slow) pings are to nodes of
// bucket b.
func (q *AdmitQueue) inBucket(b int32) int {
	k := 0
	for _, e := range q.pinging {
		if !e.slow && e.Bucket == b {
			k++
		}
	}
	return k
}

// Offer queues e unless its address is already waiting or being pinged;
// a waiting one is heard again, and rises to AdmitRepeat (or better).
// It returns how many queriers were dropped to make the decision: e itself
// when there is no room for it, or a worse waiting node it replaced.
// Named nodes (AdmitNamed) are not counted: they sent us nothing.
func (q *AdmitQueue) Offer(e *AdmitEntry) (dropped int) {
	if p, _ := find(q.pinging, e.Addr); p != nil {
		return 0
	}
	if w, _ := find(q.waiting, e.Addr); w != nil {
		switch {
		case e.Class == AdmitNamed:
			// Named again: nothing more is shown.
		case w.Class == AdmitNamed:
			w.Class, w.Heard = e.Class, e.Heard // its first query
		default:
			w.Class = min(w.Class, e.Class, AdmitRepeat)
			w.Heard = e.Heard
		}
		return 0
	}
	// One waiting node per subnet: a better one replaces it.
	for _, w := range q.waiting {
		if w.Subnet != e.Subnet {
			continue
		}
		if !worse(w, e) {
			return queriers(e)
		}
		q.remove(w)
		dropped += queriers(w)
		break
	}
	if q.inSubnet(e.Subnet) >= 2 { // one waiting and one being pinged
		return dropped + queriers(e)
	}
	if len(q.waiting) >= q.maxWaiting {
		v := q.worst()
		if !worse(v, e) {
			return dropped + queriers(e)
		}
		q.remove(v)
		dropped += queriers(v)
	}
	if len(q.waiting) == 0 || e.Queued.Before(q.oldest) {
		q.oldest = e.Queued
	}
	q.waiting = append(q.waiting, e)
	return dropped
}

// worse reports whether waiting entry a should give way to b.
func worse(a, b *AdmitEntry) bool {
	if a.Class != b.Class {
		return a.Class > b.Class
	}
	return a.Heard.Before(b.Heard)
}

// heardLater reports whether waiting entry a is pinged before b of the
// same class and bucket load (see Next): the one heard more recently
// first, then the lower address.
func heardLater(a, b *AdmitEntry) bool {
	if !a.Heard.Equal(b.Heard) {
		return a.Heard.After(b.Heard)
	}
	return a.Addr.Compare(b.Addr) < 0
}

// worst returns the waiting entry that gives way first (of equals, the
// higher address).
func (q *AdmitQueue) worst() *AdmitEntry {
	var v *AdmitEntry
	for _, w := range q.waiting {
		if v == nil || worse(w, v) || (!worse(v, w) && w.Addr.Compare(v.Addr) > 0) {
			v = w
		}
	}
	return v
}

// queriers returns 1 for the entry of a querier, 0 for a named node: what
// the schedule counts as dropped.
func queriers(e *AdmitEntry) int {
	if e.Class == AdmitNamed {
		return 0
	}
	return 1
}

// Next returns the waiting entry to ping now and marks it pinging, or nil
// if no slot is free or nobody is eligible: of the entries whose subnet
// has none being pinged, the better class first; in a class, the one whose
// bucket has fewer pings in flight; then the most recently heard; then the
// lower address. First it drops the entries that waited longer than
// AdmitMaxWait and returns how many of them were queriers (see Offer).
func (q *AdmitQueue) Next(now time.Time) (e *AdmitEntry, expired int) {
	if len(q.waiting) > 0 && now.Sub(q.oldest) > AdmitMaxWait {
		q.oldest = now
		q.waiting = slices.DeleteFunc(q.waiting, func(w *AdmitEntry) bool {
			if now.Sub(w.Queued) <= AdmitMaxWait {
				if w.Queued.Before(q.oldest) {
					q.oldest = w.Queued
				}
				return false
			}
			expired += queriers(w)
			return true
		})
	}
	if q.active >= q.maxActive || len(q.pinging) >= q.maxPinging {
		q.shrink()
		return nil, expired
	}
	// A subnet has at most one entry waiting (Offer), so a waiting entry
	// is held back exactly when its subnet has one being pinged. The
	// candidates' bucket counts are taken once each: the lists are short,
	// but every querier's arrival runs this.
	eIn := 0
	for _, w := range q.waiting {
		if q.pingingSubnet(w.Subnet) {
			continue
		}
		if e == nil {
			e, eIn = w, q.inBucket(w.Bucket)
			continue
		}
		if w.Class != e.Class {
			if w.Class < e.Class {
				e, eIn = w, q.inBucket(w.Bucket)
			}
			continue
		}
		if wIn := q.inBucket(w.Bucket); wIn != eIn {
			if wIn < eIn {
				e, eIn = w, wIn
			}
			continue
		}
		if heardLater(w, e) {
			e = w
		}
	}
	if e != nil {
		q.remove(e)
		q.pinging = append(q.pinging, e)
		q.active++
	}
	q.shrink()
	return e, expired
}

// Slowed frees the slot of an entry returned by Next whose ping is past
// the short timeout; the entry stays pinging until Done.
func (q *AdmitQueue) Slowed(e *AdmitEntry) {
	if p, _ := find(q.pinging, e.Addr); p != e || e.slow {
		return
	}
	e.slow = true
	q.active--
}

// Done ends the ping of an entry returned by Next.
func (q *AdmitQueue) Done(e *AdmitEntry) {
	p, i := find(q.pinging, e.Addr)
	if p != e {
		return
	}
	q.pinging = slices.Delete(q.pinging, i, i+1)
	if !e.slow {
		q.active--
	}
	q.shrink()
}

// remove forgets waiting entry w.
func (q *AdmitQueue) remove(w *AdmitEntry) {
	if _, i := find(q.waiting, w.Addr); i >= 0 {
		q.waiting = slices.Delete(q.waiting, i, i+1)
	}
}

// shrink gives the lists' storage back once they are empty: a simulated
// node is queried by newcomers in bursts, and idles between them.
func (q *AdmitQueue) shrink() {
	if len(q.waiting) == 0 && cap(q.waiting) > 0 {
		q.waiting = nil
	}
	if len(q.pinging) == 0 && cap(q.pinging) > 0 {
		q.pinging = nil
	}
}

// Waiting returns how many entries wait for a slot.
func (q *AdmitQueue) Waiting() int { return len(q.waiting) }

// Len returns the entries waiting and being pinged.
func (q *AdmitQueue) Len() int { return len(q.waiting) + len(q.pinging) }
