package sim

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/routing"
)

// Scenarios Run knows.
var Scenarios = []string{"lookup", "churn", "sybil", "storm", "partition"}

// ErrScenario is returned for an unknown scenario name.
var ErrScenario = errors.New("sim: unknown scenario")

// Config is one simulation run.
type Config struct {
	Scenario string
	Nodes    int
	Seed     uint64
	// Unreachable is the share of nodes behind a NAT (default 0.2;
	// negative: none).
	Unreachable float64
	// Lookups is the number of measured lookups (default 1000).
	Lookups int
	// Routers is the number of bootstrap routers (default 4).
	Routers int
	// Hours is the simulated duration of the churn scenario (default 24).
	Hours int
	// Items is the number of items published in the churn scenario
	// (default 100).
	Items int
	// WarmLookups is the number of random lookups each node makes while
	// the network warms up (default 2). Routing tables grow with the
	// traffic a node sees: more warm lookups stand for a network that has
	// run longer, at the cost of events.
	WarmLookups int
	// FillBuckets makes each node join as dhtd run does: after the lookup
	// of its own id, a lookup in each bucket that has room
	// (core.Node.Bootstrap). Tables end up about twice as full, for about
	// twice the events; off, a node looks up its own id and probes the
	// buckets with room (core.Node.BootstrapLookup), which keeps 100,000
	// nodes within the time and memory budget.
	FillBuckets bool
	// FullTables fills, once the warm-up is over, every reachable node's
	// routing table from the simulator's global knowledge, as full as
	// the network allows (fillTables). No node joins that way: it is an
	// upper bound of what a longer warm-up gives, to tell what the
	// tables' fill costs the lookups from what the lookup itself does.
	FullTables bool
	Net        NetConfig
	// Progress, if set, is called about once per simulated minute with
	// the virtual time and the events processed so far.
	Progress func(simulated time.Duration, events uint64)
}

func (c Config) withDefaults() Config {
	if c.Unreachable == 0 {
		c.Unreachable = 0.2
	}
	c.Unreachable = max(c.Unreachable, 0)
	if c.Lookups <= 0 {
		c.Lookups = 1000
	}
	if c.Routers <= 0 {
		c.Routers = 4
	}
	if c.Hours <= 0 {
		c.Hours = 24
	}
	if c.Items <= 0 {
		c.Items = 100
	}
	if c.WarmLookups <= 0 {
		c.WarmLookups = defaultWarmLookups
	}
	c.Net.Seed = c.Seed
	if c.Net.Workers == 0 && c.Nodes >= parallelNodes {
		c.Net.Workers = min(runtime.GOMAXPROCS(0), maxWorkers)
	}
	return c
}

// Unless NetConfig.Workers says otherwise, networks of parallelNodes or
// more run on up to maxWorkers workers: below it a window holds too few
// events to pay for handing it out (at 10,000 nodes two workers took 5%
// longer than one, at 30,000 10% less, at 100,000 29% less).
const (
	parallelNodes = 20000
	maxWorkers    = 4
)

// Report is the outcome of a run. Everything but Cost depends only on the
// Config: the same seed gives the same Report.
type Report struct {
	Scenario       string  `json:"scenario"`
	Nodes          int     `json:"nodes"`
	Seed           uint64  `json:"seed"`
	UnreachablePct float64 `json:"unreachable_pct"`
	SimTimeS       float64 `json:"sim_time_s"`
	TableNodesAvg  float64 `json:"table_nodes_avg"` // live routing table entries per reachable node
	WarmLookups    int     `json:"warm_lookups"`    // random lookups per node while warming up
	FillBuckets    bool    `json:"fill_buckets"`    // nodes joined with the bucket-filling lookups
	// FullTables: tables filled from global knowledge after the warm-up
	// (left out when false, so reports of the default runs compare byte
	// for byte with those of builds that predate it).
	FullTables bool `json:"full_tables,omitempty"`

	Lookups         int     `json:"lookups"`
	FoundClosestPct float64 `json:"found_closest_pct"`
	HopsP50         int     `json:"hops_p50"`
	HopsP90         int     `json:"hops_p90"`
	HopsP99         int     `json:"hops_p99"`
	RTTP50          int     `json:"rtt_p50"`
	RTTP90          int     `json:"rtt_p90"`
	RTTP99          int     `json:"rtt_p99"`
	LookupMsP50     int64   `json:"lookup_ms_p50"`
	LookupMsP90     int64   `json:"lookup_ms_p90"`
	LookupMsP99     int64   `json:"lookup_ms_p99"`
	// ClosestMs* is when the closest node of the result answered: the
	// time to find it, before the lookup confirmed nothing closer answers.
	ClosestMsP50   int64   `json:"closest_ms_p50"`
	ClosestMsP90   int64   `json:"closest_ms_p90"`
	ClosestMsP99   int64   `json:"closest_ms_p99"`
	PacketsPerLook float64 `json:"packets_per_lookup"`

	// Values holds the figures of the lookups for published data (the
	// lookup scenario's get_peers and get lookups), nil if none ran.
	Values *Values `json:"values,omitempty"`

	Items            int     `json:"items,omitempty"`
	ItemsSurvivedPct float64 `json:"items_survived_pct,omitempty"`
	// ItemsHeldPct is the share of items some up node stores at the end
	// (global knowledge): items_survived_pct below it means lookups missed
	// items the network still held.
	ItemsHeldPct float64 `json:"items_held_pct,omitempty"`

	// Phases holds the per-phase lookup figures of the partition, storm
	// and sybil scenarios.
	Phases []Phase `json:"phases,omitempty"`

	Packets PacketCounts `json:"packets"`
	Cost    Cost         `json:"cost"`
}

