// Package sim runs many dhtd node cores (node/core) on one virtual clock
// and one simulated network: a single event queue ordered by (time,
// sequence), no goroutine per node, and every random draw from one seeded
// source, so the same seed gives the same run.
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
}

func (c NetConfig) withDefaults() NetConfig {
	if c.MedianRTT <= 0 {
		c.MedianRTT = 100 * time.Millisecond
	}
	if c.RTTSigma <= 0 {
		c.RTTSigma = 0.7
	}
	if c.Loss < 0 {
		c.Loss = 0
	} else if c.Loss == 0 {
		c.Loss = 0.01
	}
	return c
}

// Peer is one simulated host.
type Peer struct {
	Index int32
	Addr  netip.AddrPort
	ID    krpc.ID
	NAT   bool       // unreachable: queries to it are dropped
	Core  *core.Node // nil while down
	Group uint8      // partition group (see Network.Partition)

	gen      uint32 // incarnation: packets for an earlier one are dropped
	wakeSeq  uint64 // the valid wake event, 0 if none
	wakeTime int64
}

// Up reports whether the peer runs.
func (p *Peer) Up() bool { return p.Core != nil }

// event kinds.
const (
	evPacket = iota
	evWake
	evFunc
)

// event is one entry of the queue: 64 bytes, a cache line.
type event struct {
	at   int64 // virtual nanoseconds since epoch
	seq  uint64
	data []byte
	fn   func()
	to   int32
	from int32 // the sending peer of a packet
	gen  uint32
	kind uint8
}

// Network is the simulated network and its event queue.
type Network struct {
	cfg    NetConfig
	Rand   *rand.Rand
	now    int64
	seq    uint64
	queue  []qkey   // 4-ary min-heap on (at, seq) of the events' keys
	events []event  // the events of queue, by the index in their keys
	free   []uint32 // indexes of events not in use
	Peers  []*Peer
	// byAddr holds the peers not at their ScatteredAddr (peerAt).
	byAddr map[netip.AddrPort]int32

	// partitioned, if set, drops packets between peers of different groups.
	partitioned bool

	// scratch is the decoding and encoding storage every core shares: the
	// network drives them one call at a time.
	scratch core.Scratch

	Sent, Delivered, Lost, Blocked uint64 // packet counters
	Events                         uint64
}

// NewNetwork returns an empty network.
func NewNetwork(cfg NetConfig) *Network {
	cfg = cfg.withDefaults()
	return &Network{
		cfg:  cfg,
		Rand: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
	}
}

// Now returns the virtual time.
func (n *Network) Now() time.Time { return epoch.Add(time.Duration(n.now)) }

// Elapsed returns the virtual time since the start.
func (n *Network) Elapsed() time.Duration { return time.Duration(n.now) }

