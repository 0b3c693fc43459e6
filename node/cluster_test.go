package node

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
	"github.com/dhtd/dhtd/routing"
)

// startNode starts a node with the test profile on 127.0.0.1:0.
func startNode(t testing.TB, mod func(*Config)) *Node {
	t.Helper()
	cfg := LoopbackConfig()
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startCluster starts, on a new simulated network, a seed node and size
// nodes that bootstrap from it (simCluster.startStar). Only inside a
// synctest bubble: it runs in virtual time.
func startCluster(t *testing.T, size int, mod func(*Config)) (seed *Node, nodes []*Node) {
	t.Helper()
	return newSim(t, uint64(size), simnet.Config{}).startStar(size, mod)
}

// startStar starts a seed node and size nodes that bootstrap from it, then
// runs a second round of self-lookups so tables settle. mod, if not nil,
// is applied to every node's Config.
func (s *simCluster) startStar(size int, mod func(*Config)) (seed *Node, nodes []*Node) {
	s.t.Helper()
	seed = s.startWith(s.newID(), s.newAddr(), nil, mod)
	boot := []netip.AddrPort{seed.Addr()}
	for range size {
		nodes = append(nodes, s.startWith(s.newID(), s.newAddr(), boot, mod))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // simulated
	defer cancel()
	// Two rounds, so that early joiners learn of later ones.
	for range 2 {
		parallel(len(nodes), 16, func(i int) {
			if err := nodes[i].Bootstrap(ctx); err != nil {
				s.t.Errorf("bootstrap node %d: %v", i, err)
			}
		})
	}
	return seed, nodes
}

// parallel runs f(0..n-1) with at most width at a time.
func parallel(n, width int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, width)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}

// trueClosest is the k closest ids to target among all, by global knowledge.
func trueClosest(all []krpc.NodeInfo, target krpc.ID, k int, exclude krpc.ID) []krpc.ID {
	var ids []krpc.ID
	for _, n := range all {
		if n.ID != exclude {
			ids = append(ids, n.ID)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return routing.CompareDistance(target, ids[i], ids[j]) < 0 })
	if len(ids) > k {
		ids = ids[:k]
	}
	return ids
}

// TestClusterFindNode: 64 nodes bootstrapped from one seed; find_node
// lookups for 20 random targets per node return the true 8 closest nodes
// for at least 95% of (node, target) pairs.
func TestClusterFindNode(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	synctest.Test(t, testClusterFindNode)
}

func testClusterFindNode(t *testing.T) {
	const size, targetsPerNode, k = 64, 20, 8
	seed, nodes := startCluster(t, size, nil)
	all := []krpc.NodeInfo{seed.Info()}
	for _, n := range nodes {
		all = append(all, n.Info())
	}
	var mu sync.Mutex
	exact, total := 0, 0
	var queries []int
	rnd := rand.New(rand.NewPCG(1, 2))
	targets := make([][]krpc.ID, len(nodes))
	for i := range nodes {
		for j := 0; j < targetsPerNode; j++ {
			var id krpc.ID
			for b := range id {
				id[b] = byte(rnd.UintN(256))
			}
			targets[i] = append(targets[i], id)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // simulated
	defer cancel()
	parallel(len(nodes), 8, func(i int) {
		for _, target := range targets[i] {
			res, err := nodes[i].FindNode(ctx, target)
			want := trueClosest(all, target, k, nodes[i].ID())
			var got []krpc.ID
			for _, f := range res.Closest {
				got = append(got, f.Node.ID)
			}
			mu.Lock()
			total++
			queries = append(queries, res.Queried)
			if err == nil && slices.Equal(got, want) {
				exact++
			}
			mu.Unlock()
		}
	})
	share := float64(exact) / float64(total)
	sort.Ints(queries)
	t.Logf("find_node: %d/%d lookups (%.1f%%) returned the true %d closest; median queries per lookup %d, max %d",
		exact, total, 100*share, k, queries[len(queries)/2], queries[len(queries)-1])
	if share < 0.95 {
		t.Fatalf("only %.1f%% of lookups exact, want >= 95%%", 100*share)
	}
}

// TestPingAndTable: a node that answers a ping ends up in the pinger's
// table, and a node that queried us gets confirmed and added too.
func TestPingAndTable(t *testing.T) { synctest.Test(t, testPingAndTable) }

func testPingAndTable(t *testing.T) {
	s, a, b := newPair(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // simulated
	defer cancel()
	id, rtt, err := a.Ping(ctx, b.Addr())
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	if id != b.ID() || rtt <= 0 {
		t.Fatalf("ping answered id %s rtt %v, want %s", id, rtt, b.ID())
	}
	if _, ok := a.table.Get(b.ID()); !ok {
		t.Fatalf("responder not in the querier's table")
	}
	// b heard a's query and pings it back to confirm: once that exchange
	// is over, a is in b's table.
	s.settle(10 * time.Millisecond)
	if _, ok := b.table.Get(a.ID()); !ok {
		t.Fatalf("querier not in the responder's table after its confirmation ping")
	}
}

// waitFor polls cond until it holds or d passes. It is for state reached
// through the network, where there is no event to await.
func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
