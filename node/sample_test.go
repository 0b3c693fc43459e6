package node

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
)

// TestClusterSample (BEP 51): over a 64-node network where 100
// infohashes were announced, Sample from a fresh node collects at least 90%
// of them and asks no node twice within its interval (6 h by default, so
// at most once).
func TestClusterSample(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	seed, nodes := startCluster(t, 64, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rnd := rand.New(rand.NewPCG(7, 7))
	ihs := make([]krpc.ID, 100)
	for i := range ihs {
		ihs[i] = hqRandomID(rnd)
	}
	from := make([]int, len(ihs))
	for i := range from {
		from[i] = rnd.IntN(len(nodes))
	}
	parallel(len(ihs), 16, func(i int) {
		if _, err := nodes[from[i]].Announce(ctx, ihs[i], AnnounceOptions{Port: 6881 + i}); err != nil {
			t.Errorf("announce %d: %v", i, err)
		}
	})
	indexer := startNode(t, func(c *Config) { c.Bootstrap = []string{seed.Addr().String()} })
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
