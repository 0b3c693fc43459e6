package krpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// Events are optional callbacks that report what the server does, for
// metrics. Every string passed is a member of PacketKinds, DropReasons or
// QueryOutcomes, except the method of QueryDone, which is the caller's.
type Events struct {
	Received  func(kind string, bytes int)
	Sent      func(kind string, bytes int)
	Dropped   func(reason string)
	QueryDone func(method, outcome string, rtt time.Duration)
	InFlight  func(n int)
}

// ServerConfig configures a Server. Zero values mean the documented defaults.
type ServerConfig struct {
	// QueryTimeout bounds each outgoing query. Default 2s (anacrolix; BEP 5
	// has no retry).
	QueryTimeout time.Duration
	// MaxInFlight bounds the queries awaiting an answer; Query blocks (until
	// its context ends) while the bound is reached, Go fails with
	// ErrOverloaded. Default 1024.
	MaxInFlight int
	// MaxPacketSize is the largest inbound packet read; larger ones are
	// dropped. Default 4096 (BEP 32: receive at least 1024; a BEP 44 get
	// reply with a 1000-byte value is ~1300).
	MaxPacketSize int
	// ClientVersion is sent as the top-level "v" of every message, e.g.
	// "DH\x00\x01". Empty sends none.
	ClientVersion string
	// ReadOnly sets "ro"=1 in every query (BEP 43).
	ReadOnly bool
	// Limiter, if set, is asked about every packet before it is decoded,
	// at the time its read batch began (one clock reading per batch, not
	// per packet); a packet over its source's limit is dropped
	// (DropRateLimited).
	Limiter *IPLimiter
	// Accept, if set, is asked about every packet before it is decoded
	// (after Limiter); false drops it (DropRateLimited).
	Accept func(from netip.AddrPort, size int) bool
	// ReplyBudget, if set, is the global budget of response bytes: a reply
	// that does not fit is not sent (DropBandwidth). Nil: unlimited.
	ReplyBudget *ByteBudget
	// Clock defaults to SystemClock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Events receives counters for metrics.
	Events Events
}

