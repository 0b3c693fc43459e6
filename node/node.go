package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

// Node is a Mainline DHT node. Create it with New; Close stops every
// goroutine it started and closes its socket. Its methods are the
// embedding API (see the package documentation); what only a daemon needs
// is on its Admin handle. A Node is safe for concurrent use.
type Node struct {
	cfg     Config
	id      krpc.ID
	log     *slog.Logger
	clock   krpc.Clock
	srv     *CoreNode      // the protocol core on the socket (corenode.go)
	local   netip.AddrPort // the socket's address
	table   *routing.Table
	tokens  *storage.Tokens
	peers   *storage.PeerStore
	items   *storage.ItemStore
	metrics *metrics.Metrics
	started time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	pingSlots   chan struct{} // bounds the pings answers ask for (pingAsync)
	upkeeping   atomic.Bool   // an upkeep's goroutine runs
	core        *core.Node    // the core, while a handler runs under the driver's lock: set and read there only
	lookupSlots chan struct{} // bounds background lookups
	recent      recentLookups // the last lookups, for the status page (recent.go)
	history     history       // the last hour's rates, for the status page (history.go)
	dbg         debugLines    // rate limit of the per-packet debug lines (debuglog.go)
	rtts        rttWindow     // round trips measured by lookups (lookup.go)

	// State on disk (persist.go); db is nil without Config.DataDir.
	db         *storage.DB
	writeSlots chan struct{} // bounds acknowledgements awaiting a durable write
	dbDeletes  chan dbDelete // evictions to delete from db, bounded
	rejoined   chan struct{} // closed once the saved nodes have been pinged
	storeLog   storageLog    // rate limit of storage error lines (persist.go)
	// svc answers the queries, on the read loop (handlers.go).
	svc *core.Service
	// keepRounds starts the rounds of the Republishers' entries on the
	// core's republish schedule, by id (republish.go).
	keepMu     sync.Mutex
	keepRounds map[core.KeepID]func()

	closeOnce sync.Once
	closeErr  error

	hot    *hotCounters // per-packet counters, resolved once (observe.go)
	owners *owners      // addresses that proved themselves (amplify.go)
	voter  ipVoter      // external address from BEP 42 "ip" votes

	localOnce  sync.Once            // reads localIPSet (lookup.go, isSelf)
	localIPSet map[netip.Addr]bool  // interface addresses, for an unspecified bind
	sibling    atomic.Pointer[Node] // the node of the other address family (Link)
	// onQuery, if set, sees the source and method of every query received,
	// on the read loop (it must not block); a hook of this package's tests.
	onQuery atomic.Pointer[func(from netip.AddrPort, method string)]

	mu          sync.Mutex
	externalIP  netip.Addr       // last decision of voter, for logging changes
	bootstraps  []netip.AddrPort // resolved bootstrap addresses
	bootList    []string         // the configured ones (host:port); SetBootstrap changes it
	limiter     *krpc.IPLimiter  // per-source packet limit (Config.RateLimit)
	replyBudget *krpc.ByteBudget // global reply bytes (Config.ReplyBytesPerSecond)
	lastBoot    time.Time
}

