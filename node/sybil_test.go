package node

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
)

// TestSybilSubnetCapped: 50 nodes in one /24 with ids crafted next to a
// target cannot make up more than the per-subnet limit of a lookup's
// result, while honest nodes spread over other /24s fill the rest. It runs
// on the simulated network, in virtual time, at loopback addresses: the
// honest nodes switch the loopback exemption off, the Sybils keep it and
// so apply no limits themselves.
func TestSybilSubnetCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("network test")
	}
	synctest.Test(t, testSybilSubnetCapped)
}

func testSybilSubnetCapped(t *testing.T) {
	s := newSim(t, 9, simnet.Config{})
	target := s.newID()
	limited := func(c *Config) { c.LimitLoopback = true }
	at := func(a, b, c byte) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, a, b, c}), 6881)
	}
	seed := s.startWith(s.newID(), at(0, 1, 1), nil, limited)
	boot := []netip.AddrPort{seed.Addr()}
	var honest []*Node
	for i := range 30 {
		honest = append(honest, s.startWith(s.newID(), at(0, byte(i+2), 1), boot, limited))
	}
	// The Sybils answer with each other.
	var sybils []*Node
	sybilIDs := make(map[krpc.ID]bool)
	for i := range 50 {
		id := target
		copy(id[15:], s.newID().String()[:5])
		sybilIDs[id] = true
		sybils = append(sybils, s.start(id, at(66, 66, byte(i+1)), boot))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // simulated
	defer cancel()
	all := append(append([]*Node{}, honest...), sybils...)
	for range 2 {
		parallel(len(all), 16, func(i int) { _ = all[i].Bootstrap(ctx) })
	}
	q := s.startWith(s.newID(), at(0, 200, 1), boot, limited)
	if err := q.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := q.FindNode(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range res.Closest {
		if sybilIDs[f.Node.ID] {
			n++
		}
	}
	// Without the cap the 8 closest would all be Sybils (their ids share
	// 15 bytes with the target).
	limit := q.cfg.LookupMaxPerSubnet
	t.Logf("result: %d nodes, %d from the Sybil /24 (limit %d)", len(res.Closest), n, limit)
	if n > limit {
		t.Fatalf("%d Sybils in the result, limit %d", n, limit)
	}
	if len(res.Closest) < 8 {
		t.Fatalf("only %d nodes in the result", len(res.Closest))
	}
}