func (c *ServerConfig) setDefaults() {
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 2 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.MaxPacketSize <= 0 {
		c.MaxPacketSize = 4096
	}
	if c.Clock == nil {
		c.Clock = SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Events = c.Events.Complete()
}

// Complete returns e with each nil func replaced by one that counts
// nothing, so that every func may be called.
func (e Events) Complete() Events {
	if e.Received == nil {
		e.Received = func(string, int) {}
	}
	if e.Sent == nil {
		e.Sent = func(string, int) {}
	}
	if e.Dropped == nil {
		e.Dropped = func(string) {}
	}
	if e.QueryDone == nil {
		e.QueryDone = func(string, string, time.Duration) {}
	}
	if e.InFlight == nil {
		e.InFlight = func(int) {}
	}
	return e
}

// Handler answers queries, in the shape of miekg/dns's Handler. ServeKRPC
// is called on the read loop for every decoded query and must not block.
// It answers through w (see ResponseWriter) with w.Reply or w.Error, at
// most once, before it returns or, having called w.Detach, later; a
// handler that does neither sends no answer. The server fills in "t", "y",
// "v" and the BEP 42 "ip". q and q.A are reused for the next packet once
// ServeKRPC returns: it must not keep them, or pointers into q.A, after
// that (a late answer's work must capture values).
type Handler interface {
	ServeKRPC(w ResponseWriter, q *Msg)
}

// HandlerFunc is a func used as a Handler.
type HandlerFunc func(w ResponseWriter, q *Msg)

// ServeKRPC calls f(w, q).
func (f HandlerFunc) ServeKRPC(w ResponseWriter, q *Msg) { f(w, q) }

// ResponseWriter answers one query: the only way a Handler replies. The
// first call of Reply or Error sends the answer; every later one is
// ignored. Both encode the answer before they return, so r may be reused
// then.
//
// The writer a Handler is given belongs to the read loop, which reuses it
// for the next packet: it answers only until ServeKRPC returns. A handler
// that answers later (for example once a write is durable, so that the
// read loop never waits on a disk) calls Detach before it returns and
// answers on the writer Detach returns, from any goroutine, at any time;
// it too answers at most once.
type ResponseWriter interface {
	// RemoteAddr is the address the query came from, which the answer
	// goes to.
	RemoteAddr() netip.AddrPort
	// Reply answers with the response r ("r"); r.ID is the caller's.
	Reply(r *Return)
	// Error answers with a KRPC error (BEP 5: 201 generic, 202 server,
	// 203 protocol, 204 method unknown; BEP 44 adds 205 to 302).
	Error(code int64, msg string)
	// Detach returns a writer for the same query that stays valid after
	// the handler returns, and makes the one it was called on answer
	// nothing more. If the query was answered already, the writer it
	// returns ignores every answer.
	Detach() ResponseWriter
}

// ResponseHook, if set, sees every response or error that matched a query,
// before the querier does (so the node can learn nodes from all answers),
// with the query's round-trip time.
type ResponseHook func(from netip.AddrPort, method string, m *Msg, rtt time.Duration)

// Server is the KRPC endpoint: one packet socket, a read loop that hands
// queries to a handler and responses to the transaction manager, and Query
// for sending.
type Server struct {
	cfg     ServerConfig
	pc      net.PacketConn
	udp     *net.UDPConn // pc as a UDP socket, for allocation-free I/O
	handler Handler
	txMu    sync.Mutex
	txns    *Transactions[*call] // under txMu
	txTimer Timer                // under txMu: armed while queries are in flight
	slots   chan struct{}
	local   netip.AddrPort

	onResponse atomic.Pointer[ResponseHook]

	// loopOut is the read loop's reply buffer and scratch, reused for every
	// reply it sends (only the read loop goroutine touches it).
	loopOut replyScratch
	// loopNow is the time the read loop's current batch began: the time
	// of Limiter and ReplyBudget for its packets (only the read loop
	// goroutine touches it).
	loopNow time.Time
	// loopArgs holds the arguments of the query the read loop is handling:
	// reused for every query, so a Handler must not keep q.A or a pointer
	// into it after it returns (copy what it keeps; a late answer's work
	// must capture values).
	loopArgs argsBlock
	// loopW is the ResponseWriter the read loop hands every query's
	// handler, reset per packet, so that an answer given before the
	// handler returns costs no allocation and joins the read loop's batch.
	loopW loopWriter

	closeOnce sync.Once
	closed    chan struct{}
	closing   atomic.Bool // set by Close before the socket is closed
	wg        sync.WaitGroup
}

// NewServer starts serving on pc. handler may be nil (queries are then not
// answered). Close stops the read loop and closes pc.
func NewServer(pc net.PacketConn, handler Handler, cfg ServerConfig) *Server {
	cfg.setDefaults()
	s := &Server{
		cfg:     cfg,
		pc:      pc,
		handler: handler,
		txns:    newServerTransactions(cfg),
		slots:   make(chan struct{}, cfg.MaxInFlight),
		closed:  make(chan struct{}),
	}
	s.loopW.s = s
	s.udp, _ = pc.(*net.UDPConn)
	if s.udp != nil {
		// Room for bursts: the default (about 200 KiB on Linux, some 200
		// packets of kernel overhead) overflows under a load of a few
		// hundred queries in flight. The kernel caps it at rmem_max.
		_ = s.udp.SetReadBuffer(socketBuffer)
	}
	s.local = AddrPortOf(pc.LocalAddr())
	s.wg.Add(1)
	go s.readLoop()
	return s
}

// SetResponseHook installs h (nil removes it).
func (s *Server) SetResponseHook(h ResponseHook) {
	if h == nil {
		s.onResponse.Store(nil)
		return
	}
	s.onResponse.Store(&h)
}

// LocalAddr is the address the socket is bound to.
func (s *Server) LocalAddr() netip.AddrPort { return s.local }

// InFlight returns the number of queries awaiting an answer.
func (s *Server) InFlight() int {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	return s.txns.Len()
}

// Close stops the read loop, fails pending queries with ErrClosed and
// closes the socket. It waits for every goroutine the server started.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		close(s.closed)
		err = s.pc.Close()
		s.wg.Wait()
		s.closeCalls()
	})
	return err
}

