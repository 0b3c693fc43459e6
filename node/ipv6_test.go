package node

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
)

// hasIPv6Loopback reports whether ::1 can be bound here.
func hasIPv6Loopback() bool {
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

// TestDualStackNetwork (BEP 32): IPv4-only nodes, IPv6-only nodes and
// dual-stack nodes (a linked pair of nodes, one per family, each
// bootstrapped from both seeds) form one network. Within each family
// get_peers and BEP 44 get/put work, and a dual-stack node answers want
// ["n4","n6"] with both nodes and nodes6. On the simulated network, in
// virtual time: IPv4 nodes on 127.0.0.1, IPv6 nodes on ::1, as on a
// host's loopback.
func TestDualStackNetwork(t *testing.T) { synctest.Test(t, testDualStackNetwork) }

func testDualStackNetwork(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // simulated
	defer cancel()
	s := newSim(t, 14, simnet.Config{})
	port := uint16(6880)
	start := func(ip string, boot ...netip.AddrPort) *Node {
		port++
		return s.start(s.newID(), netip.AddrPortFrom(netip.MustParseAddr(ip), port), boot)
	}
	seed4, seed6 := start("127.0.0.1"), start("::1")
	boot4, boot6 := seed4.Addr(), seed6.Addr()
	var v4, v6, dual []*Node
	for range 12 {
		v4 = append(v4, start("127.0.0.1", boot4))
		v6 = append(v6, start("::1", boot6))
	}
	// A dual-stack node is a linked pair, one node per family (BEP 32),
	// as `dhtd run` with two --listen addresses runs it.
	for range 3 {
		d4, d6 := start("127.0.0.1", boot4, boot6), start("::1", boot4, boot6)
		Link(d4, d6)
		dual = append(dual, d4, d6)
	}
	all := slices.Concat(v4, v6, dual)
	for range 2 {
		parallel(len(all), 16, func(i int) { _ = all[i].Bootstrap(ctx) })
	}

	// A dual-stack node, asked by an IPv4 node with want n4+n6, answers
	// with both lists, each of its own family.
	dualPort := dual[0].Addr().Port() // the IPv4 half of the first pair
	target := krpc.RandomID()
	m, err := v4[0].srv.Query(ctx, netipLoopback4(dualPort), krpc.MethodFindNode,
		&krpc.Args{ID: v4[0].ID(), Target: &target, Want: []string{"n4", "n6"}})
	if err != nil {
		t.Fatalf("find_node to the dual-stack node: %v", err)
	}
	if len(m.R.Nodes) == 0 || len(m.R.Nodes6) == 0 {
		t.Fatalf("want n4+n6: %d nodes, %d nodes6", len(m.R.Nodes), len(m.R.Nodes6))
	}
	for _, n := range m.R.Nodes6 {
		if n.Addr.Addr().Is4() || n.Addr.Addr().Is4In6() {
			t.Fatalf("nodes6 holds %v", n)
		}
	}
	// Without want, an IPv4 querier gets IPv4 nodes only.
	m, err = v4[0].srv.Query(ctx, netipLoopback4(dualPort), krpc.MethodFindNode, &krpc.Args{ID: v4[0].ID(), Target: &target})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.R.Nodes) == 0 || len(m.R.Nodes6) != 0 {
		t.Fatalf("no want from IPv4: %d nodes, %d nodes6", len(m.R.Nodes), len(m.R.Nodes6))
	}

	for _, fam := range []struct {
		name  string
		nodes []*Node
	}{{"ipv4", v4}, {"ipv6", v6}} {
		func() { // what t.Run would do, which a bubble does not allow
			a, b := fam.nodes[1], fam.nodes[len(fam.nodes)-1]
			ih := krpc.RandomID()
			if _, err := a.Announce(ctx, ih, AnnounceOptions{Port: 0, ImpliedPort: true}); err != nil {
				t.Fatalf("%s: announce: %v", fam.name, err)
			}
			pr, err := b.GetPeers(ctx, ih, nil)
			if err != nil {
				t.Fatalf("%s: get_peers: %v", fam.name, err)
			}
			if !slices.Contains(pr.Peers, a.Addr()) {
				t.Fatalf("%s: get_peers found %v, want %v", fam.name, pr.Peers, a.Addr())
			}
			v := bstr("item in " + fam.name)
			put, err := a.PutImmutable(ctx, v)
			if err != nil {
				t.Fatalf("%s: put: %v", fam.name, err)
			}
			g, err := b.Get(ctx, put.Target, GetOptions{})
			if err != nil || !bytes.Equal(g.Item.V, v) {
				t.Fatalf("%s: get: %v, %q", fam.name, err, g.Item.V)
			}
			for _, f := range pr.Lookup.Closest {
				if f.Node.Addr.Addr().Unmap().Is4() != (fam.name == "ipv4") {
					t.Fatalf("%s lookup reached %v", fam.name, f.Node.Addr)
				}
			}
		}()
	}
}

func netipLoopback4(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)
}
