package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// coreMaxPacket is the default longest datagram a CoreNode takes,
// krpc.Server's default (BEP 32: at least 1024; a BEP 44 reply with a
// 1000-byte value is about 1300 bytes).
const coreMaxPacket = 4096

// coreSocketBuffer is the receive buffer asked for a UDP socket, as
// krpc.Server asks: room for bursts.
const coreSocketBuffer = 2 << 20

// CoreNode drives a core.Node, the DHT node with no I/O that the simulator
// runs, from a packet socket and the clock: a read loop hands every
// datagram to HandlePacket, reading and writing in batches (recvmmsg and
// sendmmsg on an IPv4 UDP socket), and one timer calls HandleTimeout when
// NextTimeout says. `dhtd run` runs its nodes on it (node.Node), with the
// node's own handler and table, and the core's upkeep and admission of
// queriers with the node's budgets; the per-source limit, the reply
// budget and the metric events are the driver's, as they were
// krpc.Server's. Its methods are safe for concurrent use; Close stops its
// goroutines.
//
// Calls into the core hold one lock. What the driver's own queries hand
// back (Go, GoWait and Query callbacks, and CoreConfig.Answered) runs after
// that lock is released, on the read loop, the timer or Close, in order:
// such code may start queries. A handler (core.Config.Handler) runs under the
// lock: it answers through its writer, and a detached writer answers from
// any goroutine but the handler's own call.
type CoreNode struct {
	conn  net.PacketConn
	clock krpc.Clock
	local netip.AddrPort
	ev    krpc.Events
	log   *slog.Logger

	mu       sync.Mutex // serialises every call into n
	n        *core.Node
	scratch  *core.Scratch // n's, for recycling the buffers sent
	limiter  *krpc.IPLimiter
	budget   *krpc.ByteBudget
	maxPkt   int
	limited  atomic.Uint64
	timer    krpc.Timer // armed for wake, under mu
	wake     time.Time
	out      batchOut // the datagrams n queued, under mu
	done     bool     // closed, under mu
	ready    []func() // callbacks to run once mu is released, under mu
	answered func(from netip.AddrPort, method string, m *krpc.Msg, rtt time.Duration)
	slots    chan struct{} // queries of Go, GoWait and Query in flight
	closed   chan struct{}

	wg sync.WaitGroup
}

// CoreConfig configures a CoreNode.
type CoreConfig struct {
	// Core is the node's protocol configuration. A nil Rand is a source
	// seeded at random, an empty ClientVersion is ClientVersion; Events
	// and Answered are set from the fields below.
	Core core.Config
	// Clock drives the node's timer; nil is the system clock.
	Clock krpc.Clock
	// Limiter, if set, is asked about every datagram's source before the
	// node decodes it: a datagram over the source's limit is dropped
	// unread (per-IP limit before the full decode, as krpc.Server does).
	Limiter *krpc.IPLimiter
	// ReplyBudget, if set, is the global budget of reply bytes: a reply
	// that does not fit is not sent (krpc.DropBandwidth).
	ReplyBudget *krpc.ByteBudget
	// MaxPacketSize is the longest datagram taken (default 4096).
	MaxPacketSize int
	// Events receives the counters of krpc.Server's metrics; nil funcs
	// count nothing.
	Events krpc.Events
	// Answered, if set, learns every answer to a query of ours, in place
	// of the core node's own table (core.Config.Answered); it runs as a
	// query callback does, with a message of its own. The core then
	// leaves the timeouts of Go, GoWait and Query to their callbacks as
	// well, and counts those of its own queries (upkeep and confirmation
	// pings) itself.
	Answered func(from netip.AddrPort, method string, m *krpc.Msg, rtt time.Duration)
	// Logger logs read errors at debug level; nil is slog.Default().
	Logger *slog.Logger
}