// New opens the socket (unless cfg.Conn is given) and starts serving. It
// does not join the network: call Bootstrap for that.
func New(cfg Config) (*Node, error) {
	cfg.setDefaults()
	switch cfg.BEP42 {
	case routing.BEP42Off, routing.BEP42Enforce:
	case routing.BEP42Prefer:
		// Verified nodes win bucket slots (BEP 42 prefer mode).
		limitLoopback := cfg.LimitLoopback
		cfg.Table.Prefer = func(ni krpc.NodeInfo) bool { return bep42Verifies(limitLoopback, ni.ID, ni.Addr.Addr()) }
	default:
		return nil, fmt.Errorf("bep42 mode %s: want off, prefer or enforce", cfg.BEP42)
	}
	// The database first: a data dir locked by another process must fail
	// before anything is bound.
	db, id, err := openState(&cfg)
	if err != nil {
		return nil, err
	}
	pc := cfg.Conn
	if pc == nil {
		pc, err = net.ListenPacket(udpNetwork(cfg.Listen), cfg.Listen)
		if err != nil {
			if db != nil {
				_ = db.Close()
			}
			return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
	}
	now := cfg.Clock.Now()
	n := &Node{
		cfg:         cfg,
		bootList:    append([]string(nil), cfg.Bootstrap...),
		id:          id,
		log:         cfg.Logger,
		clock:       cfg.Clock,
		table:       routing.NewTable(id, cfg.Table),
		tokens:      newTokens(cfg.TokenRotate, now),
		peers:       storage.NewPeerStore(id, cfg.Peers),
		items:       storage.NewItemStore(id, cfg.Items),
		metrics:     metrics.NewWith(cfg.Registry, metrics.BuildInfo{Version: Version, GoVersion: goVersion()}, cfg.Metrics),
		started:     now,
		local:       krpc.AddrPortOf(pc.LocalAddr()),
		pingSlots:   make(chan struct{}, cfg.MaxBackgroundPings),
		keepRounds:  make(map[core.KeepID]func()),
		lookupSlots: make(chan struct{}, cfg.MaxLookups),
		owners:      newOwners(),
	}
	n.hot = newHotCounters(n.metrics)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.registerSources()
	n.rejoined = make(chan struct{})
	var saved []krpc.NodeInfo
	if db != nil {
		n.db = db
		n.writeSlots = make(chan struct{}, cfg.MaxPendingWrites)
		n.dbDeletes = make(chan dbDelete, deleteQueueLen)
		if saved, err = n.restoreStores(); err != nil {
			n.cancel()
			_ = db.Close()
			if cfg.Conn == nil {
				_ = pc.Close()
			}
			return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
		}
		n.metrics.RegisterDB(n.dbStats)
	}
	n.svc = n.newService()
	// Both limits exist even when switched off, so SetLimits can turn
	// them on in a running node.
	n.limiter = krpc.NewIPLimiter(cfg.RateLimit)
	if cfg.RateLimit.Rate < 0 {
		n.limiter.SetRate(0, 0)
	}
	r := cfg.ReplyBytesPerSecond
	n.replyBudget = krpc.NewByteBudget(float64(r), 2*float64(r))
	if r <= 0 {
		n.replyBudget.SetRate(0, 0)
	}
	// The socket is driven by the protocol core (node/core), which keeps
	// the transaction table and its timeouts, decodes every packet and
	// answers through our handler. It holds our routing table (Routing)
	// and runs its upkeep on its timer: the liveness pings, with our
	// budget (UpkeepPings, ScalePings), and the choice of the stale
	// buckets, which it hands to upkeep to look up with our lookups and
	// metrics. It also pings the queriers the table would take, on its
	// admission schedule, with our slots and short timeout (admission.go).
	// The stores are ours. Answers reach the table through onResponse, our
	// queries' timeouts through queryFailed, and the timeouts of the
	// core's pings from the core. The read loop starts inside StartCore.
	// The handler needs nothing of n.srv: it answers through its writer,
	// now or (a durable write, persist.go) later, and hands the queriers
	// to admit to the core it runs on.
	n.srv = StartCore(pc, CoreConfig{
		Core: core.Config{
			ID: id, Routing: n.table, K: cfg.K, QueryTimeout: cfg.QueryTimeout, IsSelf: n.isSelf,
			ClientVersion: ClientVersion, ReadOnly: cfg.ReadOnly,
			MaxPending: cfg.MaxInFlight, LateIDs: lateIDs,
			MaintainPeriod: cfg.MaintenanceInterval, UpkeepPings: cfg.MaxBackgroundPings, ScalePings: true,
			Refresh: n.upkeep,
			// The Republishers' rounds: timed by the core, run by us.
			RepublishInterval: cfg.RepublishInterval, AnnounceInterval: min(cfg.RepublishInterval, n.peers.Config().TTL/2),
			Republish:  n.republishDue,
			AdmitPings: cfg.MaxBackgroundPings, AdmitTimeout: n.admitTimeout, AdmitDropped: n.admitDropped,
			Handler: func(cn *core.Node, q core.Query, w core.Writer) { n.serve(cn, w, q.Msg) },
		},
		Clock:       cfg.Clock,
		Limiter:     n.limiter,
		ReplyBudget: n.replyBudget,
		Events:      n.serverEvents(),
		Answered:    n.onResponse,
		Logger:      cfg.Logger,
	})
	if n.cfg.HistoryInterval > 0 {
		n.wg.Add(1)
		go func() { // the status page's history (history.go)
			defer n.wg.Done()
			n.every(n.cfg.HistoryInterval, n.sampleHistory)
		}()
	}
	if db != nil {
		n.wg.Add(3)
		go n.deleter()
		go n.persistLoop()
		go n.rejoin(saved)
	} else {
		close(n.rejoined)
	}
	n.log.Info("dht node started", "id", id, "addr", n.srv.Addr())
	return n, nil
}

// lateIDs is how many ids of timed-out queries a node remembers in each of
// two generations, so that an answer after its timeout is counted as late
// (krpc.DropLateResponse), not as unknown.
const lateIDs = 1024

// udpNetwork is the network to bind addr with: "udp4" for an IPv4
// address, "udp6" for an IPv6 one (IPv6 only, even for "[::]", so that an
// IPv4 and an IPv6 node can share a port, BEP 32), "udp" for a host name.
func udpNetwork(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		if ap.Addr().Is4() {
			return "udp4"
		}
		return "udp6"
	}
	return "udp"
}

