package core

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/routing"
)

func v4(a, b, c, d byte, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{a, b, c, d}), port)
}

// script is a set of responders for a Traversal driven in one goroutine:
// replies maps an address to its answer (nil: silent); every query is
// counted in asked.
type script struct {
	replies map[netip.AddrPort]*krpc.Return
	asked   map[netip.AddrPort]int
	all     *krpc.Return // if set, the answer of every address not in replies
}

// reply returns a's answer, or nil if a is silent.
func (s *script) reply(a netip.AddrPort) *krpc.Return {
	if r, ok := s.replies[a]; ok || s.all == nil {
		return r
	}
	return s.all
}

// drive runs tr to its end on a virtual clock: an answer takes 10 ms, a
// silent node's query passes the short timeout (50 ms) and fails at 200
// ms. It fails the test if tr is not done within 10,000 steps.
func (s *script) drive(t *testing.T, tr *Traversal) {
	t.Helper()
	const rtt, slow, timeout = 10 * time.Millisecond, 50 * time.Millisecond, 200 * time.Millisecond
	type query struct {
		c  *Cand
		at time.Time // when its answer or failure comes
		ok bool
	}
	now := t0
	var out []query
	ask := func(c *Cand) {
		s.asked[c.Addr()]++
		if s.reply(c.Addr()) != nil {
			out = append(out, query{c, now.Add(rtt), true})
		} else {
			out = append(out, query{c, now.Add(timeout), false})
		}
	}
	for range 10000 {
		for c := tr.Next(now); c != nil; c = tr.Next(now) {
			ask(c)
		}
		if tr.Done() {
			return
		}
		// The next event: an answer or failure, or a short timeout.
		slices.SortStableFunc(out, func(a, b query) int { return a.at.Compare(b.at) })
		deadline, ok := tr.NextDeadline(slow)
		if ok && (len(out) == 0 || deadline.Before(out[0].at)) {
			now = deadline
			for _, c := range tr.Tick(now, slow, nil) {
				ask(c)
			}
			continue
		}
		if len(out) == 0 {
			t.Fatal("the traversal waits with no query out")
		}
		q := out[0]
		out = out[1:]
		now = q.at
		if q.ok {
			tr.Answered(now, q.c, s.reply(q.c.Addr()))
		} else {
			tr.Fail(q.c, true)
		}
	}
	t.Fatal("the traversal did not end")
}