// AddrPortOf is the address of a, as Server.LocalAddr reports it: a
// *net.UDPAddr's with an IPv4-mapped address unmapped, another net.Addr's
// String parsed as host:port; the zero AddrPort if a is nil or that fails.
func AddrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func (s *Server) readFrom(buf []byte) (int, netip.AddrPort, error) {
	if s.udp != nil {
		n, ap, err := s.udp.ReadFromUDPAddrPort(buf)
		return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), err
	}
	n, a, err := s.pc.ReadFrom(buf)
	return n, AddrPortOf(a), err
}

func (s *Server) writeTo(b []byte, to netip.AddrPort) error {
	if s.udp != nil {
		_, err := s.udp.WriteToUDPAddrPort(b, to)
		return err
	}
	_, err := s.pc.WriteTo(b, net.UDPAddrFromAddrPort(to))
	return err
}

// replyScratch is what encoding one reply needs: the output buffer and
// the BEP 42 "ip" value, so a reply costs no allocation; and, on the read
// loop of an IPv4 UDP socket, the batch replies are queued on.
type replyScratch struct {
	out   []byte
	ip    CompactAddr
	batch *replyBatch
}

// socketBuffer is the receive buffer asked for a UDP socket.
const socketBuffer = 2 << 20

// batchSize is the most datagrams one recvmmsg or sendmmsg moves.
// Profiling under load (cmd/dhtd-bench) showed the per-packet recvfrom and
// sendto syscalls taking about half of the read loop's CPU; batching them
// amortises the syscall entry and the runtime's scheduler work over up to
// batchSize packets when the socket has a backlog, and costs nothing when
// it has not (a batch of one).
const batchSize = 32

// batchWriter sends the replies b.bufs[from:b.n] to b.to[from:b.n] with
// one sendmmsg, and returns how many the kernel took (0 with an error
// when it took none).
type batchWriter interface {
	writeBatch(b *replyBatch, from int) (int, error)
}

// replyBatch holds the replies produced while handling one read batch;
// flush sends them with one sendmmsg. Bounded: batchSize slots.
type replyBatch struct {
	w     batchWriter
	bufs  [][]byte
	to    []netip.AddrPort
	kinds []string
	n     int
}

func newReplyBatch(w batchWriter) *replyBatch {
	b := &replyBatch{
		w:     w,
		bufs:  make([][]byte, batchSize),
		to:    make([]netip.AddrPort, batchSize),
		kinds: make([]string, batchSize),
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, 0, 1536)
	}
	return b
}

// queueReply queues pkt (copied) for to, flushing first when the batch is full.
func (s *Server) queueReply(b *replyBatch, pkt []byte, to netip.AddrPort, kind string) {
	if b.n == batchSize {
		s.flush(b)
	}
	i := b.n
	b.bufs[i] = append(b.bufs[i][:0], pkt...)
	b.to[i] = to
	b.kinds[i] = kind
	b.n++
}

// flush sends the queued replies. A message the kernel refuses is counted
// as DropSendError and the rest are still sent.
func (s *Server) flush(b *replyBatch) {
	for sent := 0; sent < b.n; {
		k, err := b.w.writeBatch(b, sent)
		for j := sent; j < sent+k; j++ {
			s.cfg.Events.Sent(b.kinds[j], len(b.bufs[j]))
		}
		sent += k
		if err != nil || k == 0 {
			s.cfg.Events.Dropped(DropSendError)
			sent++
		}
	}
	b.n = 0
}

// ipv4Writer is a batchWriter on golang.org/x/net/ipv4's WriteBatch.
type ipv4Writer struct {
	pc    *ipv4.PacketConn
	msgs  []ipv4.Message
	addrs []net.UDPAddr
	ips   [][4]byte
}

func newIPv4Writer(pc *ipv4.PacketConn) *ipv4Writer {
	w := &ipv4Writer{
		pc:    pc,
		msgs:  make([]ipv4.Message, batchSize),
		addrs: make([]net.UDPAddr, batchSize),
		ips:   make([][4]byte, batchSize),
	}
	for i := range w.msgs {
		w.msgs[i].Buffers = make([][]byte, 1)
	}
	return w
}

func (w *ipv4Writer) writeBatch(b *replyBatch, from int) (int, error) {
	for i := from; i < b.n; i++ {
		w.ips[i] = b.to[i].Addr().As4()
		w.addrs[i] = net.UDPAddr{IP: w.ips[i][:], Port: int(b.to[i].Port())}
		w.msgs[i].Buffers[0] = b.bufs[i]
		w.msgs[i].Addr = &w.addrs[i]
	}
	return w.pc.WriteBatch(w.msgs[from:b.n], 0)
}