// ID returns the node id.
func (n *Node) ID() krpc.ID { return n.id }

// Addr returns the local UDP address.
func (n *Node) Addr() netip.AddrPort { return n.local }

// Info returns the node's id and address.
func (n *Node) Info() krpc.NodeInfo { return krpc.NodeInfo{ID: n.id, Addr: n.Addr()} }

// Close stops the node: it cancels lookups, stops the timers, closes the
// socket and waits for every goroutine the node started. With a DataDir it
// then saves the routing table and closes the database; every put and
// announce acknowledged before is on disk. Calling Close again returns the
// first call's result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		err := n.srv.Close()
		n.wg.Wait()
		if n.db != nil {
			// Every durable write has finished (wg); the read loop has
			// stopped, so nothing is queued any more.
			n.drainDeletes()
			n.saveTable()
			if cerr := n.db.Close(); err == nil {
				err = cerr
			}
		}
		n.closeErr = err
	})
	return n.closeErr
}

// query sends one query, waits for its answer, and tells the routing
// table how it went.
func (n *Node) query(ctx context.Context, to netip.AddrPort, method string, a *krpc.Args) (*krpc.Msg, error) {
	m, err := n.srv.Query(ctx, to, method, n.queryArgs(to, method, a))
	if err != nil {
		n.queryFailed(to, method, err)
	}
	return m, err
}

// queryAsync sends one query and returns once it is sent; done gets its
// answer or error (CoreNode.GoWait: on the core's read loop or timer,
// and it must not block), after the routing table has heard how it
// went. It waits for a free slot of MaxInFlight until ctx ends. An error
// means the query was not sent, and done is not called.
func (n *Node) queryAsync(ctx context.Context, to netip.AddrPort, method string, a *krpc.Args, done krpc.Callback) (krpc.Call, error) {
	return n.sendAsync(to, method, a, done, func(a *krpc.Args, cb krpc.Callback) (krpc.Call, error) {
		return n.srv.GoWait(ctx, to, method, a, cb)
	})
}

// queryNow is queryAsync that does not wait for a slot: with MaxInFlight
// queries out it fails with krpc.ErrOverloaded, as it must where waiting
// would stall the read loop (a ping started by an answer).
func (n *Node) queryNow(to netip.AddrPort, method string, a *krpc.Args, done krpc.Callback) (krpc.Call, error) {
	return n.sendAsync(to, method, a, done, func(a *krpc.Args, cb krpc.Callback) (krpc.Call, error) {
		return n.srv.Go(to, method, a, cb)
	})
}

// sendAsync is queryAsync and queryNow, sending through send.
func (n *Node) sendAsync(to netip.AddrPort, method string, a *krpc.Args, done krpc.Callback,
	send func(*krpc.Args, krpc.Callback) (krpc.Call, error)) (krpc.Call, error) {
	c, err := send(n.queryArgs(to, method, a), func(m *krpc.Msg, err error) {
		if err != nil {
			n.queryFailed(to, method, err)
		}
		done(m, err)
	})
	if err != nil {
		n.queryFailed(to, method, err)
	}
	return c, err
}

