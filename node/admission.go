package node

import (
	"net/netip"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/routing"
)

// Admission to the routing table. A node that queries us has not proven
// its address, so it enters the table only once it answers a ping of ours
// (BEP 5, Routing Table). Those confirmation pings are scheduled here, so
// that sources that never answer cannot keep every slot busy and new
// nodes out:
//
//   - A ping that is not answered within a short timeout (the lookups'
//     short timeout, see rttWindow, at least minAdmitTimeout and at most
//     QueryTimeout) gives its slot up: a silent source holds one for a
//     fraction of a second, not the full QueryTimeout. The ping itself
//     runs on to QueryTimeout, so a slow node's late answer still admits
//     it; such slow pings are bounded too (four per slot).
//   - Nodes waiting for a slot are served in order of what they have
//     shown: first those that proved their address (they answered one of
//     our queries, as a table entry or in the owners table, or presented
//     a valid write token),
//     then those that queried us more than once while waiting, then the
//     rest; in each class the most recently heard first (the likeliest to
//     be alive).
//   - Slots are shared per bucket: in a class, a node of the bucket with
//     the fewest pings in flight goes first, so a flood aimed at one part
//     of the id space does not hold up the others; and one subnet (a /24
//     or /64, routing.Subnet) has at most one node waiting and one being
//     pinged.
//   - The waiting list is bounded; a node that does not fit, or waits
//     longer than admitMaxWait, is dropped and counted as
//     dhtd_packets_dropped_total{reason="admission_busy"}. It is tried
//     again when it next queries us.
//
// Loopback endpoints (address and port) are a unit each unless
// Config.LimitLoopback is set, so a test network on 127.0.0.1 is not
// served one node at a time.

const (
	minAdmitTimeout = 250 * time.Millisecond // shortest wait for a confirmation ping's answer
	admitMaxWait    = 10 * time.Second       // longest a node waits for a confirmation slot
)

// admitClass orders the nodes waiting for a confirmation ping: lower first.
type admitClass int

const (
	admitProven admitClass = iota // answered us before, or presented a valid token
	admitRepeat                   // queried us more than once while waiting
	admitNew                      // nothing shown yet
)

// admitKey is the unit of the schedule's per-subnet fairness.
type admitKey struct {
	subnet netip.Prefix
	port   uint16 // 0 unless the endpoint is its own unit
}

// fairnessKey returns a's unit: its /24 or /64 (routing.Subnet); for an
// exempt loopback address (limitLoopback unset), the endpoint itself, so
// that nodes sharing 127.0.0.1 are not served one at a time.
func fairnessKey(a netip.AddrPort, limitLoopback bool) admitKey {
	ip := a.Addr().Unmap()
	if !limitLoopback && ip.IsLoopback() {
		return admitKey{netip.PrefixFrom(ip, ip.BitLen()), a.Port()}
	}
	return admitKey{subnet: routing.Subnet(ip)}
}

// admitEntry is one node waiting for, or being sent, a confirmation ping.
type admitEntry struct {
	addr   netip.AddrPort
	subnet admitKey // fairness unit (fairnessKey)
	bucket int      // the routing-table bucket its id falls in
	class  admitClass
	heard  time.Time // its last query
	queued time.Time // when it started waiting
	slow   bool      // pinged, past the short timeout: its slot is free
}

// admitQueue is the confirmation schedule: which node to ping next, and
// how many pings are in flight. It does no I/O and reads no clock; the
// node drives it (Node.admit, Node.admitNext). It is not safe for
// concurrent use.
type admitQueue struct {
	maxActive, maxPinging, maxWaiting int

	waiting   map[netip.AddrPort]*admitEntry
	pinging   map[netip.AddrPort]*admitEntry // active and slow
	active    int                            // pinging entries not slow: the slots taken
	perSubnet map[admitKey]int               // waiting plus pinging entries per subnet
	inBucket  map[int]int                    // active entries per bucket
}

