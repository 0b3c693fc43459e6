package node

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/krpc/simnet"
	"github.com/dhtd/dhtd/routing"
)

// TestStats: Stats reports what the node holds — its table's counts, the
// items it stores for others, its identity and family — as a copy that
// later changes of the node do not touch.
func TestStats(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seed := startNode(t, nil)
	n := startNode(t, func(c *Config) { c.Bootstrap = []string{seed.Addr().String()} })
	before := seed.Stats()
	if err := n.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.PutImmutable(ctx, []byte("5:hello")); err != nil {
		t.Fatal(err)
	}

	st := n.Stats()
	if st.ID != n.ID() || st.Addr != n.Addr() || st.Family != "ipv4" || st.K != 8 || st.BEP42 != routing.BEP42Off {
		t.Errorf("identity: %+v", st)
	}
	good, q, bad := n.table.Counts(n.clock.Now())
	if st.Good != good || st.Questionable != q || st.Bad != bad || st.Good != 1 || st.Buckets != n.table.NumBuckets() {
		t.Errorf("table: good %d questionable %d bad %d buckets %d; the table has %d %d %d, %d buckets; want the seed good",
			st.Good, st.Questionable, st.Bad, st.Buckets, good, q, bad, n.table.NumBuckets())
	}
	// One good node is not enough to be ready; storage in memory is
	// always healthy; no vote on our address yet.
	if st.Ready || !st.StorageHealthy || st.ExternalIP.IsValid() || st.ReadOnly {
		t.Errorf("ready %v, storage healthy %v, external ip %v, read-only %v", st.Ready, st.StorageHealthy, st.ExternalIP, st.ReadOnly)
	}
	// The seed stored the item; the copy taken before did not change.
	if got := seed.Stats().Items; got.Immutable != 1 || got.Stored != 1 {
		t.Errorf("seed stores %d immutable items (%d stored), want 1", got.Immutable, got.Stored)
	}
	if before.Items.Immutable != 0 || before.Good != 0 {
		t.Errorf("the snapshot taken before changed: %+v", before)
	}
	// Stats and the daemon's routing dump agree.
	d := n.Admin().RoutingSnapshot()
	if d.Good != st.Good || d.Quest != st.Questionable || d.Bad != st.Bad || len(d.Buckets) != st.Buckets || d.ID != st.ID.String() {
		t.Errorf("routing dump %+v disagrees with stats %+v", d, st)
	}
}

// TestStatsUptime: Uptime is measured on the node's clock (virtual time in
// a synctest bubble).
func TestStatsUptime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSim(t, 21, simnet.Config{})
		n := s.start(s.newID(), s.newAddr(), nil)
		time.Sleep(time.Hour)
		if up := n.Stats().Uptime; up < time.Hour || up > time.Hour+time.Minute {
			t.Errorf("uptime %v after an hour of the node's clock", up)
		}
	})
}

// TestAdminBootstrapList: the daemon's reload replaces the bootstrap list,
// and the node reads back a copy.
func TestAdminBootstrapList(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Bootstrap = []string{"127.0.0.1:1"} })
	a := n.Admin()
	if got := a.BootstrapList(); !slices.Equal(got, []string{"127.0.0.1:1"}) {
		t.Fatalf("BootstrapList = %v", got)
	}
	a.SetBootstrap([]string{"127.0.0.2:2", "127.0.0.3:3"})
	got := a.BootstrapList()
	got[0] = "changed"
	if got := a.BootstrapList(); !slices.Equal(got, []string{"127.0.0.2:2", "127.0.0.3:3"}) {
		t.Fatalf("BootstrapList after SetBootstrap = %v", got)
	}
	if a.Table() != n.table || a.Registry() == nil || a.Metrics() != n.metrics {
		t.Error("Admin does not hand out the node's own table, registry and metrics")
	}
}