// ask returns a lookup's queryFunc: query method with arguments a, which
// every query of the lookup shares (each is encoded as it is sent).
func (n *Node) ask(method string, a *krpc.Args) queryFunc {
	return func(ctx context.Context, to netip.AddrPort, done krpc.Callback) (krpc.Call, error) {
		return n.queryAsync(ctx, to, method, a, done)
	}
}

// queryArgs returns a (new empty arguments if nil) with our id.
func (n *Node) queryArgs(to netip.AddrPort, method string, a *krpc.Args) *krpc.Args {
	if a == nil {
		a = &krpc.Args{}
	}
	a.ID = n.id
	n.debugPacket("query sent", "method", method, "to", to)
	return a
}

// queryFailed tells the routing table that a query to to got no answer:
// not when it was refused (a KRPC error: the node is alive), cancelled, or
// cut short by our own end.
func (n *Node) queryFailed(to netip.AddrPort, method string, err error) {
	n.debugPacket("query failed", "method", method, "to", to, "err", err)
	var ke *krpc.Error
	if !errors.As(err, &ke) && !errors.Is(err, context.Canceled) && !errors.Is(err, krpc.ErrClosed) &&
		!errors.Is(err, krpc.ErrOverloaded) {
		n.table.Failed(to, n.clock.Now())
	}
}

// onResponse learns the responder of every matched answer through the
// handlers' core.Service.Answered, as a simulated node does: its address
// is proven, so it may enter the routing table (docs/protocol.md,
// Admission), and its "ip" is a vote for our external address.
func (n *Node) onResponse(from netip.AddrPort, method string, m *krpc.Msg, rtt time.Duration) {
	n.debugPacket("answer received", "method", method, "from", from, "rtt", rtt)
	for _, p := range n.svc.Answered(from, m, n.clock.Now(), rtt) {
		n.pingAsync(p.Addr)
	}
}

// pingAsync pings addr in the background if a slot is free; the answer
// reaches the table through onResponse, a timeout through query.
func (n *Node) pingAsync(addr netip.AddrPort) {
	select {
	case n.pingSlots <- struct{}{}:
	default:
		n.metrics.PacketsDropped.WithLabelValues(metrics.DropQueueFull).Inc()
		return
	}
	n.pingInSlot(addr)
}

// pingInSlot pings addr, in a slot of pingSlots the caller has taken and
// which the ping's end frees; it does not wait for the answer.
func (n *Node) pingInSlot(addr netip.AddrPort) {
	free := func(*krpc.Msg, error) { <-n.pingSlots }
	if _, err := n.queryNow(addr, krpc.MethodPing, nil, free); err != nil {
		free(nil, err)
	}
}

// Ping sends one ping and returns the responder's id and the round trip.
// Its error wraps ErrNoAnswer if the node did not answer in time, and
// ErrRefused if it answered with a KRPC error.
func (n *Node) Ping(ctx context.Context, addr netip.AddrPort) (krpc.ID, time.Duration, error) {
	start := n.clock.Now()
	m, err := n.query(ctx, addr, krpc.MethodPing, nil)
	var ke *krpc.Error
	switch {
	case err == nil:
	case errors.Is(err, krpc.ErrTimeout):
		return krpc.ID{}, 0, withKind(ErrNoAnswer, err)
	case errors.As(err, &ke):
		return krpc.ID{}, 0, withKind(ErrRefused, err)
	default:
		return krpc.ID{}, 0, err
	}
	return m.R.ID, n.clock.Now().Sub(start), nil
}

// FindNode runs an iterative find_node lookup for target and returns the K
// closest nodes that answered. Its error wraps ErrNoNodes if there was
// nobody to ask, ErrNoAnswer if nobody answered.
func (n *Node) FindNode(ctx context.Context, target krpc.ID) (LookupResult, error) {
	return n.lookup(ctx, metrics.LookupFindNode, target, n.ask(krpc.MethodFindNode, &krpc.Args{Target: &target}), nil)
}

