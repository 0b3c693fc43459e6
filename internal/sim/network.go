// Package sim runs many dhtd node cores (node/core) on one virtual clock
// and one simulated network: event queues ordered by (time, tie), no
// goroutine per node, a few workers that process the peers' events side by
// side within windows shorter than any packet's flight, and random draws
// that depend on the seed and on who draws, never on which worker runs
// first: so the same seed gives the same run, whatever the workers.
//
// The network model: per-pair round-trip times drawn once from a
// log-normal distribution (heavy-tailed, median MedianRTT), independent
// packet loss, unreachable nodes (behind a NAT: their queries and the
// answers to them pass, queries to them do not), nodes going down and
// coming back, and partitions.
package sim

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/routing"
)

// epoch is the virtual clock's zero.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// NetConfig is the network model.
type NetConfig struct {
	Seed      uint64
	MedianRTT time.Duration // median per-pair round trip (default 100 ms)
	RTTSigma  float64       // sigma of the log of the round trip (default 0.7)
	Loss      float64       // share of packets lost, each way (default 0.01)
	Table     routing.Config
	// MaxPerSubnet is core.Config.MaxPerSubnet for every node.
	MaxPerSubnet int
	// Workers is how many goroutines process the peers' events (default
	// 1). The run does not depend on it, only its wall time does.
	Workers int
}

func (c NetConfig) withDefaults() NetConfig {
	if c.MedianRTT <= 0 {
		c.MedianRTT = 100 * time.Millisecond
	}
	if c.RTTSigma <= 0 {
		c.RTTSigma = 0.7
	}
	c.Workers = max(c.Workers, 1)
	if c.Loss < 0 {
		c.Loss = 0
	} else if c.Loss == 0 {
		c.Loss = 0.01
	}
	return c
}

// Peer is one simulated host.
//
// A Peer takes two cache lines: the first holds what other workers read
// when they send it a packet, and changes only while the scenario's events
// run alone; the second what its own worker writes on every event. Other
// workers' sends then do not pull a line back and forth between cores.
type Peer struct {
	Index int32
	shard int32      // the shard whose worker processes the peer's events
	gen   uint32     // incarnation: packets for an earlier one are dropped
	NAT   bool       // unreachable: queries to it are dropped
	Group uint8      // partition group (see Network.Partition)
	Core  *core.Node // nil while down
	Addr  netip.AddrPort
	_     [8]byte // the second cache line starts at ID

	ID       krpc.ID
	wakeTie  uint64 // the tie of the valid wake event, 0 if none
	wakeTime int64
	queued   uint64  // events the peer's processing has queued (their ties)
	sent     uint64  // packets it has sent (the loss draws)
	_        [8]byte // 128 bytes: a Peer starts on a cache line (TestPeerLayout)
}

// Up reports whether the peer runs.
func (p *Peer) Up() bool { return p.Core != nil }

// event kinds.
const (
	evPacket = iota
	evWake
	evFunc     // a function of the scenario, run alone (Network.At)
	evPeerFunc // a function acting on one peer, run by its worker (Network.AtPeer)
)

// event is one entry of a queue: 64 bytes, a cache line.
type event struct {
	at   int64  // virtual nanoseconds since epoch
	tie  uint64 // orders events of the same time (see tieOf)
	data []byte
	fn   func()
	to   int32
	from int32 // the sending peer of a packet
	gen  uint32
	kind uint8
}

// tieOf is the tie of the seq-th event queued by the peer with index
// origin: an event's place among those of the same time depends on who
// queued it and in what order, which the run determines, and not on which
// worker queued it first.
func tieOf(origin int32, seq uint64) uint64 { return uint64(origin)<<tieSeqBits | seq }

// tieSeqBits leaves the peer index 28 bits of a tie (the scattered
// addresses allow 2^27 peers) and each peer 2^36 events.
const tieSeqBits = 36

// Lookahead is the shortest one-way delay of the latency model (half its
// shortest round trip, minRTT): a packet sent at t arrives at t +
// Lookahead or later, so the events of different peers within Lookahead
// of the earliest one cannot affect each other, and the workers process
// them side by side.
const Lookahead = minRTT / 2

// Round trips are clamped to [minRTT, maxRTT].
const (
	minRTT = 10 * time.Millisecond
	maxRTT = 5 * time.Second
)