// StartCore starts a core.Node configured by cfg on conn, which the
// CoreNode owns from then on.
func StartCore(conn net.PacketConn, cfg CoreConfig) *CoreNode {
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
	if udp, ok := conn.(*net.UDPConn); ok {
		_ = udp.SetReadBuffer(coreSocketBuffer)
	}
	c := &CoreNode{
		conn: conn, clock: clock, local: krpc.AddrPortOf(conn.LocalAddr()), ev: cfg.Events.Complete(),
		log: cfg.Logger, scratch: cc.Scratch, limiter: cfg.Limiter, budget: cfg.ReplyBudget,
		maxPkt: cfg.MaxPacketSize, answered: cfg.Answered, closed: make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.maxPkt <= 0 {
		c.maxPkt = coreMaxPacket
	}
	cc.Events = &c.ev
	if c.answered != nil {
		cc.Answered = c.onAnswer
	}
	pend := cc.MaxPending
	if pend <= 0 {
		pend = core.DefaultMaxPending
	}
	c.slots = make(chan struct{}, pend)
	if h := cc.Handler; h != nil {
		// One writer, reused: the handler runs under mu, one at a time.
		hw := &handlerWriter{c: c}
		cc.Handler = func(n *core.Node, q core.Query, w core.Writer) {
			hw.w = w
			h(n, q, hw)
			hw.w = nil
		}
	}
	c.n = core.New(cc, clock.Now())
	c.out = newBatchOut(conn, c.local.Addr().Is4(), c.maxPkt)
	c.wg.Add(1)
	go c.readLoop()
	c.Do(func(*core.Node, time.Time) {}) // arm the timer
	return c
}

// Limited returns how many datagrams the Limiter dropped.
func (c *CoreNode) Limited() uint64 { return c.limited.Load() }

// Addr returns the socket's address.
func (c *CoreNode) Addr() netip.AddrPort { return c.local }

// InFlight returns how many queries of Go, GoWait and Query await an
// answer.
func (c *CoreNode) InFlight() int { return len(c.slots) }

// Do calls fn with the node and the current time, serialised with the
// packets and timeouts the node handles, then sends what the node queued
// and arms its timer. Lookups started in fn report through their
// callbacks, which run inside a later handling, holding the same lock: a
// callback must not call Do (it may call the node directly).
func (c *CoreNode) Do(fn func(n *core.Node, now time.Time)) {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	now := c.clock.Now()
	fn(c.n, now)
	c.afterLocked(now)
	c.unlock()
}

// unlock releases mu and runs the callbacks that became ready under it,
// in order.
func (c *CoreNode) unlock() {
	ready := c.ready
	c.ready = nil
	c.mu.Unlock()
	for i, f := range ready {
		f()
		ready[i] = nil
	}
}

// onAnswer is the core's Answered: it hands a copy of the answer to
// CoreConfig.Answered once mu is released.
func (c *CoreNode) onAnswer(_ time.Time, from netip.AddrPort, method string, m *krpc.Msg, rtt time.Duration) {
	m = m.Clone()
	c.ready = append(c.ready, func() { c.answered(from, method, m, rtt) })
}

// Go sends query method with arguments a to addr and returns at once, as
// krpc.Server.Go does: done gets the answer, or an error wrapping
// krpc.ErrTimeout, krpc.ErrClosed or the remote node's *krpc.Error, once,
// after the driver's lock is released (it may start queries), with a
// message of its own. The error Go returns, when the query was not sent,
// wraps krpc.ErrOverloaded (as many queries out as core.Config.MaxPending
// allows) or is krpc.ErrClosed; done is then not called. a is encoded
// before Go returns and not kept.
func (c *CoreNode) Go(addr netip.AddrPort, method string, a *krpc.Args, done krpc.Callback) (krpc.Call, error) {
	select {
	case c.slots <- struct{}{}:
	default:
		return krpc.Call{}, fmt.Errorf("query %s %s: %w", method, addr, krpc.ErrOverloaded)
	}
	return c.start(addr, method, a, done)
}

// GoWait is Go that waits for a free slot until ctx ends (its error then
// wraps ctx's), as krpc.Server.GoWait does.
func (c *CoreNode) GoWait(ctx context.Context, addr netip.AddrPort, method string, a *krpc.Args, done krpc.Callback) (krpc.Call, error) {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		c.ev.QueryDone(method, krpc.OutcomeCancelled, 0)
		return krpc.Call{}, fmt.Errorf("query %s %s: waiting for a slot: %w", method, addr, ctx.Err())
	case <-c.closed:
		return krpc.Call{}, krpc.ErrClosed
	}
	return c.start(addr, method, a, done)
}

