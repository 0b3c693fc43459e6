package core

import (
	"net/netip"
	"slices"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/routing"
)

// Lookup tuning (practice, libtorrent).
const (
	maxCandidates    = 128                   // candidate list bound; farthest unqueried dropped first
	initialSlowAfter = time.Second           // short timeout before any round trip is measured
	minSlowAfter     = 20 * time.Millisecond // short timeout floor
	// MinSpare is the fewest candidates a converged lookup asks beyond
	// the K closest (see Traversal.width).
	MinSpare = 2
)

// closestPatience and minClosestPatience bound how long a silent closest
// candidate holds the lookup open (see ClosestPatience; dhtd's own, from
// the simulator's churn scenario).
const (
	closestPatience    = 3
	minClosestPatience = time.Second
)

// ClosestPatience returns how long after its latest query a silent
// closest candidate holds a lookup open, for the short timeout
// slowAfter: three times it, and at least a second. With the retry at
// the first short timeout, a live node has had at least four short
// timeouts to answer its first query; with the simulator's round trips
// (log-normal, σ = 0.7), fewer than one in a thousand take longer than
// that. A node that stays silent so long has almost always left, as
// nodes among the closest often have under churn, and the lookup no
// longer waits out the query's full timeout for it.
func ClosestPatience(slowAfter time.Duration) time.Duration {
	return max(closestPatience*slowAfter, minClosestPatience)
}

// SlowAfter is the short timeout (practice, libtorrent's short timeout)
// for the latest round trips rtts, which it sorts: 1.5 times their median,
// but at least 1.25 times their 90th percentile (a loaded host or link
// shows in its spread) and never below 20 ms; one second while none was
// measured.
func SlowAfter(rtts []time.Duration) time.Duration {
	if len(rtts) == 0 {
		return initialSlowAfter
	}
	slices.Sort(rtts)
	return max(3*rtts[len(rtts)/2]/2, rtts[len(rtts)*9/10]*5/4, minSlowAfter)
}

// candidate states.
const (
	stUnqueried = iota
	stInFlight
	stAnswered
	stFailed
	stSlow // in flight past the short timeout: its slot and place are freed
)

// TraversalConfig configures a Traversal. Target, K and Alpha are
// required; the functions are optional.
type TraversalConfig struct {
	Self   krpc.ID // our id: never a candidate
	Target krpc.ID
	K      int // result size (BEP 5: 8)
	Alpha  int // queries in flight until the lookup converges
	// MaxPerSubnet, if > 0, caps the candidates with a known id that
	// share one /24 (IPv4) or /64 (IPv6), so one subnet cannot capture a
	// lookup (practice, libtorrent dht_restrict_search_ips).
	MaxPerSubnet int
	// LimitLoopback applies the subnet caps to loopback addresses too
	// (tests of the caps; off, every loopback node shares one subnet).
	LimitLoopback bool
	// Retry asks a node among the K closest that stays silent past the
	// short timeout once more before passing it over: the query or its
	// answer may have been lost. An answer to either query counts.
	Retry bool
	// Verify, if set, says whether a node id may be used (BEP 42 enforce):
	// other nodes are not added, and their answers count as failures.
	Verify func(krpc.ID, netip.Addr) bool
	// Prefer, if set, picks the ids the result prefers (BEP 42 prefer
	// mode): the K closest answered nodes it accepts, filled up with others.
	Prefer func(krpc.ID, netip.Addr) bool
	// Reach, if set, says whether our socket can send to an address
	// (BEP 32: a node bound to one family looks up in that family only).
	Reach func(netip.Addr) bool
	// IsSelf, if set, says whether an address is our own: it is never
	// queried, whatever id it is listed under.
	IsSelf func(netip.AddrPort) bool
	// Pool, if set, supplies the memory of the candidates, and Release
	// gives it back.
	Pool *CandPool
}

// CandPool keeps the candidate memory of ended traversals for later ones,
// so that a driver running many lookups (the simulator runs millions)
// does not allocate and zero it again for each. It is not safe for
// concurrent use: the traversals sharing one are driven from one
// goroutine.
type CandPool struct {
	free  [][]Cand
	lists [][]*Cand       // candidate lists
	told  [][]subnetCount // per-subnet counts of learn
}

// maxPooledSlabs bounds a CandPool: some 2 KiB each.
const maxPooledSlabs = 1024

