package node

// Fault and churn tests on the simulated network (krpc/simnet), in
// virtual time: each test runs inside a testing/synctest bubble, where
// the nodes use the system clock, which the bubble makes virtual. Time
// moves only when every goroutine of the bubble is blocked (on a channel,
// a timer, a select): packet delays, query timeouts and hour-long timers
// (liveness, refresh, republish, expiry) all pass in no wall time, and a
// busy machine changes how long a test takes, not what it measures.
// Waiting out simulated time is a plain time.Sleep; synctest.Wait lets
// what a step started finish.
//
// Every node gets its own /24 (10.a.b.1), so the anti-Sybil address limits
// apply as on the Internet. MaintenanceInterval is 4-6 min, different for
// each node, so the nodes' timers drift apart as real nodes' do.

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

const (
	// simMaintenance is the shortest MaintenanceInterval of a simulated
	// node; each node adds a random part of up to simMaintenance/2, so that
	// the nodes' timers drift apart as real nodes' do instead of firing all
	// together.
	simMaintenance = 4 * time.Minute
	simTimeout     = time.Second // QueryTimeout of simulated nodes
)

// simCluster is a set of nodes on one simulated network.
type simCluster struct {
	t   testing.TB
	net *simnet.Network
	rnd *rand.Rand

	mu    sync.Mutex
	nodes []*Node // live nodes
	seq   int     // addresses handed out
}

// newSim returns an empty cluster on a new Network (1ms ± 1ms latency
// unless cfg says otherwise), seeded with seed; the test's cleanup closes
// every live node and the network. Called inside a synctest bubble,
// everything runs in virtual time; outside one (benchmarks, which synctest
// does not take), in real time.
func newSim(t testing.TB, seed uint64, cfg simnet.Config) *simCluster {
	t.Helper()
	if cfg.Latency == 0 {
		cfg.Latency, cfg.Jitter = time.Millisecond, time.Millisecond
	}
	cfg.Seed = seed
	s := &simCluster{t: t, net: simnet.New(cfg), rnd: rand.New(rand.NewPCG(seed, 77))}
	t.Cleanup(func() {
		s.mu.Lock()
		nodes := s.nodes
		s.mu.Unlock()
		parallel(len(nodes), 32, func(i int) { nodes[i].Close() })
		s.net.Close()
		// testing keeps a run's cleanup functions reachable after they
		// ran, and this one holds s: let the network and its nodes go, or
		// a benchmark's next -count run starts with this one's heap live
		// (hundreds of MB at 1,000 nodes) and pays for marking it.
		s.mu.Lock()
		s.nodes, s.net = nil, nil
		s.mu.Unlock()
	})
	return s
}

// newPair returns a cluster on a new Network (see newSim, default
// config) with two fresh nodes started on it, neither bootstrapped.
func newPair(t testing.TB, seed uint64) (s *simCluster, a, b *Node) {
	t.Helper()
	s = newSim(t, seed, simnet.Config{})
	return s, s.start(s.newID(), s.newAddr(), nil), s.start(s.newID(), s.newAddr(), nil)
}

// newAddr returns an address no node has had: a /24 of its own.
func (s *simCluster) newAddr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(s.seq >> 8), byte(s.seq), 1}), 6881)
}

// start starts a node with id at addr that bootstraps through boot; it
// does not run Bootstrap.
func (s *simCluster) start(id krpc.ID, addr netip.AddrPort, boot []netip.AddrPort) *Node {
	s.t.Helper()
	return s.startWith(id, addr, boot, nil)
}

