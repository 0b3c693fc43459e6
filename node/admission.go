package node

import (
	"context"
	"errors"
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
//     fraction of a second, not the full QueryTimeout.
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
// Loopback addresses are one subnet each (one per address and port)
// unless Config.LimitLoopback is set, so a test network on 127.0.0.1 is
// not serialised.

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

// admitEntry is one node waiting for, or being sent, a confirmation ping.
type admitEntry struct {
	addr    netip.AddrPort
	subnet  netip.Prefix // fairness unit: routing.Subnet, or the address alone
	bucket  int          // the routing-table bucket its id falls in
	class   admitClass
	heard   time.Time // its last query
	queued  time.Time // when it started waiting
	pinging bool
}

// admitQueue is the confirmation schedule: which node to ping next, and
// how many pings are in flight. It does no I/O and reads no clock; the
// node drives it (Node.admit, Node.admitNext). It is not safe for
// concurrent use.
type admitQueue struct {
	maxActive, maxWaiting int

	waiting   map[netip.AddrPort]*admitEntry
	pinging   map[netip.AddrPort]*admitEntry
	perSubnet map[netip.Prefix]int // waiting plus pinging entries per subnet
	inBucket  map[int]int          // pinging entries per bucket
}

func newAdmitQueue(maxActive int) *admitQueue {
	return &admitQueue{
		maxActive:  maxActive,
		maxWaiting: 4 * maxActive,
		waiting:    make(map[netip.AddrPort]*admitEntry),
		pinging:    make(map[netip.AddrPort]*admitEntry),
		perSubnet:  make(map[netip.Prefix]int),
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
	if len(q.pinging) >= q.maxActive {
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
		e.pinging = true
		q.pinging[e.addr] = e
		q.inBucket[e.bucket]++
	}
	return e, expired
}

// done frees the slot of an entry returned by next.
func (q *admitQueue) done(e *admitEntry) {
	if q.pinging[e.addr] != e {
		return
	}
	delete(q.pinging, e.addr)
	if q.inBucket[e.bucket]--; q.inBucket[e.bucket] <= 0 {
		delete(q.inBucket, e.bucket)
	}
	q.dec(e.subnet)
}

// remove forgets waiting entry w.
func (q *admitQueue) remove(w *admitEntry) {
	delete(q.waiting, w.addr)
	q.dec(w.subnet)
}

func (q *admitQueue) dec(sn netip.Prefix) {
	if q.perSubnet[sn]--; q.perSubnet[sn] <= 0 {
		delete(q.perSubnet, sn)
	}
}

// len returns the entries waiting and being pinged.
func (q *admitQueue) len() int { return len(q.waiting) + len(q.pinging) }

// admission is the node's confirmation schedule and its lock.
type admission struct {
	mu sync.Mutex
	q  *admitQueue
}

// admit schedules a confirmation ping to ni, which queried us and which
// the routing table would take (Table.Heard).
func (n *Node) admit(ni krpc.NodeInfo, now time.Time) {
	class := admitNew
	if e, ok := n.table.Get(ni.ID); ok && e.Addr == ni.Addr && e.Confirmed() || n.owners.has(ni.Addr.Addr(), now) {
		class = admitProven
	}
	sn := netip.PrefixFrom(ni.Addr.Addr(), ni.Addr.Addr().BitLen())
	if n.cfg.LimitLoopback || !ni.Addr.Addr().IsLoopback() {
		sn = routing.Subnet(ni.Addr.Addr())
	}
	e := &admitEntry{addr: ni.Addr, subnet: sn, bucket: n.table.BucketIndex(ni.ID), class: class, heard: now, queued: now}
	n.adm.mu.Lock()
	dropped := n.adm.q.offer(e)
	n.adm.mu.Unlock()
	n.admitDropped(dropped)
	n.admitNext()
}

// admitDropped counts nodes the schedule had no room for.
func (n *Node) admitDropped(k int) {
	if k > 0 {
		n.metrics.PacketsDropped.WithLabelValues(metrics.DropAdmissionBusy).Add(float64(k))
	}
}

// admitNext starts confirmation pings while the schedule has free slots
// and nodes to ping. It is called by admit (on the read loop) and by a
// confirmation ping that ends (in its own goroutine, counted in n.wg).
func (n *Node) admitNext() {
	for n.ctx.Err() == nil {
		n.adm.mu.Lock()
		e, expired := n.adm.q.next(n.clock.Now())
		n.adm.mu.Unlock()
		n.admitDropped(expired)
		if e == nil {
			return
		}
		n.wg.Add(1)
		go n.confirm(e)
	}
}

// confirm pings e, whose answer reaches the table through onResponse; an
// answer later than the short timeout is not waited for.
func (n *Node) confirm(e *admitEntry) {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(n.ctx)
	timer := n.clock.AfterFunc(n.admitTimeout(), cancel)
	_, err := n.query(ctx, e.addr, krpc.MethodPing, nil)
	timer.Stop()
	cancel()
	if errors.Is(err, context.Canceled) && n.ctx.Err() == nil {
		n.table.Failed(e.addr, n.clock.Now()) // no answer in time
	}
	n.adm.mu.Lock()
	n.adm.q.done(e)
	n.adm.mu.Unlock()
	n.admitNext()
}

// admitTimeout is how long a confirmation ping waits for its answer: the
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
