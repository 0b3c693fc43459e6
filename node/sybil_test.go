package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// TestSybilSubnetCapped: 50 nodes in one /24 with ids crafted next to a
// target cannot make up more than the per-subnet limit of a lookup's
// result, while honest nodes spread over other /24s fill the rest.
func TestSybilSubnetCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("network test")
	}
	target := krpc.RandomID()
	limited := func(c *Config) { c.LimitLoopback = true }
	seed := startNode(t, func(c *Config) { c.Listen = "127.0.1.1:0"; limited(c) })
	boot := []string{seed.Addr().String()}
	var honest []*Node
	for i := 0; i < 30; i++ {
		honest = append(honest, startNode(t, func(c *Config) {
			c.Listen = fmt.Sprintf("127.0.%d.1:0", i+2)
			c.Bootstrap = boot
			limited(c)
		}))
	}
	// The Sybils apply no limits themselves and answer with each other.
	var sybils []*Node
	sybilIDs := make(map[krpc.ID]bool)
	for i := 0; i < 50; i++ {
		id := target
		copy(id[15:], krpc.RandomID().String()[:5])
		sybilIDs[id] = true
		sybils = append(sybils, startNode(t, func(c *Config) {
			c.ID = id
			c.Listen = fmt.Sprintf("127.66.66.%d:0", i+1)
			c.Bootstrap = boot
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append(append([]*Node{}, honest...), sybils...)
	for round := 0; round < 2; round++ {
		parallel(len(all), 16, func(i int) { _ = all[i].Bootstrap(ctx) })
	}
	q := startNode(t, func(c *Config) { c.Listen = "127.0.200.1:0"; c.Bootstrap = boot; limited(c) })
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
