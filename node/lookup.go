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

// queryFunc sends the lookup's query to one node, waiting for a free slot
// of the node's queries in flight until ctx ends, and returns once it is
// sent; done gets the answer or the error later (CoreNode.GoWait). An
// error means the query was not sent, and done is not called.
type queryFunc func(ctx context.Context, to netip.AddrPort, done krpc.Callback) (krpc.Call, error)

// traversal runs one iterative lookup (BEP 5, docs/protocol.md, Lookups):
// core.Traversal, the lookup state machine the simulator's nodes run too,
// driven by the goroutine of its caller, the callbacks of its queries and
// the node's clock.
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

// replyQueue takes the answers of a lookup's queries from their callbacks
// (on the core's read loop or timer, which must not block) to the
// lookup's goroutine.
type replyQueue struct {
	mu   sync.Mutex
	q    []reply
	wake chan struct{} // buffered(1): replies are queued
}

func (rq *replyQueue) push(r reply) {
	rq.mu.Lock()
	rq.q = append(rq.q, r)
	rq.mu.Unlock()
	select {
	case rq.wake <- struct{}{}:
	default:
	}
}

// take returns the queued replies, emptying the queue; buf is reused.
func (rq *replyQueue) take(buf []reply) []reply {
	rq.mu.Lock()
	buf = append(buf[:0], rq.q...)
	clear(rq.q)
	rq.q = rq.q[:0]
	rq.mu.Unlock()
	return buf
}

// run executes the lookup until it is done or ctx ends. It starts no
// goroutine: its queries answer through callbacks, and the queries still
// out when it ends are cancelled.
func (t *traversal) run(ctx context.Context) LookupResult {
	start := t.clock.Now()
	res := LookupResult{Target: t.Target()}
	replies := &replyQueue{wake: make(chan struct{}, 1)}
	var calls []krpc.Call // every query sent, to cancel those still out
	defer func() {
		for _, c := range calls {
			c.Cancel() // an answer arriving meanwhile is queued and dropped
		}
	}()
	out := 0 // queries whose reply is not yet handled
	launch := func(c *core.Cand) {
		out++
		call, err := t.query(ctx, c.Addr(), func(m *krpc.Msg, err error) { replies.push(reply{c, m, err}) })
		if err != nil {
			replies.push(reply{c: c, err: err})
			return
		}
		calls = append(calls, call)
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
	var batch []reply
	for {
		batch = replies.take(batch)
		for _, r := range batch {
			out--
			t.handle(r)
		}
		if ctx.Err() != nil {
			t.Stop()
		}
		now := t.clock.Now()
		for c := t.Next(now); c != nil; c = t.Next(now) {
			launch(c)
		}
		if t.Done() || out == 0 {
			break // queries still out are cancelled (deferred above)
		}
		// Wait for an answer, for the next active query to turn slow, or
		// for ctx.
		var timeout <-chan struct{}
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
			timeout = wake
		} // else only slow queries are left that hold nothing open: wait them out
		select {
		case <-replies.wake:
		case <-timeout:
			retry = t.Tick(t.clock.Now(), slow, retry[:0])
			for _, c := range retry {
				launch(c)
			}
		case <-ctx.Done():
		}
	}
	for _, c := range t.Closest() {
		res.Closest = append(res.Closest, Found{Node: c.Node(), Reply: c.Reply, RTT: c.RTT()})
	}
	res.Queried, res.Failed = t.Queried(), t.Failed()
	res.Elapsed = t.clock.Now().Sub(start)
	return res
}

// handle takes the answer or failure of one query.
func (t *traversal) handle(r reply) {
	if r.err != nil || r.msg == nil || r.msg.R == nil {
		t.Fail(r.c, !errors.Is(r.err, context.Canceled))
		return
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
		return
	case core.AnswerLate:
		return
	}
	t.rtts.add(r.c.RTT())
	if t.onReply != nil && t.onReply(from, r.msg) {
		t.Stop()
	}
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
