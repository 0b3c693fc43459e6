package node

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
)

// ClosestNode is one of the nodes a find_node lookup ended with, and the
// round trip of its reply to that lookup.
type ClosestNode struct {
	Node krpc.NodeInfo
	RTT  time.Duration
}

// FindNodeResult is the outcome of FindClosest.
type FindNodeResult struct {
	Nodes  []ClosestNode // the K closest nodes that answered, closest first
	Lookup LookupResult
}

// FindClosest is FindNode reporting the round trip of each of the K
// closest nodes' replies (BEP 5 find_node, iterated).
func (n *Node) FindClosest(ctx context.Context, target krpc.ID) (FindNodeResult, error) {
	var mu sync.Mutex
	rtts := make(map[netip.AddrPort]time.Duration)
	lr, err := n.lookup(ctx, metrics.LookupFindNode, target, func(ctx context.Context, to netip.AddrPort) (*krpc.Msg, error) {
		start := n.clock.Now()
		m, err := n.query(ctx, to, krpc.MethodFindNode, &krpc.Args{Target: &target})
		if err == nil {
			rtt := n.clock.Now().Sub(start)
			mu.Lock()
			rtts[to] = rtt
			mu.Unlock()
		}
		return m, err
	}, nil)
	res := FindNodeResult{Lookup: lr}
	mu.Lock()
	defer mu.Unlock()
	for _, f := range lr.Closest {
		res.Nodes = append(res.Nodes, ClosestNode{Node: f.Node, RTT: rtts[f.Node.Addr]})
	}
	return res, err
}
