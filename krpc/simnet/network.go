// Package simnet is an in-process simulated UDP network for running many
// DHT nodes in one test process, after hashicorp/memberlist's MockNetwork.
//
// A Network hands out Conns, each a net.PacketConn bound to an address
// such as 10.0.3.7:6881. Addresses are labels: no real socket is opened.
// Packets are copied and delivered after a configurable one-way latency
// with jitter, and may be lost (everywhere or per link), duplicated or
// reordered; groups of addresses can be partitioned from each other and
// single endpoints taken down. WaitQuiet lets a simulation wait for a
// burst of traffic to settle. Delivery runs on one scheduler goroutine with
// a heap of pending packets, so thousands of nodes cost no goroutine each;
// Network.Close stops it.
//
// Everything that waits (packet delays, read deadlines, WaitQuiet) uses
// the time package's timers, and a Conn's reader waits on channels. So a
// Network made inside a testing/synctest bubble runs in the bubble's
// virtual time: a delay of 100 ms, or a node's hour-long timer, passes as
// soon as every goroutine of the bubble is blocked, in no wall time, and
// a busy machine cannot make a packet late. The nodes of such a simulation
// use the system clock, which the bubble makes virtual too. A Network and
// its Conns belong to the bubble they were made in. Outside a bubble
// everything runs in real time.
package simnet

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// Drop reasons reported by Stats (fixed strings).
const (
	DropLoss       = "loss"        // random loss (Config.Loss, SetLoss, SetLinkLoss)
	DropPartition  = "partition"   // sender and receiver on opposite sides of a Partition
	DropDown       = "down"        // sender or receiver taken down with SetDown
	DropNoListener = "no_listener" // nothing bound at the destination (or it closed)
	DropQueueFull  = "queue_full"  // the receiver's inbound queue was full
	DropClosed     = "closed"      // still in flight when the Network closed
)

// Config configures a Network. Zero values mean the documented defaults.
type Config struct {
	// Latency is the one-way delay of every link. Default 0: packets are
	// delivered at once, in order.
	Latency time.Duration
	// Jitter adds a uniformly random delay in [0, Jitter) to each packet.
	Jitter time.Duration
	// Loss is the probability (0..1) that a packet is dropped.
	Loss float64
	// Duplicate is the probability (0..1) that a packet is delivered twice;
	// the copy has its own delay.
	Duplicate float64
	// Reorder is the probability (0..1) that a packet gets an extra random
	// delay in [0, ReorderDelay), so later packets may overtake it.
	Reorder float64
	// ReorderDelay bounds the extra delay of a reordered packet. Default
	// 2*(Latency+Jitter), at least 1ms.
	ReorderDelay time.Duration
	// Seed seeds the random choices (loss, jitter, ...). The same seed and
	// the same sequence of sends give the same choices.
	Seed uint64
	// QueueLen bounds each Conn's queue of received, unread packets; more
	// are dropped and counted as DropQueueFull. Default 1024.
	QueueLen int
}

func (c *Config) setDefaults() {
	if c.QueueLen <= 0 {
		c.QueueLen = 1024
	}
	if c.ReorderDelay <= 0 {
		c.ReorderDelay = max(2*(c.Latency+c.Jitter), time.Millisecond)
	}
}

// Stats are the Network's packet counters since New.
type Stats struct {
	Sent       uint64            // WriteTo calls accepted
	Delivered  uint64            // packets queued at a receiver (duplicates included)
	Duplicated uint64            // extra copies made by Config.Duplicate
	InFlight   int               // packets scheduled and not yet delivered or dropped
	Dropped    map[string]uint64 // by reason: the Drop* constants
}

// DroppedTotal is the sum of Dropped.
func (s Stats) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

// ErrNetworkClosed is returned by Listen after Close.
var ErrNetworkClosed = errors.New("simnet: network closed")

// Network is a simulated packet network. It is safe for concurrent use.
type Network struct {
	cfg Config

	mu         sync.Mutex
	rnd        *rand.Rand
	loss       float64
	linkLoss   map[link]float64 // SetLinkLoss: per directed IP pair
	conns      map[netip.AddrPort]*Conn
	down       map[netip.AddrPort]bool
	partitions []partition
	pending    packetHeap
	seq        uint64
	stats      Stats
	closed     bool
	lastSend   time.Time // last accepted WriteTo, for WaitQuiet

	wake chan struct{} // buffered(1): the heap's head moved earlier
	done chan struct{} // closed by Close
	wg   sync.WaitGroup
}

type partition struct{ a, b map[netip.Addr]bool }

// link is a directed pair of IPs (SetLinkLoss).
type link struct{ from, to netip.Addr }

func (p partition) cuts(x, y netip.Addr) bool {
	return p.a[x] && p.b[y] || p.b[x] && p.a[y]
}