// shard is one worker's part of the network: the events of the peers it
// owns (Peer.shard), their packet storage and its counters.
type shard struct {
	_   [64]byte // no cache line shared with another shard
	id  int32
	now int64 // the time of the event being processed
	q   eventQueue
	// out holds the packets for other shards' peers queued during a
	// window, by window parity and destination shard, and outMin the
	// earliest time in each: the destination takes them into its queue
	// at the start of the next window, while this shard fills the other
	// parity's.
	out     [2][][]event
	outMin  [2][]int64
	scratch core.Scratch

	sent, delivered, lost, blocked, events uint64
	_                                      [64]byte
}

// Network is the simulated network and its event queues.
//
// The scenario's own events (At) run alone, in (time, sequence) order.
// Between two of them the peers' events (packets, wake-ups, AtPeer) run
// in windows of at most Lookahead: each of NetConfig.Workers workers
// processes the events of its peers within the window in (time, tie)
// order, while the others do theirs. A peer's events come out in the same
// order whatever the number of workers, so the run, and the report, do
// not depend on it.
type Network struct {
	cfg    NetConfig
	Rand   *rand.Rand // the scenario's draws; not for use inside a window
	now    int64
	seq    uint64
	global eventQueue // the scenario's events (At), tie = seq
	shards []*shard
	// inWindow is set while the workers run: At must not be called then.
	inWindow bool
	// parity is that of the current window, or of the last one between
	// windows (the outboxes the next window drains: shard.out).
	parity int
	Peers  []*Peer
	// byAddr holds the peers not at their ScatteredAddr (peerAt).
	byAddr map[netip.AddrPort]int32

	// partitioned, if set, drops packets between peers of different groups.
	partitioned bool

	globalEvents uint64

	// Packet and event counters, summed over the shards when Run returns.
	Sent, Delivered, Lost, Blocked uint64
	Events                         uint64
}

// NewNetwork returns an empty network.
func NewNetwork(cfg NetConfig) *Network {
	cfg = cfg.withDefaults()
	n := &Network{
		cfg:  cfg,
		Rand: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
	}
	for i := range cfg.Workers {
		sh := &shard{id: int32(i)}
		for par := range sh.out {
			sh.out[par] = make([][]event, cfg.Workers)
			sh.outMin[par] = make([]int64, cfg.Workers)
			for d := range sh.outMin[par] {
				sh.outMin[par][d] = math.MaxInt64
			}
		}
		n.shards = append(n.shards, sh)
	}
	return n
}

// Now returns the virtual time (outside a window: in a function AtPeer
// runs, the peer's core is handed its own).
func (n *Network) Now() time.Time { return epoch.Add(time.Duration(n.now)) }

// Elapsed returns the virtual time since the start (as Now).
func (n *Network) Elapsed() time.Duration { return time.Duration(n.now) }

// setNow sets the clock of the scenario and of every shard.
func (n *Network) setNow(t int64) {
	n.now = t
	for _, sh := range n.shards {
		sh.now = t
	}
}

// AddPeer adds a host at addr with id; it is down until Start.
func (n *Network) AddPeer(addr netip.AddrPort, id krpc.ID, nat bool) *Peer {
	idx := int32(len(n.Peers))
	p := &Peer{Index: idx, Addr: addr, ID: id, NAT: nat, shard: idx % int32(len(n.shards))}
	n.Peers = append(n.Peers, p)
	if addr != ScatteredAddr(p.Index) {
		if n.byAddr == nil {
			n.byAddr = make(map[netip.AddrPort]int32)
		}
		n.byAddr[addr] = p.Index
	}
	return p
}

// peerAt returns the index of the peer at addr: for a peer at its
// ScatteredAddr (all but the sybil /24 of the scenarios) by inverting the
// address, with no table to miss in the cache on every packet (a map
// keyed by netip.AddrPort cost 3% of a run of 100,000 nodes); for the
// others from byAddr.
func (n *Network) peerAt(addr netip.AddrPort) (int32, bool) {
	if i, ok := scatteredIndex(addr); ok && int(i) < len(n.Peers) && n.Peers[i].Addr == addr {
		return i, true
	}
	i, ok := n.byAddr[addr]
	return i, ok
}

// Start boots p with an empty state (a fresh incarnation). Like Stop,
// it runs from the scenario's events (At), never inside a window: other
// peers' packets read whether p is up.
func (n *Network) Start(p *Peer) {
	n.mustBeAlone("Start")
	p.gen++
	p.Core = core.New(core.Config{
		ID:           p.ID,
		Table:        n.cfg.Table,
		MaxPerSubnet: n.cfg.MaxPerSubnet,
		Rand:         rand.New(rand.NewPCG(n.Rand.Uint64(), n.Rand.Uint64())),
		Scratch:      &n.shards[p.shard].scratch,
	}, n.Now())
	p.wakeTie = 0
	n.settle(p)
}

