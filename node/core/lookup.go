package core

import (
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

// rttSamples is how many round trips a node remembers for its short
// timeout.
const rttSamples = 16

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
	// Rounds is the round trips the lookup waited for one after another:
	// the longest chain of queries among the K closest nodes that
	// answered and the nodes closer than them that failed
	// (Traversal.Chain).
	Rounds int
	// ClosestAfter is when the closest node of the result answered,
	// from the start: how long the lookup took to find it, before it
	// confirmed that no closer node answers.
	ClosestAfter time.Duration
	// ValueAfter is when the first peers (get_peers) or the item's value
	// (get) came, from the start (if Peers or Value says some came): what
	// a user waiting for results waits, while the lookup goes on to
	// confirm the K closest.
	ValueAfter time.Duration
	Start      time.Time
	Elapsed    time.Duration
}

// Lookup is one iterative Kademlia lookup (BEP 5) in progress: α queries
// in flight to the closest unqueried candidates; returned nodes become
// candidates; it ends when the K closest non-failed candidates have all
// answered, or nothing is left to ask. A query unanswered after the short
// timeout gives up its slot and its place among the K closest.
type Lookup struct {
	n      *Node
	method string
	t      Traversal
	done   func(Result)
	res    Result
	retry  []*Cand // Tick's buffer
	ended  bool
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

// Bootstrap joins the network as the daemon does: it looks up our own id,
// starting from routers (addresses without a known id) as well as our
// table (BEP 5), then probes the buckets that have room (ProbeBuckets)
// and looks up a random id in each bucket that is not full and may hold
// more nodes, one lookup at a time, to fill the table
// (routing.Table.FillTargets).
// done, if not nil, is called with the first lookup's result once the
// last has ended.
func (n *Node) Bootstrap(now time.Time, routers []netip.AddrPort, done func(Result)) *Lookup {
	return n.lookup(now, krpc.MethodFindNode, n.id, routers, func(r Result) {
		var targets []krpc.ID
		if len(r.Closest) > 0 {
			targets = n.table.FillTargets(routing.FillDepth(n.id, r.Closest[len(r.Closest)-1].Node.ID))
			n.ProbeBuckets(r.Start.Add(r.Elapsed))
		}
		n.fill(r.Start.Add(r.Elapsed), targets, func() {
			if done != nil {
				done(r)
			}
		})
	})
}

// BootstrapLookup is the first lookup of Bootstrap alone, our own id
// from routers and our table, then the probes of the buckets that have
// room (ProbeBuckets), without the lookups that fill them: a lighter
// join, for simulations that must keep their events down.
func (n *Node) BootstrapLookup(now time.Time, routers []netip.AddrPort, done func(Result)) *Lookup {
	return n.lookup(now, krpc.MethodFindNode, n.id, routers, func(r Result) {
		if len(r.Closest) > 0 {
			n.ProbeBuckets(r.Start.Add(r.Elapsed))
		}
		if done != nil {
			done(r)
		}
	})
}

// ProbeBuckets sends, for each bucket of the table that has room,
// Config.BucketProbes find_node queries for random ids in it, each to the
// node of the table closest to its id; the nodes an answer names that the
// bucket would take get a confirmation ping, in the class of the nodes
// lookups name (AdmitNamed: a name is hearsay), and the ping's answer
// admits them. It returns the queries sent.
//
// The nodes of bucket b share b bits with us, and so does every node
// within b+1 bits of an id in it: one answer about such an id names K
// nodes the bucket would take. That fills the middle buckets, which our
// lookups of random ids rarely reach and the lookup of our own id passes
// by, for one query and the pings, where a lookup costs tens of queries
// (docs/sim.md, "Bucket probes").
func (n *Node) ProbeBuckets(now time.Time) int {
	sent := 0
	for range n.cfg.BucketProbes {
		for _, target := range n.table.FillTargets(n.table.NumBuckets()) {
			target = n.reseed(target)
			var closest [1]krpc.NodeInfo
			to := n.table.AppendClosest(closest[:0], target, 1)
			if len(to) == 0 {
				return sent
			}
			a := n.queryArgs()
			a.Target = &target
			if n.sendQuery(now, to[0].Addr, krpc.MethodFindNode, a, n.probed) == nil {
				sent++
			}
		}
	}
	return sent
}

// probed takes the answer of a bucket probe: the named nodes the table
// would take, in whichever bucket, are offered to the admission schedule.
func (n *Node) probed(now time.Time, m *krpc.Msg, err error) {
	if err != nil || m == nil || m.R == nil {
		return
	}
	offered := false
	for _, nodes := range [...]krpc.CompactNodes{m.R.Nodes, krpc.CompactNodes(m.R.Nodes6)} {
		for _, ni := range nodes {
			if n.cfg.IsSelf != nil && n.cfg.IsSelf(ni.Addr) {
				continue // a poisoned answer: never ping ourselves
			}
			if n.table.WantsNamed(ni, allBuckets, now) {
				n.offerAdmit(ni, AdmitNamed, now)
				offered = true
			}
		}
	}
	if offered {
		n.admitNext(now)
	}
}

// allBuckets, as routing.Table.WantsNamed's depth, is every bucket.
const allBuckets = math.MaxInt32

// fill looks up targets one after the other (each redrawn from the node's
// own source within its bucket), then calls done.
func (n *Node) fill(now time.Time, targets []krpc.ID, done func()) {
	if len(targets) == 0 {
		done()
		return
	}
	n.FindNode(now, n.reseed(targets[0]), func(r Result) {
		n.fill(r.Start.Add(r.Elapsed), targets[1:], done)
	})
}

// StoreResult is the outcome of Put or Announce.
type StoreResult struct {
	Lookup Result
	Stored int       // nodes that acknowledged the store
	Ended  time.Time // when the last store query ended (the lookup's end if none was sent)
}

// Put stores the immutable item v (a bencoded value) on the K closest
// nodes to its target (BEP 44): a get lookup for their tokens, then a put
// to each.
func (n *Node) Put(now time.Time, v []byte, done func(StoreResult)) {
	n.PutItem(now, storage.Item{V: v}, done)
}

// PutItem stores it on the K closest nodes to its target (BEP 44) as it
// is: an immutable item, or a mutable item's signed record (v, k, salt,
// seq, sig), which anyone may put again without the private key.
func (n *Node) PutItem(now time.Time, it storage.Item, done func(StoreResult)) {
	n.Get(now, it.Target(), func(r Result) {
		n.storeAll(r, krpc.MethodPut, func() *krpc.Args {
			a := &krpc.Args{V: it.V}
			if it.Mutable {
				seq := it.Seq
				a.K, a.Sig, a.Salt, a.Seq = string(it.K), string(it.Sig), string(it.Salt), &seq
			}
			return a
		}, done)
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
	now := r.Start.Add(r.Elapsed)
	out := StoreResult{Lookup: r, Ended: now}
	waiting := 0
	finish := func() {
		if waiting == 0 && done != nil {
			done(out)
		}
	}
	for _, f := range r.Closest {
		if f.Token == "" {
			continue
		}
		a := args()
		a.Token = f.Token
		err := n.sendQuery(now, f.Node.Addr, method, a, func(at time.Time, m *krpc.Msg, err error) {
			waiting--
			out.Ended = at
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
	l := &Lookup{n: n, method: method, done: done}
	l.res = Result{Target: target, Start: now}
	l.t.init(TraversalConfig{
		Self: n.id, Target: target, K: n.cfg.K, Alpha: n.cfg.Alpha,
		MaxPerSubnet: n.cfg.MaxPerSubnet, Retry: true, Pool: &n.scratch.cands,
	}, now)
	for _, ni := range n.table.Closest(target, 2*n.cfg.K) {
		l.t.Seed(ni)
	}
	for _, a := range routers {
		l.t.SeedAddr(a)
	}
	n.lookups = append(n.lookups, l)
	l.step(now)
	return l
}

// step sends queries up to the lookup's width and ends it when done.
func (l *Lookup) step(now time.Time) {
	if l.ended {
		return
	}
	for c := l.t.Next(now); c != nil; c = l.t.Next(now) {
		l.send(now, c)
	}
	if l.t.Done() {
		l.end(now)
	}
}

// send queries c; a query that cannot be sent fails at once.
func (l *Lookup) send(now time.Time, c *Cand) {
	a := l.n.queryArgs()
	target := l.t.Target()
	if l.method == krpc.MethodGetPeers {
		a.InfoHash = &target
	} else {
		a.Target = &target
	}
	err := l.n.sendQuery(now, c.Addr(), l.method, a, func(now time.Time, m *krpc.Msg, err error) {
		l.answered(now, c, m, err)
	})
	if err != nil {
		l.t.Fail(c, false)
	}
}

// answered takes the answer (or failure) of a query to c.
func (l *Lookup) answered(now time.Time, c *Cand, m *krpc.Msg, err error) {
	if l.ended {
		return
	}
	if err != nil || m == nil || m.R == nil {
		l.t.Fail(c, true)
		l.step(now)
		return
	}
	switch l.t.Answered(now, c, m.R) {
	case AnswerUsed:
		l.n.addRTT(c.RTT())
	case AnswerWrongID:
		l.n.addRTT(c.RTT())
		l.step(now)
		return
	default:
		l.step(now)
		return
	}
	target := l.t.Target()
	if len(m.R.Values) > 0 && len(l.res.Peers) < 200 {
		if len(l.res.Peers) == 0 {
			l.res.ValueAfter = now.Sub(l.res.Start)
		}
		l.res.Peers = append(l.res.Peers, m.R.Values...)
	}
	if l.method == krpc.MethodGet && l.res.Value == nil && len(m.R.V) > 0 && m.R.K == "" &&
		storage.ImmutableTarget(m.R.V) == target {
		l.res.Value = append([]byte(nil), m.R.V...) // BEP 44: an immutable value is checked against its hash
		l.res.ValueAfter = now.Sub(l.res.Start)
	}
	l.step(now)
}

// tick moves the queries past the short timeout out of their slots, and
// asks the silent among the K closest once more.
func (l *Lookup) tick(now time.Time) {
	if l.ended {
		return
	}
	l.retry = l.t.Tick(now, l.n.slowAfter(), l.retry[:0])
	for _, c := range l.retry {
		l.send(now, c)
	}
	clear(l.retry)
	l.step(now)
}

// nextDeadline is when the next active query passes the short timeout.
func (l *Lookup) nextDeadline() (time.Time, bool) {
	return l.t.NextDeadline(l.n.slowAfter())
}

// end completes the lookup: queries still out are left to time out (their
// answers still feed the routing table), and done is called.
func (l *Lookup) end(now time.Time) {
	l.ended = true
	l.n.lookups = slices.DeleteFunc(l.n.lookups, func(o *Lookup) bool { return o == l })
	for _, c := range l.t.Closest() {
		l.res.Closest = append(l.res.Closest, Found{Node: c.Node(), Token: c.Token()})
	}
	sc := l.n.scratch
	sc.named = l.t.AppendUnasked(sc.named[:0])
	l.n.AdmitNamed(sc.named, now)
	l.res.Hops, l.res.Rounds, l.res.ClosestAfter = l.t.Chain()
	l.res.Queried, l.res.Failed = l.t.Queried(), l.t.Failed()
	l.res.Elapsed = now.Sub(l.res.Start)
	// Its candidates go back to the pool: the callbacks of queries still
	// out see l.ended and touch none of them.
	l.t.Release()
	if l.done != nil {
		l.done(l.res)
	}
}

// addRTT records a lookup round trip for the short timeout.
func (n *Node) addRTT(d time.Duration) {
	n.rtts[n.rttNext%rttSamples] = d
	n.rttNext++
	n.slow = n.computeSlowAfter()
}

// slowAfter is the short timeout for the latest round trips (SlowAfter).
func (n *Node) slowAfter() time.Duration {
	if n.slow == 0 {
		return initialSlowAfter
	}
	return n.slow
}

func (n *Node) computeSlowAfter() time.Duration {
	var buf [rttSamples]time.Duration
	k := copy(buf[:], n.rtts[:min(int(n.rttNext), rttSamples)])
	return SlowAfter(buf[:k])
}
