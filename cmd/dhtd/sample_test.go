package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// startLoopbackNode starts an in-process node with node.LoopbackConfig,
// changed by mod if it is not nil; the test's cleanup closes it.
func startLoopbackNode(t *testing.T, mod func(*node.Config)) *node.Node {
	t.Helper()
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

// inProcessNetwork starts a seed and size in-process nodes on loopback,
// bootstrapped from the seed, for the CLI to walk.
func inProcessNetwork(t *testing.T, size int) (seed *node.Node, nodes []*node.Node) {
	t.Helper()
	seed = startLoopbackNode(t, nil)
	boot := []string{seed.Addr().String()}
	for range size {
		nodes = append(nodes, startLoopbackNode(t, func(c *node.Config) { c.Bootstrap = boot }))
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
func forEach(n int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
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

// oneNodeSwarm starts one in-process node on loopback, the whole network
// the CLI will walk, and len(ips) read-only in-process clients (BEP 43:
// they never enter its routing table) on those loopback IPs, bootstrapped
// from it; announce runs on each client in turn. Every announce can only
// land on the one node, so what it stores is known exactly. The behaviour
// of many nodes (walks, merged filters, lookups that must reach the
// closest nodes) is tested in package node, in virtual time; this is the
// command's plumbing.
func oneNodeSwarm(t *testing.T, ips []string, announce func(i int, c *node.Node) error) *node.Node {
	t.Helper()
	dht := startLoopbackNode(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, ip := range ips {
		c := startLoopbackNode(t, func(c *node.Config) {
			c.Listen = ip + ":0"
			c.Bootstrap = []string{dht.Addr().String()}
			c.ReadOnly = true
			c.QueryTimeout = 5 * time.Second // a busy machine is slow, not lossy
		})
		if err := c.Bootstrap(ctx); err != nil {
			t.Fatalf("client %d bootstrap: %v", i, err)
		}
		if err := announce(i, c); err != nil {
			t.Fatalf("client %d announce: %v", i, err)
		}
	}
	return dht
}

// TestSampleCommand: `dhtd sample` over a one-node network holding five
// announced infohashes prints exactly those five and asks the node once;
// `dhtd probe sample_infohashes` shows the node's interval, count and
// samples.
func TestSampleCommand(t *testing.T) {
	dhtdBinary(t) // skips under -short
	ihs := make([]string, 5)
	dht := oneNodeSwarm(t, []string{"127.0.0.1"}, func(_ int, c *node.Node) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i := range ihs {
			ih := krpc.RandomID()
			ihs[i] = ih.String()
			ar, err := c.Announce(ctx, ih, node.AnnounceOptions{Port: 7000 + i})
			if err != nil {
				return err
			}
			if ar.Accepted != 1 {
				return fmt.Errorf("announce %d accepted by %d nodes, want the one", i, ar.Accepted)
			}
		}
		return nil
	})
	slices.Sort(ihs)
	r := runDhtd(t, "sample", "--bootstrap", dht.Addr().String(), "--listen", "127.0.0.1:0", "--json")
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
	slices.Sort(out.Infohashes)
	t.Logf("dhtd sample: %d infohashes from %d nodes, %d queries", len(out.Infohashes), out.Nodes, out.Queries)
	if !slices.Equal(out.Infohashes, ihs) || out.Nodes != 1 {
		t.Fatalf("dhtd sample: %v from %d nodes, want %v from 1", out.Infohashes, out.Nodes, ihs)
	}
	if q := testutil.ToFloat64(dht.Admin().Metrics().QueriesReceived.WithLabelValues(krpc.MethodSampleInfohashes)); q != 1 {
		t.Fatalf("the node was asked %v times within its interval, want once", q)
	}

	// probe sample_infohashes against the node: interval, num, samples.
	pr := runDhtd(t, "probe", "sample_infohashes", "--bind", "127.0.0.1:0", dht.Addr().String(), krpc.RandomID().String(), "--json")
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
	slices.Sort(p.Samples)
	if p.Interval == nil || *p.Interval != 21600 || p.Num == nil || *p.Num != int64(len(ihs)) || !slices.Equal(p.Samples, ihs) {
		t.Fatalf("probe sample_infohashes: %s, want interval 21600, num %d, samples %v", pr.stdout, len(ihs), ihs)
	}
}

// TestScrapeCommand: `dhtd scrape` over a one-node network where 3 seeds
// and 5 leechers, each on its own loopback IP, announced prints the
// rounded estimates of the BEP 33 filters of exactly those IPs.
func TestScrapeCommand(t *testing.T) {
	dhtdBinary(t) // skips under -short
	const seeds, leechers = 3, 5
	ih := krpc.RandomID()
	var ips []string
	var wantSeeds, wantPeers krpc.Bloom
	for i := range seeds + leechers {
		ip := netip.AddrFrom4([4]byte{127, 3, 0, byte(i + 1)})
		ips = append(ips, ip.String())
		if i < seeds {
			wantSeeds.Add(ip)
		} else {
			wantPeers.Add(ip)
		}
	}
	dht := oneNodeSwarm(t, ips, func(i int, c *node.Node) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ar, err := c.Announce(ctx, ih, node.AnnounceOptions{Port: 6881, Seed: i < seeds})
		if err == nil && ar.Accepted != 1 {
			err = fmt.Errorf("accepted by %d nodes, want the one", ar.Accepted)
		}
		return err
	})
	r := runDhtd(t, "scrape", ih.String(), "--bootstrap", dht.Addr().String(), "--listen", "127.0.0.1:0", "--json")
	if r.code != 0 {
		t.Fatalf("dhtd scrape: exit %d\n%s", r.code, r.stderr)
	}
	var out struct {
		InfoHash     string `json:"info_hash"`
		Seeds, Peers float64
		Filters      int
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	want := struct{ seeds, peers float64 }{math.Round(wantSeeds.Estimate()), math.Round(wantPeers.Estimate())}
	t.Logf("dhtd scrape: seeds %v (%d announced), peers %v (%d), %d filters", out.Seeds, seeds, out.Peers, leechers, out.Filters)
	if out.InfoHash != ih.String() || out.Seeds != want.seeds || out.Peers != want.peers || out.Filters != 1 {
		t.Fatalf("dhtd scrape: %s; want info_hash %s, seeds %v, peers %v from 1 filter", r.stdout, ih, want.seeds, want.peers)
	}
}