// Stop takes p down: its state is dropped and packets to it are lost.
func (n *Network) Stop(p *Peer) {
	n.mustBeAlone("Stop")
	p.Core = nil
	p.wakeTie = 0
}

// Partition puts the network in partitioned mode (packets between groups
// are dropped) or heals it.
func (n *Network) Partition(on bool) {
	n.mustBeAlone("Partition")
	n.partitioned = on
}

func (n *Network) mustBeAlone(what string) {
	if n.inWindow {
		panic("sim: " + what + " called inside a window: only from the scenario's events (At)")
	}
}

// At runs fn alone at virtual time t (from the start): nothing else runs
// meanwhile, so fn may draw from Rand, start, stop and look at any peer.
// It must not be called from a function that AtPeer runs.
func (n *Network) At(t time.Duration, fn func()) {
	n.mustBeAlone("At")
	n.seq++
	n.global.push(event{at: int64(t), tie: n.seq, kind: evFunc, fn: fn})
}

// After runs fn d after the current virtual time, as At does.
func (n *Network) After(d time.Duration, fn func()) { n.At(n.Elapsed()+d, fn) }

// AtPeer runs fn at virtual time t by p's worker, beside the other
// workers: fn may act on p (Do) and on nothing else of the network, and
// must not draw from Rand. Called from a scenario's event, or from a
// function running for p (its core's callbacks and AtPeer's); a t in the
// past means now.
func (n *Network) AtPeer(p *Peer, t time.Duration, fn func()) {
	sh := n.shards[p.shard]
	n.pushFor(sh, p, event{at: max(int64(t), sh.now), kind: evPeerFunc, to: p.Index, fn: fn})
}

// Do calls fn on p's core (for example to start a lookup) and then sends
// what it queued. It does nothing if p is down. Called from a scenario's
// event (At) or from a function running for p (AtPeer).
func (n *Network) Do(p *Peer, fn func(c *core.Node, now time.Time)) {
	if p.Core == nil {
		return
	}
	fn(p.Core, epoch.Add(time.Duration(n.shards[p.shard].now)))
	n.settle(p)
}

// Run processes events until the queues are empty or the virtual time
// reaches until; each callback runs with the clock at its event's time.
func (n *Network) Run(until time.Duration) {
	u := int64(until)
	// The other workers, each with its shard: a window's end is handed
	// to them through start, and each says it is done through done.
	type worker struct {
		sh          *shard
		start, done latch
		end         int64
	}
	var workers []*worker
	var running sync.WaitGroup
	for _, sh := range n.shards[1:] {
		w := &worker{sh: sh, start: newLatch(), done: newLatch()}
		workers = append(workers, w)
		running.Go(func() {
			for seen := uint64(0); ; {
				seen = w.start.wait(seen)
				if w.end < 0 {
					return
				}
				n.process(w.sh, w.end)
				w.done.post()
			}
		})
	}
	defer func() {
		for _, w := range workers {
			w.end = -1
			w.start.post()
		}
		running.Wait() // no worker outlives Run
	}()
	var windows uint64
	for {
		peers := int64(math.MaxInt64)
		for _, sh := range n.shards {
			if len(sh.q.keys) > 0 {
				peers = min(peers, sh.q.keys[0].at)
			}
			for _, at := range sh.outMin[n.parity] {
				peers = min(peers, at)
			}
		}
		g := int64(math.MaxInt64)
		if len(n.global.keys) > 0 {
			g = n.global.keys[0].at
		}
		if min(peers, g) > u {
			break
		}
		if g <= peers {
			// The scenario's events come first among those of their time.
			ev := n.global.pop()
			n.setNow(ev.at)
			n.globalEvents++
			ev.fn()
			continue
		}
		end := min(peers+int64(Lookahead), g, u+1)
		n.inWindow = true
		n.parity ^= 1
		windows++
		for _, w := range workers {
			w.end = end
			w.start.post()
		}
		n.process(n.shards[0], end)
		for _, w := range workers {
			w.done.wait(windows - 1)
		}
		n.inWindow = false
		n.now = max(n.now, end-1)
	}
	n.setNow(max(n.now, u))
	n.Sent, n.Delivered, n.Lost, n.Blocked, n.Events = 0, 0, 0, 0, n.globalEvents
	for _, sh := range n.shards {
		n.Sent += sh.sent
		n.Delivered += sh.delivered
		n.Lost += sh.lost
		n.Blocked += sh.blocked
		n.Events += sh.events
	}
}

