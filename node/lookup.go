package node

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
)

// Found is one node that answered a lookup, with its reply (its token, its
// values or item), closest first in LookupResult.Closest.
type Found struct {
	Node  krpc.NodeInfo
	Reply *krpc.Msg
	RTT   time.Duration // the round trip of its reply, by the node's clock
}

// LookupResult is the outcome of an iterative lookup.
type LookupResult struct {
	Target  krpc.ID
	Closest []Found // the K closest nodes that answered, closest first
	Queried int     // queries sent
	Failed  int     // queries that failed (timeout or error)
	Elapsed time.Duration
}

// queryFunc sends the lookup's query to one node.
type queryFunc func(ctx context.Context, to netip.AddrPort) (*krpc.Msg, error)

// traversal runs one iterative lookup (BEP 5, docs/protocol.md, Lookups):
// core.Traversal, the lookup state machine the simulator's nodes run too,
// driven by a goroutine per query and the node's clock.
type traversal struct {
	*core.Traversal
	query queryFunc
	// onReply sees every reply as it arrives (to stream peers or items);
	// returning true ends the lookup early.
	onReply func(from krpc.NodeInfo, m *krpc.Msg) (stop bool)
	// rtts are the round trips the node's lookups share: they set the
	// short timeout, and each answer adds to them.
	rtts *rttWindow
	// clock times the lookup: round trips, the short timeout and Elapsed.
	clock krpc.Clock
}

// newTraversal returns a lookup with the state machine configured by cfg,
// asking through q, on clock, with the short timeout of rtts (a window of
// its own if nil).
func newTraversal(cfg core.TraversalConfig, q queryFunc, clock krpc.Clock, rtts *rttWindow) *traversal {
	if rtts == nil {
		rtts = new(rttWindow)
	}
	return &traversal{Traversal: core.NewTraversal(cfg, clock.Now()), query: q, rtts: rtts, clock: clock}
}

type reply struct {
	c   *core.Cand
	msg *krpc.Msg
	err error
}

// run executes the lookup until it is done or ctx ends.
func (t *traversal) run(ctx context.Context) LookupResult {
	start := t.clock.Now()
	res := LookupResult{Target: t.Target()}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	replies := make(chan reply, 8)
	out := 0 // query goroutines running
	launch := func(c *core.Cand) {
		out++
		go func() {
			m, err := t.query(ctx, c.Addr())
			replies <- reply{c, m, err}
		}()
	}
	// The short-timeout timer runs on t.clock: it signals on wake, and a
	// late or stale signal only makes Tick look again, which moves nothing
	// that is not past its deadline.
	wake := make(chan struct{}, 1)
	var timer krpc.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	var retry []*core.Cand
	for {
		if ctx.Err() != nil {
			t.Stop()
		}
		now := t.clock.Now()
		for c := t.Next(now); c != nil; c = t.Next(now) {
			launch(c)
		}
		if t.Done() || out == 0 {
			break // queries still out are cancelled and drained below
		}
		// Wait for an answer or for the next active query to turn slow.
		var r reply
		slow := t.rtts.slowAfter()
		if at, ok := t.NextDeadline(slow); ok {
			if timer != nil {
				timer.Stop()
			}
			timer = t.clock.AfterFunc(max(at.Sub(now), time.Millisecond), func() {
				select {
				case wake <- struct{}{}:
				default:
				}
			})
			select {
			case r = <-replies:
			case <-wake:
				retry = t.Tick(t.clock.Now(), slow, retry[:0])
				for _, c := range retry {
					launch(c)
				}
				continue
			}
		} else {
			r = <-replies // only slow queries left: wait them out
		}
		out--
		if r.err != nil || r.msg == nil || r.msg.R == nil {
			t.Fail(r.c, !errors.Is(r.err, context.Canceled))
			continue
		}
		from := r.c.Node()
		switch t.Answered(t.clock.Now(), r.c, r.msg.R) {
		case core.AnswerUsed:
			r.c.Reply = r.msg
			from = r.c.Node() // a bootstrap address now has its id
		case core.AnswerWrongID:
			// Its reply is seen (a value is a value), under the id it
			// gave, but neither its place nor its nodes are trusted.
			from.ID = r.msg.R.ID
		case core.AnswerRefused: // BEP 42: an id its address does not allow
			t.rtts.add(r.c.RTT())
			continue
		case core.AnswerLate:
			continue
		}
		t.rtts.add(r.c.RTT())
		if t.onReply != nil && t.onReply(from, r.msg) {
			t.Stop()
		}
	}
	cancel()
	for ; out > 0; out-- {
		<-replies // slow queries, ended by cancel
	}
	for _, c := range t.Closest() {
		res.Closest = append(res.Closest, Found{Node: c.Node(), Reply: c.Reply, RTT: c.RTT()})
	}
	res.Queried, res.Failed = t.Queried(), t.Failed()
	res.Elapsed = t.clock.Now().Sub(start)
	return res
}

// rttWindowSize is how many of the latest round trips an rttWindow keeps.
const rttWindowSize = 64

// rttWindow holds the latest round trips a node's lookups measured; it is
// safe for concurrent use. The node's lookups share one, so that a lookup
// adapts its short timeout from its first query on, and a loaded host's
// long tail shows in the window's 90th percentile rather than turning live
// nodes slow (and, a spare having answered, out of the result).
type rttWindow struct {
	mu   sync.Mutex
	buf  [rttWindowSize]time.Duration
	n    int // samples held, at most rttWindowSize
	next int // where the next sample goes
}

func (w *rttWindow) add(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf[w.next] = d
	w.next = (w.next + 1) % rttWindowSize
	w.n = min(w.n+1, rttWindowSize)
}

// slowAfter is the short timeout for the window's round trips
// (core.SlowAfter): a query still unanswered after it gives up its slot,
// so another can be sent, and its place among the K closest, so a silent
// node does not hold the lookup open until the full QueryTimeout.
func (w *rttWindow) slowAfter() time.Duration {
	w.mu.Lock()
	s := slices.Clone(w.buf[:w.n])
	w.mu.Unlock()
	return core.SlowAfter(s)
}

// isSelf reports whether a is this node's own UDP endpoint: the address
// its socket is bound to; or, on its port, the external address
// responders report (BEP 42 "ip"), or, for a socket bound to the
// unspecified address, a loopback or local interface address. A lookup
// never queries it, whatever id it is listed under.
func (n *Node) isSelf(a netip.AddrPort) bool {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	local := n.Addr()
	if a == local {
		return true
	}
	if a.Port() != local.Port() {
		return false
	}
	ip := a.Addr()
	if ext, ok := n.votedIP(); ok && ext == ip {
		return true
	}
	return local.Addr().IsUnspecified() && (ip.IsLoopback() || n.localIPs()[ip])
}

// localIPs returns the host's interface addresses, read once.
func (n *Node) localIPs() map[netip.Addr]bool {
	n.localOnce.Do(func() {
		n.localIPSet = make(map[netip.Addr]bool)
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			n.log.Debug("interface addresses", "err", err)
			return
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				n.localIPSet[p.Addr().Unmap()] = true
			}
		}
	})
	return n.localIPSet
}