// TestTraversalVerifiesHearsay: what responders say is checked.
//   - Our own address, listed under another id, is never queried.
//   - At most K nodes of one reply are taken, the closest to the target.
//   - The responders of one /24 together add at most K nodes.
//   - A node that answers with an id other than the one it was listed
//     under is not among the results, and its nodes are not followed.
func TestTraversalVerifiesHearsay(t *testing.T) {
	const k = 8
	target := krpc.RandomID()
	self := krpc.NodeInfo{ID: krpc.RandomID(), Addr: v4(10, 9, 9, 9, 6881)}
	near := func(b byte) krpc.ID { id := target; id[19] ^= b; return id } // b = 1 is the closest
	s := &script{replies: map[netip.AddrPort]*krpc.Return{}, asked: map[netip.AddrPort]int{}}

	// The seed, 10.0.0.1, lists our own address under the closest id,
	// 40 nodes that do not answer, from 10.1.1.x, and a liar.
	seed := krpc.NodeInfo{ID: near(200), Addr: v4(10, 0, 0, 1, 6881)}
	liar := krpc.NodeInfo{ID: near(2), Addr: v4(10, 2, 0, 1, 6881)}
	seedReply := &krpc.Return{ID: seed.ID, Nodes: []krpc.NodeInfo{{ID: near(1), Addr: self.Addr}, liar}}
	for i := range 40 {
		seedReply.Nodes = append(seedReply.Nodes, krpc.NodeInfo{ID: near(byte(10 + i)), Addr: v4(10, 1, 1, byte(i+1), 6881)})
	}
	s.replies[seed.Addr] = seedReply
	// The liar answers with another id, and lists a node it made up.
	madeUp := krpc.NodeInfo{ID: near(3), Addr: v4(10, 3, 0, 1, 6881)}
	s.replies[liar.Addr] = &krpc.Return{ID: near(4), Nodes: []krpc.NodeInfo{madeUp}}
	s.replies[madeUp.Addr] = &krpc.Return{ID: madeUp.ID}
	// Three responders of one /24 (10.5.5.x) list 8 nodes each.
	var sybils []krpc.NodeInfo
	for i := range 3 {
		sy := krpc.NodeInfo{ID: near(byte(100 + i)), Addr: v4(10, 5, 5, byte(i+1), 6881)}
		sybils = append(sybils, sy)
		r := &krpc.Return{ID: sy.ID}
		for j := range 8 {
			r.Nodes = append(r.Nodes, krpc.NodeInfo{ID: near(byte(120 + 8*i + j)), Addr: v4(10, 6, byte(8*i+j), 1, 6881)})
		}
		s.replies[sy.Addr] = r
	}

	tr := NewTraversal(TraversalConfig{
		Self: self.ID, Target: target, K: k, Alpha: 5, MaxPerSubnet: 2,
		IsSelf: func(a netip.AddrPort) bool { return a == self.Addr },
	}, t0)
	tr.Seed(seed)
	for _, sy := range sybils {
		tr.Seed(sy)
	}
	s.drive(t, tr)
	if n := s.asked[self.Addr]; n != 0 {
		t.Errorf("our own address was queried %d times", n)
	}
	from := func(p netip.Prefix) (n int) {
		for _, c := range tr.cands {
			if c.hearsay && p.Contains(c.info.Addr.Addr()) {
				n++
			}
		}
		return n
	}
	if n := from(netip.MustParsePrefix("10.1.1.0/24")); n > k-1 {
		// The seed's reply is capped at k: the liar and k-1 of the 40
		// (our own address is not taken).
		t.Errorf("%d of the seed's 40 listed nodes became candidates, want at most %d", n, k-1)
	}
	if n := from(netip.MustParsePrefix("10.6.0.0/16")); n > k {
		t.Errorf("the responders of one /24 added %d nodes, want at most %d", n, k)
	}
	if s.asked[madeUp.Addr] != 0 {
		t.Errorf("the node listed by a responder that lied about its id was queried")
	}
	closest := tr.Closest()
	for _, c := range closest {
		if c.Addr() == liar.Addr {
			t.Errorf("a responder that lied about its id is in the result as %s", c.Node().ID)
		}
		if c.Addr() == self.Addr {
			t.Errorf("our own address is in the result")
		}
	}
	if len(closest) == 0 {
		t.Fatal("no result")
	}
}

// TestTraversalDropsHearsayFirst: when the candidate list is full, nodes
// learned from replies give way before nodes from our own table.
func TestTraversalDropsHearsayFirst(t *testing.T) {
	target := krpc.RandomID()
	tr := NewTraversal(TraversalConfig{Self: krpc.RandomID(), Target: target, K: 8, Alpha: 5}, t0)
	far := func(i int) krpc.ID { id := target; id[0] ^= 0x80; id[19] = byte(i); return id }
	var seeds []krpc.NodeInfo
	for i := range 16 {
		n := krpc.NodeInfo{ID: far(i), Addr: v4(10, 0, byte(i), 1, 6881)}
		seeds = append(seeds, n)
		tr.Seed(n)
	}
	// A flood of closer hearsay, many replies' worth.
	for r := range maxCandidates {
		from := &Cand{info: krpc.NodeInfo{Addr: v4(10, 100, byte(r), 1, 6881)}}
		var ret krpc.Return
		for j := range 8 {
			id := target
			id[18], id[19] = byte(r), byte(j)
			ret.Nodes = append(ret.Nodes, krpc.NodeInfo{ID: id, Addr: v4(10, 200+byte(j), byte(r), 1, 6881)})
		}
		tr.learn(from, &ret)
	}
	if tr.Len() > maxCandidates {
		t.Fatalf("%d candidates, bound %d", tr.Len(), maxCandidates)
	}
	for _, s := range seeds {
		if !slices.ContainsFunc(tr.cands, func(c *Cand) bool { return c.Addr() == s.Addr }) {
			t.Errorf("seed %s was crowded out by hearsay", s.Addr)
		}
	}
}

