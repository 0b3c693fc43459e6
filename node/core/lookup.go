package core

import (
	"net/netip"
	"slices"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

// Lookup tuning, as in the daemon's lookups (practice, libtorrent).
const (
	maxCandidates    = 128                   // candidate list bound; farthest unqueried dropped first
	initialSlowAfter = time.Second           // short timeout before any round trip is measured
	minSlowAfter     = 20 * time.Millisecond // short timeout floor
	minSpare         = 2                     // candidates asked beyond the K closest once converged
	rttSamples       = 16                    // round trips a node remembers for its short timeout
)

// candidate states.
const (
	stUnqueried = iota
	stInFlight
	stAnswered
	stFailed
	stSlow // in flight past the short timeout: its slot and place are freed
)

type cand struct {
	info  krpc.NodeInfo
	known bool // id known (false for bootstrap addresses)
	state uint8
	depth uint8 // queries on the chain that found it: 1 for our own table's nodes
	tries uint8 // queries sent to it
	sent  time.Time
	took  time.Duration // from the lookup's start to its answer
	token string
}

// Found is one node that answered a lookup, closest first in
// Result.Closest, with the write token it gave.
type Found struct {
	Node  krpc.NodeInfo
	Token string
}

// Result is the outcome of a lookup.
type Result struct {
	Target  krpc.ID
	Closest []Found          // the K closest nodes that answered, closest first
	Peers   []netip.AddrPort // get_peers: the peers returned (BEP 5)
	Value   []byte           // get: the value of an immutable item found (BEP 44)
	Queried int              // queries sent
	Failed  int              // queries that failed (timeout or error)
	// Hops is the length of the chain of queries that led to the closest
	// node: 1 if it was in our own table.
	Hops int
	// Rounds is the longest chain of queries among the nodes that
	// answered: the round trips the lookup waited for one after another.
	Rounds int
	// ClosestAfter is when the closest node of the result answered,
	// from the start: how long the lookup took to find it, before it
	// confirmed that no closer node answers.
	ClosestAfter time.Duration
	Start        time.Time
	Elapsed      time.Duration
}

// Lookup is one iterative Kademlia lookup (BEP 5) in progress: α queries
// in flight to the closest unqueried candidates; returned nodes become
// candidates; it ends when the K closest non-failed candidates have all
// answered, or nothing is left to ask. A query unanswered after the short
// timeout gives up its slot and its place among the K closest.
type Lookup struct {
	n      *Node
	method string
	target krpc.ID
	done   func(Result)

	cands            []*cand
	slab             []cand // where new candidates are allocated (newCand)
	res              Result
	inFlight, active int
	converged, ended bool
	spare            int
}

// FindNode looks up the K closest nodes to target; done (if not nil) is
// called with the result from inside a later Handle call.
func (n *Node) FindNode(now time.Time, target krpc.ID, done func(Result)) *Lookup {
	return n.lookup(now, krpc.MethodFindNode, target, nil, done)
}

// GetPeers looks up the peers of infohash ih (BEP 5).
func (n *Node) GetPeers(now time.Time, ih krpc.ID, done func(Result)) *Lookup {
	return n.lookup(now, krpc.MethodGetPeers, ih, nil, done)
}

// Get looks up the BEP 44 item of target.
func (n *Node) Get(now time.Time, target krpc.ID, done func(Result)) *Lookup {
	return n.lookup(now, krpc.MethodGet, target, nil, done)
}

// Bootstrap looks up our own id, starting from routers (addresses without
// a known id) as well as our table, to fill the table (BEP 5).
func (n *Node) Bootstrap(now time.Time, routers []netip.AddrPort, done func(Result)) *Lookup {
	return n.lookup(now, krpc.MethodFindNode, n.id, routers, done)
}

// StoreResult is the outcome of Put or Announce.
type StoreResult struct {
	Lookup Result
	Stored int // nodes that acknowledged the store
}

// Put stores the immutable item v (a bencoded value) on the K closest
// nodes to its target (BEP 44): a get lookup for their tokens, then a put
// to each.
func (n *Node) Put(now time.Time, v []byte, done func(StoreResult)) {
	target := storage.ImmutableTarget(v)
	n.Get(now, target, func(r Result) {
		n.storeAll(r, krpc.MethodPut, func() *krpc.Args { return &krpc.Args{V: v} }, done)
	})
}

// Announce announces us as a peer of ih on port to the K closest nodes
// (BEP 5): a get_peers lookup for their tokens, then announce_peer to each.
func (n *Node) Announce(now time.Time, ih krpc.ID, port int, done func(StoreResult)) {
	n.GetPeers(now, ih, func(r Result) {
		p := int64(port)
		n.storeAll(r, krpc.MethodAnnouncePeer, func() *krpc.Args { return &krpc.Args{InfoHash: &ih, Port: &p} }, done)
	})
}

// storeAll sends the store query to every node of r.Closest with its token
// and calls done once all have answered or timed out.
func (n *Node) storeAll(r Result, method string, args func() *krpc.Args, done func(StoreResult)) {
	out := StoreResult{Lookup: r}
	waiting := 0
	finish := func() {
		if waiting == 0 && done != nil {
			done(out)
		}
	}
	now := r.Start.Add(r.Elapsed)
	for _, f := range r.Closest {
		if f.Token == "" {
			continue
		}
		a := args()
		a.Token = f.Token
		err := n.sendQuery(now, f.Node.Addr, method, a, func(_ time.Time, m *krpc.Msg, err error) {
			waiting--
			if err == nil && m.R != nil {
				out.Stored++
			}
			finish()
		})
		if err == nil {
			waiting++
		}
	}
	finish()
}

func (n *Node) lookup(now time.Time, method string, target krpc.ID, routers []netip.AddrPort, done func(Result)) *Lookup {
	l := &Lookup{n: n, method: method, target: target, done: done}
	l.res = Result{Target: target, Start: now}
	for _, ni := range n.table.Closest(target, 2*n.cfg.K) {
		l.add(ni, true, 1)
	}
	for _, a := range routers {
		l.add(krpc.NodeInfo{Addr: a}, false, 1)
	}
	n.lookups = append(n.lookups, l)
	l.step(now)
	return l
}

// add offers a candidate, kept sorted: known ids by XOR distance, unknown
// ones (bootstrap addresses) last.
// candSlab is how many candidates newCand allocates at once.
const candSlab = 16

// newCand returns a zero candidate from the lookup's slab: one allocation
// per candSlab candidates instead of one each. The slab is never moved, so
// the pointers stay valid for the lookup's life.
func (l *Lookup) newCand() *cand {
	if len(l.slab) == cap(l.slab) {
		l.slab = make([]cand, 0, candSlab)
	}
	l.slab = l.slab[:len(l.slab)+1]
	return &l.slab[len(l.slab)-1]
}

func (l *Lookup) add(ni krpc.NodeInfo, known bool, depth int) {
	a := ni.Addr
	if !a.IsValid() || a.Port() == 0 || a.Addr().IsUnspecified() || (known && ni.ID == l.n.id) {
		return
	}
	sameSubnet := 0
	var subnet netip.Prefix
	if known && l.n.cfg.MaxPerSubnet > 0 && depth > 1 {
		subnet = routing.Subnet(a.Addr())
	}
	for _, c := range l.cands {
		if c.info.Addr == a || (known && c.known && c.info.ID == ni.ID) {
			if c.state == stUnqueried && uint8(min(depth, 255)) < c.depth {
				// Not asked yet: when it is, the query waits only for
				// the shorter chain that named it.
				c.depth = uint8(min(depth, 255))
			}
			return
		}
		if subnet.IsValid() && c.known && subnet.Contains(c.info.Addr.Addr()) {
			sameSubnet++
		}
	}
	if subnet.IsValid() && sameSubnet >= l.n.cfg.MaxPerSubnet {
		return
	}
	c := l.newCand()
	*c = cand{info: ni, known: known, depth: uint8(min(depth, 255))}
	i, _ := slices.BinarySearchFunc(l.cands, c, func(o, c *cand) int {
		switch {
		case !o.known:
			return 1
		case !c.known:
			return -1
		}
		return routing.CompareDistance(l.target, o.info.ID, c.info.ID)
	})
	l.cands = slices.Insert(l.cands, i, c)
	if len(l.cands) > maxCandidates {
		for j := len(l.cands) - 1; j >= 0; j-- {
			if l.cands[j].state == stUnqueried {
				l.cands = slices.Delete(l.cands, j, j+1)
				break
			}
		}
	}
}

// step sends queries up to the lookup's width and ends it when settled.
func (l *Lookup) step(now time.Time) {
	if l.ended {
		return
	}
	k := l.n.cfg.K
	width := l.n.cfg.Alpha
	if l.converged {
		// a spare per expected silent node among the K (as the daemon's
		// lookups do), at least minSpare
		lost := l.res.Failed + l.count(stSlow)
		l.spare = max(minSpare, (k*lost+l.res.Queried-1)/max(l.res.Queried, 1))
		width = max(width, k+l.spare)
	}
	for l.active < width {
		c := l.next()
		if c == nil {
			break
		}
		if err := l.send(now, c); err != nil {
			c.state = stFailed
			continue
		}
		l.active++
	}
	if (l.settled() || (l.active == 0 && l.next() == nil)) && !l.closestSlow() {
		l.end(now)
	}
}

// send queries c.
func (l *Lookup) send(now time.Time, c *cand) error {
	a := l.n.queryArgs()
	if l.method == krpc.MethodGetPeers {
		a.InfoHash = &l.target
	} else {
		a.Target = &l.target
	}
	err := l.n.sendQuery(now, c.info.Addr, l.method, a, func(now time.Time, m *krpc.Msg, err error) {
		l.answered(now, c, m, err)
	})
	if err != nil {
		return err
	}
	c.state, c.sent = stInFlight, now
	c.tries++
	l.inFlight++
	l.res.Queried++
	return nil
}

// inFlightTo reports whether a query of ours to c is still outstanding.
func (l *Lookup) inFlightTo(c *cand) bool {
	for _, p := range l.n.pending {
		if p.to == c.info.Addr {
			return true
		}
	}
	return false
}

// answered takes the answer (or failure) of the query to c.
func (l *Lookup) answered(now time.Time, c *cand, m *krpc.Msg, err error) {
	if l.ended {
		return
	}
	l.inFlight--
	if c.state == stAnswered || c.state == stFailed {
		return // the other of two queries to c answered first
	}
	if err != nil && c.state == stInFlight && l.inFlightTo(c) {
		return // the retry is still out
	}
	if c.state == stInFlight {
		l.active--
	}
	if err != nil || m == nil || m.R == nil {
		c.state = stFailed
		l.res.Failed++
		l.step(now)
		return
	}
	l.n.addRTT(now.Sub(c.sent))
	before := l.closestKnown()
	c.state = stAnswered
	c.token = m.R.Token
	c.took = now.Sub(l.res.Start)
	if !c.known {
		c.known = true
		c.info.ID = m.R.ID
		l.resort()
	}
	for _, ni := range m.R.Nodes {
		l.add(ni, true, int(c.depth)+1)
	}
	if len(m.R.Values) > 0 && len(l.res.Peers) < 200 {
		l.res.Peers = append(l.res.Peers, m.R.Values...)
	}
	if l.method == krpc.MethodGet && l.res.Value == nil && len(m.R.V) > 0 && m.R.K == "" &&
		storage.ImmutableTarget(m.R.V) == l.target {
		l.res.Value = append([]byte(nil), m.R.V...) // BEP 44: an immutable value is checked against its hash
	}
	if l.closestKnown() == before {
		l.converged = true
	}
	l.step(now)
}

// tick moves the queries past the short timeout out of their slots.
func (l *Lookup) tick(now time.Time) {
	if l.ended {
		return
	}
	limit := l.n.slowAfter()
	live := 0
	for _, c := range l.cands {
		if c.state == stFailed || c.state == stSlow || !c.known {
			continue
		}
		live++
		if c.state != stInFlight || now.Before(c.sent.Add(limit)) {
			continue
		}
		// One of the K closest is silent past the short timeout: the query
		// or its answer may have been lost, so it is asked once more
		// before it is passed over; an answer to either query counts.
		if live <= l.n.cfg.K && c.tries < 2 && l.send(now, c) == nil {
			continue
		}
		c.state = stSlow
		l.active--
	}
	for _, c := range l.cands {
		if c.state == stInFlight && !c.known && !now.Before(c.sent.Add(limit)) {
			c.state = stSlow // a bootstrap address
			l.active--
		}
	}
	l.step(now)
}

// nextDeadline is when the next active query passes the short timeout.
func (l *Lookup) nextDeadline() (time.Time, bool) {
	var first time.Time
	ok := false
	limit := l.n.slowAfter()
	for _, c := range l.cands {
		if c.state != stInFlight {
			continue
		}
		if d := c.sent.Add(limit); !ok || d.Before(first) {
			first, ok = d, true
		}
	}
	return first, ok
}

// end completes the lookup: queries still out are left to time out (their
// answers still feed the routing table), and done is called.
func (l *Lookup) end(now time.Time) {
	l.ended = true
	l.n.lookups = slices.DeleteFunc(l.n.lookups, func(o *Lookup) bool { return o == l })
	k := l.n.cfg.K
	for _, c := range l.cands {
		if c.state != stAnswered {
			continue
		}
		if len(l.res.Closest) == 0 {
			l.res.Hops, l.res.ClosestAfter = int(c.depth), c.took
		}
		if len(l.res.Closest) < k {
			l.res.Closest = append(l.res.Closest, Found{Node: c.info, Token: c.token})
		}
		l.res.Rounds = max(l.res.Rounds, int(c.depth))
	}
	l.res.Elapsed = now.Sub(l.res.Start)
	l.cands = nil
	if l.done != nil {
		l.done(l.res)
	}
}

// next returns the closest unqueried candidate among the K (plus spare)
// closest non-failed ones, or an unknown-id bootstrap address, or nil.
func (l *Lookup) next() *cand {
	live := 0
	for _, c := range l.cands {
		if c.state == stFailed || c.state == stSlow {
			continue
		}
		if c.known {
			if live >= l.n.cfg.K+l.spare {
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
// all answered.
func (l *Lookup) settled() bool {
	live := 0
	for _, c := range l.cands {
		if c.state == stFailed || c.state == stSlow || !c.known {
			continue
		}
		if c.state != stAnswered {
			return false
		}
		if live++; live >= l.n.cfg.K {
			return true
		}
	}
	return false
}

// closestSlow reports whether the closest live candidate is a node past
// its short timeout whose answer may still come: a lookup does not end
// before it answers or fails, for it alone decides which node is closest
// (a slow node further away costs no more than its place).
func (l *Lookup) closestSlow() bool {
	c := l.closestKnown()
	return c != nil && c.state == stSlow
}

func (l *Lookup) closestKnown() *cand {
	for _, c := range l.cands {
		if c.known && c.state != stFailed {
			return c
		}
	}
	return nil
}

func (l *Lookup) count(state uint8) int {
	n := 0
	for _, c := range l.cands {
		if c.state == state {
			n++
		}
	}
	return n
}

func (l *Lookup) resort() {
	slices.SortStableFunc(l.cands, func(a, b *cand) int {
		switch {
		case a.known != b.known:
			if a.known {
				return -1
			}
			return 1
		case !a.known:
			return 0
		}
		return routing.CompareDistance(l.target, a.info.ID, b.info.ID)
	})
}

// addRTT records a lookup round trip for the short timeout.
func (n *Node) addRTT(d time.Duration) {
	n.rtts[n.rttNext%rttSamples] = d
	n.rttNext++
	n.slow = n.computeSlowAfter()
}

// slowAfter is the short timeout: 1.5 times the median of the latest round
// trips, at least 1.25 times their 90th percentile and minSlowAfter;
// initialSlowAfter before any was measured.
func (n *Node) slowAfter() time.Duration {
	if n.slow == 0 {
		return initialSlowAfter
	}
	return n.slow
}

func (n *Node) computeSlowAfter() time.Duration {
	k := min(int(n.rttNext), rttSamples)
	if k == 0 {
		return initialSlowAfter
	}
	var buf [rttSamples]time.Duration
	s := buf[:k]
	copy(s, n.rtts[:k])
	slices.Sort(s)
	return max(3*s[k/2]/2, s[k*9/10]*5/4, minSlowAfter)
}
