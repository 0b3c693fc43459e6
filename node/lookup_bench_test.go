package node

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
)

// BenchmarkLookupRoundTrips measures how long iterative lookups take, in
// round-trip times, on the simulated network: simNodes nodes (1,000
// without -race) with a one-way delay of 10 ms plus up to 2 ms of jitter
// on every link. Once bootstrapped, the network carries warmLookups random
// lookups per node; then 10% of the nodes are silenced (simnet SetDown:
// they stay in the routing tables but never answer). Each iteration runs
// lookupBatch find_node lookups for random targets from random answering
// nodes, 16 at a time.
// Reported: rtt-p50 and rtt-p99 (lookup time / mean RTT), queries per
// lookup, and the share of lookups that found the true closest answering
// node (found-closest-%).
func BenchmarkLookupRoundTrips(b *testing.B) {
	const (
		latency, jitter = 10 * time.Millisecond, 2 * time.Millisecond
		silentShare     = 0.10
		lookupBatch     = 200
		warmLookups     = 10
	)
	rtt := 2 * (latency + jitter/2) // mean round trip
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := newSim(b, 8, simnet.Config{Latency: latency, Jitter: jitter})
	start := time.Now()
	growRetrying(ctx, b, s, simNodes)
	nodes := s.live()
	// The network carries traffic before it is measured, as one that has
	// run for a while has: every node looks up warmLookups random targets.
	// Tables grow from what the nodes learn by it (responders and
	// queriers).
	parallel(len(nodes)*warmLookups, 32, func(i int) {
		nodes[i%len(nodes)].FindNode(ctx, s.newID())
	})
	tableNodes := 0
	for _, n := range nodes {
		tableNodes += n.table.Len()
	}
	s.rnd.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	nSilent := int(silentShare * float64(len(nodes)))
	for _, n := range nodes[:nSilent] {
		s.net.SetDown(n.Addr(), true)
	}
	active := nodes[nSilent:]
	var answering []krpc.NodeInfo
	for _, n := range active {
		answering = append(answering, n.Info())
	}
	b.Logf("%d nodes bootstrapped and warmed up in %v, %d in a routing table on average; %d silenced; mean RTT %v",
		len(nodes), time.Since(start).Round(time.Millisecond), tableNodes/len(nodes), nSilent, rtt)

	var (
		mu      sync.Mutex
		rts     []float64
		queries []int
		closest int
	)
	b.ResetTimer()
	for b.Loop() {
		froms := make([]*Node, lookupBatch)
		targets := make([]krpc.ID, lookupBatch)
		for i := range froms {
			froms[i], targets[i] = active[s.rnd.IntN(len(active))], s.newID()
		}
		parallel(lookupBatch, 16, func(i int) {
			res, err := froms[i].FindNode(ctx, targets[i])
			want := trueClosest(answering, targets[i], 1, froms[i].ID())
			mu.Lock()
			defer mu.Unlock()
			rts = append(rts, float64(res.Elapsed)/float64(rtt))
			queries = append(queries, res.Queried)
			if err == nil && len(res.Closest) > 0 && len(want) > 0 && res.Closest[0].Node.ID == want[0] {
				closest++
			}
		})
	}
	b.StopTimer()
	slices.Sort(rts)
	slices.Sort(queries)
	q := func(p float64) float64 { return rts[min(len(rts)-1, int(p*float64(len(rts))))] }
	b.ReportMetric(q(0.5), "rtt-p50")
	b.ReportMetric(q(0.99), "rtt-p99")
	b.ReportMetric(float64(queries[len(queries)/2]), "queries-p50")
	b.ReportMetric(100*float64(closest)/float64(len(rts)), "found-closest-%")
	b.ReportMetric(0, "ns/op")
}

// growRetrying is simCluster.grow for a delayed network: a node whose
// bootstrap found no answering node (its three bootstrap nodes were busy
// bootstrapping themselves) retries, up to three times.
func growRetrying(ctx context.Context, b *testing.B, s *simCluster, count int) {
	b.Helper()
	s.start(s.newID(), s.newAddr(), nil)
	var fresh []*Node
	for range count - 1 {
		var boot []netip.AddrPort
		for range 3 {
			boot = append(boot, s.randomLive().Addr())
		}
		fresh = append(fresh, s.start(s.newID(), s.newAddr(), boot))
	}
	var failed atomic.Int64
	parallel(len(fresh), 32, func(i int) {
		var err error
		for range 3 {
			if err = fresh[i].Bootstrap(ctx); err == nil {
				return
			}
		}
		failed.Add(1)
	})
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d nodes failed to bootstrap three times", n, count)
	}
}
