// Package core is a DHT node with no goroutines, sockets or clock: the
// protocol of BEP 5 (with BEP 44 get/put) as a state machine. It is handed
// a packet or the current time, and hands back the packets to send and the
// time it next wants to be woken:
//
//	n.HandlePacket(now, from, data) // a datagram arrived
//	n.HandleTimeout(now)            // the time given by NextTimeout came
//	for { t, ok := n.PollTransmit(); if !ok { break }; send(t) }
//	wake, ok := n.NextTimeout()
//
// A driver owns the socket, the clock and the goroutines; the simulator
// (internal/sim) is one such driver, running many nodes on one event queue.
// Randomness comes from the *rand.Rand the driver passes in, so a seeded
// driver gives the same run every time. A Node is not safe for concurrent
// use: its driver serialises the calls.
//
// Routing state is a routing.Table, tokens a storage.Tokens, stored peers
// and items a storage.PeerStore and storage.ItemStore, and packets are
// encoded and decoded by krpc: the core is the glue between them and owns
// only the transaction table, the lookups, the maintenance timer and the
// republish schedule.
package core

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/dhtd/dhtd/internal/slotheap"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/routing"
)

// Defaults of Config.
const (
	DefaultK              = 8                // closest nodes per lookup and reply (BEP 5)
	DefaultAlpha          = 5                // queries in flight per lookup (the daemon's default)
	DefaultQueryTimeout   = 2 * time.Second  // a query unanswered this long failed
	DefaultMaintainPeriod = time.Minute      // how often the table is looked after
	DefaultAdmitPings     = 16               // confirmation pings in flight (the daemon's default)
	DefaultNamedBuckets   = 6                // deepest buckets that take the nodes lookups hear of (AdmitNamed)
	DefaultBucketProbes   = 2                // find_node queries into each bucket with room after joining (ProbeBuckets)
	DefaultMaxPending     = 256              // outstanding queries per node
	DefaultUpkeepPings    = 2                // pings of each kind per upkeep (the simulator's budget)
	maxOutbox             = 1024             // packets queued for the driver
	itemTTL               = 2 * time.Hour    // BEP 44, Expiration
	peerTTL               = 30 * time.Minute // BEP 5 practice: announces are repeated
)

// ErrTimeout is the error a query that got no answer in time completes
// with; it wraps krpc.ErrTimeout, the daemon's.
var ErrTimeout = fmt.Errorf("core: %w", krpc.ErrTimeout)

// ErrOverloaded is returned when a query cannot be sent because too many
// are outstanding.
var ErrOverloaded = errors.New("core: too many queries outstanding")