// lookup runs a traversal seeded from the routing table (and the bootstrap
// addresses when the table knows fewer than 3 nodes; practice, libtorrent).
func (n *Node) lookup(ctx context.Context, kind string, target krpc.ID, q queryFunc,
	onReply func(krpc.NodeInfo, *krpc.Msg) bool) (LookupResult, error) {
	// The overall bound runs on the node's clock, as every other timer does,
	// so a simulated clock bounds simulated lookups.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	bound := n.clock.AfterFunc(n.cfg.LookupTimeout, func() { cancel(errLookupTimeout) })
	defer bound.Stop()
	start := n.clock.Now()
	t := newTraversal(core.TraversalConfig{
		Self: n.id, Target: target, K: n.cfg.K, Alpha: n.cfg.Alpha,
		MaxPerSubnet: n.cfg.LookupMaxPerSubnet, LimitLoopback: n.cfg.LimitLoopback,
		Retry:  true,
		Verify: n.idVerifier(),
		Prefer: n.idPreference(),
		Reach:  n.canReach,
		IsSelf: n.isSelf,
	}, q, n.clock, &n.rtts)
	t.onReply = onReply
	// 2K seeds: with only K, a lookup whose K closest are all in our
	// table and some of them silent runs out of candidates and waits for
	// the silent ones' full timeout.
	for _, c := range n.table.Closest(target, 2*n.cfg.K) {
		t.Seed(c)
	}
	if t.Len() < 3 {
		for _, a := range n.bootstrapAddrs() {
			t.SeedAddr(a)
		}
	}
	if t.Len() == 0 {
		n.metrics.Lookups.WithLabelValues(kind, metrics.LookupFailed).Inc()
		return LookupResult{Target: target}, fmt.Errorf("lookup %s %s: %w and no bootstrap addresses", kind, target, ErrNoNodes)
	}
	res := t.run(ctx)
	res.Elapsed = n.clock.Now().Sub(start)
	// The nodes the answers named and the lookup did not ask: the deep
	// buckets take them once they answer a ping (core.Node.AdmitNamed).
	if named := t.AppendUnasked(nil); len(named) > 0 && n.srv != nil {
		n.srv.Do(func(cn *core.Node, now time.Time) { cn.AdmitNamed(named, now) })
	}
	outcome := metrics.LookupOK
	switch {
	case len(res.Closest) == 0:
		outcome = metrics.LookupFailed
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled):
		outcome = metrics.LookupCancelled
	}
	n.metrics.Lookups.WithLabelValues(kind, outcome).Inc()
	n.metrics.LookupDuration.WithLabelValues(kind).Observe(res.Elapsed.Seconds())
	n.metrics.LookupQueries.WithLabelValues(kind).Observe(float64(res.Queried))
	n.recordLookup(kind, outcome, res)
	if len(res.Closest) == 0 {
		return res, fmt.Errorf("lookup %s %s: %w (%d queried)", kind, target, ErrNoAnswer, res.Queried)
	}
	return res, nil
}

// bootstrapAddrs returns the resolved bootstrap addresses.
func (n *Node) bootstrapAddrs() []netip.AddrPort {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]netip.AddrPort(nil), n.bootstraps...)
}