// startWith is start with mod, if not nil, applied to the node's Config
// last.
func (s *simCluster) startWith(id krpc.ID, addr netip.AddrPort, boot []netip.AddrPort, mod func(*Config)) *Node {
	s.t.Helper()
	conn, err := s.net.Listen(addr)
	if err != nil {
		s.t.Fatalf("listen %s: %v", addr, err)
	}
	cfg := LoopbackConfig()
	cfg.ID, cfg.Conn = id, conn // the system clock: virtual in a bubble
	cfg.QueryTimeout = simTimeout
	cfg.HistoryInterval = -1 // no status page here
	s.mu.Lock()
	cfg.MaintenanceInterval = simMaintenance + time.Duration(s.rnd.Int64N(int64(simMaintenance/2)))
	s.mu.Unlock()
	for _, b := range boot {
		cfg.Bootstrap = append(cfg.Bootstrap, b.String())
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		s.t.Fatalf("start node %s: %v", addr, err)
	}
	s.mu.Lock()
	s.nodes = append(s.nodes, n)
	s.mu.Unlock()
	return n
}

// live returns the live nodes.
func (s *simCluster) live() []*Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Node(nil), s.nodes...)
}

// randomLive returns a random live node.
func (s *simCluster) randomLive() *Node {
	nodes := s.live()
	s.mu.Lock()
	defer s.mu.Unlock()
	return nodes[s.rnd.IntN(len(nodes))]
}

// newID draws a node id from the cluster's seeded source.
func (s *simCluster) newID() krpc.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return randomID(s.rnd)
}

// grow starts count nodes, each bootstrapping through up to three random
// live nodes (the first node of an empty cluster has none), and waits for
// their Bootstrap.
func (s *simCluster) grow(ctx context.Context, count int) []*Node {
	s.t.Helper()
	if len(s.live()) == 0 {
		s.start(s.newID(), s.newAddr(), nil)
		count--
	}
	var fresh []*Node
	for range count {
		var boot []netip.AddrPort
		for range 3 {
			boot = append(boot, s.randomLive().Addr())
		}
		fresh = append(fresh, s.start(s.newID(), s.newAddr(), boot))
	}
	// A joiner whose bootstrap found no answer tries again, as the
	// daemon does (three attempts in all): 32 joining at once on a busy
	// machine can see all three of their bootstrap nodes time out.
	var failed sync.Map
	parallel(len(fresh), 32, func(i int) {
		var err error
		for range 3 {
			if err = fresh[i].Bootstrap(ctx); err == nil || ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			failed.Store(i, err)
		}
	})
	failed.Range(func(k, v any) bool {
		s.t.Errorf("bootstrap of node %d: %v", k, v)
		return true
	})
	return fresh
}

// remove closes n and forgets it.
func (s *simCluster) remove(n *Node) {
	n.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range s.nodes {
		if m == n {
			s.nodes = append(s.nodes[:i], s.nodes[i+1:]...)
			return
		}
	}
}

// advance lets total of simulated time pass: the nodes' maintenance
// (liveness pings, bucket refresh, expiry) and republish timers run as they
// come due. It returns once what the last of them started has finished or
// waits on a timer. Only inside a bubble.
func (s *simCluster) advance(total time.Duration) {
	s.t.Helper()
	time.Sleep(total)
	synctest.Wait()
}

// settle waits for the network to be quiet for quiet of simulated time
// (no packet sent, none in flight): what a step set off has played out.
func (s *simCluster) settle(quiet time.Duration) {
	s.t.Helper()
	if err := s.net.WaitQuiet(context.Background(), quiet); err != nil {
		s.t.Fatalf("waiting for the network to settle: %v", err)
	}
}

// infos returns the id and address of every live node.
func (s *simCluster) infos() []krpc.NodeInfo {
	var all []krpc.NodeInfo
	for _, n := range s.live() {
		all = append(all, n.Info())
	}
	return all
}

// TestSimLookupLoss: on a simNodes network with 20% packet loss on every
// link (each way, so a query and its answer get through 64% of the time),
// get lookups still find stored items. The success rate is the share of
// Get calls, from random nodes, that return the item; it must be >= 95%.
// find_node quality under loss is logged too.
func TestSimLookupLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	synctest.Test(t, testSimLookupLoss)
}