// Query is GoWait that waits for the answer, the query's timeout or ctx.
// A KRPC error reply is returned as an error wrapping *krpc.Error.
func (c *CoreNode) Query(ctx context.Context, addr netip.AddrPort, method string, a *krpc.Args) (*krpc.Msg, error) {
	type result struct {
		m   *krpc.Msg
		err error
	}
	done := make(chan result, 1) // the callback never blocks
	call, err := c.GoWait(ctx, addr, method, a, func(m *krpc.Msg, err error) { done <- result{m, err} })
	if err != nil {
		return nil, err
	}
	select {
	case r := <-done:
		return r.m, r.err
	case <-ctx.Done():
		if !call.Cancel() {
			r := <-done // it ended as ctx did: its outcome is on its way
			return r.m, r.err
		}
		return nil, fmt.Errorf("query %s %s: %w", method, addr, ctx.Err())
	}
}

// start sends a query in a slot the caller took, freed when the query
// ends, is cancelled, or cannot be sent.
func (c *CoreNode) start(addr netip.AddrPort, method string, a *krpc.Args, done krpc.Callback) (krpc.Call, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		<-c.slots
		return krpc.Call{}, krpc.ErrClosed
	}
	now := c.clock.Now()
	h, err := c.n.Query(now, addr, method, a, func(_ time.Time, m *krpc.Msg, err error) {
		// Under mu: the message is the core's until its next packet.
		if m != nil {
			m = m.Clone()
		}
		if err != nil && !errors.Is(err, krpc.ErrClosed) {
			err = fmt.Errorf("query %s %s: %w", method, addr, err)
		}
		c.ready = append(c.ready, func() {
			<-c.slots
			done(m, err)
		})
	})
	if err != nil {
		c.unlock()
		<-c.slots
		return krpc.Call{}, fmt.Errorf("query %s %s: %w", method, addr, err)
	}
	c.afterLocked(now)
	c.unlock()
	return krpc.NewCall(func() bool { return c.cancel(h) }), nil
}

// cancel ends query h unanswered, and reports whether it was in flight.
func (c *CoreNode) cancel(h krpc.TxnHandle) bool {
	c.mu.Lock()
	if c.done {
		c.unlock()
		return false
	}
	ok := c.n.Cancel(c.clock.Now(), h)
	c.unlock()
	if ok {
		<-c.slots
	}
	return ok
}

// afterLocked sends what the node queued and arms the timer for its next
// wake-up, if that is sooner than the armed one.
func (c *CoreNode) afterLocked(now time.Time) {
	for {
		t, ok := c.n.PollTransmit()
		if !ok {
			break
		}
		kind := krpc.PacketQuery
		if !t.Query {
			kind = krpc.PacketResponse
			if t.Error {
				kind = krpc.PacketError
			}
			if c.budget != nil && !c.budget.Take(len(t.Data), now) {
				c.ev.Dropped(krpc.DropBandwidth)
				c.scratch.Recycle(t.Data)
				continue
			}
		}
		c.out.add(t.To, t.Data, kind)
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

// flushLocked sends the queued datagrams, counts them, and gives their
// buffers back to the node's scratch.
func (c *CoreNode) flushLocked() {
	if c.out.n == 0 {
		return
	}
	c.out.flush(func(i int, ok bool) {
		if ok {
			c.ev.Sent(c.out.kinds[i], len(c.out.bufs[i]))
		} else {
			c.ev.Dropped(krpc.DropSendError)
		}
	})
	for i := range c.out.sent {
		c.scratch.Recycle(c.out.bufs[i])
		c.out.bufs[i] = nil
		if c.out.msgs != nil {
			c.out.msgs[i].Buffers[0] = nil
		}
	}
}

// onTimer runs the node's timeouts.
func (c *CoreNode) onTimer() {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	c.timer = nil
	now := c.clock.Now()
	c.n.HandleTimeout(now)
	c.afterLocked(now)
	c.unlock()
}

// readLoop hands every datagram to the node, a batch at a time: through
// krpc.BatchConn, krpc.Server's own recvmmsg loop, on an IPv4 UDP socket
// on Linux, through golang.org/x/net's batches or one datagram at a time
// otherwise.
func (c *CoreNode) readLoop() {
	defer c.wg.Done()
	if bc := c.out.bc; bc != nil {
		closing := func() bool {
			select {
			case <-c.closed:
				return true
			default:
				return false
			}
		}
		bc.Serve(closing, func(k int) { c.handleBatch(k, bc.Packet) }, c.readFailed)
		return
	}
	in := newBatchIn(c.conn, c.local.Addr().Is4(), c.maxPkt)
	for {
		k, err := in.read()
		if err != nil {
			if c.readFailed(err) {
				return
			}
			continue
		}
		if !c.handleBatch(k, in.packet) {
			return
		}
	}
}

// handleBatch hands the k datagrams packet returns to the node and sends
// what it queued; it returns false once the node is closed.
func (c *CoreNode) handleBatch(k int, packet func(int) ([]byte, netip.AddrPort)) bool {
	ev := &c.ev
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return false
	}
	now := c.clock.Now()
	for i := range k {
		data, from := packet(i)
		reason := ""
		switch {
		case len(data) > c.maxPkt:
			reason = krpc.DropTooLarge
		case len(data) < krpc.MinPacketLen:
			reason = krpc.DropTooSmall
		case !from.IsValid() || from.Port() == 0:
			reason = krpc.DropUndecodable
		case c.limiter != nil && !c.limiter.Allow(from.Addr(), now):
			c.limited.Add(1)
			reason = krpc.DropRateLimited
		}
		if reason != "" {
			ev.Received(krpc.PacketInvalid, len(data))
			ev.Dropped(reason)
			continue
		}
		c.n.HandlePacket(now, from, data)
	}
	c.afterLocked(now)
	c.unlock()
	return true
}

// readFailed handles an error of a socket read (krpc.ReadFailed).
func (c *CoreNode) readFailed(err error) bool {
	return krpc.ReadFailed(err, c.closed, c.log, "core node read")
}

// Close stops the timer and the read loop, ends the queries in flight with
// krpc.ErrClosed, and closes the socket. It waits for the goroutines it
// started.
func (c *CoreNode) Close() error {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return nil
	}
	c.done = true
	close(c.closed)
	if c.timer != nil {
		c.timer.Stop()
	}
	c.n.Abort(c.clock.Now(), krpc.ErrClosed)
	c.unlock()
	err := c.conn.Close()
	c.wg.Wait()
	return err
}