// Values are the figures of the get_peers and get lookups for published
// swarms and items: how many got peers or the value, and when the first
// came, over those that got some. That is what an application waiting
// for results waits, while the lookup goes on to confirm the K closest.
type Values struct {
	Lookups    int     `json:"lookups"`
	FoundPct   float64 `json:"found_pct"`
	FirstMsP50 int64   `json:"first_ms_p50"`
	FirstMsP90 int64   `json:"first_ms_p90"`
	FirstMsP99 int64   `json:"first_ms_p99"`
}

// Phase is one batch of lookups of a scenario.
type Phase struct {
	Name            string  `json:"name"`
	Lookups         int     `json:"lookups"`
	FoundClosestPct float64 `json:"found_closest_pct"`
	RTTP50          int     `json:"rtt_p50"`
	RTTP99          int     `json:"rtt_p99"`
	LookupMsP50     int64   `json:"lookup_ms_p50"`
	// SybilSharePct is the share of result slots held by the sybil /24.
	SybilSharePct float64 `json:"sybil_share_pct,omitempty"`
	// JoinedPct is the share of joining nodes whose bootstrap found nodes.
	JoinedPct float64 `json:"joined_pct,omitempty"`
}

// PacketCounts are the network's packet counters.
type PacketCounts struct {
	Sent      uint64 `json:"sent"`
	Delivered uint64 `json:"delivered"`
	Lost      uint64 `json:"lost"`
	Blocked   uint64 `json:"blocked"`
}

// Cost is what the run cost the host; it differs between runs.
type Cost struct {
	WallMs        int64  `json:"wall_ms"`
	PeakHeapBytes uint64 `json:"peak_heap_bytes"`
	BytesPerNode  uint64 `json:"bytes_per_node"`
	Events        uint64 `json:"events"`
}

// Run runs one scenario.
func Run(cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	if cfg.Nodes < cfg.Routers+2 {
		return Report{}, fmt.Errorf("sim: %d nodes: need at least %d", cfg.Nodes, cfg.Routers+2)
	}
	s := &run{cfg: cfg, start: time.Now()}
	switch cfg.Scenario {
	case "lookup":
		s.lookup()
	case "churn":
		s.churn()
	case "sybil":
		s.sybil()
	case "storm":
		s.storm()
	case "partition":
		s.partition()
	default:
		return Report{}, fmt.Errorf("%w %q (known: %v)", ErrScenario, cfg.Scenario, Scenarios)
	}
	r := &s.rep
	r.Scenario, r.Nodes, r.Seed = cfg.Scenario, len(s.net.Peers), cfg.Seed
	r.UnreachablePct = round2(100 * cfg.Unreachable)
	r.WarmLookups = cfg.WarmLookups
	r.FillBuckets = cfg.FillBuckets
	r.FullTables = cfg.FullTables
	r.SimTimeS = round2(s.net.Elapsed().Seconds())
	r.Packets = PacketCounts{s.net.Sent, s.net.Delivered, s.net.Lost, s.net.Blocked}
	s.sampleHeap()
	r.Cost.WallMs = time.Since(s.start).Milliseconds()
	r.Cost.PeakHeapBytes = s.peakHeap
	r.Cost.Events = s.net.Events
	return *r, nil
}