// latch hands a signal from one goroutine to one other, without a trip
// through the scheduler when the waiter is quick: it spins a little
// (windows last tens to hundreds of microseconds, less than a sleeping
// goroutine takes to wake), then sleeps.
type latch struct {
	posts    *atomic.Uint64
	sleeping *atomic.Bool
	wake     chan struct{}
}

func newLatch() latch {
	return latch{posts: new(atomic.Uint64), sleeping: new(atomic.Bool), wake: make(chan struct{}, 1)}
}

// latchSpins is how many times wait looks before it sleeps (some tens
// of microseconds), yielding now and then to the collector's workers.
const latchSpins = 1 << 12

// post signals the waiter.
func (l latch) post() {
	l.posts.Add(1)
	if l.sleeping.CompareAndSwap(true, false) {
		l.wake <- struct{}{}
	}
}

// wait returns once the posts exceed seen, and returns their count.
func (l latch) wait(seen uint64) uint64 {
	for {
		for i := range latchSpins {
			if p := l.posts.Load(); p > seen {
				return p
			}
			if i%64 == 63 {
				runtime.Gosched()
			}
		}
		l.sleeping.Store(true)
		if p := l.posts.Load(); p > seen {
			// Posted meanwhile: if no post saw us asleep, go on; if one
			// did, it sent a wake-up, which must be taken.
			if !l.sleeping.CompareAndSwap(true, false) {
				<-l.wake
			}
			return p
		}
		<-l.wake
		if p := l.posts.Load(); p > seen {
			return p
		}
		// The wake-up of an earlier post, whose poster had counted it
		// before we looked and found us asleep only now: wait again.
	}
}

// process runs sh's events before end, in (time, tie) order.
func (n *Network) process(sh *shard, end int64) {
	// The packets other shards sent this one in the last window.
	last := n.parity ^ 1
	for _, src := range n.shards {
		if out := src.out[last][sh.id]; len(out) > 0 {
			for i := range out {
				sh.q.push(out[i])
				out[i] = event{}
			}
			src.out[last][sh.id] = out[:0]
			src.outMin[last][sh.id] = math.MaxInt64
		}
	}
	for len(sh.q.keys) > 0 && sh.q.keys[0].at < end {
		ev := sh.q.pop()
		sh.now = ev.at
		sh.events++
		p := n.Peers[ev.to]
		switch ev.kind {
		case evPeerFunc:
			ev.fn()
		case evWake:
			if p.Core == nil || ev.tie != p.wakeTie {
				continue // stale
			}
			p.wakeTie = 0
			p.Core.HandleTimeout(epoch.Add(time.Duration(sh.now)))
			n.settle(p)
		case evPacket:
			if p.Core == nil || ev.gen != p.gen {
				sh.lost++
				sh.scratch.Recycle(ev.data)
				continue
			}
			sh.delivered++
			p.Core.HandlePacket(epoch.Add(time.Duration(sh.now)), n.Peers[ev.from].Addr, ev.data)
			sh.scratch.Recycle(ev.data) // the core keeps nothing of a packet
			n.settle(p)
		}
	}
}

// pushFor queues ev, for a peer of sh, as the next event that origin's
// processing queued: into sh's queue, or, inside a window and from
// another shard's peer, into origin's shard's outbox for sh.
func (n *Network) pushFor(sh *shard, origin *Peer, ev event) uint64 {
	origin.queued++
	ev.tie = tieOf(origin.Index, origin.queued)
	if from := n.shards[origin.shard]; n.inWindow && from != sh {
		from.out[n.parity][sh.id] = append(from.out[n.parity][sh.id], ev)
		from.outMin[n.parity][sh.id] = min(from.outMin[n.parity][sh.id], ev.at)
	} else {
		sh.q.push(ev)
	}
	return ev.tie
}

// settle sends what p queued and schedules its next wake-up.
func (n *Network) settle(p *Peer) {
	c := p.Core
	if c == nil {
		return
	}
	sh := n.shards[p.shard]
	for {
		t, ok := c.PollTransmit()
		if !ok {
			break
		}
		n.route(sh, p, t)
	}
	if wake, ok := c.NextTimeout(); ok {
		at := max(int64(wake.Sub(epoch)), sh.now)
		if p.wakeTie == 0 || at < p.wakeTime {
			p.wakeTime = at
			p.wakeTie = n.pushFor(sh, p, event{at: at, kind: evWake, to: p.Index})
		}
	}
}

