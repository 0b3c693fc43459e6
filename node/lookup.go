package node

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/routing"
)

// maxCandidates caps the candidate list of one lookup (practice, libtorrent:
// 100); the farthest are dropped first.
const maxCandidates = 128

// candidate states in a lookup.
const (
	stUnqueried = iota
	stInFlight
	stAnswered
	stFailed
	stSlow // in flight past the short timeout: its slot and place are freed
)

// Short timeouts (practice, libtorrent's short timeout): a query still
// unanswered after slowAfter gives up its slot, so another can be sent,
// and its place among the K closest, so a silent node does not hold the
// lookup open until the full QueryTimeout. Its answer is still used if it
// arrives while the lookup runs. slowAfter adapts to the latest round
// trips the node's lookups measured (rttWindow): 1.5 times their median,
// but at least 1.25 times their 90th percentile (a loaded host or link
// shows in its spread) and never below minSlowAfter; before the first
// answer it is initialSlowAfter.
const (
	initialSlowAfter = time.Second
	minSlowAfter     = 20 * time.Millisecond
)

// minSpare is the fewest spare candidates a converged lookup asks beyond
// the K closest (see traversal.spare).
const minSpare = 2

type candidate struct {
	info  krpc.NodeInfo
	known bool // id known (false for bootstrap addresses)
	// hearsay: learned from a reply, not from our table or the bootstrap
	// list; such a node's id is only what its referrer claimed.
	hearsay bool
	state   int
	reply   *krpc.Msg
	sent    time.Time     // when the query was sent (short timeout)
	rtt     time.Duration // round trip of its reply
}

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

// traversal is one iterative Kademlia lookup (BEP 5, docs/protocol.md, Lookups): α
// queries in flight to the closest unqueried candidates; nodes returned are
// added as candidates; it ends when the K closest non-failed candidates have
// all answered, or nothing is left to ask.
type traversal struct {
	target krpc.ID
	self   krpc.ID
	k      int
	alpha  int
	query  queryFunc
	// onReply sees every reply as it arrives (to stream peers or items);
	// returning true ends the lookup early.
	onReply func(from krpc.NodeInfo, m *krpc.Msg) (stop bool)

	// maxPerSubnet, if > 0, caps the candidates learned from replies that
	// share one /24 (IPv4) or /64 (IPv6), so one subnet cannot capture a
	// lookup (practice, libtorrent dht_restrict_search_ips). Seeds from our
	// own table are exempt.
	maxPerSubnet  int
	limitLoopback bool
	// verify, if set, says whether a node id may be used (BEP 42 enforce):
	// others are not added, and their replies count as failures.
	verify func(krpc.ID, netip.Addr) bool
	// prefer, if set, picks the ids the result prefers (BEP 42 prefer
	// mode): the K closest answered nodes it accepts, filled up with others.
	prefer func(krpc.ID, netip.Addr) bool
	// reach, if set, says whether our socket can send to an address
	// (BEP 32: a node bound to one family looks up in that family only).
	reach func(netip.Addr) bool
	// isSelf, if set, says whether an address is our own: it is never
	// queried, whatever id it is listed under.
	isSelf  func(netip.AddrPort) bool
	subnets map[netip.Prefix]int
	// told counts the nodes learned from the responders of each subnet
	// (the referrers' /24 or /64; loopback exempt unless limitLoopback):
	// together they may add at most k, so that one subnet of responders
	// cannot fill the lookup with made-up nodes (see learn).
	told map[netip.Prefix]int

	// slowAfter is the current short timeout (see initialSlowAfter),
	// adapted to the round trips in rtts, which the node's lookups share.
	slowAfter time.Duration
	rtts      *rttWindow
	// spare is how many candidates beyond the K closest are queried once
	// the lookup has converged, so that a silent node among the K closest
	// costs its short timeout but not a round more.
	spare int

	cands  []*candidate
	byAddr map[netip.AddrPort]*candidate
	byID   map[krpc.ID]bool

	// clock times the lookup: round trips, the short timeout and Elapsed.
	// A node sets its own; newTraversal starts with krpc.SystemClock.
	clock krpc.Clock
}

