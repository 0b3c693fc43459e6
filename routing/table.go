// Package routing is the dhtd routing table: the Kademlia k-bucket table of
// BEP 5 with node liveness states, per-bucket replacement caches, bucket
// refresh targets and the address rules of docs/protocol.md, Admission.
//
// The table never does I/O and never reads the clock: every method that
// needs the time takes it as an argument, and methods that want a node
// pinged return it to the caller, which reports the outcome back through
// Responded or Failed.
package routing

import (
	"net/netip"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// bucket is one k-bucket. Bucket i < last holds the nodes whose id shares
// exactly i leading bits with ours; the last bucket holds every node sharing
// at least last bits (BEP 5, docs/protocol.md, Table shape).
type bucket struct {
	nodes []*entry // live nodes, at most Table.capacity
	// keys holds the first 8 bytes of each live node's id, in the order of
	// nodes: Closest compares them against its selection's farthest
	// distance without loading the entries (each a separate allocation,
	// so a cache miss apiece in a large process), and loads an entry only
	// when it may enter the selection. Kept by addNode and deleteNode.
	keys        []uint64
	repl        []*entry // replacement cache, at most ReplacementSize
	lastChanged time.Time
	// goodUntil, if set, is when the first of the live nodes, all good
	// when it was computed, stops being good (wantsNode): until then a
	// full bucket wants no node, without a look at each of its (up to 128)
	// nodes on every query. Anything that adds a live node or makes one
	// less good clears it.
	goodUntil time.Time
}

// Table is a BEP 5 routing table. It is safe for concurrent use.
type Table struct {
	self krpc.ID
	cfg  Config

	mu      sync.Mutex
	buckets []*bucket
	byAddr  index              // live and replacement entries by address (index.go)
	byID    index              // live and replacement entries by id
	perIP   map[netip.Addr]int // live and replacement entries per IP; nil unless MaxPerIP > 0
	base    time.Time          // time of stamp 0 (entry.go)
	live    int                // number of live entries
	spare   *entry             // an entry the replacement cache evicted, for newEntry
}

// NewTable returns an empty table for a node whose id is self. It starts as
// one bucket covering the whole id space (BEP 5).
func NewTable(self krpc.ID, cfg Config) *Table {
	t := &Table{
		self:    self,
		cfg:     cfg.withDefaults(),
		buckets: []*bucket{{}},
		byAddr:  newIndex(),
		byID:    newIndex(),
	}
	if t.cfg.MaxPerIP > 0 {
		t.perIP = make(map[netip.Addr]int) // only MaxPerIP reads it
	}
	return t
}

// Self returns the table owner's node id.
func (t *Table) Self() krpc.ID { return t.self }

// Config returns the table's configuration with defaults filled in.
func (t *Table) Config() Config { return t.cfg }

// Responded records that n answered one of our queries, which proves its
// address. A known node is refreshed (failures reset, RTT recorded, bucket
// marked changed). A new node is inserted: into its bucket if there is room;
// by splitting the bucket if it is full and covers our own id; in place of a
// bad node; otherwise into the bucket's replacement cache. In that last case,
// if the bucket holds questionable nodes they are returned, least recently
// seen first, for the caller to ping (BEP 5): a node that fails MaxFailures
// pings in a row becomes bad and Failed promotes the cached node.
//
// An answer from a known IP:port with a different id replaces the old entry;
// an answer carrying a known id from a new address is ignored and the node
// kept at its old address (docs/protocol.md, Admission). Our own id, the zero id, port 0
// and unspecified addresses are refused.
func (t *Table) Responded(n krpc.NodeInfo, now time.Time, rtt time.Duration) (toPing []krpc.NodeInfo) {
	n, ok := t.acceptable(n)
	if !ok {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()

	var emptied *bucket // bucket that lost a live node to an id change
	defer func() {
		if emptied != nil {
			t.fill(emptied, now) // after n had its chance at the slot
		}
	}()
	if e := t.byAddr.addr(n.Addr); e != nil {
		if e.info.ID == n.ID {
			e.lastResponse, e.failures = t.stamp(now), 0
			if rtt > 0 {
				e.rtt = rtt
			}
			b := t.bucketOf(e.info.ID)
			if e.live {
				b.lastChanged = now // a node answered (BEP 5 "last changed")
				return nil
			}
			// A cached candidate proved itself: take it out of the cache
			// and insert it like a new node.
			b.repl = deleteEntry(b.repl, e)
			return t.insert(e, now)
		}
		// The endpoint now answers with another id: the old entry is stale.
		if e.live {
			emptied = t.bucketOf(e.info.ID)
		}
		t.drop(e)
	}
	if e := t.byID.id(n.ID); e != nil {
		if e.live || e.confirmed() {
			return nil // keep a known id at its old address (docs/protocol.md, Admission)
		}
		t.drop(e) // an unconfirmed claim loses to a proven address
	}
	if !t.roomForIP(n.Addr.Addr()) {
		return nil
	}
	s := t.stamp(now)
	e := t.newEntry()
	*e = entry{info: n, firstSeen: s, lastResponse: s, rtt: max(rtt, 0)}
	t.track(e)
	return t.insert(e, now)
}

// Heard records that n sent us a query. Its address is not proven, so an
// unknown node is not added to a live bucket: it goes to its bucket's
// replacement cache, and Heard reports whether the caller should ping it
// (its bucket has room, can split, or holds a bad or questionable node).
// When it answers, the caller calls Responded. For a known node at the same
// IP:port and id, the query is recorded (it keeps a node that has answered
// before good, BEP 5), and ping is true only if the node is bad. A query
// from a known IP:port with a different id, or a known id from a different
// IP:port, is ignored (docs/protocol.md, Admission). The caller should not ping an
// address that already has a query of ours in flight.
func (t *Table) Heard(n krpc.NodeInfo, now time.Time) (ping bool) {
	n, ok := t.acceptable(n)
	if !ok {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()

	if e := t.byAddr.addr(n.Addr); e != nil {
		if e.info.ID != n.ID {
			return false
		}
		e.lastQuery = t.stamp(now)
		if e.live {
			// A bad node that queries us may be back: a ping can clear it.
			return e.state(e.lastQuery, &t.cfg) == Bad
		}
		b := t.bucketOf(e.info.ID)
		return t.wantsNode(b, now) && t.subnetOK(b, e, nil)
	}
	if t.byID.id(n.ID) != nil || t.ipFull(n.Addr.Addr()) {
		return false
	}
	b := t.bucketOf(n.ID)
	s := t.stamp(now)
	e := t.newEntry()
	*e = entry{info: n, firstSeen: s, lastQuery: s}
	ping = t.wantsNode(b, now) && t.subnetOK(b, e, nil)
	t.track(e)
	t.addRepl(b, e)
	return ping
}

// WantsNamed reports whether n, a node that another node's answer named
// and that we have not heard from, falls in one of our deepest buckets
// (the last deep of them) and would be taken there once it answers a
// ping: its bucket has room, can split, or holds a node that is not good.
// Unlike Heard it records nothing: the name is hearsay until the node
// answers, and then the caller calls Responded (practice: libtorrent
// enters the nodes it hears of unconfirmed and pings them; docs/sim.md,
// "Named nodes").
func (t *Table) WantsNamed(n krpc.NodeInfo, deep int, now time.Time) bool {
	n, ok := t.acceptable(n)
	if !ok || deep <= 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.bucketIndex(n.ID)
	if i < len(t.buckets)-deep || t.byAddr.addr(n.Addr) != nil || t.byID.id(n.ID) != nil || t.ipFull(n.Addr.Addr()) {
		return false
	}
	b := t.buckets[i]
	e := entry{info: n}
	return t.wantsNode(b, now) && t.subnetOK(b, &e, nil)
}

// Failed records that a query to addr timed out or returned an error. A
// replacement-cache entry at addr is removed. A live node's consecutive
// failure count grows; once it reaches MaxFailures the node is bad and, if
// its bucket's replacement cache is not empty, it is removed and the most
// recently seen cached node that has answered us (if any) takes its place.
// A bad node with an empty cache stays, out of Closest, until a new node
// replaces it or it answers again.
func (t *Table) Failed(addr netip.AddrPort, now time.Time) {
	addr = normalizeAddr(addr)
	t.mu.Lock()
	defer t.mu.Unlock()

	e := t.byAddr.addr(addr)
	if e == nil {
		return
	}
	b := t.bucketOf(e.info.ID)
	if !e.live {
		t.drop(e)
		return
	}
	e.failures++
	e.lastFailure = t.stamp(now)
	b.goodUntil = time.Time{}
	if e.state(e.lastFailure, &t.cfg) != Bad || len(b.repl) == 0 {
		return
	}
	t.drop(e)
	t.fill(b, now)
}

// Remove deletes the node with the given id, live or cached. It does not
// promote a replacement; the freed slot goes to the next node that answers.
func (t *Table) Remove(id krpc.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.byID.id(id); e != nil {
		t.drop(e)
	}
}

// acceptable normalizes n's address and reports whether n may be stored:
// never our own id, the zero id, port 0 or an unusable address (docs/protocol.md, Admission).
func (t *Table) acceptable(n krpc.NodeInfo) (krpc.NodeInfo, bool) {
	n.Addr = normalizeAddr(n.Addr)
	return n, !n.ID.IsZero() && n.ID != t.self && usableAddr(n.Addr)
}
