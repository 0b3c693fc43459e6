package node

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
)

// coreBatch is the most datagrams one read or write of a CoreNode moves:
// krpc.Server's batch size, so that both do the same socket work per packet.
const coreBatch = 32

// coreMaxPacket is the longest datagram a CoreNode takes, krpc.Server's
// default (BEP 32: at least 1024; a BEP 44 reply with a 1000-byte value
// is about 1300 bytes).
const coreMaxPacket = 4096

// CoreNode drives a core.Node, the DHT node with no I/O that the simulator
// runs, from a UDP socket and the clock: a read loop hands every datagram
// to HandlePacket, reading and writing in batches (recvmmsg and sendmmsg on
// an IPv4 socket), and one timer calls HandleTimeout when NextTimeout
// says. It is the shape `dhtd run` is moving to (docs/sim.md, "What the
// daemon does not yet share"), without what only the daemon has yet: no
// metrics, no reply budget, no store on disk. Its methods are safe for
// concurrent use; Close stops its goroutines.
type CoreNode struct {
	conn  *net.UDPConn
	clock krpc.Clock
	local netip.AddrPort

	mu      sync.Mutex // serialises every call into n
	n       *core.Node
	scratch *core.Scratch // n's, for recycling the buffers sent
	limiter *krpc.IPLimiter
	limited atomic.Uint64
	timer   krpc.Timer // armed for wake, under mu
	wake    time.Time
	out     batchOut // the datagrams n queued, under mu
	done    bool     // closed, under mu

	wg sync.WaitGroup
}

// CoreConfig configures a CoreNode.
type CoreConfig struct {
	// Core is the node's protocol configuration. A nil Rand is a source
	// seeded at random, an empty ClientVersion is ClientVersion.
	Core core.Config
	// Clock drives the node's timer; nil is the system clock.
	Clock krpc.Clock
	// Limiter, if set, is asked about every datagram's source before the
	// node decodes it: a datagram over the source's limit is dropped
	// unread (per-IP limit before the full decode, as krpc.Server does).
	Limiter *krpc.IPLimiter
}

// StartCore starts a core.Node configured by cfg on conn, which the
// CoreNode owns from then on.
func StartCore(conn *net.UDPConn, cfg CoreConfig) *CoreNode {
	clock := cfg.Clock
	if clock == nil {
		clock = krpc.SystemClock{}
	}
	cc := cfg.Core
	if cc.Rand == nil {
		cc.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cc.Scratch == nil {
		cc.Scratch = new(core.Scratch)
	}
	if cc.ClientVersion == "" {
		cc.ClientVersion = ClientVersion
	}
	_ = conn.SetReadBuffer(2 << 20) // as krpc.Server: room for bursts
	c := &CoreNode{conn: conn, clock: clock, local: krpc.AddrPortOf(conn.LocalAddr()), scratch: cc.Scratch, limiter: cfg.Limiter}
	c.n = core.New(cc, clock.Now())
	c.out = newBatchOut(conn, c.local.Addr().Is4())
	c.wg.Add(1)
	go c.readLoop()
	c.Do(func(*core.Node, time.Time) {}) // arm the timer
	return c
}

// Limited returns how many datagrams the Limiter dropped.
func (c *CoreNode) Limited() uint64 { return c.limited.Load() }

// Addr returns the socket's address.
func (c *CoreNode) Addr() netip.AddrPort { return c.local }

// Do calls fn with the node and the current time, serialised with the
// packets and timeouts the node handles, then sends what the node queued
// and arms its timer. Lookups started in fn report through their
// callbacks, which run inside a later handling, holding the same lock: a
// callback must not call Do (it may call the node directly).
func (c *CoreNode) Do(fn func(n *core.Node, now time.Time)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	now := c.clock.Now()
	fn(c.n, now)
	c.afterLocked(now)
}

// afterLocked sends what the node queued and arms the timer for its next
// wake-up, if that is sooner than the armed one.
func (c *CoreNode) afterLocked(now time.Time) {
	for {
		t, ok := c.n.PollTransmit()
		if !ok {
			break
		}
		c.out.add(t.To, t.Data)
		if c.out.n == coreBatch {
			c.flushLocked()
		}
	}
	c.flushLocked()
	wake, ok := c.n.NextTimeout()
	if !ok || (c.timer != nil && !wake.Before(c.wake)) {
		return // a timer that fires early only finds nothing due
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.wake = wake
	c.timer = c.clock.AfterFunc(max(wake.Sub(now), 0), c.onTimer)
}

// flushLocked sends the queued datagrams and gives their buffers back to
// the node's scratch.
func (c *CoreNode) flushLocked() {
	c.out.flush()
	for i := range c.out.sent {
		c.scratch.Recycle(c.out.msgs[i].Buffers[0])
		c.out.msgs[i].Buffers[0] = nil
	}
}

// onTimer runs the node's timeouts.
func (c *CoreNode) onTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.timer = nil
	now := c.clock.Now()
	c.n.HandleTimeout(now)
	c.afterLocked(now)
}

// readLoop hands every datagram to the node, a batch at a time.
func (c *CoreNode) readLoop() {
	defer c.wg.Done()
	in := newBatchIn(c.conn, c.local.Addr().Is4())
	for {
		k, err := in.read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		c.mu.Lock()
		if c.done {
			c.mu.Unlock()
			return
		}
		now := c.clock.Now()
		for i := range k {
			data, from := in.packet(i)
			if !from.IsValid() || from.Port() == 0 || len(data) > coreMaxPacket {
				continue
			}
			if c.limiter != nil && !c.limiter.Allow(from.Addr(), now) {
				c.limited.Add(1)
				continue
			}
			c.n.HandlePacket(now, from, data)
		}
		c.afterLocked(now)
		c.mu.Unlock()
	}
}

// Close stops the timer and the read loop and closes the socket.
func (c *CoreNode) Close() error {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return nil
	}
	c.done = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	err := c.conn.Close()
	c.wg.Wait()
	return err
}