func newTraversal(self, target krpc.ID, k, alpha int, q queryFunc) *traversal {
	return &traversal{
		target: target, self: self, k: k, alpha: alpha, query: q,
		rtts:    new(rttWindow),
		byAddr:  make(map[netip.AddrPort]*candidate),
		byID:    make(map[krpc.ID]bool),
		subnets: make(map[netip.Prefix]int),
		told:    make(map[netip.Prefix]int),
		clock:   krpc.SystemClock{},
	}
}

// learn offers the nodes of from's reply (BEP 5 "nodes", BEP 32
// "nodes6"). What a responder says is hearsay, so it is bounded: at most
// k of one reply are taken (the closest to the target; BEP 5 replies
// carry k), and at most k from all the responders of one subnet
// together, so that a few subnets of responders that make nodes up
// cannot crowd the candidate list.
func (t *traversal) learn(from *candidate, r *krpc.Return) {
	ns := make([]krpc.NodeInfo, 0, len(r.Nodes)+len(r.Nodes6))
	ns = append(append(ns, r.Nodes...), r.Nodes6...)
	routing.SortByDistance(t.target, ns)
	var sn netip.Prefix
	ip := from.info.Addr.Addr()
	limited := t.limitLoopback || !ip.Unmap().IsLoopback()
	if limited {
		sn = routing.Subnet(ip)
	}
	taken := 0
	for _, n := range ns {
		if taken >= t.k || limited && t.told[sn] >= t.k {
			return
		}
		if t.add(n, true) {
			t.byAddr[n.Addr].hearsay = true
			taken++
			if limited {
				t.told[sn]++
			}
		}
	}
}

// add offers a candidate and reports whether it was added. Nodes without
// a known id (bootstrap addresses) sort after every known node and are
// not counted among the K closest. Our own address is never added,
// whatever id it comes with. Known nodes are capped per subnet
// (routing.Subnet), whether they come from our table or from a reply, so
// that one subnet cannot capture the lookup (loopback exempt unless
// limitLoopback).
func (t *traversal) add(n krpc.NodeInfo, known bool) bool {
	a := n.Addr
	if !a.IsValid() || a.Port() == 0 || a.Addr().IsUnspecified() {
		return false
	}
	if known && (n.ID == t.self || t.byID[n.ID]) {
		return false
	}
	if t.isSelf != nil && t.isSelf(a) {
		return false
	}
	if known && t.verify != nil && !t.verify(n.ID, a.Addr()) {
		return false
	}
	if _, dup := t.byAddr[a]; dup {
		return false
	}
	if t.reach != nil && !t.reach(a.Addr()) {
		return false
	}
	if known && t.maxPerSubnet > 0 && (t.limitLoopback || !a.Addr().IsLoopback()) {
		sn := routing.Subnet(a.Addr())
		if t.subnets[sn] >= t.maxPerSubnet {
			return false
		}
		t.subnets[sn]++
	}
	c := &candidate{info: n, known: known}
	t.byAddr[a] = c
	if known {
		t.byID[n.ID] = true
	}
	// insert sorted: known nodes by XOR distance, unknown ones last.
	i := sort.Search(len(t.cands), func(i int) bool {
		o := t.cands[i]
		if !o.known {
			return true
		}
		return known && routing.CompareDistance(t.target, n.ID, o.info.ID) < 0
	})
	t.cands = append(t.cands, nil)
	copy(t.cands[i+1:], t.cands[i:])
	t.cands[i] = c
	if len(t.cands) > maxCandidates {
		t.dropOne()
	}
	return t.byAddr[a] != nil
}

// dropOne drops the farthest unqueried candidate learned by hearsay, or
// if there is none the farthest unqueried one: nodes from our own table
// are not crowded out by what responders claim.
func (t *traversal) dropOne() {
	for _, hearsay := range []bool{true, false} {
		for j := len(t.cands) - 1; j >= 0; j-- {
			if c := t.cands[j]; c.state == stUnqueried && (c.hearsay || !hearsay) {
				delete(t.byAddr, c.info.Addr)
				t.cands = slices.Delete(t.cands, j, j+1)
				return
			}
		}
	}
}

type reply struct {
	c   *candidate
	msg *krpc.Msg
	err error
}