// run is one scenario's state.
type run struct {
	cfg      Config
	net      *Network
	routers  []netip.AddrPort
	rep      Report
	start    time.Time
	peakHeap uint64

	lastSample uint64 // events/2^20 at the last heap sample

	// published holds the targets of the lookup scenario's swarms and
	// items (publish): lookups for them are measured for their values too.
	published map[krpc.ID]bool

	// mu guards what the cores' callbacks change (batch, counts): they
	// run on the workers, side by side.
	mu sync.Mutex
}

// Timeline of the join and warm-up (virtual time).
const (
	joinWindow         = 10 * time.Minute // every node joins within it
	warmFor            = 10 * time.Minute // then the network runs this long
	defaultWarmLookups = 2                // random lookups per node while warming up
	measureWindow      = 2 * time.Minute  // measured lookups start within it
	drain              = 5 * time.Second  // how often finish looks whether the lookups ended
	runChunk           = 10 * time.Second // Run granularity, for heap sampling
)

// build creates the network: routers first, then nodes at scattered
// addresses (ScatteredAddr), a share of them unreachable.
func (s *run) build(n int) {
	s.net = NewNetwork(s.cfg.Net)
	for range n {
		s.addPeer(s.cfg.Unreachable)
	}
}

func (s *run) addPeer(natShare float64) *Peer {
	return s.addPeerAt(ScatteredAddr(int32(len(s.net.Peers))), s.randomID(), natShare)
}

func (s *run) addPeerAt(addr netip.AddrPort, id krpc.ID, natShare float64) *Peer {
	isRouter := len(s.net.Peers) < s.cfg.Routers
	nat := !isRouter && s.net.Rand.Float64() < natShare
	p := s.net.AddPeer(addr, id, nat)
	if isRouter {
		s.routers = append(s.routers, addr)
	}
	return p
}

func (s *run) randomID() krpc.ID {
	var id krpc.ID
	for i := 0; i < len(id); i += 8 {
		v := s.net.Rand.Uint64()
		for j := 0; j < 8 && i+j < len(id); j++ {
			id[i+j] = byte(v >> (8 * j))
		}
	}
	return id
}

// join starts p at virtual time at and bootstraps it from the routers,
// then runs warm random lookups before warmEnd.
func (s *run) join(p *Peer, at, warmEnd time.Duration, warm int) {
	s.net.At(at, func() {
		s.net.Start(p)
		s.net.Do(p, func(c *core.Node, now time.Time) {
			if s.cfg.FillBuckets {
				c.Bootstrap(now, s.routers, nil)
			} else {
				c.BootstrapLookup(now, s.routers, nil)
			}
		})
	})
	for range warm {
		t := at + time.Duration(s.net.Rand.Int64N(int64(max(warmEnd-at, time.Second))))
		target := s.randomID()
		s.net.AtPeer(p, t, func() {
			s.net.Do(p, func(c *core.Node, now time.Time) { c.FindNode(now, target, nil) })
		})
	}
}

// joinAll starts every peer within joinWindow and warms the network up;
// it returns the end of the warm-up.
func (s *run) joinAll(peers []*Peer) time.Duration {
	warmEnd := s.net.Elapsed() + joinWindow + warmFor
	for i, p := range peers {
		at := s.net.Elapsed()
		if i >= s.cfg.Routers {
			at += time.Duration(s.net.Rand.Int64N(int64(joinWindow)))
		}
		s.join(p, at, warmEnd, s.cfg.WarmLookups)
	}
	s.advance(warmEnd)
	if s.cfg.FullTables {
		s.fillTables()
	}
	return warmEnd
}

// How fillTables fills a table: with this many random reachable nodes,
// which fill the far buckets (bucket i takes some 2^(i+1) draws per
// slot), and with this many of its nearest by id on each side, which
// hold the nodes of the deep buckets. On 100,000 nodes the tables then
// hold 321 nodes on average, about what their buckets can take.
const (
	fullTableDraws     = 2048
	fullTableNeighbors = 256
)