// handlerWriter is the writer a CoreNode hands core.Config.Handler: the
// core's, under the lock, whose Detach returns a writer that takes the
// lock to answer from another goroutine.
type handlerWriter struct {
	c *CoreNode
	w core.Writer
}

func (h *handlerWriter) RemoteAddr() netip.AddrPort { return h.w.RemoteAddr() }
func (h *handlerWriter) Reply(r *krpc.Return)       { h.w.Reply(r) }
func (h *handlerWriter) Error(code int64, msg string) {
	h.w.Error(code, msg)
}
func (h *handlerWriter) Detach() krpc.ResponseWriter {
	return &detachedWriter{c: h.c, w: h.w.Detach()}
}

// detachedWriter answers a query after its handler returned.
type detachedWriter struct {
	c *CoreNode
	w core.Writer
}

func (d *detachedWriter) RemoteAddr() netip.AddrPort   { return d.w.RemoteAddr() }
func (d *detachedWriter) Reply(r *krpc.Return)         { d.answer(func() { d.w.Reply(r) }) }
func (d *detachedWriter) Error(code int64, msg string) { d.answer(func() { d.w.Error(code, msg) }) }
func (d *detachedWriter) Detach() krpc.ResponseWriter  { return d }

// answer runs fn, which queues the answer, under the lock, and sends it.
func (d *detachedWriter) answer(fn func()) {
	c := d.c
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	fn()
	c.afterLocked(c.clock.Now())
	c.unlock()
}

// batchIn reads datagrams: coreBatch at a time with recvmmsg on an IPv4
// UDP socket, one at a time otherwise.
type batchIn struct {
	conn net.PacketConn
	udp  *net.UDPConn
	pc   *ipv4.PacketConn // nil: one at a time
	msgs []ipv4.Message
	from netip.AddrPort // of the single datagram
}

func newBatchIn(conn net.PacketConn, v4 bool, maxPkt int) *batchIn {
	b := &batchIn{conn: conn, msgs: make([]ipv4.Message, coreBatch)}
	b.udp, _ = conn.(*net.UDPConn)
	if v4 && b.udp != nil {
		b.pc = ipv4.NewPacketConn(b.udp)
	} else {
		b.msgs = b.msgs[:1]
	}
	for i := range b.msgs {
		b.msgs[i].Buffers = [][]byte{make([]byte, maxPkt+1)}
	}
	return b
}

