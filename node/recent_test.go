package node

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/krpc/simnet"
)

func TestRecentLookupsRing(t *testing.T) {
	tests := []struct {
		added, want int
	}{{0, 0}, {1, 1}, {RecentLookupsSize, RecentLookupsSize}, {RecentLookupsSize + 7, RecentLookupsSize}, {3*RecentLookupsSize + 1, RecentLookupsSize}}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.added), func(t *testing.T) {
			var r recentLookups
			for i := 0; i < tt.added; i++ {
				r.add(RecentLookup{Queried: i})
			}
			got := r.list()
			if len(got) != tt.want {
				t.Fatalf("%d kept, want %d", len(got), tt.want)
			}
			for i, l := range got { // newest first
				if want := tt.added - 1 - i; l.Queried != want {
					t.Fatalf("entry %d is lookup %d, want %d", i, l.Queried, want)
				}
			}
		})
	}
}

// TestRecentLookupsFed: a lookup through the API lands in the ring with
// its kind, target and query count. On the simulated network, in virtual
// time.
func TestRecentLookupsFed(t *testing.T) { synctest.Test(t, testRecentLookupsFed) }

func testRecentLookupsFed(t *testing.T) {
	s := newSim(t, 15, simnet.Config{})
	a := s.start(s.newID(), s.newAddr(), nil)
	b := s.start(s.newID(), s.newAddr(), []netip.AddrPort{a.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // simulated
	defer cancel()
	if err := b.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	target := a.ID()
	if _, err := b.FindNode(ctx, target); err != nil {
		t.Fatal(err)
	}
	got := b.Admin().RecentLookups()
	if len(got) == 0 {
		t.Fatal("no recent lookups")
	}
	l := got[0]
	if l.Kind != "find_node" || l.Target != target.String() || l.Queried == 0 || l.Outcome != "ok" || l.Closest == 0 {
		t.Fatalf("newest lookup %+v: want the find_node for %s with queries", l, target)
	}
	if l.Start.IsZero() || l.Elapsed <= 0 {
		t.Fatalf("newest lookup %+v: want a start and a duration", l)
	}
}