// batchIn reads datagrams: coreBatch at a time with recvmmsg on an IPv4
// socket, one at a time otherwise.
type batchIn struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn // nil: one at a time
	msgs []ipv4.Message
	from netip.AddrPort // of the single datagram
}

func newBatchIn(conn *net.UDPConn, v4 bool) *batchIn {
	b := &batchIn{conn: conn, msgs: make([]ipv4.Message, coreBatch)}
	if v4 {
		b.pc = ipv4.NewPacketConn(conn)
	} else {
		b.msgs = b.msgs[:1]
	}
	for i := range b.msgs {
		b.msgs[i].Buffers = [][]byte{make([]byte, coreMaxPacket+1)}
	}
	return b
}

// read waits for at least one datagram and returns how many it read.
func (b *batchIn) read() (int, error) {
	if b.pc == nil {
		n, from, err := b.conn.ReadFromUDPAddrPort(b.msgs[0].Buffers[0])
		if err != nil {
			return 0, err
		}
		b.msgs[0].N, b.from = n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		return 1, nil
	}
	return b.pc.ReadBatch(b.msgs, 0)
}

// packet returns datagram i of the last read and its source. A datagram
// longer than coreMaxPacket comes back one byte longer than that, so that
// the caller sees it is too long.
func (b *batchIn) packet(i int) ([]byte, netip.AddrPort) {
	m := &b.msgs[i]
	if b.pc == nil {
		return m.Buffers[0][:m.N], b.from
	}
	var from netip.AddrPort
	if ua, ok := m.Addr.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		from = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return m.Buffers[0][:m.N], from
}

// batchOut queues datagrams and sends them: with one sendmmsg on an IPv4
// socket, one at a time otherwise. A datagram the kernel refuses is
// dropped, as a full socket buffer drops it.
type batchOut struct {
	conn  *net.UDPConn
	pc    *ipv4.PacketConn // nil: one at a time
	msgs  []ipv4.Message
	addrs []net.UDPAddr
	ips   [][4]byte
	to    []netip.AddrPort
	n     int // queued
	sent  int // sent by the last flush (their buffers are the caller's again)
}

func newBatchOut(conn *net.UDPConn, v4 bool) batchOut {
	b := batchOut{
		conn:  conn,
		msgs:  make([]ipv4.Message, coreBatch),
		addrs: make([]net.UDPAddr, coreBatch),
		ips:   make([][4]byte, coreBatch),
		to:    make([]netip.AddrPort, coreBatch),
	}
	if v4 {
		b.pc = ipv4.NewPacketConn(conn)
	}
	for i := range b.msgs {
		b.msgs[i].Buffers = make([][]byte, 1)
	}
	return b
}

// add queues data for to; the caller flushes when coreBatch are queued.
func (b *batchOut) add(to netip.AddrPort, data []byte) {
	b.msgs[b.n].Buffers[0] = data
	b.to[b.n] = to
	b.n++
}

// flush sends the queued datagrams.
func (b *batchOut) flush() {
	b.sent, b.n = b.n, 0
	if b.pc == nil || b.sent == 1 {
		for i := range b.sent {
			_, _ = b.conn.WriteToUDPAddrPort(b.msgs[i].Buffers[0], b.to[i])
		}
		return
	}
	for i := range b.sent {
		b.ips[i] = b.to[i].Addr().As4()
		b.addrs[i] = net.UDPAddr{IP: b.ips[i][:], Port: int(b.to[i].Port())}
		b.msgs[i].Addr = &b.addrs[i]
	}
	for done := 0; done < b.sent; {
		k, err := b.pc.WriteBatch(b.msgs[done:b.sent], 0)
		done += k
		if err != nil || k == 0 {
			done++
		}
	}
}