func (s *Server) readLoop() {
	defer s.wg.Done()
	s.loopOut.out = make([]byte, 0, 1536)
	if s.udp != nil && s.local.Addr().Is4() {
		// Batched I/O needs sockaddr_in destinations: IPv4 sockets only.
		if !s.readLoopMmsg() {
			s.readLoopBatch()
		}
		return
	}
	buf := make([]byte, s.cfg.MaxPacketSize+1)
	var m Msg
	for {
		n, from, err := s.readFrom(buf)
		if err != nil {
			if s.readFailed(err) {
				return
			}
			continue
		}
		s.stampBatch()
		s.handlePacket(buf[:n], from, &m)
	}
}

// readFailed handles an error from a socket read (ReadFailed).
func (s *Server) readFailed(err error) bool {
	return ReadFailed(err, s.closed, s.cfg.Logger, "krpc read")
}

// ReadFailed handles an error from a read loop's socket read and reports
// whether the loop must end: its owner closed (closed is closed) or the
// socket is. Other errors (timeouts, transient ones) are logged at debug
// level as msg, and the loop goes on. Server's and node.CoreNode's.
func ReadFailed(err error, closed <-chan struct{}, log *slog.Logger, msg string) bool {
	select {
	case <-closed:
		return true
	default:
	}
	if errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		log.Debug(msg, "err", err)
	}
	return false
}

// readLoopBatch is readLoop with recvmmsg and sendmmsg (IPv4 UDP sockets):
// it reads up to batchSize datagrams, handles them in order, then sends
// their replies in one batch.
func (s *Server) readLoopBatch() {
	pc := ipv4.NewPacketConn(s.udp)
	in := make([]ipv4.Message, batchSize)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, s.cfg.MaxPacketSize+1)}
	}
	s.loopOut.batch = newReplyBatch(newIPv4Writer(pc))
	var m Msg
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if s.readFailed(err) {
				return
			}
			continue
		}
		s.stampBatch()
		for i := range in[:n] {
			var from netip.AddrPort
			if ua, ok := in[i].Addr.(*net.UDPAddr); ok {
				ap := ua.AddrPort()
				from = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			}
			s.handlePacket(in[i].Buffers[0][:in[i].N], from, &m)
		}
		if s.loopOut.batch.n > 0 {
			s.flush(s.loopOut.batch)
		}
	}
}

// stampBatch reads the clock for a new read batch, if a limit needs it.
func (s *Server) stampBatch() {
	if s.cfg.Limiter != nil || s.cfg.ReplyBudget != nil {
		s.loopNow = s.cfg.Clock.Now()
	}
}

// handlePacket processes one inbound datagram.
func (s *Server) handlePacket(pkt []byte, from netip.AddrPort, m *Msg) {
	ev := &s.cfg.Events
	switch {
	case len(pkt) > s.cfg.MaxPacketSize:
		ev.Received(PacketInvalid, len(pkt))
		ev.Dropped(DropTooLarge)
		return
	case len(pkt) < MinPacketLen:
		ev.Received(PacketInvalid, len(pkt))
		ev.Dropped(DropTooSmall)
		return
	case !from.IsValid() || from.Port() == 0:
		ev.Received(PacketInvalid, len(pkt))
		ev.Dropped(DropUndecodable)
		return
	}
	if (s.cfg.Limiter != nil && !s.cfg.Limiter.Allow(from.Addr(), s.loopNow)) ||
		(s.cfg.Accept != nil && !s.cfg.Accept(from, len(pkt))) {
		ev.Received(PacketInvalid, len(pkt))
		ev.Dropped(DropRateLimited)
		return
	}
	err := decode(pkt, m, &s.loopArgs)
	var be *BodyError
	if err != nil && !errors.As(err, &be) {
		ev.Received(PacketInvalid, len(pkt))
		ev.Dropped(DropUndecodable)
		return
	}
	switch m.Y {
	case KindQuery:
		ev.Received(PacketQuery, len(pkt))
		w := &s.loopW
		w.reset(from, m.T)
		if be != nil {
			w.Error(ErrCodeProtocol, be.Err.Error())
			return
		}
		if s.handler == nil {
			ev.Dropped(DropReadOnly)
			return
		}
		s.handler.ServeKRPC(w, m)
		if w.state == writerOpen {
			ev.Dropped(DropReadOnly) // not answered, nor kept to answer later
		}
		w.state = writerDone
	case KindResponse, KindError:
		kind := PacketResponse
		if m.Y == KindError {
			kind = PacketError
		}
		ev.Received(kind, len(pkt))
		c, reason := s.matchCall(m.T, from)
		if c == nil {
			ev.Dropped(reason)
			return
		}
		msg := new(Msg)
		*msg = *m
		var err error
		if be != nil {
			err = fmt.Errorf("malformed %s from %s: %w", kind, from, be)
		} else if m.E != nil {
			err = m.E
		}
		if h := s.onResponse.Load(); h != nil && be == nil {
			(*h)(from, c.method, msg, s.cfg.Clock.Now().Sub(c.sent))
		}
		s.finish(c, msg, err)
	}
}