// Config configures a Node. Zero fields take their defaults.
type Config struct {
	ID    krpc.ID        // our node id
	Table routing.Config // routing table tuning
	// Routing, if set, is the routing table the node uses in place of a
	// new one made from Table: a driver that keeps the table itself (the
	// daemon, with Answered and NoUpkeep) shares it, so the node holds
	// that table rather than an empty second one. Its id must be ID.
	Routing *routing.Table
	// K is the result size of lookups and of nodes replies (default 8).
	K int
	// Alpha is the number of queries a lookup keeps in flight (default 5).
	Alpha int
	// QueryTimeout is how long a query may go unanswered (default 2 s).
	QueryTimeout time.Duration
	// MaintainPeriod spaces the table upkeep: pings of questionable and
	// bad nodes and bucket refreshes (default 1 min).
	MaintainPeriod time.Duration
	// AdmitPings is how many confirmation pings of queriers may be in
	// flight before the short timeout (AdmitQueue; default 16).
	AdmitPings int
	// AdmitTimeout, if set, says how long a confirmation ping holds its
	// slot (clamped to MinAdmitTimeout and QueryTimeout), in place of the
	// short timeout of the node's own lookups: a driver that runs its own
	// lookups (the daemon) knows the round trips.
	AdmitTimeout func() time.Duration
	// NamedBuckets is how many of the routing table's deepest buckets
	// take the nodes that a lookup's answers named and the lookup did not
	// ask: once it ends, those that such a bucket would take get a
	// confirmation ping, after the queriers (AdmitNamed; default 6,
	// negative: none).
	NamedBuckets int
	// BucketProbes is how many find_node queries BootstrapLookup and
	// Bootstrap send into each bucket that has room once the lookup of
	// our own id has ended (ProbeBuckets; default 2, negative: none).
	BucketProbes int
	// IsSelf, if set, says whether an address is our own (the daemon's
	// socket, or the address responders report): a node a bucket probe's
	// answer names there gets no confirmation ping, whatever its id.
	IsSelf func(netip.AddrPort) bool
	// AdmitDropped, if set, counts the queriers the admission schedule
	// had no room for, or dropped after waiting too long (the daemon's
	// admission_busy).
	AdmitDropped func(k int)
	// LimitLoopback makes loopback addresses count as one subnet in the
	// admission schedule, as they do for the daemon with the same option;
	// by default each loopback endpoint is its own unit.
	LimitLoopback bool
	// MaxPerSubnet caps the candidates of one /24 a lookup accepts from
	// replies (practice, libtorrent dht_restrict_search_ips); 0 means no cap.
	MaxPerSubnet int
	// Rand is the node's source of randomness; required.
	Rand *rand.Rand
	// Handler, if set, answers the queries in place of Node.Serve (which
	// it may call). It may answer later through w.Detach(), but may not
	// keep q.Msg: the message and what it points to are reused once the
	// handler returns (copy what is kept).
	Handler func(n *Node, q Query, w Writer)
	// ClientVersion, if set, is sent as the "v" of every message (BEP 5:
	// two letters for the client and two bytes of version), as deployed
	// clients do. Empty sends none (the simulator's nodes).
	ClientVersion string
	// Answered, if set, learns every answer that matched one of our
	// queries, in place of the node's own Service.Answered and the pings
	// it asks for: a driver that keeps its own routing table (the daemon)
	// learns from answers there. m is valid only during the call. The
	// table then also hears of the timeouts of the driver's queries (Query)
	// from the driver, which learns of them through their callbacks: the
	// node counts only those of its own (its pings and lookups).
	Answered func(now time.Time, from netip.AddrPort, method string, m *krpc.Msg, rtt time.Duration)
	// Events, if set, counts the node's traffic for metrics, with
	// krpc.Server's events and labels: Received and Dropped as packets
	// come in, QueryDone and InFlight as queries start and end. Sent is
	// the driver's, which knows what went out. Every func must be set.
	Events *krpc.Events
	// ReadOnly sets "ro"=1 in every query we send (BEP 43).
	ReadOnly bool
	// MaxPending bounds our queries awaiting an answer (default 256):
	// past it a query fails with ErrOverloaded.
	MaxPending int
	// LateIDs is how many ids of timed-out queries the node remembers (in
	// each of two generations), so that an answer after the timeout is
	// dropped as late, not unknown. The default, 0, remembers none: 2 ×
	// 1,024 per node would not fit 100,000 simulated nodes.
	LateIDs int
	// NoUpkeep leaves the table upkeep (pings of questionable and bad
	// nodes, bucket refreshes) to the driver.
	NoUpkeep bool
	// UpkeepPings is how many questionable nodes, and how many bad nodes
	// due a retry (routing.Table.Retry), one upkeep pings at most (default
	// 2, the simulator's budget).
	UpkeepPings int
	// ScalePings raises the questionable nodes' share of UpkeepPings to
	// what the table's size needs: every node turning questionable is
	// pinged MaxFailures times within the good window (routing.Config),
	// however many nodes the table holds (the daemon's liveness timer; an
	// extended table holds some 270).
	ScalePings bool
	// Refresh, if set, is handed the targets of every stale bucket at each
	// upkeep (routing.Table.RefreshTargets, all of them), in place of the
	// node's own lookups of at most two: the driver looks them up, and
	// does the rest of its own upkeep (the daemon expires its stores and
	// bootstraps again when its table ran dry). It runs inside
	// HandleTimeout and must not block.
	Refresh func(now time.Time, targets []krpc.ID)
	// RepublishInterval spaces the rounds of the items the node keeps
	// (Keep); default DefaultRepublishInterval (1 h, BEP 44).
	RepublishInterval time.Duration
	// AnnounceInterval spaces the rounds of the announces it keeps;
	// default DefaultAnnounceInterval (15 min, half the peer TTL).
	AnnounceInterval time.Duration
	// Republish, if set, runs the rounds of the republish schedule (Keep)
	// in place of the node: it is called inside HandleTimeout when an
	// entry is due, and must not block. The driver reports the end of the
	// round with Rearm, which schedules the next one (or drops the entry
	// with Forget); until then the entry waits.
	Republish func(now time.Time, id KeepID, k Kept)
	// Scratch, if set, is the decoding and encoding storage of the node,
	// shared by every node that one goroutine drives (the simulator's
	// nodes): one per node would cost about a kilobyte each. Nil gives the
	// node its own.
	Scratch *Scratch
}