func newAdmitQueue(maxActive int) *admitQueue {
	return &admitQueue{
		maxActive:  maxActive,
		maxPinging: 4 * maxActive,
		maxWaiting: 4 * maxActive,
		waiting:    make(map[netip.AddrPort]*admitEntry),
		pinging:    make(map[netip.AddrPort]*admitEntry),
		perSubnet:  make(map[admitKey]int),
		inBucket:   make(map[int]int),
	}
}

// offer queues e unless its address is already waiting or being pinged;
// a waiting one is heard again, and rises to admitRepeat (or better).
// It returns how many nodes were dropped to make the decision: e itself
// when there is no room for it, or a worse waiting node it replaced.
func (q *admitQueue) offer(e *admitEntry) (dropped int) {
	if q.pinging[e.addr] != nil {
		return 0
	}
	if w := q.waiting[e.addr]; w != nil {
		w.class = min(w.class, e.class, admitRepeat)
		w.heard = e.heard
		return 0
	}
	// One waiting node per subnet: a better one replaces it.
	for _, w := range q.waiting {
		if w.subnet != e.subnet {
			continue
		}
		if !worse(w, e) {
			return 1
		}
		q.remove(w)
		dropped++
		break
	}
	if q.perSubnet[e.subnet] >= 2 { // one waiting and one being pinged
		return dropped + 1
	}
	if len(q.waiting) >= q.maxWaiting {
		v := q.worst()
		if !worse(v, e) {
			return dropped + 1
		}
		q.remove(v)
		dropped++
	}
	q.waiting[e.addr] = e
	q.perSubnet[e.subnet]++
	return dropped
}

// worse reports whether waiting entry a should give way to b.
func worse(a, b *admitEntry) bool {
	if a.class != b.class {
		return a.class > b.class
	}
	return a.heard.Before(b.heard)
}

// before reports whether waiting entry a is pinged before b: the better
// class first; in a class, the one whose bucket has fewer pings in
// flight; then the most recently heard.
func (q *admitQueue) before(a, b *admitEntry) bool {
	if a.class != b.class {
		return a.class < b.class
	}
	if na, nb := q.inBucket[a.bucket], q.inBucket[b.bucket]; na != nb {
		return na < nb
	}
	return a.heard.After(b.heard)
}

// worst returns the waiting entry that gives way first.
func (q *admitQueue) worst() *admitEntry {
	var v *admitEntry
	for _, w := range q.waiting {
		if v == nil || worse(w, v) {
			v = w
		}
	}
	return v
}

// next returns the waiting entry to ping now and marks it pinging, or nil
// if no slot is free or nobody is eligible. First it drops the entries
// that waited longer than admitMaxWait and returns their count.
func (q *admitQueue) next(now time.Time) (e *admitEntry, expired int) {
	for _, w := range q.waiting {
		if now.Sub(w.queued) > admitMaxWait {
			q.remove(w)
			expired++
		}
	}
	if q.active >= q.maxActive || len(q.pinging) >= q.maxPinging {
		return nil, expired
	}
	for _, w := range q.waiting {
		// A subnet with two entries has one of them being pinged.
		if q.perSubnet[w.subnet] > 1 {
			continue
		}
		if e == nil || q.before(w, e) {
			e = w
		}
	}
	if e != nil {
		delete(q.waiting, e.addr)
		q.pinging[e.addr] = e
		q.active++
		q.inBucket[e.bucket]++
	}
	return e, expired
}

// slowed frees the slot of an entry returned by next whose ping is past
// the short timeout; the entry stays pinging until done.
func (q *admitQueue) slowed(e *admitEntry) {
	if q.pinging[e.addr] != e || e.slow {
		return
	}
	e.slow = true
	q.free(e)
}

// done ends the ping of an entry returned by next.
func (q *admitQueue) done(e *admitEntry) {
	if q.pinging[e.addr] != e {
		return
	}
	delete(q.pinging, e.addr)
	if !e.slow {
		q.free(e)
	}
	q.dec(e.subnet)
}

// free gives up e's slot.
func (q *admitQueue) free(e *admitEntry) {
	q.active--
	if q.inBucket[e.bucket]--; q.inBucket[e.bucket] <= 0 {
		delete(q.inBucket, e.bucket)
	}
}