// read waits for at least one datagram and returns how many it read.
func (b *batchIn) read() (int, error) {
	if b.pc != nil {
		return b.pc.ReadBatch(b.msgs, 0)
	}
	var n int
	var err error
	if b.udp != nil {
		var from netip.AddrPort
		n, from, err = b.udp.ReadFromUDPAddrPort(b.msgs[0].Buffers[0])
		b.from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	} else {
		var from net.Addr
		n, from, err = b.conn.ReadFrom(b.msgs[0].Buffers[0])
		b.from = krpc.AddrPortOf(from)
	}
	if err != nil {
		return 0, err
	}
	b.msgs[0].N = n
	return 1, nil
}

// packet returns datagram i of the last read and its source. A datagram
// longer than the buffer's limit comes back one byte longer than that, so
// that the caller sees it is too long.
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
// UDP socket (krpc.BatchConn on Linux, golang.org/x/net's batches
// elsewhere), one at a time otherwise.
type batchOut struct {
	conn  net.PacketConn
	udp   *net.UDPConn
	bc    *krpc.BatchConn  // Linux, IPv4: the read loop's too
	pc    *ipv4.PacketConn // x/net's batches; nil: one at a time
	msgs  []ipv4.Message
	addrs []net.UDPAddr
	ips   [][4]byte
	bufs  [][]byte
	to    []netip.AddrPort
	kinds []string // krpc.Packet* of each, for Events.Sent
	n     int      // queued
	sent  int      // sent by the last flush (their buffers are the caller's again)
}

func newBatchOut(conn net.PacketConn, v4 bool, maxPkt int) batchOut {
	b := batchOut{
		conn:  conn,
		bufs:  make([][]byte, coreBatch),
		to:    make([]netip.AddrPort, coreBatch),
		kinds: make([]string, coreBatch),
	}
	b.udp, _ = conn.(*net.UDPConn)
	if !v4 || b.udp == nil {
		return b
	}
	if bc, ok := krpc.NewBatchConn(b.udp, maxPkt); ok {
		b.bc = bc
		return b
	}
	b.pc = ipv4.NewPacketConn(b.udp)
	b.msgs = make([]ipv4.Message, coreBatch)
	b.addrs = make([]net.UDPAddr, coreBatch)
	b.ips = make([][4]byte, coreBatch)
	for i := range b.msgs {
		b.msgs[i].Buffers = make([][]byte, 1)
	}
	return b
}

// add queues data for to; the caller flushes when coreBatch are queued.
func (b *batchOut) add(to netip.AddrPort, data []byte, kind string) {
	b.bufs[b.n] = data
	b.to[b.n] = to
	b.kinds[b.n] = kind
	b.n++
}

// flush sends the queued datagrams and reports each one's fate to sent. A
// datagram the socket refuses is dropped, as a full socket buffer drops
// it, and the rest are still sent.
func (b *batchOut) flush(sent func(i int, ok bool)) {
	b.sent, b.n = b.n, 0
	if b.bc == nil && (b.pc == nil || b.sent == 1) {
		for i := range b.sent {
			var err error
			switch {
			case b.udp != nil:
				_, err = b.udp.WriteToUDPAddrPort(b.bufs[i], b.to[i])
			default:
				_, err = b.conn.WriteTo(b.bufs[i], net.UDPAddrFromAddrPort(b.to[i]))
			}
			sent(i, err == nil)
		}
		return
	}
	write := func(from int) (int, error) { return b.bc.Send(b.to[from:b.sent], b.bufs[from:b.sent]) }
	if b.bc == nil {
		for i := range b.sent {
			b.ips[i] = b.to[i].Addr().As4()
			b.addrs[i] = net.UDPAddr{IP: b.ips[i][:], Port: int(b.to[i].Port())}
			b.msgs[i].Buffers[0] = b.bufs[i]
			b.msgs[i].Addr = &b.addrs[i]
		}
		write = func(from int) (int, error) { return b.pc.WriteBatch(b.msgs[from:b.sent], 0) }
	}
	for done := 0; done < b.sent; {
		k, err := write(done)
		for j := done; j < done+k; j++ {
			sent(j, true)
		}
		done += k
		if err != nil || k == 0 {
			sent(done, false)
			done++
		}
	}
}