// route delivers one datagram from a peer of sh after half the pair's
// round trip, unless the destination is unknown, down, behind a NAT (for
// queries), on the other side of a partition, or the packet is lost.
func (n *Network) route(sh *shard, from *Peer, t core.Transmit) {
	sh.sent++
	to, ok := n.peerAt(t.To)
	if !ok {
		sh.blocked++
		sh.scratch.Recycle(t.Data)
		return
	}
	dst := n.Peers[to]
	if dst.Core == nil || (dst.NAT && t.Query) || (n.partitioned && dst.Group != from.Group) {
		sh.blocked++
		sh.scratch.Recycle(t.Data)
		return
	}
	from.sent++
	if n.cfg.Loss > 0 && n.lossDraw(from) < n.cfg.Loss {
		sh.lost++
		sh.scratch.Recycle(t.Data)
		return
	}
	delay := n.RTT(from.Index, to) / 2
	n.pushFor(n.shards[dst.shard], from, event{at: sh.now + int64(delay), kind: evPacket, to: to, gen: dst.gen, from: from.Index, data: t.Data})
}

// lossDraw is a uniform draw in [0, 1) for the packet from.sent of from:
// a hash of the seed, the sender and its count, so that it does not
// depend on the order the workers send in.
func (n *Network) lossDraw(from *Peer) float64 {
	h := splitmix(splitmix(n.cfg.Seed^lossSalt^uint64(from.Index)<<32) + from.sent)
	return float64(h>>11) / (1 << 53)
}

// lossSalt separates the loss draws from the round trips' (RTT).
const lossSalt = 0x6c6f7373 // "loss"

// RTT returns the round trip between peers a and b: drawn once per pair
// from the log-normal model, by hashing the pair with the seed, so it needs
// no memory per pair.
func (n *Network) RTT(a, b int32) time.Duration {
	if a > b {
		a, b = b, a
	}
	h := splitmix(n.cfg.Seed ^ uint64(a)<<32 ^ uint64(b))
	u1 := (float64(h>>11) + 0.5) / (1 << 53)
	u2 := float64(splitmix(h)>>11) / (1 << 53)
	z := math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2) // Box-Muller
	d := time.Duration(float64(n.cfg.MedianRTT) * math.Exp(n.cfg.RTTSigma*z))
	return min(max(d, minRTT), maxRTT)
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// eventQueue is a 4-ary min-heap on (time, tie): half the depth of a
// binary heap. It holds 24-byte keys, and the events themselves (64
// bytes) stay where they were put until popped: which matters once the
// queue holds millions of events. Ties are unique within a queue, so the
// order events come out in does not depend on the heap's shape.
type eventQueue struct {
	keys   []qkey
	events []event
	free   []uint32 // indexes of events not in use
}

const heapArity = 4

// qkey is the heap's key of an event: its time and tie, and the index of
// the event in eventQueue.events.
type qkey struct {
	at  int64
	tie uint64
	idx uint32
}

// push adds ev to the queue.
func (q *eventQueue) push(ev event) {
	var idx uint32
	if k := len(q.free); k > 0 {
		idx = q.free[k-1]
		q.free = q.free[:k-1]
		q.events[idx] = ev
	} else {
		idx = uint32(len(q.events))
		q.events = append(q.events, ev)
	}
	key := qkey{at: ev.at, tie: ev.tie, idx: idx}
	q.keys = append(q.keys, key)
	h := q.keys
	i := len(h) - 1
	for i > 0 {
		parent := (i - 1) / heapArity
		if !less(key, h[parent]) {
			break
		}
		h[i] = h[parent]
		i = parent
	}
	h[i] = key
}

// pop removes the earliest event from the queue and returns it.
func (q *eventQueue) pop() event {
	h := q.keys
	top := h[0]
	last := len(h) - 1
	x := h[last]
	h = h[:last]
	q.keys = h
	if last > 0 {
		i := 0
		for {
			first := heapArity*i + 1
			if first >= len(h) {
				break
			}
			m := first
			for c := first + 1; c < min(first+heapArity, len(h)); c++ {
				if less(h[c], h[m]) {
					m = c
				}
			}
			if !less(h[m], x) {
				break
			}
			h[i] = h[m]
			i = m
		}
		h[i] = x
	}
	ev := q.events[top.idx]
	q.events[top.idx] = event{}
	q.free = append(q.free, top.idx)
	return ev
}

func less(a, b qkey) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.tie < b.tie
}