// Scratch is storage a node reuses for every packet: the decoded message
// and its parts, the encoding buffer and the node list of a reply, and
// the memory of its ended lookups and drained send queues. Nodes sharing
// one must be driven from one goroutine, one call at a time. The zero
// Scratch is ready to use.
type Scratch struct {
	dec   krpc.Decoder
	msg   krpc.Msg
	ret   krpc.Return
	args  krpc.Args
	ip    krpc.CompactAddr
	w     writer
	enc   []byte
	nodes []krpc.NodeInfo
	named []krpc.NodeInfo         // an ended lookup's unasked nodes (AdmitNamed)
	free  [len(bufSizes)][][]byte // recycled packet buffers by size class
	cands CandPool                // candidates of ended lookups
	// outboxes are send queues of more than 4 packets that nodes gave
	// back once drained (at most maxFreeOutboxes).
	outboxes [][]Transmit
}

// maxFreeOutboxes bounds Scratch.outboxes.
const maxFreeOutboxes = 64

// bufSizes are the capacities of recycled packet buffers: a query or a
// short answer, an answer carrying nodes (BEP 5: 8 × 26 bytes and a
// token), and one carrying peers or a BEP 44 value as well (up to a
// 1,000-byte value with its key and signature).
var bufSizes = [...]int{128, 384, 1536}

// maxFree bounds each size class's list of recycled buffers.
const maxFree = 1 << 14

// Recycle gives back the Data of a Transmit once the driver is done with
// it (HandlePacket has returned, or the packet was dropped): a later
// packet of a node sharing the Scratch is encoded into it. A driver that
// does not recycle loses nothing but the saved allocation.
func (s *Scratch) Recycle(b []byte) {
	for i, size := range bufSizes {
		if cap(b) == size {
			if len(s.free[i]) < maxFree {
				s.free[i] = append(s.free[i], b[:0])
			}
			return
		}
	}
}

// packet returns a copy of b in a recycled buffer of its size class, or
// in a new one.
func (s *Scratch) packet(b []byte) []byte {
	for i, size := range bufSizes {
		if len(b) > size {
			continue
		}
		if f := s.free[i]; len(f) > 0 {
			out := f[len(f)-1]
			f[len(f)-1] = nil
			s.free[i] = f[:len(f)-1]
			return append(out, b...)
		}
		return append(make([]byte, 0, size), b...)
	}
	return slices.Clone(b)
}