// fillTables offers every running reachable node's table the nodes that
// a node running for long would have heard from: random reachable nodes
// for the far buckets and its neighbours by id for the near ones, each as
// if it had just answered (Config.FullTables).
func (s *run) fillTables() {
	var live []*Peer
	for _, p := range s.net.Peers {
		if p.Up() && !p.NAT {
			live = append(live, p)
		}
	}
	byID := slices.Clone(live)
	slices.SortFunc(byID, func(a, b *Peer) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	now := s.net.Now()
	const rtt = 100 * time.Millisecond // the latency model's median
	for _, p := range live {
		t := p.Core.Table()
		offer := func(q *Peer) {
			if q != p {
				t.Responded(krpc.NodeInfo{ID: q.ID, Addr: q.Addr}, now, rtt)
			}
		}
		for range min(fullTableDraws, len(live)) {
			offer(live[s.net.Rand.IntN(len(live))])
		}
		i, _ := slices.BinarySearchFunc(byID, p.ID, func(q *Peer, id krpc.ID) int { return bytes.Compare(q.ID[:], id[:]) })
		for _, q := range byID[max(0, i-fullTableNeighbors):min(len(byID), i+fullTableNeighbors+1)] {
			offer(q)
		}
	}
}

// advance runs the network until t, sampling the heap as it goes.
func (s *run) advance(t time.Duration) {
	for s.net.Elapsed() < t {
		s.net.Run(min(s.net.Elapsed()+runChunk, t))
		if f := s.cfg.Progress; f != nil && s.net.Elapsed()%time.Minute == 0 {
			f(s.net.Elapsed(), s.net.Events)
		}
		if s.net.Events>>20 != s.lastSample {
			s.lastSample = s.net.Events >> 20
			s.sampleHeap()
		}
	}
}

func (s *run) sampleHeap() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.peakHeap = max(s.peakHeap, ms.HeapAlloc)
}

// measureCost records the heap per node once the network is warm: the
// heap the last collection found live, which a forced collection would
// measure a little later for some seconds of a run's time (11 s at
// 100,000 nodes).
func (s *run) measureCost() {
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	if live[0].Value.Kind() != metrics.KindUint64 || live[0].Value.Uint64() == 0 {
		runtime.GC() // none yet: a small network
		metrics.Read(live)
	}
	s.sampleHeap()
	if live[0].Value.Kind() == metrics.KindUint64 {
		s.rep.Cost.BytesPerNode = live[0].Value.Uint64() / uint64(len(s.net.Peers))
	}
	total, reachable := 0, 0
	for _, p := range s.net.Peers {
		if p.Up() && !p.NAT {
			total += p.Core.Table().Len()
			reachable++
		}
	}
	s.rep.TableNodesAvg = round2(float64(total) / float64(max(reachable, 1)))
}

// sample is one measured lookup.
type sample struct {
	found   bool
	hops    int
	rounds  int
	elapsed time.Duration
	closest time.Duration
	packets int
	// wantValue: the target holds published peers or an item; gotValue:
	// the lookup got some, the first of them value after its start.
	wantValue, gotValue bool
	value               time.Duration
	sybilHeld           int
	slots               int
}

// batch is a set of measured lookups.
type batch struct {
	samples []sample
	pending int
}

// lookups starts count lookups from random up peers accepted by from,
// within window after start, for random targets (or targets()), with the
// three lookup kinds in turn. A lookup found the closest node if the first
// node of its result is the closest up, reachable peer to the target
// (global knowledge) that reach accepts, at the time the lookup ends; with
// isSybil set, if that node is anywhere among the results.
func (s *run) lookups(count int, start time.Duration, from func(*Peer) bool,
	target func(i int) krpc.ID, reach func(src, dst *Peer) bool, isSybil func(*Peer) bool) *batch {
	b := &batch{}
	for i := range count {
		at := start + time.Duration(s.net.Rand.Int64N(int64(measureWindow)))
		t := s.randomID()
		if target != nil {
			t = target(i)
		}
		kind := i % 3
		b.pending++
		s.net.At(at, func() {
			src := s.randomPeer(from)
			if src == nil {
				b.pending--
				return
			}
			done := func(r core.Result) {
				// Lookups end inside windows, on any worker: what they
				// add to b does not depend on their order.
				s.mu.Lock()
				defer s.mu.Unlock()
				b.pending--
				smp := sample{hops: r.Hops, rounds: r.Rounds, elapsed: r.Elapsed, closest: r.ClosestAfter, packets: 2*r.Queried - r.Failed}
				if kind != 0 && s.published[t] {
					smp.wantValue = true
					smp.gotValue = len(r.Peers) > 0 || r.Value != nil
					smp.value = r.ValueAfter
				}
				want := s.trueClosest(t, src, reach)
				smp.found = want != nil && len(r.Closest) > 0 && r.Closest[0].Node.ID == want.ID
				if isSybil != nil && want != nil {
					// Under attack the sybils may rightly be closer: the
					// closest honest node must be among the results.
					smp.found = slices.ContainsFunc(r.Closest, func(f core.Found) bool { return f.Node.ID == want.ID })
				}
				if isSybil != nil {
					for _, f := range r.Closest {
						smp.slots++
						if j, ok := s.net.peerAt(f.Node.Addr); ok && isSybil(s.net.Peers[j]) {
							smp.sybilHeld++
						}
					}
				}
				b.samples = append(b.samples, smp)
			}
			s.net.Do(src, func(c *core.Node, now time.Time) {
				switch kind {
				case 0:
					c.FindNode(now, t, done)
				case 1:
					c.GetPeers(now, t, done)
				default:
					c.Get(now, t, done)
				}
			})
		})
	}
	return b
}