// takeLast removes and returns the last element of *list, or the zero
// value if it is empty: the pop of the free lists of a CandPool and of a
// Scratch.
func takeLast[T any](list *[]T) T {
	var zero T
	i := len(*list) - 1
	if i < 0 {
		return zero
	}
	v := (*list)[i]
	(*list)[i] = zero
	*list = (*list)[:i]
	return v
}

// get returns an empty slab, recycled if one is free.
func (p *CandPool) get() []Cand {
	if p != nil {
		if s := takeLast(&p.free); s != nil {
			return s
		}
	}
	return make([]Cand, 0, candSlab)
}

// put takes back a slab, cleared so that it keeps nothing alive.
func (p *CandPool) put(s []Cand) {
	if len(p.free) < maxPooledSlabs {
		clear(s)
		p.free = append(p.free, s[:0])
	}
}

// maxPooledLists bounds the candidate lists and subnet counts a CandPool
// keeps: one each per lookup in flight is enough.
const maxPooledLists = 256

// putLists takes back a traversal's candidate list and subnet counts,
// cleared.
func (p *CandPool) putLists(cands []*Cand, told []subnetCount) {
	if cap(cands) > 0 && len(p.lists) < maxPooledLists {
		clear(cands[:cap(cands)])
		p.lists = append(p.lists, cands[:0])
	}
	if cap(told) > 0 && len(p.told) < maxPooledLists {
		clear(told[:cap(told)])
		p.told = append(p.told, told[:0])
	}
}

// getLists returns an empty candidate list and subnet counts, recycled
// if some are free (nil when not, or without a pool).
func (p *CandPool) getLists() (cands []*Cand, told []subnetCount) {
	if p == nil {
		return nil, nil
	}
	return takeLast(&p.lists), takeLast(&p.told)
}

// Cand is one candidate of a Traversal: a node to ask, being asked, or
// that answered or failed.
type Cand struct {
	info  krpc.NodeInfo
	known bool // id known (false for bootstrap addresses)
	// hearsay: learned from an answer, not from our table or the
	// bootstrap list; its id is only what its referrer claimed.
	hearsay bool
	state   uint8
	depth   uint8 // queries on the chain that found it: 1 for the seeds
	tries   uint8 // queries sent to it
	out     uint8 // of them, still unanswered
	// waited: slow, and the lookup no longer waits for it even when it
	// is the closest candidate (ClosestPatience passed).
	waited bool
	sent   time.Time
	rtt    time.Duration // round trip of its answer
	took   time.Duration // from the lookup's start to its answer
	token  string
	// Reply is the driver's to keep the candidate's answer in (a driver
	// whose messages outlive the packet); the traversal does not use it.
	Reply *krpc.Msg
}

// Node returns the candidate's id and address; the id of a bootstrap
// address is the one it answered with.
func (c *Cand) Node() krpc.NodeInfo { return c.info }

// Addr returns the candidate's address.
func (c *Cand) Addr() netip.AddrPort { return c.info.Addr }

// RTT returns the round trip of the candidate's answer.
func (c *Cand) RTT() time.Duration { return c.rtt }

// Token returns the write token of the candidate's answer (BEP 5).
func (c *Cand) Token() string { return c.token }

// Answer is what a Traversal made of an answer (see Traversal.Answered).
type Answer uint8

const (
	// AnswerUsed: the node is among the answered, its nodes are candidates.
	AnswerUsed Answer = iota
	// AnswerWrongID: the node answered under another id than the one it
	// was listed with, so whoever listed it made the id up (or it has
	// changed): its answer may be seen (a value is a value), but neither
	// its place nor its nodes are trusted.
	AnswerWrongID
	// AnswerRefused: the answer's id failed Verify; it counts as a failure.
	AnswerRefused
	// AnswerLate: the candidate had answered or failed already (the other
	// of two queries to it): nothing changed.
	AnswerLate
)

// subnetCount is a count for one subnet.
type subnetCount struct {
	p netip.Prefix
	n int
}

