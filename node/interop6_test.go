package node

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/internal/ltnode"
	"github.com/dhtd/dhtd/krpc"
)

// TestInteropIPv6 (BEP 32): over IPv6 loopback, dhtd and
// libtorrent ping each other, answer each other's find_node with nodes6,
// and find each other's announced peers with get_peers, both ways.
func TestInteropIPv6(t *testing.T) {
	ltnode.Require(t)
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// Every query the dhtd nodes receive, to see libtorrent's.
	type query struct {
		from   netip.AddrPort
		method string
	}
	queries := make(chan query, 4096)
	record := func(from netip.AddrPort, method string) {
		select {
		case queries <- query{from, method}:
		default:
		}
	}
	nodes := startInteropNodesOn(t, ctx, 3, "[::1]")
	for _, n := range nodes {
		n.onQuery.Store(&record)
	}
	ihPre := krpc.RandomID()
	if _, err := nodes[1].Announce(ctx, ihPre, AnnounceOptions{Port: 4566}); err != nil {
		t.Fatalf("dhtd announce: %v", err)
	}

	findNodes := func() (sum float64) {
		for _, n := range nodes {
			sum += testutil.ToFloat64(n.metrics.QueriesReceived.WithLabelValues(krpc.MethodFindNode))
		}
		return sum
	}
	before := findNodes()
	l := ltnode.Start(t, ctx, "::1")
	if !l.Addr.Addr().Is6() {
		t.Fatalf("libtorrent listens on %s, want IPv6", l.Addr)
	}
	linkLT(t, ctx, l, nodes) // libtorrent adds dhtd; dhtd pings libtorrent (both ways)

	// dhtd asks libtorrent find_node over IPv6: nodes6 holds the dhtd nodes.
	target := nodes[2].ID()
	m, err := nodes[0].srv.Query(ctx, l.Addr, krpc.MethodFindNode, &krpc.Args{ID: nodes[0].ID(), Target: &target})
	if err != nil {
		t.Fatalf("find_node to libtorrent over IPv6: %v", err)
	}
	if !slices.ContainsFunc(m.R.Nodes6, func(n krpc.NodeInfo) bool { return n.ID == target && n.Addr == nodes[2].Addr() }) {
		t.Fatalf("libtorrent's nodes6 %v lack %s@%s", m.R.Nodes6, target, nodes[2].Addr())
	}

	// libtorrent's lookups go through dhtd: its get_peers finds the peer
	// only dhtd stores, answered with IPv6 values.
	want := "[" + nodes[1].Addr().Addr().String() + "]:4566"
	gp := ltnode.Do[ltnode.GetPeersReply](t, ctx, l, 20*time.Second, map[string]any{
		"cmd": "get_peers", "info_hash": ihPre.String(), "timeout": 15, "quiet": 3,
	})
	if !slices.Contains(gp.Peers, want) {
		t.Fatalf("libtorrent get_peers found %v, want %s", gp.Peers, want)
	}

	// libtorrent announces; dhtd's get_peers finds it.
	ih := krpc.RandomID()
	an := ltnode.Do[ltnode.AnnounceReply](t, ctx, l, 40*time.Second, map[string]any{
		"cmd": "announce", "info_hash": ih.String(), "timeout": 30,
	})
	if an.Error != "" {
		t.Fatalf("libtorrent announce: %s", an.Error)
	}
	pr, err := nodes[2].GetPeers(ctx, ih, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pr.Peers, l.Addr) {
		t.Fatalf("dhtd GetPeers over IPv6 found %v, want %s", pr.Peers, l.Addr)
	}
	t.Logf("find_node queries received by the dhtd nodes since libtorrent started: %v", findNodes()-before)

	// libtorrent's own queries reached dhtd over IPv6 and were answered
	// (it checks the nodes it is given and looks up with get_peers; 2.0.8
	// sent no find_node in 30 s of observation, so none is required).
	seen := make(map[string]int)
	for len(queries) > 0 {
		if q := <-queries; q.from == l.Addr {
			seen[q.method]++
		}
	}
	t.Logf("queries from libtorrent to dhtd over IPv6: %v", seen)
	if seen[krpc.MethodGetPeers] == 0 || seen[krpc.MethodAnnouncePeer] == 0 {
		t.Fatalf("queries from libtorrent over IPv6: %v; want get_peers and announce_peer", seen)
	}
}