// resolve turns the configured bootstrap "host:port" strings into
// addresses; names are looked up in the families our socket reaches (BEP
// 32: A records for an IPv4 node, AAAA for an IPv6 one). Unresolvable
// entries, and addresses our socket cannot reach, are logged and skipped.
func (n *Node) resolve(ctx context.Context) []netip.AddrPort {
	var out []netip.AddrPort
	network := "ip"
	switch v4, v6 := n.canReach(netip.IPv4Unspecified()), n.canReach(netip.IPv6Loopback()); {
	case v4 && !v6:
		network = "ip4"
	case v6 && !v4:
		network = "ip6"
	}
	for _, hp := range n.bootstrapList() {
		if ap, err := netip.ParseAddrPort(hp); err == nil {
			if !n.canReach(ap.Addr()) {
				n.log.Debug("bootstrap address of another family skipped", "addr", hp)
				continue
			}
			out = append(out, ap)
			continue
		}
		host, portStr, err := net.SplitHostPort(hp)
		if err != nil {
			n.log.Warn("bootstrap address", "addr", hp, "err", err)
			continue
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || port == 0 {
			n.log.Warn("bootstrap port", "addr", hp, "err", err)
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, network, host)
		if err != nil {
			n.log.Warn("resolve bootstrap", "host", host, "err", err)
			continue
		}
		for _, ip := range ips {
			out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
		}
	}
	return out
}

// Bootstrap joins the network (BEP 5, docs/protocol.md, Bootstrap): it resolves the
// bootstrap addresses, looks up our own id, then refreshes every bucket
// that is not full. It returns once that is done.
func (n *Node) Bootstrap(ctx context.Context) error {
	// A restarted node first pings the nodes it saved (rejoin).
	select {
	case <-n.rejoined:
	case <-ctx.Done():
		return fmt.Errorf("bootstrap: %w", ctx.Err())
	}
	addrs := n.resolve(ctx)
	n.mu.Lock()
	if len(addrs) > 0 {
		n.bootstraps = addrs
	}
	n.lastBoot = n.clock.Now()
	n.mu.Unlock()
	res, err := n.lookup(ctx, metrics.LookupBootstrap, n.id, n.ask(krpc.MethodFindNode, &krpc.Args{Target: &n.id}), nil)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	n.log.Info("bootstrap done", "closest", len(res.Closest), "queried", res.Queried, "table", n.table.Len())
	// Probes of each bucket with room (core.Config.BucketProbes queries
	// each), whose named nodes the bucket takes once they answer a ping
	// (core.Node.ProbeBuckets); then a lookup in each.
	if n.srv != nil {
		n.srv.Do(func(cn *core.Node, now time.Time) { cn.ProbeBuckets(now) })
	}
	// err is nil: res.Closest holds at least one node.
	n.refreshBuckets(ctx, n.table.FillTargets(routing.FillDepth(n.id, res.Closest[len(res.Closest)-1].Node.ID)))
	return nil
}

// refreshBuckets looks up each of targets (random ids in buckets that are
// stale or not full), one lookup at a time.
func (n *Node) refreshBuckets(ctx context.Context, targets []krpc.ID) {
	for _, t := range targets {
		if ctx.Err() != nil {
			return
		}
		target := t
		_, _ = n.lookup(ctx, metrics.LookupRefresh, target, n.ask(krpc.MethodFindNode, &krpc.Args{Target: &target}), nil)
	}
}

// upkeep is the rest of the core's upkeep, every MaintenanceInterval
// once the core has pinged the questionable nodes (the liveness timer):
// it expires stored data and looks up the targets of the stale buckets,
// or bootstraps again when the table has run dry. The core calls it
// holding the driver's lock, so the work runs on a goroutine of its own,
// one at a time: while the last one's lookups run, the next is skipped.
func (n *Node) upkeep(now time.Time, stale []krpc.ID) {
	if !n.upkeeping.CompareAndSwap(false, true) {
		return
	}
	n.wg.Add(1) // before Close waits: the core calls us only until it closes
	go func() {
		defer n.wg.Done()
		defer n.upkeeping.Store(false)
		n.peers.Expire(now)
		n.items.Expire(now)
		good, _, _ := n.table.Counts(now)
		n.mu.Lock()
		reboot := good < 2 && len(n.bootList) > 0 && now.Sub(n.lastBoot) > 5*n.cfg.MaintenanceInterval
		n.mu.Unlock()
		if reboot {
			_ = n.Bootstrap(n.ctx)
		} else {
			n.refreshBuckets(n.ctx, stale)
		}
	}()
}

// every calls fn every d on the node's clock, one call at a time (the next
// wait starts when fn returns), until the node closes. It runs on the
// caller's goroutine.
func (n *Node) every(d time.Duration, fn func()) {
	tick := make(chan struct{}, 1)
	var timer krpc.Timer
	arm := func() {
		timer = n.clock.AfterFunc(d, func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
	}
	arm()
	defer func() { timer.Stop() }()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick:
		}
		fn()
		arm()
	}
}

// newTokens returns the write tokens, their secret rotated every rotate
// (zero: storage.DefaultTokenRotate).
func newTokens(rotate time.Duration, now time.Time) *storage.Tokens {
	t := storage.NewTokens(nil, now)
	t.Rotate = rotate
	return t
}