// run executes the lookup until it settles or ctx ends.
func (t *traversal) run(ctx context.Context) LookupResult {
	start := t.clock.Now()
	res := LookupResult{Target: t.target}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	replies := make(chan reply, t.alpha)
	// inFlight counts the query goroutines running; active those of them
	// not yet past the short timeout, which hold a slot.
	inFlight, active := 0, 0
	t.slowAfter = t.rtts.slowAfter()
	// The short-timeout timer runs on t.clock: it signals on wake, and a
	// late or stale signal only makes markSlow look again, which marks
	// nothing that is not past its deadline.
	wake := make(chan struct{}, 1)
	var timer krpc.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	stopped := false
	// width is how many queries may be active: alpha, until an answer
	// brings no candidate closer than the closest already known; then
	// the lookup has converged and the K closest not yet asked, and the
	// spares, are all asked at once (Kademlia, Maymounkov and Mazieres
	// 2002, §2.3).
	width, converged := t.alpha, false
	for {
		if converged {
			// A spare per expected silent node among the K, from the share
			// of this lookup's queries left unanswered, and at least
			// minSpare: the silent are found only by their short timeout,
			// and a spare asked then would cost a round more.
			lost := res.Failed + t.count(stSlow)
			t.spare = max(minSpare, (t.k*lost+res.Queried-1)/max(res.Queried, 1))
			width = max(t.alpha, t.k+t.spare)
		}
		if !stopped && ctx.Err() == nil {
			for active < width {
				c := t.next()
				if c == nil {
					break
				}
				c.state, c.sent = stInFlight, t.clock.Now()
				inFlight++
				active++
				res.Queried++
				go func(c *candidate) {
					m, err := t.query(ctx, c.info.Addr)
					replies <- reply{c, m, err}
				}(c)
			}
		}
		done := stopped || ctx.Err() != nil
		if active == 0 && (done || t.next() == nil) &&
			(done || inFlight == 0 || t.settled()) {
			// Done; slow queries still out are cancelled and drained below.
			break
		}
		// Wait for an answer or for the next active query to turn slow.
		var r reply
		if wait, ok := t.nextDeadline(); ok {
			if timer != nil {
				timer.Stop()
			}
			timer = t.clock.AfterFunc(wait, func() {
				select {
				case wake <- struct{}{}:
				default:
				}
			})
			select {
			case r = <-replies:
			case <-wake:
				active -= t.markSlow()
				continue
			}
		} else {
			r = <-replies // only slow queries left: wait them out
		}
		inFlight--
		if r.c.state == stInFlight {
			active--
		}
		if r.err == nil && r.msg != nil {
			r.c.rtt = t.clock.Now().Sub(r.c.sent)
			t.rtts.add(r.c.rtt)
			t.slowAfter = t.rtts.slowAfter()
		}
		if r.err != nil || r.msg == nil || r.msg.R == nil ||
			(t.verify != nil && !t.verify(r.msg.R.ID, r.c.info.Addr.Addr())) {
			r.c.state = stFailed
			if !errors.Is(r.err, context.Canceled) {
				res.Failed++
			}
			continue
		}
		if r.c.known && r.msg.R.ID != r.c.info.ID {
			// Not the node we were told of: whoever listed it made its
			// id up (or it has changed). Its reply is seen (a value is a
			// value), but neither its place nor its nodes are trusted.
			r.c.state = stFailed
			res.Failed++
			if !stopped && t.onReply != nil && t.onReply(krpc.NodeInfo{ID: r.msg.R.ID, Addr: r.c.info.Addr}, r.msg) {
				stopped = true
				cancel()
			}
			continue
		}
		closestBefore := t.closestKnown()
		r.c.state = stAnswered
		r.c.reply = r.msg
		r.c.info.ID = r.msg.R.ID
		if !r.c.known {
			// a bootstrap address answered: it now has an id and a place.
			r.c.known = true
			t.resort()
		}
		t.learn(r.c, r.msg.R)
		if t.closestKnown() == closestBefore {
			converged = true
		}
		if !stopped && t.onReply != nil && t.onReply(r.c.info, r.msg) {
			stopped = true
			cancel()
		}
		if t.settled() {
			stopped = true
			cancel()
		}
	}
	cancel()
	for ; inFlight > 0; inFlight-- {
		<-replies // slow queries, ended by cancel
	}
	t.collect(&res)
	res.Elapsed = t.clock.Now().Sub(start)
	return res
}

