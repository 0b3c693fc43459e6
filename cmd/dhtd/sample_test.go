package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// inProcessNetwork starts a seed and size in-process nodes on loopback,
// bootstrapped from the seed, for the CLI to walk.
func inProcessNetwork(t *testing.T, size int) (seed *node.Node, nodes []*node.Node) {
	t.Helper()
	start := func(mod func(*node.Config)) *node.Node {
		cfg := node.LoopbackConfig()
		if mod != nil {
			mod(&cfg)
		}
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	seed = start(nil)
	boot := []string{seed.Addr().String()}
	for range size {
		nodes = append(nodes, start(func(c *node.Config) { c.Bootstrap = boot }))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 2 {
		forEach(len(nodes), func(i int) {
			if err := nodes[i].Bootstrap(ctx); err != nil {
				t.Errorf("bootstrap: %v", err)
			}
		})
	}
	return seed, nodes
}

// forEach runs f(0..n-1), 16 at a time.
func forEach(n int, f func(i int)) { forEachN(n, 16, f) }

// forEachN runs f(0..n-1), width at a time.
func forEachN(n, width int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, width)
	for i := range n {
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

// TestSampleCommand: `dhtd sample` over a 64-node network where
// 100 infohashes were announced collects at least 90% of them and asks no
// node twice within its interval.
func TestSampleCommand(t *testing.T) {
	dhtdBinary(t) // skips under -short
	seed, nodes := inProcessNetwork(t, 64)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ihs := make([]krpc.ID, 100)
	for i := range ihs {
		ihs[i] = krpc.RandomID()
	}
	forEach(len(ihs), func(i int) {
		if _, err := nodes[i%len(nodes)].Announce(ctx, ihs[i], node.AnnounceOptions{Port: 7000 + i}); err != nil {
			t.Errorf("announce: %v", err)
		}
	})
	r := runDhtd(t, "sample", "--bootstrap", seed.Addr().String(), "--listen", "127.0.0.1:0", "--json")
	if r.code != 0 {
		t.Fatalf("dhtd sample: exit %d\n%s", r.code, r.stderr)
	}
	var out struct {
		Infohashes []string `json:"infohashes"`
		Nodes      int      `json:"nodes_queried"`
		Queries    int      `json:"queries"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("dhtd sample --json: %v\n%s", err, r.stdout)
	}
	got := make(map[string]bool)
	for _, ih := range out.Infohashes {
		got[ih] = true
	}
	n := 0
	for _, ih := range ihs {
		if got[ih.String()] {
			n++
		}
	}
	t.Logf("dhtd sample: %d/%d announced infohashes from %d nodes, %d queries", n, len(ihs), out.Nodes, out.Queries)
	if n*100 < 90*len(ihs) {
		t.Fatalf("collected %d of %d, want >= 90%%", n, len(ihs))
	}
	for i, o := range append([]*node.Node{seed}, nodes...) {
		if q := testutil.ToFloat64(o.Admin().Metrics().QueriesReceived.WithLabelValues(krpc.MethodSampleInfohashes)); q > 1 {
			t.Fatalf("node %d asked %v times within its interval", i, q)
		}
	}

	// probe sample_infohashes against one node: interval, num, samples.
	pr := runDhtd(t, "probe", "sample_infohashes", "--bind", "127.0.0.1:0", nodes[0].Addr().String(), krpc.RandomID().String(), "--json")
	if pr.code != 0 {
		t.Fatalf("probe sample_infohashes: exit %d\n%s%s", pr.code, pr.stdout, pr.stderr)
	}
	var p struct {
		Interval *int64   `json:"interval"`
		Num      *int64   `json:"num"`
		Samples  []string `json:"samples"`
	}
	if err := json.Unmarshal([]byte(pr.stdout), &p); err != nil {
		t.Fatal(err)
	}
	if p.Interval == nil || *p.Interval != 21600 || p.Num == nil || int(*p.Num) < len(p.Samples) {
		t.Fatalf("probe sample_infohashes: %s", pr.stdout)
	}
}

// TestScrapeCommand: `dhtd scrape` over a network where 30 seeds
// and 70 leechers (each on its own IP) announced estimates both within the
// bloom filter's error.
func TestScrapeCommand(t *testing.T) {
	dhtdBinary(t) // skips under -short
	seed, _ := inProcessNetwork(t, 24)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ih := krpc.RandomID()
	// Four announcers at a time: each lookup must reach the true closest
	// nodes, which a CPU-starved run (CI, -race) makes slow.
	// All join first, then all announce: an announce made while later
	// nodes still join can land on nodes that are no longer the closest,
	// and the early announcers would be undercounted.
	peers := make([]*node.Node, 100)
	forEachN(100, 4, func(i int) {
		cfg := node.LoopbackConfig()
		cfg.Listen = fmt.Sprintf("127.3.0.%d:0", i+1)
		cfg.Bootstrap = []string{seed.Addr().String()}
		cfg.QueryTimeout = 2 * time.Second // 100 nodes join at once on 2 shared cores
		p, err := node.New(cfg)
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { p.Close() })
		if err := p.Bootstrap(ctx); err != nil {
			t.Error(err)
			return
		}
		peers[i] = p
	})
	if t.Failed() {
		t.FailNow()
	}
	forEachN(100, 4, func(i int) {
		if _, err := peers[i].Announce(ctx, ih, node.AnnounceOptions{Port: 6881, Seed: i < 30}); err != nil {
			t.Errorf("announce: %v", err)
		}
	})
	r := runDhtd(t, "scrape", ih.String(), "--bootstrap", seed.Addr().String(), "--listen", "127.0.0.1:0", "--json")
	if r.code != 0 {
		t.Fatalf("dhtd scrape: exit %d\n%s", r.code, r.stderr)
	}
	var out struct {
		Seeds, Peers float64
		Filters      int
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	t.Logf("dhtd scrape: seeds %.1f (30), peers %.1f (70), %d filters", out.Seeds, out.Peers, out.Filters)
	// Relative standard error of the estimate is ~1.5% at 100 IPs; 15%
	// is a generous bound that a wrong filter or merge misses by far.
	if math.Abs(out.Seeds-30) > 4.5 || math.Abs(out.Peers-70) > 10.5 {
		t.Fatalf("estimates seeds %.1f peers %.1f, want 30 and 70 within 15%%", out.Seeds, out.Peers)
	}
}