func (c Config) withDefaults() Config {
	if c.K <= 0 {
		c.K = DefaultK
	}
	if c.Alpha <= 0 {
		c.Alpha = DefaultAlpha
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.MaintainPeriod <= 0 {
		c.MaintainPeriod = DefaultMaintainPeriod
	}
	if c.AdmitPings <= 0 {
		c.AdmitPings = DefaultAdmitPings
	}
	if c.BucketProbes == 0 {
		c.BucketProbes = DefaultBucketProbes
	}
	if c.NamedBuckets == 0 {
		c.NamedBuckets = DefaultNamedBuckets
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.UpkeepPings <= 0 {
		c.UpkeepPings = DefaultUpkeepPings
	}
	if c.RepublishInterval <= 0 {
		c.RepublishInterval = DefaultRepublishInterval
	}
	if c.AnnounceInterval <= 0 {
		c.AnnounceInterval = DefaultAnnounceInterval
	}
	return c
}

// Transmit is one datagram for the driver to send.
type Transmit struct {
	To   netip.AddrPort
	Data []byte
	// Query is true for a query and false for a response or error: a driver
	// modelling a NAT lets answers through the mapping a query opened.
	Query bool
	// Error is true for a KRPC error reply.
	Error bool
}

// Stats counts a node's traffic.
type Stats struct {
	Sent, Received, Dropped uint64 // packets; Dropped: undecodable or unmatched
	QueriesSent, Timeouts   uint64
}

// pending is one query of ours awaiting its answer: when it was sent, and
// what to call with its answer or error.
type pending struct {
	sent   time.Time
	method string
	done   func(now time.Time, m *krpc.Msg, err error)
	adm    *AdmitEntry // a confirmation ping's schedule entry, ended with it
	driver bool        // sent by Query: with Config.Answered, its timeout is the driver's to count
}

// Node is one DHT node's protocol state.
type Node struct {
	cfg   Config
	id    krpc.ID
	rnd   *rand.Rand
	table *routing.Table

	svc    Service             // the handlers, tokens and stores
	handle func(Query, Writer) // Config.Handler, or nil for svc.Serve

	pending  krpc.Transactions[pending] // by value: read at every event of the node
	expired  []krpc.Expired[pending]    // HandleTimeout's scratch
	outbox   []Transmit                 // queued from outHead on
	outHead  int
	scratch  *Scratch // Config.Scratch or the node's own
	lookups  []*Lookup
	adm      *AdmitQueue // confirmation schedule, made at the first querier
	admPings []admPing   // its pings not yet slow nor answered
	maintain time.Time   // next table upkeep
	stats    Stats

	// The republish schedule (republish.go): every entry by id, and the
	// waiting ones by due time.
	keeps   map[KeepID]*keepEntry
	keepDue slotheap.Heap[*keepEntry]
	keepSeq KeepID

	rtts    [rttSamples]time.Duration // latest lookup round trips
	rttNext uint32
	slow    time.Duration // short timeout from rtts (lookup.go)
}

// New returns a node that starts at now with an empty table, or with
// Config.Routing.
func New(cfg Config, now time.Time) *Node {
	cfg = cfg.withDefaults()
	if cfg.Rand == nil {
		panic("core: Config.Rand is required")
	}
	n := &Node{
		cfg:     cfg,
		id:      cfg.ID,
		rnd:     cfg.Rand,
		table:   cfg.Routing,
		scratch: cfg.Scratch,
		pending: *krpc.NewTransactions[pending](cfg.QueryTimeout, cfg.Rand, cfg.LateIDs),
	}
	if n.table == nil {
		n.table = routing.NewTable(cfg.ID, cfg.Table)
	} else if n.table.Self() != cfg.ID {
		panic("core: Config.Routing belongs to another id")
	}
	if n.scratch == nil {
		n.scratch = new(Scratch)
	}
	n.maintain = now.Add(time.Duration(n.rnd.Int64N(int64(cfg.MaintainPeriod))) + cfg.MaintainPeriod)
	n.svc = Service{
		ID: cfg.ID, K: cfg.K, Table: n.table, Rand: n.rnd, Scratch: n.scratch,
		// BEP 5: a querier is unproven until it answers a ping of ours,
		// sent on the daemon's schedule (AdmitQueue).
		Hooks: Hooks{Admit: n.admit},
	}
	if h := cfg.Handler; h != nil {
		n.handle = func(q Query, w Writer) { h(n, q, w) }
	}
	return n
}

// ID returns the node's id.
func (n *Node) ID() krpc.ID { return n.id }

// Table returns the node's routing table.
func (n *Node) Table() *routing.Table { return n.table }

// HasItem reports whether the node stores an unexpired BEP 44 item under
// target (for a driver with global knowledge, such as the simulator).
func (n *Node) HasItem(target krpc.ID, now time.Time) bool {
	if n.svc.Items == nil {
		return false
	}
	_, ok := n.svc.Items.Get(target, now)
	return ok
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats { return n.stats }

// PollTransmit returns the next datagram to send, if any.
func (n *Node) PollTransmit() (Transmit, bool) {
	if n.outHead == len(n.outbox) {
		n.outHead = 0
		if cap(n.outbox) > 4 {
			// Give a large backing array back between bursts, to the
			// Scratch, whose nodes take it for their next bursts.
			if sc := n.scratch; len(sc.outboxes) < maxFreeOutboxes {
				sc.outboxes = append(sc.outboxes, n.outbox[:0])
			}
			n.outbox = nil
		} else {
			n.outbox = n.outbox[:0] // keep a small one: most bursts are a packet or two
		}
		return Transmit{}, false
	}
	t := n.outbox[n.outHead]
	n.outbox[n.outHead] = Transmit{}
	n.outHead++
	return t, true
}

// NextTimeout returns when the node next wants HandleTimeout to be called;
// false when it wants no wake-up (Config.NoUpkeep, and nothing pending).
func (n *Node) NextTimeout() (time.Time, bool) {
	next, ok := n.maintain, !n.cfg.NoUpkeep
	if d, has := n.pending.NextDeadline(); has {
		next, ok = earliest(next, ok, d)
	}
	if e, has := n.keepDue.Min(); has {
		next, ok = earliest(next, ok, e.due)
	}
	for _, l := range n.lookups {
		if t, has := l.nextDeadline(); has {
			next, ok = earliest(next, ok, t)
		}
	}
	// A confirmation ping's slot matters only to a node waiting for one:
	// with nobody waiting, passing the short timeout needs no wake-up
	// (admitNext notes it at the next event).
	if n.adm != nil && n.adm.Waiting() > 0 {
		for _, p := range n.admPings {
			next, ok = earliest(next, ok, p.slowAt)
		}
	}
	return next, ok
}

// earliest returns t if next is not set (!ok) or later than t.
func earliest(next time.Time, ok bool, t time.Time) (time.Time, bool) {
	if !ok || t.Before(next) {
		return t, true
	}
	return next, true
}

// HandleTimeout fails the queries whose deadline passed, moves lookups
// past their short timeouts, starts the republish rounds that are due
// (Keep), and runs the table upkeep when it is due.
func (n *Node) HandleTimeout(now time.Time) {
	expired := n.pending.Expire(now, n.expired[:0])
	for i, e := range expired {
		expired[i] = krpc.Expired[pending]{}
		n.stats.Timeouts++
		if n.cfg.Answered == nil || !e.Value.driver {
			n.table.Failed(e.To, now)
		}
		n.ended(now, &e.Value, krpc.OutcomeTimeout)
		e.Value.done(now, nil, ErrTimeout)
		n.admitEnded(now, e.Value.adm)
	}
	if cap(expired) <= 16 {
		n.expired = expired[:0] // keep a small scratch, give a burst's back
	} else {
		n.expired = nil
	}
	if len(n.lookups) > 0 {
		for _, l := range append([]*Lookup(nil), n.lookups...) {
			l.tick(now)
		}
	}
	if n.adm != nil && n.adm.Waiting() > 0 {
		n.admitNext(now) // slots freed by pings past the short timeout
	}
	n.republishDue(now)
	if !n.cfg.NoUpkeep && !now.Before(n.maintain) {
		n.maintain = now.Add(n.cfg.MaintainPeriod)
		n.upkeep(now)
	}
}

// upkeep pings questionable nodes and nodes due a retry, within the
// budget of UpkeepPings and ScalePings, and refreshes buckets unchanged
// for the refresh interval with a find_node for a random id in them (BEP
// 5), or hands those ids to Config.Refresh.
func (n *Node) upkeep(now time.Time) {
	budget := n.cfg.UpkeepPings
	if n.cfg.ScalePings {
		tc := n.table.Config()
		scaled := int64(tc.MaxFailures) * int64(n.table.Len()) * int64(n.cfg.MaintainPeriod) / int64(tc.GoodWindow)
		budget = max(budget, int(scaled))
	}
	for _, ni := range n.table.Questionable(now, budget) {
		n.ping(now, ni.Addr)
	}
	for _, ni := range n.table.Retry(now, n.cfg.UpkeepPings) {
		n.ping(now, ni.Addr) // a bad node that may be back
	}
	if n.cfg.Refresh != nil {
		n.cfg.Refresh(now, n.table.RefreshTargets(now, 0))
		return
	}
	// A simulated node refreshes at most two stale buckets per upkeep and
	// counts the rest refreshed until the next refresh interval, where the
	// daemon looks every one of them up: the simulation's budget. Leaving
	// the rest stale for the next upkeeps (RefreshTargets(now, 2)) costs
	// 7% more events at 100,000 nodes, past the 10 minutes that run has
	// (docs/sim.md, "What the daemon shares, and what it keeps").
	for i, target := range n.table.RefreshTargets(now, 0) {
		if i == 2 {
			break
		}
		n.FindNode(now, n.reseed(target), nil)
	}
}

// reseed redraws the random bits of a refresh target from the node's own
// source, so that a seeded driver gives the same run: the bits up to the
// bucket's boundary are kept (its first bit that differs from our id, or
// the prefix of the last, catch-all bucket).
func (n *Node) reseed(target krpc.ID) krpc.ID {
	keep := routing.CommonPrefixLen(n.id, target) + 1
	if last := n.table.NumBuckets() - 1; keep > last {
		keep = last
	}
	for i := keep; i < 8*krpc.IDLen; i++ {
		bit := byte(0x80) >> (i % 8)
		if n.rnd.Uint32()&1 == 0 {
			target[i/8] &^= bit
		} else {
			target[i/8] |= bit
		}
	}
	return target
}

// HandlePacket takes one datagram from the network.
func (n *Node) HandlePacket(now time.Time, from netip.AddrPort, data []byte) {
	n.stats.Received++
	// The message lives in the scratch until the next packet: the
	// handlers and the callbacks of our queries do not keep it.
	m := &n.scratch.msg
	err := n.scratch.dec.Decode(data, m)
	var be *krpc.BodyError
	if err != nil && !errors.As(err, &be) || m.Y != krpc.KindQuery && m.Y != krpc.KindResponse && m.Y != krpc.KindError {
		n.stats.Dropped++
		if ev := n.cfg.Events; ev != nil {
			ev.Received(krpc.PacketInvalid, len(data))
			ev.Dropped(krpc.DropUndecodable)
		}
		return // no answer to what cannot be decoded: it could amplify
	}
	if ev := n.cfg.Events; ev != nil {
		kind := krpc.PacketQuery
		switch m.Y {
		case krpc.KindResponse:
			kind = krpc.PacketResponse
		case krpc.KindError:
			kind = krpc.PacketError
		}
		ev.Received(kind, len(data))
	}
	switch m.Y {
	case krpc.KindQuery:
		if be != nil {
			// BEP 5, Errors: a query whose envelope decoded but whose
			// body is malformed is answered 203, as krpc.Server answers.
			w := &n.scratch.w
			*w = writer{n: n, to: from, tid: m.T}
			w.Error(krpc.ErrCodeProtocol, be.Err.Error())
			return
		}
		n.query(now, from, m)
	default:
		n.answer(now, from, m, be)
	}
}

// answer matches a response or error to our query by transaction id and
// source address. A malformed answer (be) ends its query with an error
// wrapping be, as krpc.Server does, and teaches the table nothing.
func (n *Node) answer(now time.Time, from netip.AddrPort, m *krpc.Msg, be *krpc.BodyError) {
	p, reason := n.pending.Match(m.T, from)
	if reason != "" {
		n.stats.Dropped++
		if ev := n.cfg.Events; ev != nil {
			ev.Dropped(reason)
		}
		return
	}
	defer n.admitEnded(now, p.adm)
	if be != nil {
		n.ended(now, &p, krpc.OutcomeError)
		p.done(now, nil, fmt.Errorf("core: malformed answer from %s: %w", from, be))
		return
	}
	if h := n.cfg.Answered; h != nil {
		h(now, from, p.method, m, now.Sub(p.sent))
	}
	if m.R == nil {
		// An error answer carries no id: the table is left as it is
		// (the node is alive, but it refused this query).
		err := error(&krpc.Error{Code: krpc.ErrCodeGeneric, Msg: "error reply"})
		if m.E != nil {
			err = m.E
		}
		n.ended(now, &p, krpc.OutcomeError)
		p.done(now, m, err)
		return
	}
	if n.cfg.Answered == nil {
		for _, ni := range n.svc.Answered(from, m, now, now.Sub(p.sent)) {
			n.ping(now, ni.Addr)
		}
	}
	n.ended(now, &p, krpc.OutcomeAnswered)
	p.done(now, m, nil)
}

// ended counts the end of query p with outcome (Config.Events).
func (n *Node) ended(now time.Time, p *pending, outcome string) {
	if ev := n.cfg.Events; ev != nil {
		ev.QueryDone(p.method, outcome, now.Sub(p.sent))
		ev.InFlight(n.pending.Len())
	}
}

// sendQuery sends a query to to and calls done with its answer or error.
// a is encoded before sendQuery returns and not kept.
func (n *Node) sendQuery(now time.Time, to netip.AddrPort, method string, a *krpc.Args,
	done func(now time.Time, m *krpc.Msg, err error)) error {
	_, err := n.send(now, to, method, a, pending{sent: now, done: done})
	return err
}

// Query sends query method with arguments a (a.ID is set to ours; nil is
// none but the id) to
// addr, and calls done with its answer, or with an error: a KRPC error
// answer (*krpc.Error, with m the answer), ErrTimeout, or one wrapping
// krpc.BodyError for a malformed answer. done runs inside a later
// HandlePacket or HandleTimeout, and m is valid only during the call. The
// error Query returns, when the query was not sent, is ErrOverloaded (see
// Config.MaxPending) or the encoding's; done is then not called. A nil
// done hears nothing. a is encoded before Query returns and not kept.
func (n *Node) Query(now time.Time, to netip.AddrPort, method string, a *krpc.Args,
	done func(now time.Time, m *krpc.Msg, err error)) (krpc.TxnHandle, error) {
	if done == nil {
		done = func(time.Time, *krpc.Msg, error) {}
	}
	return n.send(now, to, method, a, pending{sent: now, done: done, driver: true})
}

// Abort ends every query in flight, calling each callback with err: a
// driver that closes (krpc.ErrClosed).
func (n *Node) Abort(now time.Time, err error) {
	for _, e := range n.pending.All(nil) {
		e.Value.done(now, nil, err)
	}
	n.admPings = nil
}

// Cancel ends query h, started by Query, without calling its callback,
// and reports whether it was still awaiting an answer. An answer that
// comes later is dropped as late (Config.LateIDs).
func (n *Node) Cancel(now time.Time, h krpc.TxnHandle) bool {
	p, ok := n.pending.Remove(h, true)
	if ok {
		n.ended(now, &p, krpc.OutcomeCancelled)
	}
	return ok
}

// send is sendQuery with the pending entry given.
func (n *Node) send(now time.Time, to netip.AddrPort, method string, a *krpc.Args, p pending) (krpc.TxnHandle, error) {
	if n.pending.Len() >= n.cfg.MaxPending {
		return krpc.TxnHandle{}, ErrOverloaded
	}
	p.method = method
	h, ok := n.pending.Add(now, to, p)
	if !ok {
		return krpc.TxnHandle{}, ErrOverloaded // every transaction id is out
	}
	if a == nil {
		a = n.queryArgs()
	}
	a.ID = n.id
	m := krpc.Msg{T: h.TID(), Y: krpc.KindQuery, Q: method, A: a, V: n.cfg.ClientVersion}
	if n.cfg.ReadOnly {
		m.RO = 1
	}
	data, err := n.encode(&m)
	if err != nil {
		n.pending.Remove(h, false)
		return krpc.TxnHandle{}, fmt.Errorf("core: encode %s: %w", method, err)
	}
	n.stats.QueriesSent++
	if ev := n.cfg.Events; ev != nil {
		ev.InFlight(n.pending.Len())
	}
	n.push(Transmit{To: to, Data: data, Query: true})
	return h, nil
}

// encode bencodes m into the node's scratch buffer and returns a copy in
// a packet buffer (Scratch.Recycle): at most one allocation per packet,
// where encoding into a fresh buffer grows it once or twice for a reply
// carrying nodes.
func (n *Node) encode(m *krpc.Msg) ([]byte, error) {
	b, err := krpc.AppendEncode(n.scratch.enc[:0], m)
	if err != nil {
		return nil, err
	}
	n.scratch.enc = b[:0]
	return n.scratch.packet(b), nil
}

// queryArgs returns the scratch's Args, cleared, for a query that
// sendQuery encodes at once.
func (n *Node) queryArgs() *krpc.Args {
	a := &n.scratch.args
	*a = krpc.Args{}
	return a
}

// ping sends a ping unless a query to addr is already outstanding.
func (n *Node) ping(now time.Time, addr netip.AddrPort) {
	if n.pending.Busy(addr) {
		return
	}
	_ = n.sendQuery(now, addr, krpc.MethodPing, n.queryArgs(), ignoreAnswer)
}

// ignoreAnswer is the callback of a ping: its outcome reaches the table
// through answer and HandleTimeout.
func ignoreAnswer(time.Time, *krpc.Msg, error) {}

// push queues a datagram for the driver; past maxOutbox it is dropped, as a
// full socket buffer would.
func (n *Node) push(t Transmit) {
	if len(n.outbox)-n.outHead >= maxOutbox {
		n.stats.Dropped++
		return
	}
	n.stats.Sent++
	if len(n.outbox) == cap(n.outbox) && cap(n.outbox) <= 4 {
		if big := takeLast(&n.scratch.outboxes); big != nil {
			// A burst: move to a large array a node gave back.
			big = append(big, n.outbox...)
			clear(n.outbox)
			n.outbox = big
		}
	}
	n.outbox = append(n.outbox, t)
}

// admPing is a confirmation ping in flight, and when it passes the short
// timeout and gives its slot up.
type admPing struct {
	e      *AdmitEntry
	slowAt time.Time
}

// admit is the node's own Service's Hooks.Admit.
func (n *Node) admit(ni krpc.NodeInfo, now time.Time) { n.Admit(ni, false, now) }

// Admit schedules the confirmation ping of ni, a querier the table would
// take (a Service's Hooks.Admit), on the admission schedule (AdmitQueue):
// first among those that proved their address, if proven is set or ni is
// a confirmed entry of the table. The ping's answer admits it.
func (n *Node) Admit(ni krpc.NodeInfo, proven bool, now time.Time) {
	class := AdmitNew
	if e, ok := n.table.Get(ni.ID); proven || ok && e.Addr == ni.Addr && e.Confirmed() {
		class = AdmitProven
	}
	n.offerAdmit(ni, class, now)
	n.admitNext(now)
}

// offerAdmit queues ni in class on the admission schedule, and counts the
// queriers it dropped.
func (n *Node) offerAdmit(ni krpc.NodeInfo, class AdmitClass, now time.Time) {
	if n.adm == nil {
		n.adm = NewAdmitQueue(n.cfg.AdmitPings)
	}
	n.admitDropped(n.adm.Offer(&AdmitEntry{
		Addr: ni.Addr, Subnet: FairnessKey(ni.Addr, n.cfg.LimitLoopback), Bucket: int32(n.table.BucketIndex(ni.ID)),
		Class: class, Heard: now, Queued: now,
	}))
}

// AdmitNamed schedules the confirmation pings of nodes that a lookup's
// answers named and the lookup did not ask (Traversal.AppendUnasked),
// those that one of the table's deepest Config.NamedBuckets buckets would
// take (routing.Table.WantsNamed). They come after every querier
// (AdmitNamed): a name is hearsay, and the ping's answer admits the node.
// A node learns its neighbourhood sooner that way: the deep buckets are
// those whose nodes answer the lookups that end near it (docs/sim.md,
// "Named nodes").
func (n *Node) AdmitNamed(named []krpc.NodeInfo, now time.Time) {
	if n.cfg.NamedBuckets <= 0 || len(named) == 0 {
		return
	}
	offered := false
	for _, ni := range named {
		if n.table.WantsNamed(ni, n.cfg.NamedBuckets, now) {
			n.offerAdmit(ni, AdmitNamed, now)
			offered = true
		}
	}
	if offered {
		n.admitNext(now)
	}
}

// Admitting returns how many queriers wait for or are sent a
// confirmation ping.
func (n *Node) Admitting() int {
	if n.adm == nil {
		return 0
	}
	return n.adm.Len()
}

// admitDropped counts k queriers the schedule dropped (Config.AdmitDropped).
func (n *Node) admitDropped(k int) {
	if k > 0 && n.cfg.AdmitDropped != nil {
		n.cfg.AdmitDropped(k)
	}
}

// admitNext sends the confirmation pings the schedule has slots for. A
// ping holds its slot until it is answered, fails or passes the short
// timeout (admitSlow).
func (n *Node) admitNext(now time.Time) {
	if n.adm == nil {
		return
	}
	n.admitSlow(now)
	for {
		e, expired := n.adm.Next(now)
		n.admitDropped(expired)
		if e == nil {
			return
		}
		// A ping goes out even while another query to the address is out:
		// that one may have been sent while the node was away (a liveness
		// ping of a node that restarted), and its answer would never come.
		// The entry rides on the query (pending.adm): its end, answered
		// or not, ends the ping's turn (admitEnded).
		if _, err := n.send(now, e.Addr, krpc.MethodPing, n.queryArgs(), pending{sent: now, done: ignoreAnswer, adm: e}); err != nil {
			n.adm.Done(e)
			return
		}
		n.admPings = append(n.admPings, admPing{e, now.Add(n.admitTimeout())})
	}
}

// admitTimeout is how long a confirmation ping holds its slot: the short
// timeout (Config.AdmitTimeout, or the lookups'), at least MinAdmitTimeout
// and at most QueryTimeout.
func (n *Node) admitTimeout() time.Duration {
	d := n.slowAfter()
	if f := n.cfg.AdmitTimeout; f != nil {
		d = f()
	}
	return min(n.cfg.QueryTimeout, max(MinAdmitTimeout, d))
}

// admitEnded ends the confirmation ping of e (nil: the query was none)
// and starts the next.
func (n *Node) admitEnded(now time.Time, e *AdmitEntry) {
	if e == nil {
		return
	}
	n.adm.Done(e)
	if i := slices.IndexFunc(n.admPings, func(p admPing) bool { return p.e == e }); i >= 0 {
		n.admPings = slices.Delete(n.admPings, i, i+1)
	}
	n.admitNext(now)
}

// admitSlow frees the slots of the confirmation pings past the short
// timeout (they run on to QueryTimeout).
func (n *Node) admitSlow(now time.Time) {
	n.admPings = slices.DeleteFunc(n.admPings, func(p admPing) bool {
		if now.Before(p.slowAt) {
			return false
		}
		n.adm.Slowed(p.e)
		return true
	})
}