// Traversal is one iterative Kademlia lookup (BEP 5) as a state machine
// with no I/O and no clock: α queries in flight to the closest unqueried
// candidates; nodes returned are added as candidates; it ends when the K
// closest non-failed candidates have all answered, or nothing is left to
// ask. A query unanswered after the short timeout gives up its slot and
// its place among the K closest; its answer still counts if it comes
// before the end.
//
// A driver seeds it (Seed, SeedAddr), sends a query to each candidate Next
// returns, reports each query's answer or failure (Answered, Failed),
// calls Tick at NextDeadline and sends to the candidates Tick returns, and
// stops when Done. The daemon's lookups and the core's are two such
// drivers. A Traversal is not safe for concurrent use.
type Traversal struct {
	cfg   TraversalConfig
	start time.Time
	cands []*Cand  // known ids by XOR distance to the target, then unknown ones
	slab  []Cand   // where new candidates are allocated (newCand)
	slabs [][]Cand // every slab, for Release (with a Pool only)
	told  []subnetCount
	nodes []krpc.NodeInfo // learn's sorting buffer

	queried, failed  int
	inFlight, active int // queries unanswered; candidates of them holding a slot
	spare            int
	converged        bool
	stopped          bool
}

// NewTraversal returns a traversal that starts at now with no candidates.
func NewTraversal(cfg TraversalConfig, now time.Time) *Traversal {
	t := new(Traversal)
	t.init(cfg, now)
	return t
}

// init makes t a new traversal, with lists from cfg.Pool if it has some.
func (t *Traversal) init(cfg TraversalConfig, now time.Time) {
	*t = Traversal{cfg: cfg, start: now}
	t.cands, t.told = cfg.Pool.getLists()
}

// Target returns the lookup's target.
func (t *Traversal) Target() krpc.ID { return t.cfg.Target }

// Seed offers a node of our own table and reports whether it was added.
func (t *Traversal) Seed(ni krpc.NodeInfo) bool { return t.add(ni, true, false, 1) }

// SeedAddr offers an address whose id is unknown (a bootstrap router); it
// sorts after every node with an id and is not counted among the K
// closest until it answers.
func (t *Traversal) SeedAddr(a netip.AddrPort) bool {
	return t.add(krpc.NodeInfo{Addr: a}, false, false, 1)
}

// Len returns the number of candidates.
func (t *Traversal) Len() int { return len(t.cands) }

// Queried returns the queries sent; Failed those that failed.
func (t *Traversal) Queried() int { return t.queried }

// Failed returns the queries that failed (counted ones, see Fail).
func (t *Traversal) Failed() int { return t.failed }

// InFlight returns the queries sent and not yet reported answered or
// failed.
func (t *Traversal) InFlight() int { return t.inFlight }

// Stop ends the traversal: Next returns nil and Done true from now on.
func (t *Traversal) Stop() { t.stopped = true }

// Next returns the next candidate to query and counts its query as sent
// at now, or nil when the lookup's width is used up or nobody is left to
// ask. The driver sends the query and later reports it with Answered or
// Fail.
func (t *Traversal) Next(now time.Time) *Cand {
	if t.stopped || t.active >= t.width() {
		return nil
	}
	c := t.next()
	if c == nil {
		return nil
	}
	t.send(now, c)
	t.active++
	return c
}

// width is how many candidates may hold a slot: alpha, until an answer
// brings no candidate closer than the closest already known; then the
// lookup has converged and the K closest not yet asked, and the spares,
// are all asked at once (Kademlia, Maymounkov and Mazieres 2002, §2.3).
// A spare per expected silent node among the K, from the share of the
// queries left unanswered, and at least MinSpare: the silent are found
// only by their short timeout, and a spare asked then would cost a round
// more.
func (t *Traversal) width() int {
	if !t.converged {
		return t.cfg.Alpha
	}
	k := t.cfg.K
	lost := t.failed + t.count(stSlow)
	t.spare = max(MinSpare, (k*lost+t.queried-1)/max(t.queried, 1))
	return max(t.cfg.Alpha, k+t.spare)
}

func (t *Traversal) send(now time.Time, c *Cand) {
	c.state, c.sent = stInFlight, now
	c.tries++
	c.out++
	t.inFlight++
	t.queried++
}

// Answered reports the answer r to a query to c, at now.
func (t *Traversal) Answered(now time.Time, c *Cand, r *krpc.Return) Answer {
	t.inFlight--
	c.out--
	if c.state == stAnswered || c.state == stFailed {
		return AnswerLate
	}
	if c.state == stInFlight {
		t.active--
	}
	c.rtt = now.Sub(c.sent)
	if t.cfg.Verify != nil && !t.cfg.Verify(r.ID, c.info.Addr.Addr()) {
		c.state = stFailed
		t.failed++
		return AnswerRefused
	}
	if c.known && r.ID != c.info.ID {
		c.state = stFailed
		t.failed++
		return AnswerWrongID
	}
	before := t.closestKnown()
	c.state = stAnswered
	c.token = r.Token
	c.took = now.Sub(t.start)
	if !c.known {
		// A bootstrap address answered: it now has an id and a place.
		c.known = true
		c.info.ID = r.ID
		t.resort()
	}
	t.learn(c, r)
	if t.closestKnown() == before {
		t.converged = true
	}
	return AnswerUsed
}

