package node

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
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

// startCluster starts a seed node and size nodes that bootstrap from it,
// then runs a second round of self-lookups so tables settle.
func startCluster(t testing.TB, size int, mod func(*Config)) (seed *Node, nodes []*Node) {
	t.Helper()
	seed = startNode(t, mod)
	boot := []string{seed.Addr().String()}
	for i := 0; i < size; i++ {
		nodes = append(nodes, startNode(t, func(c *Config) {
			c.Bootstrap = boot
			if mod != nil {
				mod(c)
			}
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Two rounds, so that early joiners learn of later ones. A node whose
	// bootstrap found no answer tries again (three attempts a round), as
	// the daemon does: on a busy machine a joiner can see its queries time
	// out while 16 others join at once.
	for round := 0; round < 2; round++ {
		parallel(len(nodes), 16, func(i int) {
			var err error
			for range 3 {
				if err = nodes[i].Bootstrap(ctx); err == nil || ctx.Err() != nil {
					break
				}
			}
			if err != nil {
				t.Errorf("bootstrap node %d: %v", i, err)
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
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
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
func TestPingAndTable(t *testing.T) {
	a := startNode(t, nil)
	b := startNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
	// b heard a's query and pings it back to confirm; wait for that event.
	waitFor(t, 5*time.Second, func() bool { _, ok := b.table.Get(a.ID()); return ok })
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

var _ = netip.AddrPort{}