// AddPeer adds a host at addr with id; it is down until Start.
func (n *Network) AddPeer(addr netip.AddrPort, id krpc.ID, nat bool) *Peer {
	p := &Peer{Index: int32(len(n.Peers)), Addr: addr, ID: id, NAT: nat}
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

// Start boots p with an empty state (a fresh incarnation).
func (n *Network) Start(p *Peer) {
	p.gen++
	p.Core = core.New(core.Config{
		ID:           p.ID,
		Table:        n.cfg.Table,
		MaxPerSubnet: n.cfg.MaxPerSubnet,
		Rand:         rand.New(rand.NewPCG(n.Rand.Uint64(), n.Rand.Uint64())),
		Scratch:      &n.scratch,
	}, n.Now())
	p.wakeSeq = 0
	n.settle(p)
}

// Stop takes p down: its state is dropped and packets to it are lost.
func (n *Network) Stop(p *Peer) {
	p.Core = nil
	p.wakeSeq = 0
}

// Partition puts the network in partitioned mode (packets between groups
// are dropped) or heals it.
func (n *Network) Partition(on bool) { n.partitioned = on }

// At runs fn at virtual time t (from the start).
func (n *Network) At(t time.Duration, fn func()) {
	n.push(event{at: int64(t), kind: evFunc, fn: fn})
}

// After runs fn d after the current virtual time.
func (n *Network) After(d time.Duration, fn func()) { n.At(n.Elapsed()+d, fn) }

// Do calls fn on p's core (for example to start a lookup) and then sends
// what it queued. It does nothing if p is down.
func (n *Network) Do(p *Peer, fn func(c *core.Node, now time.Time)) {
	if p.Core == nil {
		return
	}
	fn(p.Core, n.Now())
	n.settle(p)
}

// Run processes events until the queue is empty or the virtual time
// reaches until; each callback runs with the clock at its event's time.
func (n *Network) Run(until time.Duration) {
	for len(n.queue) > 0 && n.queue[0].at <= int64(until) {
		ev := n.pop()
		n.now = ev.at
		n.Events++
		switch ev.kind {
		case evFunc:
			ev.fn()
		case evWake:
			p := n.Peers[ev.to]
			if p.Core == nil || ev.seq != p.wakeSeq {
				continue // stale
			}
			p.wakeSeq = 0
			p.Core.HandleTimeout(n.Now())
			n.settle(p)
		case evPacket:
			p := n.Peers[ev.to]
			if p.Core == nil || ev.gen != p.gen {
				n.Lost++
				n.scratch.Recycle(ev.data)
				continue
			}
			n.Delivered++
			p.Core.HandlePacket(n.Now(), n.Peers[ev.from].Addr, ev.data)
			n.scratch.Recycle(ev.data) // the core keeps nothing of a packet
			n.settle(p)
		}
	}
	n.now = max(n.now, int64(until))
}

// settle sends what p queued and schedules its next wake-up.
func (n *Network) settle(p *Peer) {
	c := p.Core
	if c == nil {
		return
	}
	for {
		t, ok := c.PollTransmit()
		if !ok {
			break
		}
		n.route(p, t)
	}
	if wake, ok := c.NextTimeout(); ok {
		at := max(int64(wake.Sub(epoch)), n.now)
		if p.wakeSeq == 0 || at < p.wakeTime {
			p.wakeTime = at
			p.wakeSeq = n.push(event{at: at, kind: evWake, to: p.Index})
		}
	}
}

// route delivers one datagram after half the pair's round trip, unless the
// destination is unknown, down, behind a NAT (for queries), on the other
// side of a partition, or the packet is lost.
func (n *Network) route(from *Peer, t core.Transmit) {
	n.Sent++
	to, ok := n.peerAt(t.To)
	if !ok {
		n.Blocked++
		n.scratch.Recycle(t.Data)
		return
	}
	dst := n.Peers[to]
	if dst.Core == nil || (dst.NAT && t.Query) || (n.partitioned && dst.Group != from.Group) {
		n.Blocked++
		n.scratch.Recycle(t.Data)
		return
	}
	if n.cfg.Loss > 0 && n.Rand.Float64() < n.cfg.Loss {
		n.Lost++
		n.scratch.Recycle(t.Data)
		return
	}
	delay := n.RTT(from.Index, to) / 2
	n.push(event{at: n.now + int64(delay), kind: evPacket, to: to, gen: dst.gen, from: from.Index, data: t.Data})
}

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
	return min(max(d, 5*time.Millisecond), 5*time.Second)
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// The queue is a 4-ary min-heap: half the depth of a binary heap. It
// holds 16-byte keys, so a node's four children share one cache line,
// and the events themselves (64 bytes) stay where they were put until
// popped: which matters once the queue holds millions of events. Keys
// (at, seq) are unique, so the order events come out in does not depend
// on the heap's shape.
const heapArity = 4

// qkey is the heap's key of an event: its time, and its sequence number
// (high 40 bits) above the index of the event in Network.events (low 24
// bits). The sequence numbers differ, so comparing sk compares them.
type qkey struct {
	at int64
	sk uint64
}

// eventIndexBits is how many events the queue can hold at once: 2^24,
// some 16 million, a gigabyte of events.
const eventIndexBits = 24

// push adds ev to the queue and returns its sequence number.
func (n *Network) push(ev event) uint64 {
	n.seq++
	ev.seq = n.seq
	var idx uint32
	if k := len(n.free); k > 0 {
		idx = n.free[k-1]
		n.free = n.free[:k-1]
		n.events[idx] = ev
	} else {
		if len(n.events) == 1<<eventIndexBits {
			panic("sim: more than 2^24 events queued at once")
		}
		idx = uint32(len(n.events))
		n.events = append(n.events, ev)
	}
	key := qkey{at: ev.at, sk: n.seq<<eventIndexBits | uint64(idx)}
	n.queue = append(n.queue, key)
	q := n.queue
	i := len(q) - 1
	for i > 0 {
		parent := (i - 1) / heapArity
		if !less(key, q[parent]) {
			break
		}
		q[i] = q[parent]
		i = parent
	}
	q[i] = key
	return ev.seq
}

// pop removes the earliest event from the queue and returns it.
func (n *Network) pop() event {
	q := n.queue
	top := q[0]
	last := len(q) - 1
	x := q[last]
	q = q[:last]
	n.queue = q
	if last > 0 {
		i := 0
		for {
			first := heapArity*i + 1
			if first >= len(q) {
				break
			}
			m := first
			for c := first + 1; c < min(first+heapArity, len(q)); c++ {
				if less(q[c], q[m]) {
					m = c
				}
			}
			if !less(q[m], x) {
				break
			}
			q[i] = q[m]
			i = m
		}
		q[i] = x
	}
	idx := uint32(top.sk & (1<<eventIndexBits - 1))
	ev := n.events[idx]
	n.events[idx] = event{}
	n.free = append(n.free, idx)
	return ev
}

func less(a, b qkey) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return a.sk < b.sk
}