// Fail reports that a query to c failed (timed out, or was answered with
// an error); count says whether it counts in Failed (a query the driver
// cancelled does not). While another query to c is out, c waits for it.
func (t *Traversal) Fail(c *Cand, count bool) {
	t.inFlight--
	c.out--
	if c.state == stAnswered || c.state == stFailed || c.out > 0 {
		return
	}
	if c.state == stInFlight {
		t.active--
	}
	c.state = stFailed
	if count {
		t.failed++
	}
}

// Tick moves the queries silent past slowAfter out of their slots, at
// now, and appends to retry the candidates to ask once more (Retry): their
// queries are counted as sent. It returns retry.
func (t *Traversal) Tick(now time.Time, slowAfter time.Duration, retry []*Cand) []*Cand {
	live := 0
	patience := ClosestPatience(slowAfter)
	for _, c := range t.cands {
		if c.state == stSlow && !c.waited && !now.Before(c.sent.Add(patience)) {
			c.waited = true
		}
		if c.state == stFailed || c.state == stSlow {
			continue
		}
		if c.known {
			live++
		}
		if c.state != stInFlight || now.Before(c.sent.Add(slowAfter)) {
			continue
		}
		if t.cfg.Retry && c.known && live <= t.cfg.K && c.tries < 2 && !t.stopped {
			t.send(now, c)
			retry = append(retry, c)
			continue
		}
		c.state = stSlow
		t.active--
	}
	return retry
}

// NextDeadline returns when the next query holding a slot passes
// slowAfter, or a slow closest candidate its ClosestPatience (see Done),
// and false if neither is ahead.
func (t *Traversal) NextDeadline(slowAfter time.Duration) (time.Time, bool) {
	var first time.Time
	ok := false
	if c := t.closestKnown(); c != nil && t.waitsFor(c) {
		first, ok = c.sent.Add(ClosestPatience(slowAfter)), true
	}
	for _, c := range t.cands {
		if c.state != stInFlight {
			continue
		}
		if d := c.sent.Add(slowAfter); !ok || d.Before(first) {
			first, ok = d, true
		}
	}
	return first, ok
}

// waitsFor reports whether c, if it is the closest candidate, holds the
// lookup open: it is slow, a query to it is still out, and its
// ClosestPatience has not passed.
func (t *Traversal) waitsFor(c *Cand) bool {
	return c.state == stSlow && c.out > 0 && !c.waited
}

// Done reports whether the lookup has ended: stopped; or the K closest
// non-failed candidates have answered; or nothing is left to ask and no
// query is out. It does not end while the closest candidate is a node
// past its short timeout whose answer may still come, for it alone
// decides which node is closest (a slow node further away costs no more
// than its place); but only until its latest query is ClosestPatience
// old (Tick tells): a node gone from the network, frequent among the
// closest under churn, would otherwise hold every lookup that meets it
// for the query's full timeout.
func (t *Traversal) Done() bool {
	if t.stopped {
		return true
	}
	if c := t.closestKnown(); c != nil && t.waitsFor(c) {
		return false
	}
	return t.settled() || (t.active == 0 && t.inFlight == 0 && t.next() == nil)
}

// Closest returns the K closest candidates that answered, closest first;
// with Prefer set, the K closest it prefers, filled up with the closest
// others (BEP 42 prefer mode), in distance order.
func (t *Traversal) Closest() []*Cand {
	k := t.cfg.K
	out := make([]*Cand, 0, k)
	chosen := func(c *Cand) bool { return slices.Contains(out, c) }
	if t.cfg.Prefer != nil {
		for _, c := range t.cands {
			if c.state == stAnswered && len(out) < k && t.cfg.Prefer(c.info.ID, c.info.Addr.Addr()) {
				out = append(out, c)
			}
		}
	}
	for _, c := range t.cands {
		if c.state == stAnswered && len(out) < k && !chosen(c) {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b *Cand) int { return t.order(a, b) })
	return out
}