// TestTraversalPreferResults: with Prefer (BEP 42 prefer mode) the result
// is the K closest answered nodes it prefers, filled up with the closest
// others, in distance order.
func TestTraversalPreferResults(t *testing.T) {
	target := krpc.RandomID()
	var ids []krpc.ID
	for range 12 {
		ids = append(ids, krpc.RandomID())
	}
	slices.SortFunc(ids, func(a, b krpc.ID) int { return routing.CompareDistance(target, a, b) })
	verified := map[krpc.ID]bool{}
	for _, i := range []int{1, 3, 5, 7, 9, 11} { // 6 of 12 verify
		verified[ids[i]] = true
	}
	for _, tc := range []struct {
		name   string
		prefer func(krpc.ID, netip.Addr) bool
		want   []int // indexes into ids, distance order
	}{
		{"off", nil, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{"prefer", func(id krpc.ID, _ netip.Addr) bool { return verified[id] }, []int{0, 1, 2, 3, 5, 7, 9, 11}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTraversal(TraversalConfig{Self: krpc.RandomID(), Target: target, K: 8, Alpha: 3, Prefer: tc.prefer}, t0)
			for i, id := range ids {
				tr.Seed(krpc.NodeInfo{ID: id, Addr: v4(10, 0, 0, byte(i+1), 6881)})
			}
			for _, c := range tr.cands {
				c.state = stAnswered
			}
			var got []int
			for _, c := range tr.Closest() {
				got = append(got, slices.Index(ids, c.Node().ID))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("result %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTraversalRetriesSilentOnce: with Retry, a node among the K closest
// that stays silent past the short timeout is asked once more, then passed
// over; the lookup ends with the others, and its chain figures count the
// rounds it waited for.
func TestTraversalRetriesSilentOnce(t *testing.T) {
	const k = 8
	target := krpc.RandomID()
	s := &script{replies: map[netip.AddrPort]*krpc.Return{}, asked: map[netip.AddrPort]int{}}
	var infos []krpc.NodeInfo
	for i := range 12 {
		ni := krpc.NodeInfo{ID: krpc.RandomID(), Addr: v4(10, 0, 0, byte(i+1), 6881)}
		infos = append(infos, ni)
		s.replies[ni.Addr] = &krpc.Return{ID: ni.ID}
	}
	slices.SortFunc(infos, func(a, b krpc.NodeInfo) int { return routing.CompareDistance(target, a.ID, b.ID) })
	silent := infos[0].Addr
	s.replies[silent] = nil
	for _, retry := range []bool{false, true} {
		clear(s.asked)
		tr := NewTraversal(TraversalConfig{Self: krpc.RandomID(), Target: target, K: k, Alpha: 3, Retry: retry}, t0)
		for _, ni := range infos {
			tr.Seed(ni)
		}
		s.drive(t, tr)
		want := 1
		if retry {
			want = 2
		}
		if got := s.asked[silent]; got != want {
			t.Errorf("retry %v: the silent node was asked %d times, want %d", retry, got, want)
		}
		closest := tr.Closest()
		if len(closest) != k || closest[0].Addr() != infos[1].Addr {
			t.Errorf("retry %v: result of %d starting at %v, want %d starting at the closest that answered", retry, len(closest), closest[0].Addr(), k)
		}
		if hops, rounds, _ := tr.Chain(); hops != 1 || rounds != 1 {
			t.Errorf("retry %v: hops %d, rounds %d; want 1 and 1 (every answer came from a seed)", retry, hops, rounds)
		}
		if tr.InFlight() != 0 {
			t.Errorf("retry %v: %d queries still counted in flight at the end", retry, tr.InFlight())
		}
	}
}

// TestTraversalPool: a traversal with a Pool gives its candidates' memory
// back on Release, cleared, and a later traversal reuses it; a pooled
// traversal finds what an unpooled one finds.
func TestTraversalPool(t *testing.T) {
	var target krpc.ID
	seeds := make([]krpc.NodeInfo, 40) // more than two slabs
	for i := range seeds {
		seeds[i].ID[0], seeds[i].ID[19] = byte(i+1), 1
		seeds[i].Addr = v4(10, 0, 0, byte(i+1), 6881)
	}
	run := func(pool *CandPool) (*Traversal, []krpc.NodeInfo) {
		tr := NewTraversal(TraversalConfig{Target: target, K: 8, Alpha: 3, Pool: pool}, t0)
		for _, ni := range seeds {
			tr.Seed(ni)
		}
		s := &script{asked: map[netip.AddrPort]int{}, replies: map[netip.AddrPort]*krpc.Return{}}
		for _, ni := range seeds {
			s.replies[ni.Addr] = &krpc.Return{ID: ni.ID}
		}
		s.drive(t, tr)
		var got []krpc.NodeInfo
		for _, c := range tr.Closest() {
			got = append(got, c.Node())
		}
		return tr, got
	}
	_, want := run(nil)
	pool := new(CandPool)
	tr, got := run(pool)
	if !slices.Equal(got, want) || len(got) != 8 {
		t.Fatalf("pooled traversal found %v, unpooled %v", got, want)
	}
	tr.Release()
	if len(pool.free) != 3 || len(pool.lists) != 1 || len(pool.told) != 1 {
		t.Fatalf("pool holds %d slabs, %d lists and %d subnet counts after Release, want 3 (40 candidates), 1, 1",
			len(pool.free), len(pool.lists), len(pool.told))
	}
	for _, c := range pool.lists[0][:cap(pool.lists[0])] {
		if c != nil {
			t.Fatal("a released candidate list still points at a candidate")
		}
	}
	for _, s := range pool.free {
		for _, c := range s[:cap(s)] {
			if c != (Cand{}) {
				t.Fatalf("a released candidate is not cleared: %+v", c)
			}
		}
	}
	if tr.Len() != 0 {
		t.Fatalf("a released traversal holds %d candidates", tr.Len())
	}
	last := &pool.free[2][:1][0]
	tr2 := NewTraversal(TraversalConfig{Target: target, K: 8, Alpha: 3, Pool: pool}, t0)
	tr2.Seed(seeds[0])
	if len(pool.lists) != 0 || len(pool.told) != 0 || cap(tr2.cands) < 40 {
		t.Fatalf("the next traversal did not take the pooled lists (cap %d)", cap(tr2.cands))
	}
	if len(pool.free) != 2 || len(tr2.slab) != 1 || &tr2.slab[0] != last {
		t.Fatalf("the next traversal did not reuse the last pooled slab (pool %d)", len(pool.free))
	}
}

// TestTraversalRounds: the rounds of a lookup are the chains it waited
// for: those of its K closest answers, and, for a closer node that
// failed, the queries before its own. A farther node that answered on a
// longer chain while the lookup waited does not count.
func TestTraversalRounds(t *testing.T) {
	var target krpc.ID
	at := func(b0, b1 byte) krpc.NodeInfo {
		id := target
		id[0], id[1] = b0, b1
		return krpc.NodeInfo{ID: id, Addr: v4(10, b0, b1, 1, 6881)}
	}
	seedFar, seedNear := at(0x80, 0), at(0x40, 0)
	x, y := at(0x30, 0), at(0x38, 0) // far: x named by a seed, y by x
	r1, r2 := at(0x01, 0), at(0x02, 0)
	z := at(0, 1) // the closest of all, named by y
	for _, tc := range []struct {
		name   string
		zNamed bool // y names z, which never answers
		rounds int
	}{
		{"far chain answered", false, 2},
		{"closer node failed on it", true, 3},
	} {
		tr := NewTraversal(TraversalConfig{Self: at(0xff, 0).ID, Target: target, K: 2, Alpha: 8}, t0)
		tr.Seed(seedFar)
		tr.Seed(seedNear)
		cands := map[netip.AddrPort]*Cand{}
		send := func() {
			for c := tr.Next(t0); c != nil; c = tr.Next(t0) {
				cands[c.Addr()] = c
			}
		}
		now := t0
		asked := func(ni krpc.NodeInfo) *Cand {
			t.Helper()
			c := cands[ni.Addr]
			if c == nil {
				t.Fatalf("%s: %v was not asked", tc.name, ni.Addr)
			}
			return c
		}
		answer := func(ni krpc.NodeInfo, names ...krpc.NodeInfo) {
			t.Helper()
			now = now.Add(10 * time.Millisecond)
			tr.Answered(now, asked(ni), &krpc.Return{ID: ni.ID, Nodes: names})
			send()
		}
		send()
		answer(seedFar, x)       // x: depth 2
		answer(seedNear, r1, r2) // r1, r2: depth 2
		var fromY []krpc.NodeInfo
		if tc.zNamed {
			fromY = append(fromY, z)
		}
		answer(x, y)        // y: depth 3, asked while r1 and r2 are out
		answer(y, fromY...) // the far chain answers first; z: depth 4
		answer(r1)
		answer(r2)
		if tc.zNamed {
			tr.Fail(asked(z), true)
		}
		if !tr.Done() {
			t.Fatalf("%s: not done once the two closest answered", tc.name)
		}
		if got := tr.Closest(); len(got) != 2 || got[0].Addr() != r1.Addr || got[1].Addr() != r2.Addr {
			t.Fatalf("%s: result %v, want r1 and r2", tc.name, got)
		}
		if hops, rounds, _ := tr.Chain(); hops != 2 || rounds != tc.rounds {
			t.Fatalf("%s: hops %d, rounds %d; want 2 and %d", tc.name, hops, rounds, tc.rounds)
		}
	}
}

// TestTraversalWaitsForClosestAWhile: a silent closest node holds the
// lookup open past its short timeout and its retry, until its latest
// query is ClosestPatience old, and no longer: the full timeout of a
// query to a node that has left is not waited out. An answer within that
// time still makes it the closest.
func TestTraversalWaitsForClosestAWhile(t *testing.T) {
	const k, slow = 8, 50 * time.Millisecond
	target := krpc.RandomID()
	var infos []krpc.NodeInfo
	for i := range k + 2 {
		infos = append(infos, krpc.NodeInfo{ID: krpc.RandomID(), Addr: v4(10, 0, 0, byte(i+1), 6881)})
	}
	slices.SortFunc(infos, func(a, b krpc.NodeInfo) int { return routing.CompareDistance(target, a.ID, b.ID) })
	for _, answers := range []bool{false, true} {
		tr := NewTraversal(TraversalConfig{Self: krpc.RandomID(), Target: target, K: k, Alpha: k + 2, Retry: true}, t0)
		for _, ni := range infos {
			tr.Seed(ni)
		}
		now := t0
		var closest *Cand
		// answer asks whom the traversal asks next and answers for all
		// but the closest seed, 10 ms later.
		answer := func() {
			var asked []*Cand
			for c := tr.Next(now); c != nil; c = tr.Next(now) {
				if c.Addr() == infos[0].Addr {
					closest = c
				} else {
					asked = append(asked, c)
				}
			}
			for _, c := range asked {
				tr.Answered(now.Add(10*time.Millisecond), c, &krpc.Return{ID: c.Node().ID})
			}
		}
		answer()
		if closest == nil {
			t.Fatal("the closest seed was not asked")
		}
		// Short timeout: the retry; a second short timeout: slow.
		for i, want := range []int{1, 0} {
			at, ok := tr.NextDeadline(slow)
			if !ok {
				t.Fatalf("answers %v: no deadline while the closest is in flight", answers)
			}
			now = at
			if got := len(tr.Tick(now, slow, nil)); got != want {
				t.Fatalf("answers %v: short timeout %d asked %d again, want %d", answers, i+1, got, want)
			}
			answer() // the closest's place is freed: the next seed is asked
		}
		retried := t0.Add(slow)
		if tr.Done() {
			t.Fatalf("answers %v: ended at %v, as soon as the closest turned slow", answers, now.Sub(t0))
		}
		at, ok := tr.NextDeadline(slow)
		if want := retried.Add(ClosestPatience(slow)); !ok || !at.Equal(want) {
			t.Fatalf("answers %v: next deadline %v (%v), want the patience's end %v", answers, at.Sub(t0), ok, want.Sub(t0))
		}
		if answers {
			now = at.Add(-time.Millisecond)
			tr.Tick(now, slow, nil)
			tr.Answered(now, closest, &krpc.Return{ID: closest.Node().ID})
			if !tr.Done() || tr.Closest()[0] != closest {
				t.Errorf("answers %v: an answer within the patience: done %v, closest %v", answers, tr.Done(), tr.Closest()[0].Addr())
			}
			continue
		}
		tr.Tick(at.Add(-time.Nanosecond), slow, nil)
		if tr.Done() {
			t.Errorf("answers %v: ended before the patience passed", answers)
		}
		tr.Tick(at, slow, nil)
		if !tr.Done() {
			t.Errorf("answers %v: still waiting for the silent closest node once the patience passed", answers)
		}
		if got := tr.Closest()[0]; got.Addr() != infos[1].Addr {
			t.Errorf("answers %v: result starts at %v, want the closest that answered %v", answers, got.Addr(), infos[1].Addr)
		}
		if tr.InFlight() != 2 {
			t.Errorf("answers %v: %d queries in flight, want the 2 to the silent node (left to time out)", answers, tr.InFlight())
		}
	}
}