// remove forgets waiting entry w.
func (q *admitQueue) remove(w *admitEntry) {
	delete(q.waiting, w.addr)
	q.dec(w.subnet)
}

func (q *admitQueue) dec(sn admitKey) {
	if q.perSubnet[sn]--; q.perSubnet[sn] <= 0 {
		delete(q.perSubnet, sn)
	}
}

// len returns the entries waiting and being pinged.
func (q *admitQueue) len() int { return len(q.waiting) + len(q.pinging) }

// admission is the node's confirmation schedule, its lock, and the
// wake-up of its driver (Node.admitLoop).
type admission struct {
	mu   sync.Mutex
	q    *admitQueue
	kick chan struct{} // buffered(1): the schedule may have a ping to start
}

func newAdmission(maxActive int) admission {
	return admission{q: newAdmitQueue(maxActive), kick: make(chan struct{}, 1)}
}

// wake asks admitLoop to look at the schedule; it never blocks.
func (a *admission) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// admit schedules a confirmation ping to ni, which queried us and which
// the routing table would take (Table.Heard).
func (n *Node) admit(ni krpc.NodeInfo, now time.Time) {
	class := admitNew
	if e, ok := n.table.Get(ni.ID); ok && e.Addr == ni.Addr && e.Confirmed() || n.owners.has(ni.Addr.Addr(), now) {
		class = admitProven
	}
	e := &admitEntry{addr: ni.Addr, subnet: fairnessKey(ni.Addr, n.cfg.LimitLoopback), bucket: n.table.BucketIndex(ni.ID), class: class, heard: now, queued: now}
	n.adm.mu.Lock()
	dropped := n.adm.q.offer(e)
	n.adm.mu.Unlock()
	n.admitDropped(dropped)
	n.adm.wake()
}

// admitDropped counts nodes the schedule had no room for.
func (n *Node) admitDropped(k int) {
	if k > 0 {
		n.metrics.PacketsDropped.WithLabelValues(metrics.DropAdmissionBusy).Add(float64(k))
	}
}

// admitLoop is the schedule's driver: woken by admit, by a ping turning
// slow and by a ping ending, it starts the pings the schedule has room
// for, until the node closes. It runs in its own goroutine, counted in
// n.wg; the pings it starts end in callbacks (confirm).
func (n *Node) admitLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.adm.kick:
		}
		for n.ctx.Err() == nil {
			n.adm.mu.Lock()
			e, expired := n.adm.q.next(n.clock.Now())
			n.adm.mu.Unlock()
			n.admitDropped(expired)
			if e == nil {
				break
			}
			n.confirm(e)
		}
	}
}

// confirm pings e; the answer reaches the table through onResponse. Past
// the short timeout the ping gives its slot up and runs on, to
// QueryTimeout.
func (n *Node) confirm(e *admitEntry) {
	timer := n.clock.AfterFunc(n.admitTimeout(), func() {
		n.adm.mu.Lock()
		n.adm.q.slowed(e)
		n.adm.mu.Unlock()
		n.adm.wake()
	})
	done := func(*krpc.Msg, error) {
		timer.Stop()
		n.adm.mu.Lock()
		n.adm.q.done(e)
		n.adm.mu.Unlock()
		n.adm.wake()
	}
	if _, err := n.queryAsync(n.ctx, e.addr, krpc.MethodPing, nil, done); err != nil {
		done(nil, err)
	}
}

// admitTimeout is how long a confirmation ping holds its slot: the
// lookups' short timeout (rttWindow.slowAfter), at least minAdmitTimeout
// and at most QueryTimeout.
func (n *Node) admitTimeout() time.Duration {
	return min(n.cfg.QueryTimeout, max(minAdmitTimeout, n.rtts.slowAfter()))
}

// admitting returns how many nodes wait for or are sent a confirmation
// ping.
func (n *Node) admitting() int {
	n.adm.mu.Lock()
	defer n.adm.mu.Unlock()
	return n.adm.q.len()
}
