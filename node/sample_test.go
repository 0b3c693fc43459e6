package node

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
)

// TestClusterSample (BEP 51): over a 64-node simulated network where 100
// infohashes were announced, Sample from a fresh node collects at least 90%
// of them and asks no node twice within its interval (6 h by default, so
// at most once). In virtual time.
func TestClusterSample(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	synctest.Test(t, testClusterSample)
}

func testClusterSample(t *testing.T) {
	s := newSim(t, 12, simnet.Config{})
	seed, nodes := s.startStar(64, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // simulated
	defer cancel()
	ihs := make([]krpc.ID, 100)
	from := make([]int, len(ihs))
	for i := range ihs {
		ihs[i], from[i] = s.newID(), s.rnd.IntN(len(nodes))
	}
	parallel(len(ihs), 16, func(i int) {
		if _, err := nodes[from[i]].Announce(ctx, ihs[i], AnnounceOptions{Port: 6881 + i}); err != nil {
			t.Errorf("announce %d: %v", i, err)
		}
	})
	indexer := s.start(s.newID(), s.newAddr(), []netip.AddrPort{seed.Addr()})
	if err := indexer.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := make(map[krpc.ID]bool)
	st, err := indexer.Sample(ctx, SampleOptions{OnSample: func(ih krpc.ID) {
		mu.Lock()
		got[ih] = true
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ih := range ihs {
		if got[ih] {
			n++
		}
	}
	t.Logf("sample walk: %d nodes answered, %d queries, %d failed; %d/%d announced infohashes collected",
		st.Queried, st.Queries, st.Failed, n, len(ihs))
	if n*100 < 90*len(ihs) {
		t.Fatalf("collected %d of %d infohashes, want >= 90%%", n, len(ihs))
	}
	if st.Queried < 60 {
		t.Fatalf("walk reached only %d nodes", st.Queried)
	}
	for i, o := range append([]*Node{seed}, nodes...) {
		if q := testutil.ToFloat64(o.metrics.QueriesReceived.WithLabelValues(krpc.MethodSampleInfohashes)); q > 1 {
			t.Fatalf("node %d asked %v times within its 6 h interval", i, q)
		}
	}
}

// TestClusterScrape (BEP 33): on a 24-node simulated network, 30 seeds and
// 70 leechers, each on an IP of its own, announce one infohash; a scrape
// from another node merges the filters of the K closest nodes, each of
// which holds every announce. In virtual time no announce or scrape query
// is lost to a busy machine, so the estimates are exactly those of the
// filters of the 30 seed and 70 leecher IPs built here, and both lie
// within the bloom filter's error of the true counts.
func TestClusterScrape(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	synctest.Test(t, testClusterScrape)
}

func testClusterScrape(t *testing.T) {
	const seeds, leechers = 30, 70
	s := newSim(t, 13, simnet.Config{})
	seed, _ := s.startStar(24, nil)
	boot := []netip.AddrPort{seed.Addr()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // simulated
	defer cancel()
	// All join first, then all announce: an announce made while later
	// nodes still join can land on nodes that are no longer the closest.
	peers := make([]*Node, seeds+leechers)
	for i := range peers {
		peers[i] = s.start(s.newID(), s.newAddr(), boot)
	}
	parallel(len(peers), 16, func(i int) {
		if err := peers[i].Bootstrap(ctx); err != nil {
			t.Errorf("bootstrap %d: %v", i, err)
		}
	})
	ih := s.newID()
	var wantSeeds, wantPeers krpc.Bloom
	for i, p := range peers {
		if i < seeds {
			wantSeeds.Add(p.Addr().Addr())
		} else {
			wantPeers.Add(p.Addr().Addr())
		}
	}
	parallel(len(peers), 16, func(i int) {
		if _, err := peers[i].Announce(ctx, ih, AnnounceOptions{Port: 6881, Seed: i < seeds}); err != nil {
			t.Errorf("announce %d: %v", i, err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	scraper := s.start(s.newID(), s.newAddr(), boot)
	if err := scraper.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := scraper.Scrape(ctx, ih)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scrape: seeds %.2f (%d, filter of all %.2f), peers %.2f (%d, filter of all %.2f), %d filters",
		res.Seeds, seeds, wantSeeds.Estimate(), res.Peers, leechers, wantPeers.Estimate(), res.Filters)
	if res.Filters < 8 {
		t.Errorf("%d of the K closest sent filters, want 8", res.Filters)
	}
	if res.Seeds != wantSeeds.Estimate() || res.Peers != wantPeers.Estimate() {
		t.Errorf("estimates seeds %.2f peers %.2f, want those of every announcer's IP: %.2f and %.2f",
			res.Seeds, res.Peers, wantSeeds.Estimate(), wantPeers.Estimate())
	}
	// BEP 33's filter (m = 2048, k = 2) estimates 100 IPs with a relative
	// standard error of about 1.5%: 10% is far outside it.
	if d := res.Seeds - seeds; d < -3 || d > 3 {
		t.Errorf("seeds estimated %.2f, want %d ± 10%%", res.Seeds, seeds)
	}
	if d := res.Peers - leechers; d < -7 || d > 7 {
		t.Errorf("peers estimated %.2f, want %d ± 10%%", res.Peers, leechers)
	}
}
