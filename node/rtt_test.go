package node

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestTableRecordsRTT: a node that answers enters the routing table with
// the round-trip time of its answer, shown in the snapshot as rtt_ms. On
// the simulated network, in virtual time.
func TestTableRecordsRTT(t *testing.T) { synctest.Test(t, testTableRecordsRTT) }

func testTableRecordsRTT(t *testing.T) {
	_, a, b := newPair(t, 16)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // simulated
	defer cancel()
	id, rtt, err := a.Ping(ctx, b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, bk := range a.Admin().RoutingSnapshot().Buckets {
		for _, n := range bk.Nodes {
			if n.ID != id.String() {
				continue
			}
			found = true
			// The table's round trip is measured by the socket, the
			// caller's around it: at most the caller's.
			if n.RTT <= 0 || n.RTT > rtt || n.RTTMillis != float64(n.RTT.Microseconds())/1000 {
				t.Errorf("table entry of %s: rtt %v (%v ms), want in (0, %v]", b.Addr(), n.RTT, n.RTTMillis, rtt)
			}
		}
	}
	if !found {
		t.Fatalf("%s is not in the table after answering a ping", b.Addr())
	}
}

// TestLookupReportsRTT: each of a lookup's closest nodes comes with the
// round trip of its reply, which is within the lookup's own duration.
func TestLookupReportsRTT(t *testing.T) {
	seed := startNode(t, nil)
	b := startNode(t, func(c *Config) { c.Bootstrap = []string{seed.Addr().String()} })
	a := startNode(t, func(c *Config) { c.Bootstrap = []string{seed.Addr().String()} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range []*Node{b, a} {
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	res, err := a.FindNode(ctx, b.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Closest) < 2 {
		t.Fatalf("find_node found %d nodes, want the seed and b", len(res.Closest))
	}
	for _, f := range res.Closest {
		if f.RTT <= 0 || f.RTT > res.Elapsed {
			t.Errorf("%s: rtt %v, want in (0, %v]", f.Node.Addr, f.RTT, res.Elapsed)
		}
	}
}