// Chain returns the lookup's chain of round trips: hops, the length of
// the chain of queries that led to the closest node that answered (1 if
// it was in our own table), and when it answered, from the start; and
// rounds, the round trips the lookup waited for one after another. Its
// end waits for the K closest nodes that answered, and for the nodes
// closer than the farthest of them to fail (or to pass their short
// timeout): rounds is the longest chain among the first, and among the
// queries before the last query of the second. A node farther than the
// K closest that answered before the end answered beside that wait, and
// its chain does not count, however long. The K closest are taken by
// distance, as the end takes them, also when Prefer picks the result.
func (t *Traversal) Chain() (hops, rounds int, closestAfter time.Duration) {
	answered := 0
	for _, c := range t.cands {
		if answered == t.cfg.K {
			break
		}
		switch c.state {
		case stAnswered:
			if answered == 0 {
				hops, closestAfter = int(c.depth), c.took
			}
			answered++
			rounds = max(rounds, int(c.depth))
		case stFailed, stSlow:
			rounds = max(rounds, int(c.depth)-1)
		}
	}
	return hops, rounds, closestAfter
}

// candSlab is how many candidates newCand allocates at once.
const candSlab = 16

// Release ends the traversal and gives its candidates' memory to the
// Pool of its config: no *Cand it returned may be used afterwards. Without
// a Pool it only ends it.
func (t *Traversal) Release() {
	if p := t.cfg.Pool; p != nil {
		for _, s := range t.slabs {
			p.put(s[:cap(s)])
		}
		p.putLists(t.cands, t.told)
	}
	*t = Traversal{}
}

// AppendUnasked appends to dst the nodes that answers named and the
// traversal never asked, nearest the target first: hearsay, for the
// driver to confirm with a ping if its table wants them (Node.AdmitNamed).
func (t *Traversal) AppendUnasked(dst []krpc.NodeInfo) []krpc.NodeInfo {
	for _, c := range t.cands {
		if c.state == stUnqueried && c.hearsay {
			dst = append(dst, c.info)
		}
	}
	return dst
}

// newCand returns a zero candidate from the traversal's slab: one
// allocation per candSlab candidates instead of one each. The slab is
// never moved, so the pointers stay valid for the traversal's life.
func (t *Traversal) newCand() *Cand {
	if len(t.slab) == cap(t.slab) {
		t.slab = t.cfg.Pool.get()
		if t.cfg.Pool != nil {
			t.slabs = append(t.slabs, t.slab)
		}
	}
	t.slab = t.slab[:len(t.slab)+1]
	return &t.slab[len(t.slab)-1]
}

// add offers a candidate and reports whether it was added; depth is the
// length of the chain of queries that found it. Our own id and address
// are never added. Nodes with a known id are capped per subnet
// (MaxPerSubnet), whether they come from our table or from an answer. A
// node already a candidate is not added again, but if it is not asked
// yet, it keeps the shorter of the chains that named it.
func (t *Traversal) add(ni krpc.NodeInfo, known, hearsay bool, depth int) bool {
	a := ni.Addr
	if !a.IsValid() || a.Port() == 0 || a.Addr().IsUnspecified() || (known && ni.ID == t.cfg.Self) {
		return false
	}
	if t.cfg.IsSelf != nil && t.cfg.IsSelf(a) {
		return false
	}
	if known && t.cfg.Verify != nil && !t.cfg.Verify(ni.ID, a.Addr()) {
		return false
	}
	if t.cfg.Reach != nil && !t.cfg.Reach(a.Addr()) {
		return false
	}
	d := uint8(min(depth, 255))
	capped := known && t.cfg.MaxPerSubnet > 0 && (t.cfg.LimitLoopback || !a.Addr().IsLoopback())
	var subnet netip.Prefix
	if capped {
		subnet = routing.Subnet(a.Addr())
	}
	same := 0
	for _, c := range t.cands {
		if c.info.Addr == a || (known && c.known && c.info.ID == ni.ID) {
			if c.state == stUnqueried && d < c.depth {
				// Not asked yet: when it is, the query waits only for
				// the shorter chain that named it.
				c.depth = d
			}
			return false
		}
		if capped && c.known && subnet.Contains(c.info.Addr.Addr()) {
			same++
		}
	}
	if capped && same >= t.cfg.MaxPerSubnet {
		return false
	}
	c := t.newCand()
	*c = Cand{info: ni, known: known, hearsay: hearsay, depth: d}
	i, _ := slices.BinarySearchFunc(t.cands, c, t.order)
	t.cands = slices.Insert(t.cands, i, c)
	if len(t.cands) > maxCandidates {
		return t.dropOne() != c
	}
	return true
}