// randomPeer picks a random up peer accepted by ok (not a router).
func (s *run) randomPeer(ok func(*Peer) bool) *Peer {
	n := len(s.net.Peers)
	for range 1000 {
		p := s.net.Peers[s.cfg.Routers+s.net.Rand.IntN(n-s.cfg.Routers)]
		if p.Up() && (ok == nil || ok(p)) {
			return p
		}
	}
	return nil
}

// trueClosest returns the up, reachable peer closest to target other than
// src, among those reach accepts.
func (s *run) trueClosest(target krpc.ID, src *Peer, reach func(src, dst *Peer) bool) *Peer {
	var best *Peer
	for _, p := range s.net.Peers {
		if p == src || !p.Up() || p.NAT || (reach != nil && !reach(src, p)) {
			continue
		}
		if best == nil || routing.CompareDistance(target, p.ID, best.ID) < 0 {
			best = p
		}
	}
	return best
}

// finish runs until every lookup of the batches ended (or a bound).
func (s *run) finish(bs ...*batch) {
	deadline := s.net.Elapsed() + measureWindow + 10*time.Minute
	for s.net.Elapsed() < deadline {
		open := 0
		for _, b := range bs {
			open += b.pending
		}
		if open == 0 {
			return
		}
		s.advance(s.net.Elapsed() + drain)
	}
}

// summary fills the lookup figures of the report from b.
func (s *run) summary(b *batch) {
	ph := s.phase("all", b)
	r := &s.rep
	r.Lookups, r.FoundClosestPct = ph.Lookups, ph.FoundClosestPct
	var hops, rounds []int
	var ms, cms, vms []int64
	packets, wanted := 0, 0
	for _, x := range b.samples {
		if x.wantValue {
			wanted++
			if x.gotValue {
				vms = append(vms, x.value.Milliseconds())
			}
		}
		hops = append(hops, x.hops)
		rounds = append(rounds, x.rounds)
		ms = append(ms, x.elapsed.Milliseconds())
		cms = append(cms, x.closest.Milliseconds())
		packets += x.packets
	}
	r.HopsP50, r.HopsP90, r.HopsP99 = pct(hops, 0.5), pct(hops, 0.9), pct(hops, 0.99)
	r.RTTP50, r.RTTP90, r.RTTP99 = pct(rounds, 0.5), pct(rounds, 0.9), pct(rounds, 0.99)
	r.LookupMsP50, r.LookupMsP90, r.LookupMsP99 = pct(ms, 0.5), pct(ms, 0.9), pct(ms, 0.99)
	r.ClosestMsP50, r.ClosestMsP90, r.ClosestMsP99 = pct(cms, 0.5), pct(cms, 0.9), pct(cms, 0.99)
	r.PacketsPerLook = round2(float64(packets) / float64(max(len(b.samples), 1)))
	if wanted > 0 {
		r.Values = &Values{Lookups: wanted, FoundPct: round2(100 * float64(len(vms)) / float64(wanted)),
			FirstMsP50: pct(vms, 0.5), FirstMsP90: pct(vms, 0.9), FirstMsP99: pct(vms, 0.99)}
	}
}

// phase summarises b as a named phase.
func (s *run) phase(name string, b *batch) Phase {
	ph := Phase{Name: name, Lookups: len(b.samples)}
	var rounds []int
	var ms []int64
	found, held, slots := 0, 0, 0
	for _, x := range b.samples {
		if x.found {
			found++
		}
		held += x.sybilHeld
		slots += x.slots
		rounds = append(rounds, x.rounds)
		ms = append(ms, x.elapsed.Milliseconds())
	}
	ph.FoundClosestPct = round2(100 * float64(found) / float64(max(len(b.samples), 1)))
	ph.RTTP50, ph.RTTP99 = pct(rounds, 0.5), pct(rounds, 0.99)
	ph.LookupMsP50 = pct(ms, 0.5)
	if slots > 0 {
		ph.SybilSharePct = round2(100 * float64(held) / float64(slots))
	}
	return ph
}

func pct[T int | int64](s []T, p float64) T {
	if len(s) == 0 {
		return 0
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