// packet is one datagram in flight.
type packet struct {
	from, to netip.AddrPort
	data     []byte
	at       time.Time // delivery time
	seq      uint64    // FIFO among equal delivery times
}

// New returns a Network and starts its scheduler goroutine; Close stops it.
func New(cfg Config) *Network {
	cfg.setDefaults()
	n := &Network{
		cfg:      cfg,
		rnd:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		loss:     cfg.Loss,
		linkLoss: make(map[link]float64),
		conns:    make(map[netip.AddrPort]*Conn),
		down:     make(map[netip.AddrPort]bool),
		stats:    Stats{Dropped: make(map[string]uint64)},
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	n.wg.Add(1)
	go n.schedule()
	return n
}

// Listen binds a Conn to addr. Port 0 picks a free port at that IP. The IP
// must be a valid, specified address; IPv4-mapped IPv6 addresses are
// unmapped.
func (n *Network) Listen(addr netip.AddrPort) (*Conn, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !addr.Addr().IsValid() || addr.Addr().IsUnspecified() {
		return nil, fmt.Errorf("simnet: listen %s: need a specified IP address", addr)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrNetworkClosed
	}
	if addr.Port() == 0 {
		found := false
		for p := 49152; p <= 65535; p++ {
			a := netip.AddrPortFrom(addr.Addr(), uint16(p))
			if n.conns[a] == nil {
				addr, found = a, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("simnet: listen %s: no free port", addr.Addr())
		}
	} else if n.conns[addr] != nil {
		return nil, fmt.Errorf("simnet: listen %s: address already in use", addr)
	}
	c := newConn(n, addr)
	n.conns[addr] = c
	return c, nil
}

// Partition drops every packet between an address of groupA and one of
// groupB, both ways, until Heal. Packets already in flight across the cut
// are dropped too. Several partitions may be in force at once.
func (n *Network) Partition(groupA, groupB []netip.Addr) {
	p := partition{a: make(map[netip.Addr]bool), b: make(map[netip.Addr]bool)}
	for _, a := range groupA {
		p.a[a.Unmap()] = true
	}
	for _, b := range groupB {
		p.b[b.Unmap()] = true
	}
	n.mu.Lock()
	n.partitions = append(n.partitions, p)
	n.mu.Unlock()
}

// Heal removes every partition.
func (n *Network) Heal() {
	n.mu.Lock()
	n.partitions = nil
	n.mu.Unlock()
}

// SetLoss sets the probability (0..1) that a packet is dropped.
func (n *Network) SetLoss(p float64) {
	n.mu.Lock()
	n.loss = p
	n.mu.Unlock()
}

// SetLinkLoss sets the probability (0..1) that a packet from IP from to IP
// to is dropped, on top of the network-wide loss (the two draws are
// independent). It is one direction only: call it twice for both. p <= 0
// removes the link's own loss. Drops count as DropLoss.
func (n *Network) SetLinkLoss(from, to netip.Addr, p float64) {
	l := link{from.Unmap(), to.Unmap()}
	n.mu.Lock()
	if p <= 0 {
		delete(n.linkLoss, l)
	} else {
		n.linkLoss[l] = p
	}
	n.mu.Unlock()
}

// WaitQuiet waits until the network has been quiet for the period quiet:
// no packet accepted by WriteTo for that long, counted from the call or the
// last packet, whichever is later, and none in flight. So it always waits
// at least quiet, which gives goroutines just woken the time to send. It
// is for simulations that drive many nodes and must let a burst of
// activity settle before the next step, where no single event marks
// "every node is done"; inside a synctest bubble the period is virtual
// time. It returns ctx.Err() if ctx ends first, or ErrNetworkClosed.
func (n *Network) WaitQuiet(ctx context.Context, quiet time.Duration) error {
	start := time.Now()
	timer := time.NewTimer(quiet)
	defer timer.Stop()
	for {
		n.mu.Lock()
		closed, inFlight, last := n.closed, len(n.pending), n.lastSend
		n.mu.Unlock()
		if closed {
			return ErrNetworkClosed
		}
		if last.Before(start) {
			last = start
		}
		wait := quiet - time.Since(last)
		if wait <= 0 && inFlight == 0 {
			return nil
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// SetDown makes addr silent (down true) or brings it back: while down,
// every packet it sends or that is addressed to it vanishes, including
// packets in flight when it went down. The Conn stays open.
func (n *Network) SetDown(addr netip.AddrPort, down bool) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	n.mu.Lock()
	if down {
		n.down[addr] = true
	} else {
		delete(n.down, addr)
	}
	n.mu.Unlock()
}

// Stats returns a copy of the packet counters.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.stats
	s.InFlight = len(n.pending)
	s.Dropped = make(map[string]uint64, len(n.stats.Dropped))
	for k, v := range n.stats.Dropped {
		s.Dropped[k] = v
	}
	return s
}

// Close stops the scheduler, drops the packets in flight and closes every
// Conn still open (their readers return net.ErrClosed). It waits for the
// scheduler goroutine to exit.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.stats.Dropped[DropClosed] += uint64(len(n.pending))
	n.pending = nil
	conns := make([]*Conn, 0, len(n.conns))
	for _, c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	close(n.done)
	n.wg.Wait()
	for _, c := range conns {
		_ = c.Close()
	}
	return nil
}

// unbind forgets c's address (called by Conn.Close).
func (n *Network) unbind(c *Conn) {
	n.mu.Lock()
	if n.conns[c.addr] == c {
		delete(n.conns, c.addr)
	}
	n.mu.Unlock()
}

// blockedLocked returns the drop reason for a packet from -> to under the
// current down set and partitions, or "". Caller holds n.mu.
func (n *Network) blockedLocked(from, to netip.AddrPort) string {
	if n.down[from] || n.down[to] {
		return DropDown
	}
	for _, p := range n.partitions {
		if p.cuts(from.Addr(), to.Addr()) {
			return DropPartition
		}
	}
	return ""
}

// delayLocked draws one packet's delay. Caller holds n.mu.
func (n *Network) delayLocked() time.Duration {
	d := n.cfg.Latency
	if n.cfg.Jitter > 0 {
		d += time.Duration(n.rnd.Int64N(int64(n.cfg.Jitter)))
	}
	if n.cfg.Reorder > 0 && n.rnd.Float64() < n.cfg.Reorder {
		d += time.Duration(n.rnd.Int64N(int64(n.cfg.ReorderDelay)))
	}
	return d
}

// send is Conn.WriteTo's path into the network: b is already a private
// copy. Packets due now are delivered inline; others go on the heap.
func (n *Network) send(from, to netip.AddrPort, b []byte) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.stats.Sent++
	n.lastSend = time.Now()
	if reason := n.blockedLocked(from, to); reason != "" {
		n.stats.Dropped[reason]++
		n.mu.Unlock()
		return
	}
	if n.loss > 0 && n.rnd.Float64() < n.loss {
		n.stats.Dropped[DropLoss]++
		n.mu.Unlock()
		return
	}
	if p := n.linkLoss[link{from.Addr(), to.Addr()}]; p > 0 && n.rnd.Float64() < p {
		n.stats.Dropped[DropLoss]++
		n.mu.Unlock()
		return
	}
	copies := 1
	if n.cfg.Duplicate > 0 && n.rnd.Float64() < n.cfg.Duplicate {
		copies = 2
		n.stats.Duplicated++
	}
	now := time.Now()
	var now0 []*packet // due at once, delivered after unlocking
	wake := false
	for i := 0; i < copies; i++ {
		data := b
		if i > 0 {
			data = append([]byte(nil), b...)
		}
		d := n.delayLocked()
		n.seq++
		p := &packet{from: from, to: to, data: data, at: now.Add(d), seq: n.seq}
		if d <= 0 {
			now0 = append(now0, p)
			continue
		}
		heap.Push(&n.pending, p)
		if n.pending[0] == p {
			wake = true
		}
	}
	for _, p := range now0 {
		n.deliverLocked(p)
	}
	n.mu.Unlock()
	if wake {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// deliverLocked hands p to its receiver or counts why it could not. The
// receiver's queue is a buffered channel, so this never blocks. Caller
// holds n.mu.
func (n *Network) deliverLocked(p *packet) {
	if reason := n.blockedLocked(p.from, p.to); reason != "" {
		n.stats.Dropped[reason]++
		return
	}
	c := n.conns[p.to]
	if c == nil {
		n.stats.Dropped[DropNoListener]++
		return
	}
	select {
	case c.inbox <- p:
		n.stats.Delivered++
	default:
		n.stats.Dropped[DropQueueFull]++
	}
}

// schedule is the scheduler goroutine: it delivers each packet of the heap
// at its time.
func (n *Network) schedule() {
	defer n.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n.mu.Lock()
		now := time.Now()
		for len(n.pending) > 0 && !n.pending[0].at.After(now) {
			n.deliverLocked(heap.Pop(&n.pending).(*packet))
		}
		wait := time.Hour
		if len(n.pending) > 0 {
			wait = n.pending[0].at.Sub(now)
		}
		n.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-n.done:
			return
		case <-n.wake:
		case <-timer.C:
		}
	}
}

// packetHeap orders packets by delivery time, then send order.
type packetHeap []*packet

func (h packetHeap) Len() int { return len(h) }
func (h packetHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h packetHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *packetHeap) Push(x any)   { *h = append(*h, x.(*packet)) }
func (h *packetHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}