// States of a loopWriter.
const (
	writerOpen     = iota // may answer
	writerDone            // answered, or its handler returned
	writerDetached        // Detach handed the answer to another writer
)

// loopWriter is the read loop's ResponseWriter: one per Server, reset for
// every query (only the read loop goroutine touches it). Its answer is
// encoded into the read loop's scratch and queued on its batch.
type loopWriter struct {
	s     *Server
	to    netip.AddrPort
	tid   string
	state int
	m     Msg   // the envelope of the answer
	e     Error // the error of an Error answer
}

func (w *loopWriter) reset(to netip.AddrPort, tid string) {
	w.to, w.tid, w.state = to, tid, writerOpen
}

func (w *loopWriter) RemoteAddr() netip.AddrPort { return w.to }

func (w *loopWriter) Reply(r *Return) {
	if w.state != writerOpen {
		return
	}
	w.state = writerDone
	w.m = Msg{R: r}
	w.s.reply(w.to, w.tid, &w.m, &w.s.loopOut)
	w.m.R = nil
}

func (w *loopWriter) Error(code int64, msg string) {
	if w.state != writerOpen {
		return
	}
	w.state = writerDone
	w.e = Error{Code: code, Msg: msg}
	w.m = Msg{E: &w.e}
	w.s.reply(w.to, w.tid, &w.m, &w.s.loopOut)
}

func (w *loopWriter) Detach() ResponseWriter {
	d := &detachedWriter{s: w.s, to: w.to, tid: w.tid}
	if w.state != writerOpen {
		d.done.Store(true)
	}
	w.state = writerDetached
	return d
}

// detachedWriter is a ResponseWriter that outlives its handler (see
// ResponseWriter.Detach). It is safe for concurrent use: the first answer
// wins. Its answer is sent on its own, with the budget's current time.
type detachedWriter struct {
	s    *Server
	to   netip.AddrPort
	tid  string
	done atomic.Bool
}

func (d *detachedWriter) RemoteAddr() netip.AddrPort { return d.to }

func (d *detachedWriter) Reply(r *Return) {
	if d.done.Swap(true) {
		return
	}
	d.s.reply(d.to, d.tid, &Msg{R: r}, &replyScratch{})
}

func (d *detachedWriter) Error(code int64, msg string) {
	if d.done.Swap(true) {
		return
	}
	d.s.reply(d.to, d.tid, &Msg{E: &Error{Code: code, Msg: msg}}, &replyScratch{})
}

func (d *detachedWriter) Detach() ResponseWriter { return d }

// reply encodes and sends a reply to a query with transaction id tid,
// encoding into sc's buffer. r.IP is used only while encoding and left
// nil.
func (s *Server) reply(to netip.AddrPort, tid string, r *Msg, sc *replyScratch) {
	r.T = tid
	kind := PacketResponse
	if r.E != nil {
		r.Y, kind = KindError, PacketError
	} else {
		r.Y = KindResponse
	}
	r.V = s.cfg.ClientVersion
	sc.ip = CompactAddr(to) // BEP 42: tell the requester its address
	r.IP = &sc.ip
	b, err := AppendEncode(sc.out[:0], r)
	r.IP = nil
	sc.out = b[:0]
	if err != nil {
		s.cfg.Logger.Error("encode reply", "err", err)
		return
	}
	if s.cfg.ReplyBudget != nil {
		var now time.Time
		if sc == &s.loopOut {
			now = s.loopNow // on the read loop: its batch's time
		} else {
			now = s.cfg.Clock.Now()
		}
		if !s.cfg.ReplyBudget.Take(len(b), now) {
			s.cfg.Events.Dropped(DropBandwidth)
			return
		}
	}
	if sc.batch != nil && to.Addr().Is4() {
		s.queueReply(sc.batch, b, to, kind)
		return
	}
	if err := s.writeTo(b, to); err != nil {
		s.cfg.Events.Dropped(DropSendError)
		return
	}
	s.cfg.Events.Sent(kind, len(b))
}