func testSimLookupLoss(t *testing.T) {
	const items, gets, finds, loss = 50, 200, 100, 0.2
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // simulated
	defer cancel()
	start := time.Now()
	s := newSim(t, 1, simnet.Config{})
	s.grow(ctx, simNodes)
	t.Logf("%d nodes bootstrapped in %v (simulated)", simNodes, time.Since(start).Round(time.Millisecond))

	// items stored without loss
	targets := make([]krpc.ID, items)
	values := make([]string, items)
	parallel(items, 16, func(i int) {
		v := fmt.Sprintf("%d:%s", len(fmt.Sprintf("lossy item %03d", i)), fmt.Sprintf("lossy item %03d", i))
		values[i] = v
		pr, err := s.live()[i*7%simNodes].PutImmutable(ctx, []byte(v))
		if err != nil {
			t.Errorf("put %d: %v", i, err)
		}
		targets[i] = pr.Target
	})
	if t.Failed() {
		t.FailNow()
	}

	s.net.SetLoss(loss)
	before := s.net.Stats()
	lookupStart := time.Now()
	type job struct {
		from *Node
		item int
	}
	jobs := make([]job, gets)
	for i := range jobs {
		jobs[i] = job{s.randomLive(), i % items}
	}
	var mu sync.Mutex
	ok := 0
	parallel(gets, 32, func(i int) {
		gr, err := jobs[i].from.Get(ctx, targets[jobs[i].item], GetOptions{})
		mu.Lock()
		defer mu.Unlock()
		if err == nil && string(gr.Item.V) == values[jobs[i].item] {
			ok++
		}
	})
	getElapsed := time.Since(lookupStart)

	// find_node for random targets: overlap with the true 8 closest.
	all := s.infos()
	froms := make([]*Node, finds)
	ftargets := make([]krpc.ID, finds)
	for i := range froms {
		froms[i], ftargets[i] = s.randomLive(), s.newID()
	}
	var overlap, top1, findOK int
	parallel(finds, 32, func(i int) {
		res, err := froms[i].FindNode(ctx, ftargets[i])
		want := trueClosest(all, ftargets[i], 8, froms[i].ID())
		got := make(map[krpc.ID]bool)
		for _, f := range res.Closest {
			got[f.Node.ID] = true
		}
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			findOK++
		}
		for j, id := range want {
			if got[id] {
				overlap++
				if j == 0 {
					top1++
				}
			}
		}
	})
	after := s.net.Stats()
	sent := after.Sent - before.Sent
	lost := after.Dropped[simnet.DropLoss] - before.Dropped[simnet.DropLoss]
	rate := float64(ok) / gets
	t.Logf("loss %.0f%% configured, %.1f%% of %d packets measured", 100*loss, 100*float64(lost)/float64(sent), sent)
	t.Logf("lookup success with 20%% loss: %d/%d gets found the item (%.1f%%) in %v",
		ok, gets, 100*rate, getElapsed.Round(time.Millisecond))
	t.Logf("find_node with 20%% loss: %d/%d returned nodes; %.1f%% of the true 8 closest found, true closest found in %d/%d",
		findOK, finds, 100*float64(overlap)/float64(8*finds), top1, finds)
	if rate < 0.95 {
		t.Errorf("lookup success %.1f%% with 20%% loss, want >= 95%%", 100*rate)
	}
	if findOK < finds*95/100 {
		t.Errorf("only %d/%d find_node lookups returned nodes with 20%% loss", findOK, finds)
	}
}

// holders returns how many of the k live nodes closest to target hold the
// item, and how many of those k are in fresh.
func holders(s *simCluster, all []krpc.NodeInfo, byID map[krpc.ID]*Node, target krpc.ID, fresh map[krpc.ID]bool) (held, freshTotal, freshHeld int) {
	now := time.Now()
	for _, id := range trueClosest(all, target, 8, krpc.ID{}) {
		_, ok := byID[id].items.Get(target, now)
		if ok {
			held++
		}
		if fresh[id] {
			freshTotal++
			if ok {
				freshHeld++
			}
		}
	}
	return held, freshTotal, freshHeld
}