// order sorts candidates: known ids by XOR distance to the target, then
// unknown ones in the order they came.
func (t *Traversal) order(a, b *Cand) int {
	switch {
	case !a.known && !b.known:
		return 0
	case !a.known:
		return 1
	case !b.known:
		return -1
	}
	return routing.CompareDistance(t.cfg.Target, a.info.ID, b.info.ID)
}

// dropOne drops and returns the farthest unqueried candidate learned by
// hearsay, or if there is none the farthest unqueried one: nodes from our
// own table are not crowded out by what responders claim.
func (t *Traversal) dropOne() *Cand {
	for _, hearsay := range [...]bool{true, false} {
		for j := len(t.cands) - 1; j >= 0; j-- {
			if c := t.cands[j]; c.state == stUnqueried && (c.hearsay || !hearsay) {
				t.cands = slices.Delete(t.cands, j, j+1)
				return c
			}
		}
	}
	return nil
}

// learn offers the nodes of from's answer (BEP 5 "nodes", BEP 32
// "nodes6"). What a responder says is hearsay, so it is bounded: at most
// K of one answer are taken (the closest to the target; BEP 5 answers
// carry K), and at most K from all the responders of one subnet
// together, so that a few subnets of responders that make nodes up
// cannot crowd the candidate list (loopback exempt unless LimitLoopback).
func (t *Traversal) learn(from *Cand, r *krpc.Return) {
	k := t.cfg.K
	ip := from.info.Addr.Addr()
	var told *int
	if t.cfg.LimitLoopback || !ip.Unmap().IsLoopback() {
		sn := routing.Subnet(ip)
		i := slices.IndexFunc(t.told, func(s subnetCount) bool { return s.p == sn })
		if i < 0 {
			if t.told == nil {
				// A lookup hears from some 50 responders: one allocation
				// instead of a growing slice's seven.
				t.told = make([]subnetCount, 0, 64)
			}
			t.told = append(t.told, subnetCount{p: sn})
			i = len(t.told) - 1
		}
		told = &t.told[i].n
	}
	room := k
	if told != nil {
		room = min(room, k-*told)
	}
	if room <= 0 {
		return
	}
	ns := r.Nodes
	if len(r.Nodes6) > 0 || len(ns) > room {
		// Some will be left out: the closest to the target go first. A
		// copy, for the answer may be kept as it came.
		ns = append(append(t.nodes[:0], r.Nodes...), r.Nodes6...)
		routing.SortByDistance(t.cfg.Target, ns)
		t.nodes = ns[:0]
	}
	depth := int(from.depth) + 1
	taken := 0
	for _, n := range ns {
		if taken >= room {
			return
		}
		if t.add(n, true, true, depth) {
			taken++
			if told != nil {
				*told++
			}
		}
	}
}

// next returns the closest unqueried candidate among the K (plus spare)
// closest non-failed ones, or an unknown-id bootstrap address, or nil.
func (t *Traversal) next() *Cand {
	live := 0
	for _, c := range t.cands {
		if c.state == stFailed || c.state == stSlow {
			continue
		}
		if c.known {
			if live >= t.cfg.K+t.spare {
				continue
			}
			live++
		}
		if c.state == stUnqueried {
			return c
		}
	}
	return nil
}

// settled reports whether the K closest non-failed known candidates have
// all answered. A slow query does not hold the lookup open: its node is
// passed over (its answer still counts if it comes before the end).
func (t *Traversal) settled() bool {
	live := 0
	for _, c := range t.cands {
		if c.state == stFailed || c.state == stSlow || !c.known {
			continue
		}
		if c.state != stAnswered {
			return false
		}
		if live++; live >= t.cfg.K {
			return true
		}
	}
	return false
}

// closestKnown returns the closest candidate with a known id that has not
// failed, or nil.
func (t *Traversal) closestKnown() *Cand {
	for _, c := range t.cands {
		if c.known && c.state != stFailed {
			return c
		}
	}
	return nil
}

func (t *Traversal) count(state uint8) int {
	n := 0
	for _, c := range t.cands {
		if c.state == state {
			n++
		}
	}
	return n
}

func (t *Traversal) resort() { slices.SortStableFunc(t.cands, t.order) }