// Query sends query method with args a to addr and waits for the answer,
// the per-query timeout, or ctx. A KRPC error reply is returned as *Error.
// The answer's "r" is checked to hold a 20-byte id.
func (s *Server) Query(ctx context.Context, addr netip.AddrPort, method string, a *Args) (*Msg, error) {
	done := make(chan result, 1) // the callback never blocks
	c, err := s.GoWait(ctx, addr, method, a, func(m *Msg, err error) { done <- result{m, err} })
	if err != nil {
		return nil, err
	}
	select {
	case res := <-done:
		return res.msg, res.err
	case <-ctx.Done():
		if !c.Cancel() {
			res := <-done // it ended as ctx did: its outcome is being delivered
			return res.msg, res.err
		}
		return nil, fmt.Errorf("query %s %s: %w", method, addr, ctx.Err())
	}
}

// Go sends query method with args a to addr and returns at once; done gets
// the answer or the error (see Callback). Its error, when the query was not
// sent, wraps ErrOverloaded if MaxInFlight queries are awaiting an answer
// (Go does not wait for a slot: it may be called where waiting would
// stall the read loop), ErrClosed, or the send's error; done is then not
// called. a is encoded before Go returns and not kept.
func (s *Server) Go(addr netip.AddrPort, method string, a *Args, done Callback) (Call, error) {
	select {
	case s.slots <- struct{}{}:
	default:
		return Call{}, fmt.Errorf("query %s %s: %w", method, addr, ErrOverloaded)
	}
	return s.start(addr, method, a, done)
}

// GoWait is Go that waits for a MaxInFlight slot, as Query does, until
// ctx ends (its error then wraps ctx's). It returns once the query is
// sent, without waiting for the answer.
func (s *Server) GoWait(ctx context.Context, addr netip.AddrPort, method string, a *Args, done Callback) (Call, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		s.cfg.Events.QueryDone(method, OutcomeCancelled, 0)
		return Call{}, fmt.Errorf("query %s %s: waiting for a slot: %w", method, addr, ctx.Err())
	case <-s.closed:
		return Call{}, ErrClosed
	}
	return s.start(addr, method, a, done)
}

// start sends a query in a slot of s.slots the caller took, which is
// freed when the query ends (finish, Call.Cancel) or here if it cannot be
// sent.
func (s *Server) start(addr netip.AddrPort, method string, a *Args, done Callback) (Call, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	c := &call{method: method, to: addr, sent: s.cfg.Clock.Now(), done: done}
	h, err := s.addCall(addr, c)
	if err != nil {
		<-s.slots
		if errors.Is(err, ErrClosed) {
			return Call{}, ErrClosed
		}
		return Call{}, fmt.Errorf("query %s %s: %w", method, addr, err)
	}
	s.cfg.Events.InFlight(s.InFlight())
	m := Msg{T: h.TID(), Y: KindQuery, Q: method, A: a, V: s.cfg.ClientVersion}
	if s.cfg.ReadOnly {
		m.RO = 1
	}
	b, err := Encode(&m)
	if err == nil {
		if err = s.writeTo(b, addr); err != nil {
			s.cfg.Events.Dropped(DropSendError)
			s.cfg.Events.QueryDone(method, OutcomeSendError, 0)
			err = fmt.Errorf("query %s %s: send: %w", method, addr, err)
		}
	}
	if err != nil {
		if !s.removeCall(h, false) {
			// Closed (or timed out) meanwhile: finish has run its callback.
			return Call{}, nil
		}
		s.release()
		return Call{}, err
	}
	s.cfg.Events.Sent(PacketQuery, len(b))
	return Call{s: s, h: h, c: c}, nil
}