// TestSimChurnSurvival is the churn-survival simulation (at full size
// without -race, see sim_size_*_test.go): on a simNodes network, simItems
// items (half immutable, half mutable, half of those salted) are put
// through Republishers on 20 publisher nodes; then as many new nodes join
// as 30% of the network and 30% of the first nodes leave, and the
// simulated clock moves one republish interval (1h, during which the
// nodes' maintenance runs). Every item must then be found by a
// Get from a random surviving node (survival 100%), with the value and,
// for mutable items, the seq and signature first put; and the nodes that
// became responsible for an item (the K closest live nodes, among them
// new nodes) must hold it. The same holds for peers announced through the
// Republishers (re-announced every 15 min).
//
// Publishers are drawn from the nodes that stay: republishing is the
// publisher's job (BEP 44), and an item whose publisher left lives only
// until its copies expire.
func TestSimChurnSurvival(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	synctest.Test(t, testSimChurnSurvival)
}

func testSimChurnSurvival(t *testing.T) {
	const publishers = 20
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour) // simulated
	defer cancel()
	start := time.Now()
	s := newSim(t, 2, simnet.Config{})
	s.grow(ctx, simNodes)
	t.Logf("%d nodes bootstrapped in %v (simulated)", simNodes, time.Since(start).Round(time.Millisecond))

	// Publishers and their Republishers.
	nodes := s.live()
	perm := s.rnd.Perm(len(nodes))
	pubs := make([]*Node, publishers)
	reps := make([]*Republisher, publishers)
	type round struct {
		target  krpc.ID
		outcome string
	}
	rounds := make(chan round, 10*simItems)
	for i := range pubs {
		pubs[i] = nodes[perm[i]]
		reps[i] = NewRepublisher(pubs[i])
		reps[i].onRound = func(target krpc.ID, outcome string, err error) {
			if err != nil {
				t.Logf("republish %s: %s: %v", target, outcome, err)
			}
			rounds <- round{target, outcome}
		}
		t.Cleanup(reps[i].Close)
	}

	type item struct {
		target krpc.ID
		v      string
		salt   []byte
		seq    int64
		sig    []byte
	}
	items := make([]item, simItems)
	keys := make([]ed25519.PrivateKey, simItems)
	for i := range keys {
		seed := make([]byte, ed25519.SeedSize)
		for j := range seed {
			seed[j] = byte(s.rnd.UintN(256))
		}
		keys[i] = ed25519.NewKeyFromSeed(seed)
	}
	putStart := time.Now()
	parallel(simItems, 16, func(i int) {
		r := reps[i%publishers]
		body := fmt.Sprintf("churn item %03d", i)
		v := fmt.Sprintf("%d:%s", len(body), body)
		it := item{v: v}
		if i%2 == 0 {
			pr, err := r.PutImmutable(ctx, []byte(v))
			if err != nil {
				t.Errorf("put immutable %d: %v", i, err)
				return
			}
			it.target = pr.Target
		} else {
			if i%4 == 1 {
				it.salt = []byte(fmt.Sprintf("salt-%d", i))
			}
			pr, err := r.PutMutable(ctx, keys[i], []byte(v), PutOptions{Salt: it.salt})
			if err != nil {
				t.Errorf("put mutable %d: %v", i, err)
				return
			}
			it.target, it.seq = pr.Target, pr.Seq
			it.sig = storage.SignMutable(keys[i], it.salt, pr.Seq, []byte(v))
		}
		items[i] = it
	})
	if t.Failed() {
		t.FailNow()
	}
	isItem := make(map[krpc.ID]bool)
	for _, it := range items {
		isItem[it.target] = true
	}

	// Peers: simItems/5 infohashes, each announced (and kept announced)
	// by a publisher on its own port.
	ihs := make([]krpc.ID, simItems/5)
	wantPeer := make([]netip.AddrPort, len(ihs))
	for i := range ihs {
		ihs[i] = s.newID()
	}
	parallel(len(ihs), 16, func(i int) {
		r := reps[i%publishers]
		port := 20000 + i
		if _, err := r.Announce(ctx, ihs[i], AnnounceOptions{Port: port}); err != nil {
			t.Errorf("announce %d: %v", i, err)
		}
		wantPeer[i] = netip.AddrPortFrom(pubs[i%publishers].Addr().Addr(), uint16(port))
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d items put and %d infohashes announced in %v (simulated)", simItems, len(ihs), time.Since(putStart).Round(time.Millisecond))

	// Churn: as many nodes join as 30% of the first ones, then those 30%
	// leave (publishers stay). Joining first keeps the new nodes' bootstrap
	// fast (a lookup through dead nodes waits out their timeouts); the
	// departures then leave every table, old and new, full of dead nodes
	// for the liveness checks to clear during the interval.
	churnStart := time.Now()
	churn := simNodes * 30 / 100
	fresh := make(map[krpc.ID]bool)
	for _, n := range s.grow(ctx, churn) {
		fresh[n.ID()] = true
	}
	var leaving []*Node
	for _, i := range perm[publishers:] {
		if len(leaving) == churn {
			break
		}
		leaving = append(leaving, nodes[i])
	}
	parallel(len(leaving), 32, func(i int) { s.remove(leaving[i]) })
	t.Logf("churn: %d nodes joined, %d left, %d live, in %v (simulated)", churn, len(leaving), len(s.live()), time.Since(churnStart).Round(time.Millisecond))

	t.Logf("network stats before the interval: %+v", s.net.Stats())
	// One republish interval on the simulated clock.
	churnEnd := time.Now()
	s.advance(pubs[0].cfg.RepublishInterval)
	// Wait for every item's round (announces repeat every 15 min, so
	// theirs have run several times by now).
	outcomes, announceOutcomes := make(map[string]int), make(map[string]int)
	for itemRounds := make(map[krpc.ID]bool); len(itemRounds) < simItems; {
		select {
		case r := <-rounds:
			if isItem[r.target] {
				itemRounds[r.target] = true
				outcomes[r.outcome]++
			} else {
				announceOutcomes[r.outcome]++
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d items had a republish round: %v", len(itemRounds), simItems, outcomes)
		}
	}
	s.settle(time.Second)
	t.Logf("network stats after the interval: %+v", s.net.Stats())
	t.Logf("one republish interval simulated: %v; item rounds %v, announce rounds %v",
		time.Since(churnEnd).Round(time.Millisecond), outcomes, announceOutcomes)

	// Survival: every item from a random surviving node.
	getStart := time.Now()
	all := s.infos()
	byID := make(map[krpc.ID]*Node)
	for _, n := range s.live() {
		byID[n.ID()] = n
	}
	var mu sync.Mutex
	found := 0
	var heldSum, freshTotal, freshHeld int
	var heldMin = 8
	parallel(simItems, 16, func(i int) {
		it := items[i]
		var salt []byte
		if it.sig != nil {
			salt = it.salt
		}
		gr, err := s.randomLive().Get(ctx, it.target, GetOptions{Salt: salt})
		good := err == nil && string(gr.Item.V) == it.v
		if it.sig != nil {
			good = good && gr.Item.Seq == it.seq && string(gr.Item.Sig) == string(it.sig)
		}
		h, ft, fh := holders(s, all, byID, it.target, fresh)
		mu.Lock()
		defer mu.Unlock()
		if good {
			found++
		} else {
			t.Errorf("item %d (%s) lost: %v, got %q seq %d", i, it.target, err, gr.Item.V, gr.Item.Seq)
		}
		heldSum += h
		heldMin = min(heldMin, h)
		freshTotal += ft
		freshHeld += fh
	})
	survival := float64(found) / simItems
	t.Logf("%d gets in %v (simulated)", simItems, time.Since(getStart).Round(time.Millisecond))
	t.Logf("survival after 30%% churn and one republish interval: %d/%d items found (%.1f%%)", found, simItems, 100*survival)
	t.Logf("responsibility: the 8 closest live nodes hold %.1f%% of the copies (worst item %d/8); new nodes among them hold %d/%d",
		100*float64(heldSum)/float64(8*simItems), heldMin, freshHeld, freshTotal)
	if survival < 1 {
		t.Fatalf("survival %.1f%%, want 100%%", 100*survival)
	}
	if heldSum < 8*simItems*9/10 || heldMin < 4 {
		t.Errorf("the 8 closest live nodes hold %d of %d copies (worst item %d), want >= 90%% and >= 4 each", heldSum, 8*simItems, heldMin)
	}
	if freshTotal == 0 || freshHeld < freshTotal*9/10 {
		t.Errorf("new nodes among the 8 closest hold %d of %d, want >= 90%%", freshHeld, freshTotal)
	}

	// Peers: every announce from a random surviving node, and on the 8
	// closest live nodes.
	peersFound, peerHeld, peerFreshTotal, peerFreshHeld := 0, 0, 0, 0
	now := time.Now()
	parallel(len(ihs), 16, func(i int) {
		pr, err := s.randomLive().GetPeers(ctx, ihs[i], nil)
		ok := err == nil && slices.Contains(pr.Peers, wantPeer[i])
		held, ft, fh := 0, 0, 0
		for _, id := range trueClosest(all, ihs[i], 8, krpc.ID{}) {
			has := false
			byID[id].peers.Each(ihs[i], now, func(a netip.AddrPort, _ bool) { has = has || a == wantPeer[i] })
			if has {
				held++
			}
			if fresh[id] {
				ft++
				if has {
					fh++
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if ok {
			peersFound++
		} else {
			t.Errorf("peer %s of infohash %d not found: %v (got %v)", wantPeer[i], i, err, pr.Peers)
		}
		peerHeld += held
		peerFreshTotal += ft
		peerFreshHeld += fh
	})
	t.Logf("peer survival: %d/%d announced peers found; the 8 closest live nodes hold %.1f%% of them; new nodes among them hold %d/%d",
		peersFound, len(ihs), 100*float64(peerHeld)/float64(8*len(ihs)), peerFreshHeld, peerFreshTotal)
	if peerHeld < 8*len(ihs)*9/10 || peerFreshHeld < peerFreshTotal*9/10 {
		t.Errorf("the 8 closest live nodes hold %d of %d peers (new nodes %d of %d), want >= 90%%",
			peerHeld, 8*len(ihs), peerFreshHeld, peerFreshTotal)
	}
}

// stateIn returns the state of id in n's table, and whether it is there
// (live) at addr.
func stateIn(n *Node, id krpc.ID, addr netip.AddrPort, now time.Time) (routing.State, bool) {
	e, ok := n.table.Get(id)
	if !ok || e.Addr != addr {
		return 0, false
	}
	return e.State(now), true
}

// TestSimRestartSameID: a node that goes away is marked bad (or replaced)
// by the liveness checks of the nodes that had it; restarted under the
// same id at the same address, it is re-admitted: after it bootstraps and
// a refresh interval passes, at least half of the nodes that had it hold
// it as good again, its 8 closest nodes all do, and find_node for its id
// from random nodes finds it every time.
func TestSimRestartSameID(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	synctest.Test(t, testSimRestartSameID)
}

func testSimRestartSameID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour) // simulated
	defer cancel()
	s := newSim(t, 4, simnet.Config{})
	s.grow(ctx, 100)
	x := s.randomLive()
	id, addr := x.ID(), x.Addr()
	var had []*Node
	for _, n := range s.live() {
		if _, ok := stateIn(n, id, addr, time.Now()); ok && n != x {
			had = append(had, n)
		}
	}
	if len(had) < 8 {
		t.Fatalf("only %d nodes have the node in their table", len(had))
	}

	s.remove(x)
	s.advance(30 * time.Minute) // past the good window: liveness pings fail
	noticed := 0
	for _, n := range had {
		if st, ok := stateIn(n, id, addr, time.Now()); !ok || st == routing.Bad {
			noticed++
		}
	}
	t.Logf("node down for 30 min: %d of the %d nodes that had it hold it as bad or dropped it", noticed, len(had))
	if noticed < len(had)*8/10 {
		t.Errorf("only %d of %d nodes noticed the node was gone", noticed, len(had))
	}

	x = s.start(id, addr, []netip.AddrPort{s.randomLive().Addr()})
	if err := x.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap after restart: %v", err)
	}
	s.advance(20 * time.Minute) // a refresh interval and then some

	now := time.Now()
	holding, good := 0, 0
	for _, n := range s.live() {
		if st, ok := stateIn(n, id, addr, now); ok && n != x {
			holding++
			if st == routing.Good {
				good++
			}
		}
	}
	closeGood := 0
	all := s.infos()
	byID := make(map[krpc.ID]*Node)
	for _, n := range s.live() {
		byID[n.ID()] = n
	}
	for _, cid := range trueClosest(all, id, 8, id) {
		if st, ok := stateIn(byID[cid], id, addr, now); ok && st == routing.Good {
			closeGood++
		}
	}
	foundIt := 0
	const finds = 20
	for range finds {
		res, err := s.randomLive().FindNode(ctx, id)
		if err == nil && len(res.Closest) > 0 && res.Closest[0].Node.ID == id {
			foundIt++
		}
	}
	t.Logf("after restart: %d nodes hold it (%d before it left), %d as good; %d/8 of its closest hold it as good; find_node found it %d/%d",
		holding, len(had), good, closeGood, foundIt, finds)
	// Nodes that replaced it while it was away keep their (good) buckets
	// as they are (BEP 5); at least half of the nodes that had it must
	// hold it as good again.
	if good < len(had)/2 {
		t.Errorf("%d nodes hold the restarted node, %d of them as good (%d had it before)", holding, good, len(had))
	}
	if closeGood < 8 {
		t.Errorf("only %d of its 8 closest nodes hold it as good", closeGood)
	}
	if foundIt < finds {
		t.Errorf("find_node for its id found it %d/%d times", foundIt, finds)
	}
}

// partitionRun is what runPartition measured: cross-half figures before,
// during and after a partition.
type partitionRun struct {
	nodes                   int
	duringNodes, duringFind int // nodes holding good cross entries, cross find_node hits (of 20)
	healedNodes, healedFind int // the same after healing (of 40 lookups)
	healedEntries           int
}

// runPartition splits a 128-node network into two halves (alternate
// nodes, by IP) for split of simulated time, lifts the partition and lets
// heal pass, measuring how many nodes hold good nodes of the other half
// and how many find_node lookups from one half for a node of the other
// find it.
func runPartition(t *testing.T, seed uint64, split, heal time.Duration) partitionRun {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour) // simulated
	defer cancel()
	s := newSim(t, seed, simnet.Config{})
	s.grow(ctx, 128)
	nodes := s.live()
	side := make(map[netip.Addr]int)
	var ips [2][]netip.Addr
	for i, n := range nodes {
		side[n.Addr().Addr()] = i % 2
		ips[i%2] = append(ips[i%2], n.Addr().Addr())
	}
	// crossGood counts the nodes holding at least one good node of the
	// other half, and the good cross entries in all.
	crossGood := func() (nodesWith, entries int) {
		now := time.Now()
		for _, n := range nodes {
			c := 0
			for _, e := range n.table.Nodes() {
				if st, ok := stateIn(n, e.ID, e.Addr, now); ok && st == routing.Good && side[e.Addr.Addr()] != side[n.Addr().Addr()] {
					c++
				}
			}
			if c > 0 {
				nodesWith++
			}
			entries += c
		}
		return nodesWith, entries
	}
	// crossFinds runs find_node from random nodes for random nodes of the
	// other half and counts the lookups that find their target.
	crossFinds := func(count int) int {
		pairs := make([][2]*Node, count)
		for i := range pairs {
			a := nodes[s.rnd.IntN(len(nodes))]
			b := nodes[s.rnd.IntN(len(nodes))]
			for side[b.Addr().Addr()] == side[a.Addr().Addr()] {
				b = nodes[s.rnd.IntN(len(nodes))]
			}
			pairs[i] = [2]*Node{a, b}
		}
		var mu sync.Mutex
		found := 0
		parallel(count, 20, func(i int) {
			a, b := pairs[i][0], pairs[i][1]
			res, err := a.FindNode(ctx, b.ID())
			if err == nil && len(res.Closest) > 0 && res.Closest[0].Node.ID == b.ID() {
				mu.Lock()
				found++
				mu.Unlock()
			}
		})
		return found
	}
	r := partitionRun{nodes: len(nodes)}
	w, e := crossGood()
	t.Logf("before the partition: %d/%d nodes hold good nodes of the other half (%d entries)", w, len(nodes), e)

	s.net.Partition(ips[0], ips[1])
	s.advance(split)
	r.duringNodes, e = crossGood()
	r.duringFind = crossFinds(20)
	t.Logf("after %v of partition: %d/%d nodes hold good nodes of the other half (%d entries); cross find_node %d/20",
		split, r.duringNodes, len(nodes), e, r.duringFind)

	s.net.Heal()
	s.advance(heal)
	r.healedNodes, r.healedEntries = crossGood()
	r.healedFind = crossFinds(40)
	t.Logf("%v after healing: %d/%d nodes hold good nodes of the other half (%d entries); cross find_node %d/40",
		heal, r.healedNodes, len(nodes), r.healedEntries, r.healedFind)
	return r
}

// TestSimPartitionHeals: a network split in two halves for 10 minutes
// (shorter than the 15-minute good window, so the halves' tables still
// hold each other's nodes): no lookup crosses the cut; once it is lifted,
// within one refresh interval (15 min) every node holds good nodes of the
// other half and find_node across finds its target every time.
func TestSimPartitionHeals(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	synctest.Test(t, testSimPartitionHeals)
}

func testSimPartitionHeals(t *testing.T) {
	r := runPartition(t, 5, 10*time.Minute, 15*time.Minute)
	if r.duringFind > 0 {
		t.Errorf("%d/20 lookups crossed the partition", r.duringFind)
	}
	if r.healedNodes < r.nodes || r.healedFind < 40 {
		t.Errorf("after healing %d/%d nodes hold good cross entries and %d/40 cross lookups found their target, want all",
			r.healedNodes, r.nodes, r.healedFind)
	}
}

// TestSimLongPartitionHeals: a partition of 40 minutes, long enough for
// the liveness checks to mark every node of the other half bad, must heal
// too: within two refresh intervals (30 min) of lifting it, >= 90% of the
// nodes hold good nodes of the other half and >= 95% of cross lookups find
// their target.
//
// Bad entries that have no replacement stay in their bucket and are
// retried with a backoff (routing.Table.Retry, at most every 15 min), so
// the halves find each other again; without the retries (measured before
// they existed) only ~75% of nodes and ~55-85% of cross lookups recovered.
func TestSimLongPartitionHeals(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	synctest.Test(t, testSimLongPartitionHeals)
}

func testSimLongPartitionHeals(t *testing.T) {
	r := runPartition(t, 6, 40*time.Minute, 30*time.Minute)
	if r.duringNodes > r.nodes/10 || r.duringFind > 0 {
		t.Errorf("the partition did not separate the halves: %d nodes hold good cross entries, %d/20 cross lookups found their target",
			r.duringNodes, r.duringFind)
	}
	if r.healedNodes < r.nodes*9/10 || r.healedFind < 38 {
		t.Errorf("the halves did not find each other again: %d/%d nodes hold good cross entries, %d/40 cross lookups found their target",
			r.healedNodes, r.nodes, r.healedFind)
	}
}
