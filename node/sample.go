package node

import (
	"container/heap"
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
)

// ScrapeResult is the outcome of Scrape.
type ScrapeResult struct {
	Lookup LookupResult
	Seeds  float64 // estimated distinct seed IPs (BEP 33, merged BFsd)
	Peers  float64 // estimated distinct non-seed IPs (merged BFpe)
	// Filters is the number of responders among the K closest that sent
	// both filters.
	Filters int
}

// Scrape estimates the swarm size of ih (BEP 33): a get_peers lookup with
// scrape=1, then the union of the BFsd and BFpe filters of the K closest
// responders, whose estimates are the result.
func (n *Node) Scrape(ctx context.Context, ih krpc.ID) (ScrapeResult, error) {
	lr, err := n.lookup(ctx, metrics.LookupGetPeers, ih, n.ask(krpc.MethodGetPeers, &krpc.Args{InfoHash: &ih, Scrape: 1}), nil)
	res := ScrapeResult{Lookup: lr}
	var seeds, peers krpc.Bloom
	for _, f := range lr.Closest {
		if f.Reply == nil || f.Reply.R == nil || f.Reply.R.BFsd == nil || f.Reply.R.BFpe == nil {
			continue
		}
		seeds.Union(f.Reply.R.BFsd)
		peers.Union(f.Reply.R.BFpe)
		res.Filters++
	}
	res.Seeds, res.Peers = seeds.Estimate(), peers.Estimate()
	return res, err
}

// SampleReply is one node's answer to sample_infohashes (BEP 51).
type SampleReply struct {
	From     krpc.NodeInfo
	Interval time.Duration // how long before the node may be asked again
	Num      int64         // infohashes the node stores
	Samples  []krpc.ID
	Nodes    []krpc.NodeInfo // nodes (and nodes6) closest to the target
}

// SampleInfohashes sends one sample_infohashes query to addr. A reply
// without "samples" (a node that answered it as find_node, BEP 51) is an
// error.
func (n *Node) SampleInfohashes(ctx context.Context, addr netip.AddrPort, target krpc.ID) (SampleReply, error) {
	m, err := n.query(ctx, addr, krpc.MethodSampleInfohashes, &krpc.Args{Target: &target})
	if err != nil {
		return SampleReply{}, err
	}
	r := m.R
	if r.Samples == nil {
		return SampleReply{}, fmt.Errorf("sample_infohashes %s: reply without samples (BEP 51 not supported)", addr)
	}
	out := SampleReply{From: krpc.NodeInfo{ID: r.ID, Addr: addr}, Samples: *r.Samples}
	if r.Interval != nil {
		out.Interval = time.Duration(min(max(*r.Interval, 0), 21600)) * time.Second
	}
	if r.Num != nil {
		out.Num = *r.Num
	}
	out.Nodes = append(append(out.Nodes, r.Nodes...), r.Nodes6...)
	return out, nil
}

// SampleOptions configures Sample.
type SampleOptions struct {
	// MaxNodes bounds the nodes the walk keeps track of. Default 10000.
	MaxNodes int
	// Concurrency is the number of queries in flight. Default 8.
	Concurrency int
	// OnSample, if set, sees each infohash the first time it is sampled.
	OnSample func(ih krpc.ID)
	// MaxWait is the longest interval the walk waits out to ask a node
	// again (when its num says it holds more than it sampled). Default 0:
	// each node is asked once.
	MaxWait time.Duration
}

// SampleStats is the outcome of Sample.
type SampleStats struct {
	Queried    int // distinct nodes that answered
	Queries    int // queries sent
	Failed     int // queries that failed (timeout, error, no samples)
	Infohashes int // distinct infohashes collected
}

// walkEntry is a node waiting for its turn in Sample.
type walkEntry struct {
	addr    netip.AddrPort
	due     time.Time
	seen    int // distinct samples this node gave so far
	queries int
	idx     int
}