// next returns the closest unqueried candidate among the K (plus spare)
// closest non-failed ones (or any unknown-id bootstrap address), or nil.
func (t *traversal) next() *candidate {
	live := 0
	for _, c := range t.cands {
		if c.state == stFailed || c.state == stSlow {
			continue
		}
		if c.known {
			if live >= t.k+t.spare {
				continue
			}
			live++
		}
		if c.state == stUnqueried {
			return c
		}
	}
	return nil
}

// settled reports whether the K closest non-failed known candidates have
// all answered. A slow query does not hold the lookup open: its node is
// passed over (its answer still counts if it comes before the end), so a
// silent node among the closest costs slowAfter, not a round more.
func (t *traversal) settled() bool {
	live := 0
	for _, c := range t.cands {
		if c.state == stFailed || c.state == stSlow || !c.known {
			continue
		}
		if c.state != stAnswered {
			return false
		}
		live++
		if live >= t.k {
			return true
		}
	}
	return false
}

// closestKnown returns the closest candidate with a known id that has not
// failed, or nil.
func (t *traversal) closestKnown() *candidate {
	for _, c := range t.cands {
		if c.known && c.state != stFailed {
			return c
		}
	}
	return nil
}

// nextDeadline returns how long until the next active query passes
// slowAfter (at least 1ms), and false if there is no active query.
func (t *traversal) nextDeadline() (time.Duration, bool) {
	first, ok := time.Duration(0), false
	now := t.clock.Now()
	for _, c := range t.cands {
		if c.state != stInFlight {
			continue
		}
		if d := c.sent.Add(t.slowAfter).Sub(now); !ok || d < first {
			first, ok = d, true
		}
	}
	return max(first, time.Millisecond), ok
}

// count returns how many candidates are in state.
func (t *traversal) count(state int) int {
	n := 0
	for _, c := range t.cands {
		if c.state == state {
			n++
		}
	}
	return n
}

// markSlow marks the active queries sent more than slowAfter ago as slow
// and returns how many.
func (t *traversal) markSlow() int {
	n := 0
	deadline := t.clock.Now().Add(-t.slowAfter)
	for _, c := range t.cands {
		if c.state == stInFlight && !c.sent.After(deadline) {
			c.state = stSlow
			n++
		}
	}
	return n
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

// slowAfter is 1.5 times the median of the window's round trips, at least
// 1.25 times their 90th percentile and minSlowAfter; initialSlowAfter
// while the window is empty.
func (w *rttWindow) slowAfter() time.Duration {
	w.mu.Lock()
	s := slices.Clone(w.buf[:w.n])
	w.mu.Unlock()
	if len(s) == 0 {
		return initialSlowAfter
	}
	slices.Sort(s)
	return max(3*s[len(s)/2]/2, s[len(s)*9/10]*5/4, minSlowAfter)
}

func (t *traversal) resort() {
	sort.SliceStable(t.cands, func(i, j int) bool {
		a, b := t.cands[i], t.cands[j]
		if a.known != b.known {
			return a.known
		}
		if !a.known {
			return false
		}
		return routing.CompareDistance(t.target, a.info.ID, b.info.ID) < 0
	})
	for _, c := range t.cands {
		if c.known {
			t.byID[c.info.ID] = true
		}
	}
}

// collect puts the K closest answered candidates into res.Closest, in
// distance order; with prefer set, the preferred ones first (BEP 42 prefer
// mode: the K closest preferred nodes, filled up with the closest others).
func (t *traversal) collect(res *LookupResult) {
	chosen := make(map[*candidate]bool, t.k)
	if t.prefer != nil {
		for _, c := range t.cands {
			if c.state == stAnswered && len(chosen) < t.k && t.prefer(c.info.ID, c.info.Addr.Addr()) {
				chosen[c] = true
			}
		}
	}
	for _, c := range t.cands {
		if c.state == stAnswered && len(chosen) < t.k {
			chosen[c] = true
		}
	}
	for _, c := range t.cands {
		if chosen[c] {
			res.Closest = append(res.Closest, Found{Node: c.info, Reply: c.reply, RTT: c.rtt})
		}
	}
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
