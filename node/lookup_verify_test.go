package node

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// verifyNet is a scripted set of responders for traversal tests: replies
// maps an address to its answer; every query is recorded.
type verifyNet struct {
	mu      sync.Mutex
	replies map[netip.AddrPort]*krpc.Return
	asked   map[netip.AddrPort]int
}

func (v *verifyNet) query(ctx context.Context, to netip.AddrPort) (*krpc.Msg, error) {
	v.mu.Lock()
	v.asked[to]++
	r := v.replies[to]
	v.mu.Unlock()
	if r == nil { // silent: a timeout, shortened
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
			return nil, context.DeadlineExceeded
		}
	}
	return &krpc.Msg{Y: krpc.KindResponse, R: r}, nil
}

func v4(a, b, c, d byte, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{a, b, c, d}), port)
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
	vn := &verifyNet{replies: map[netip.AddrPort]*krpc.Return{}, asked: map[netip.AddrPort]int{}}

	// The seed, 10.0.0.1, lists our own address under the closest id,
	// 40 nodes that do not answer, from 10.1.1.x, and a liar.
	seed := krpc.NodeInfo{ID: near(200), Addr: v4(10, 0, 0, 1, 6881)}
	liar := krpc.NodeInfo{ID: near(2), Addr: v4(10, 2, 0, 1, 6881)}
	seedReply := &krpc.Return{ID: seed.ID, Nodes: []krpc.NodeInfo{{ID: near(1), Addr: self.Addr}, liar}}
	for i := range 40 {
		seedReply.Nodes = append(seedReply.Nodes, krpc.NodeInfo{ID: near(byte(10 + i)), Addr: v4(10, 1, 1, byte(i+1), 6881)})
	}
	vn.replies[seed.Addr] = seedReply
	// The liar answers with another id, and lists a node it made up.
	madeUp := krpc.NodeInfo{ID: near(3), Addr: v4(10, 3, 0, 1, 6881)}
	vn.replies[liar.Addr] = &krpc.Return{ID: near(4), Nodes: []krpc.NodeInfo{madeUp}}
	vn.replies[madeUp.Addr] = &krpc.Return{ID: madeUp.ID}
	// Three responders of one /24 (10.5.5.x) list 8 nodes each.
	var sybils []krpc.NodeInfo
	for i := range 3 {
		s := krpc.NodeInfo{ID: near(byte(100 + i)), Addr: v4(10, 5, 5, byte(i+1), 6881)}
		sybils = append(sybils, s)
		r := &krpc.Return{ID: s.ID}
		for j := range 8 {
			r.Nodes = append(r.Nodes, krpc.NodeInfo{ID: near(byte(120 + 8*i + j)), Addr: v4(10, 6, byte(8*i+j), 1, 6881)})
		}
		vn.replies[s.Addr] = r
	}

	tr := newTraversal(self.ID, target, k, 5, vn.query)
	tr.rtts.add(time.Millisecond)
	tr.maxPerSubnet = 2
	tr.isSelf = func(a netip.AddrPort) bool { return a == self.Addr }
	tr.add(seed, true)
	for _, s := range sybils {
		tr.add(s, true)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := tr.run(ctx)
	if ctx.Err() != nil {
		t.Fatal("lookup did not end")
	}
	vn.mu.Lock()
	defer vn.mu.Unlock()
	if n := vn.asked[self.Addr]; n != 0 {
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
	if vn.asked[madeUp.Addr] != 0 {
		t.Errorf("the node listed by a responder that lied about its id was queried")
	}
	for _, f := range res.Closest {
		if f.Node.Addr == liar.Addr {
			t.Errorf("a responder that lied about its id is in the result as %s", f.Node.ID)
		}
		if f.Node.Addr == self.Addr {
			t.Errorf("our own address is in the result")
		}
	}
	if len(res.Closest) == 0 {
		t.Fatal("no result")
	}
}

// TestTraversalDropsHearsayFirst: when the candidate list is full, nodes
// learned from replies give way before nodes from our own table.
func TestTraversalDropsHearsayFirst(t *testing.T) {
	target := krpc.RandomID()
	tr := newTraversal(krpc.RandomID(), target, 8, 5, nil)
	far := func(i int) krpc.ID { id := target; id[0] ^= 0x80; id[19] = byte(i); return id }
	var seeds []krpc.NodeInfo
	for i := range 16 {
		n := krpc.NodeInfo{ID: far(i), Addr: v4(10, 0, byte(i), 1, 6881)}
		seeds = append(seeds, n)
		tr.add(n, true)
	}
	// A flood of closer hearsay, many replies' worth.
	for r := range maxCandidates {
		from := &candidate{info: krpc.NodeInfo{Addr: v4(10, 100, byte(r), 1, 6881)}}
		var ret krpc.Return
		for j := range 8 {
			id := target
			id[18], id[19] = byte(r), byte(j)
			ret.Nodes = append(ret.Nodes, krpc.NodeInfo{ID: id, Addr: v4(10, 200+byte(j), byte(r), 1, 6881)})
		}
		tr.learn(from, &ret)
	}
	if len(tr.cands) > maxCandidates {
		t.Fatalf("%d candidates, bound %d", len(tr.cands), maxCandidates)
	}
	for _, s := range seeds {
		if tr.byAddr[s.Addr] == nil {
			t.Errorf("seed %s was crowded out by hearsay", s.Addr)
		}
	}
}