type walkQueue []*walkEntry

func (q walkQueue) Len() int           { return len(q) }
func (q walkQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q walkQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i]; q[i].idx, q[j].idx = i, j }
func (q *walkQueue) Push(x any)        { e := x.(*walkEntry); e.idx = len(*q); *q = append(*q, e) }
func (q *walkQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// Sample walks the network with sample_infohashes (BEP 51), starting from
// the routing table and following the nodes each reply names, and collects
// the infohashes sampled. It never asks a node again before the interval
// that node gave has passed, and asks again only if the node holds more
// than it has given and its interval is at most opts.MaxWait. It returns
// when no node is left to ask, or when ctx ends (with ctx's error and what
// was collected so far).
func (n *Node) Sample(ctx context.Context, opts SampleOptions) (SampleStats, error) {
	if opts.MaxNodes <= 0 {
		opts.MaxNodes = 10000
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	var (
		mu       sync.Mutex
		stats    SampleStats
		known    = make(map[netip.AddrPort]*walkEntry)
		queue    walkQueue
		found    = make(map[krpc.ID]bool)
		answered = make(map[netip.AddrPort]bool)
		inFlight int
		wake     = make(chan struct{}, 1)
	)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	now := n.clock.Now()
	// addLocked adds a node to the walk; mu is held.
	addLocked := func(a netip.AddrPort) {
		if !a.IsValid() || a.Port() == 0 || a == n.Addr() || known[a] != nil || len(known) >= opts.MaxNodes {
			return
		}
		e := &walkEntry{addr: a, due: now}
		known[a] = e
		heap.Push(&queue, e)
	}
	mu.Lock()
	for _, e := range n.table.Nodes() {
		addLocked(e.Addr)
	}
	for _, a := range n.bootstrapAddrs() {
		addLocked(a)
	}
	mu.Unlock()

	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		mu.Lock()
		t := n.clock.Now()
		for inFlight < opts.Concurrency && queue.Len() > 0 && !queue[0].due.After(t) {
			e := heap.Pop(&queue).(*walkEntry)
			e.queries++
			inFlight++
			stats.Queries++
			wg.Add(1)
			go func(e *walkEntry) {
				defer wg.Done()
				rep, err := n.SampleInfohashes(ctx, e.addr, krpc.RandomID())
				mu.Lock()
				defer mu.Unlock()
				defer signal()
				inFlight--
				if err != nil {
					stats.Failed++
					return
				}
				if !answered[e.addr] {
					answered[e.addr] = true
					stats.Queried++
				}
				for _, ih := range rep.Samples {
					if !found[ih] {
						found[ih] = true
						e.seen++
						if opts.OnSample != nil {
							opts.OnSample(ih)
						}
					}
				}
				for _, ni := range rep.Nodes {
					addLocked(ni.Addr)
				}
				// BEP 51: not before interval; only if it holds more.
				if int64(len(rep.Samples)) < rep.Num && rep.Interval <= opts.MaxWait {
					e.due = n.clock.Now().Add(max(rep.Interval, time.Second))
					heap.Push(&queue, e)
				}
			}(e)
		}
		idle := inFlight == 0 && queue.Len() == 0
		var wait time.Duration = -1
		if inFlight == 0 && queue.Len() > 0 {
			wait = queue[0].due.Sub(t)
		}
		stats.Infohashes = len(found)
		mu.Unlock()
		if idle {
			return stats, nil
		}
		var tm krpc.Timer
		if wait >= 0 {
			tm = n.clock.AfterFunc(wait, signal) // the next node falls due
		}
		select {
		case <-ctx.Done():
			mu.Lock()
			stats.Infohashes = len(found)
			s := stats
			mu.Unlock()
			if tm != nil {
				tm.Stop()
			}
			return s, ctx.Err()
		case <-wake:
		}
		if tm != nil {
			tm.Stop()
		}
	}
}
