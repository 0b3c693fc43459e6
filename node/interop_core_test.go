package node

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/ltnode"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/storage"
)

// TestInteropCoreNode: the simulator's node core, driven from real
// sockets by CoreNode, against libtorrent 2.0.8. Two core nodes C1 and C2
// on 127.0.0.1 (C2 joined through C1); libtorrent L adds C1, which
// confirms L with a ping; L's lookup walks C1's answers to C2; C2's
// find_node for L's id ends at L; C1 announces a peer and puts an
// immutable item that L then finds; C2 gets an item L put.
func TestInteropCoreNode(t *testing.T) {
	ltnode.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	start := func() *CoreNode {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(dhtdHost)})
		if err != nil {
			t.Fatal(err)
		}
		c := StartCore(conn, CoreConfig{Core: core.Config{ID: krpc.RandomID()}})
		t.Cleanup(func() { c.Close() })
		return c
	}
	c1, c2 := start(), start()
	id := func(c *CoreNode) (id krpc.ID) {
		c.Do(func(n *core.Node, _ time.Time) { id = n.ID() })
		return id
	}
	has := func(c *CoreNode, id krpc.ID) (ok bool) {
		c.Do(func(n *core.Node, _ time.Time) { _, ok = n.Table().Get(id) })
		return ok
	}
	joined := make(chan core.Result, 1)
	c2.Do(func(n *core.Node, now time.Time) {
		n.Bootstrap(now, []netip.AddrPort{c1.Addr()}, func(r core.Result) { joined <- r })
	})
	if r := await(t, joined, "C2's bootstrap"); len(r.Closest) == 0 {
		t.Fatal("C2's bootstrap through C1 found nobody")
	}
	waitFor(t, 10*time.Second, func() bool { return has(c1, id(c2)) && has(c2, id(c1)) })

	l := ltnode.Start(t, ctx, ltnode.Host)
	if !l.AddNode(t, ctx, c1.Addr()) {
		t.Fatalf("libtorrent's ping of C1 got no usable answer")
	}
	// C1 heard L's query and pings it back (BEP 5): L enters its table.
	waitFor(t, 10*time.Second, func() bool { return has(c1, l.ID) })

	gp := ltnode.Do[ltnode.GetPeersReply](t, ctx, l, 20*time.Second, map[string]any{
		"cmd": "get_peers", "info_hash": krpc.RandomID().String(), "timeout": 15, "quiet": 3,
	})
	if !slices.Contains(gp.Responded, c1.Addr().String()) || !slices.Contains(gp.Responded, c2.Addr().String()) {
		t.Fatalf("libtorrent's lookup responders %v lack C1 %s or C2 %s", gp.Responded, c1.Addr(), c2.Addr())
	}
	if len(gp.Errors) > 0 {
		t.Fatalf("libtorrent's lookup: errors %v", gp.Errors)
	}
	waitFor(t, 10*time.Second, func() bool { return has(c2, l.ID) })

	found := make(chan core.Result, 1)
	c2.Do(func(n *core.Node, now time.Time) { n.FindNode(now, l.ID, func(r core.Result) { found <- r }) })
	if r := await(t, found, "C2's find_node"); len(r.Closest) == 0 || r.Closest[0].Node != (krpc.NodeInfo{ID: l.ID, Addr: l.Addr}) {
		t.Fatalf("C2's find_node of libtorrent's id: closest %+v, want %s@%s", r.Closest, l.ID, l.Addr)
	}

	// C1 announces a peer; libtorrent's get_peers finds it.
	ih := krpc.RandomID()
	announced := make(chan core.StoreResult, 1)
	c1.Do(func(n *core.Node, now time.Time) {
		n.Announce(now, ih, 6881, func(r core.StoreResult) { announced <- r })
	})
	if r := await(t, announced, "C1's announce"); r.Stored != 2 {
		t.Fatalf("C1's announce_peer stored on %d nodes, want 2 (C2 and libtorrent; a lookup never asks its own node)", r.Stored)
	}
	peer := netip.AddrPortFrom(c1.Addr().Addr(), 6881).String()
	gp = ltnode.Do[ltnode.GetPeersReply](t, ctx, l, 20*time.Second, map[string]any{
		"cmd": "get_peers", "info_hash": ih.String(), "timeout": 15, "quiet": 3,
	})
	if !slices.Contains(gp.Peers, peer) {
		t.Fatalf("libtorrent's get_peers: peers %v, want %s", gp.Peers, peer)
	}

	// C1 puts an immutable item; libtorrent gets it.
	v := bstr("hello from the core")
	put := make(chan core.StoreResult, 1)
	c1.Do(func(n *core.Node, now time.Time) { n.Put(now, v, func(r core.StoreResult) { put <- r }) })
	if r := await(t, put, "C1's put"); r.Stored != 2 {
		t.Fatalf("C1's put stored on %d nodes, want 2", r.Stored)
	}
	g := ltnode.Do[ltnode.GetReply](t, ctx, l, 30*time.Second, map[string]any{
		"cmd": "get_immutable", "target": storage.ImmutableTarget(v).String(), "timeout": 20,
	})
	if !g.Found || g.Value == nil || *g.Value != "hello from the core" {
		t.Fatalf("libtorrent get_immutable of C1's item: found %v value %v", g.Found, g.Value)
	}

	// libtorrent puts an immutable item; C2's get finds the value.
	lv := bstr("hello from libtorrent")
	p := ltnode.Do[ltnode.PutReply](t, ctx, l, 50*time.Second, map[string]any{
		"cmd": "put_immutable", "value": "hello from libtorrent",
	})
	if p.Target != storage.ImmutableTarget(lv).String() || p.NumSuccess < 2 {
		t.Fatalf("libtorrent put_immutable: %+v", p)
	}
	got := make(chan core.Result, 1)
	c2.Do(func(n *core.Node, now time.Time) {
		n.Get(now, storage.ImmutableTarget(lv), func(r core.Result) { got <- r })
	})
	if r := await(t, got, "C2's get"); string(r.Value) != string(lv) {
		t.Fatalf("C2's get of libtorrent's item: value %q, want %q", r.Value, lv)
	}
}
