package core

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// TestAdmitQueueOrder: the schedule pings proven nodes first, then
// repeat queriers, then the rest, the most recently heard first in a
// class; it keeps one waiting node per subnet (a better one replaces it)
// and never more than its bound, and frees a slot with done.
func TestAdmitQueueOrder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	addr := func(a, b byte) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, a, b, 1}), 6881)
	}
	entry := func(a, b byte, class AdmitClass, at time.Duration) *AdmitEntry {
		ap := addr(a, b)
		return &AdmitEntry{Addr: ap, Subnet: FairnessKey(ap, true), Class: class, Heard: t0.Add(at), Queued: t0.Add(at)}
	}
	q := NewAdmitQueue(1)
	for _, e := range []*AdmitEntry{
		entry(1, 1, AdmitNew, 1*time.Second),
		entry(1, 2, AdmitNew, 3*time.Second),
		entry(1, 3, AdmitProven, 0),
		entry(1, 4, AdmitNew, 2*time.Second),
	} {
		if d := q.Offer(e); d != 0 {
			t.Fatalf("offer %s dropped %d", e.Addr, d)
		}
	}
	// 10.1.1.1 queries again: it rises to AdmitRepeat.
	if d := q.Offer(entry(1, 1, AdmitNew, 4*time.Second)); d != 0 {
		t.Fatalf("repeat offer dropped %d", d)
	}
	want := []netip.AddrPort{addr(1, 3), addr(1, 1), addr(1, 2), addr(1, 4)}
	now := t0.Add(5 * time.Second)
	for i, w := range want {
		e, expired := q.Next(now)
		if e == nil || e.Addr != w || expired != 0 {
			t.Fatalf("ping %d: got %v (expired %d), want %s", i, e, expired, w)
		}
		if again, _ := q.Next(now); again != nil {
			t.Fatalf("ping %d: a second slot was handed out (%s) with one slot", i, again.Addr)
		}
		q.Done(e)
	}
	if q.Len() != 0 {
		t.Fatalf("%d entries left", q.Len())
	}

	// One waiting node per subnet: a worse one is refused, a better one
	// replaces it.
	same := func(host byte, class AdmitClass, at time.Duration) *AdmitEntry {
		e := entry(2, 1, class, at)
		e.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, 1, host}), 6881)
		return e
	}
	if d := q.Offer(same(1, AdmitRepeat, 0)); d != 0 {
		t.Fatalf("first of the subnet dropped %d", d)
	}
	if d := q.Offer(same(2, AdmitNew, time.Second)); d != 1 {
		t.Fatalf("worse node of a waiting subnet: dropped %d, want 1 (itself)", d)
	}
	if d := q.Offer(same(3, AdmitProven, time.Second)); d != 1 {
		t.Fatalf("better node of a waiting subnet: dropped %d, want 1 (the one it replaced)", d)
	}
	if e, _ := q.Next(now); e == nil || e.Addr != same(3, 0, 0).Addr {
		t.Fatalf("got %v, want the proven node of the subnet", e)
	}

	// The waiting list is bounded (4 per slot): a new node replaces the
	// worst one only if it is better.
	for i := range q.maxWaiting {
		if d := q.Offer(entry(3, byte(i), AdmitRepeat, time.Duration(i)*time.Second)); d != 0 {
			t.Fatalf("offer %d dropped %d", i, d)
		}
	}
	if d := q.Offer(entry(4, 1, AdmitNew, time.Hour)); d != 1 || q.isWaiting(addr(4, 1)) {
		t.Fatalf("a new node over the bound: dropped %d, want itself", d)
	}
	if d := q.Offer(entry(4, 2, AdmitProven, time.Hour)); d != 1 || !q.isWaiting(addr(4, 2)) || q.isWaiting(addr(3, 0)) {
		t.Fatalf("a proven node over the bound: dropped %d, want the oldest repeat querier", d)
	}
	if len(q.waiting) != q.maxWaiting {
		t.Fatalf("%d waiting, bound %d", len(q.waiting), q.maxWaiting)
	}
	// Past AdmitMaxWait, waiting nodes are dropped.
	if _, expired := q.Next(t0.Add(time.Hour + AdmitMaxWait + time.Second)); expired != q.maxWaiting {
		t.Fatalf("expired %d, want %d", expired, q.maxWaiting)
	}
}

// TestAdmitQueueBuckets: in a class, a node of a bucket with no ping in
// flight goes before newer nodes of a bucket that has one.
func TestAdmitQueueBuckets(t *testing.T) {
	t0 := time.Unix(1000, 0)
	q := NewAdmitQueue(4)
	for i := range 6 {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 5, byte(i), 1}), 6881)
		bucket := int32(0)
		if i == 0 {
			bucket = 7 // the oldest node, alone in its bucket
		}
		q.Offer(&AdmitEntry{Addr: ap, Subnet: FairnessKey(ap, true), Bucket: bucket, Class: AdmitNew, Heard: t0.Add(time.Duration(i) * time.Second), Queued: t0})
	}
	var got []int32
	for {
		e, _ := q.Next(t0.Add(time.Second))
		if e == nil {
			break
		}
		got = append(got, e.Bucket)
	}
	// The newest node of bucket 0 first, then bucket 7's, then bucket 0.
	if want := []int32{0, 7, 0, 0}; !slices.Equal(got, want) {
		t.Fatalf("buckets pinged %v, want %v", got, want)
	}
}

// TestAdmitFairnessKey: a /24 (or /64) is one unit, and so is loopback
// with LimitLoopback; without it each loopback endpoint is its own.
func TestAdmitFairnessKey(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		a, b    string
		limited bool
		same    bool
	}{
		{"10.1.2.3:6881", "10.1.2.99:7000", false, true},
		{"10.1.2.3:6881", "10.1.3.3:6881", false, false},
		{"[2001:db8::1]:6881", "[2001:db8::2]:6881", false, true},
		{"127.0.0.1:6881", "127.0.0.1:6882", false, false},
		{"127.0.0.1:6881", "127.0.0.1:6882", true, true},
		{"127.0.0.1:6881", "127.0.0.7:6881", true, true},
		{"[::1]:6881", "[::1]:6882", false, false},
		{"[::1]:6881", "[::1]:6882", true, true},
	} {
		if got := FairnessKey(ap(tc.a), tc.limited) == FairnessKey(ap(tc.b), tc.limited); got != tc.same {
			t.Errorf("%s and %s (LimitLoopback %v): same unit %v, want %v", tc.a, tc.b, tc.limited, got, tc.same)
		}
	}
}

// TestAdmitQueueSlow: a ping past the short timeout frees its slot for
// the next node but still counts until it ends, up to four per slot.
func TestAdmitQueueSlow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	q := NewAdmitQueue(2)
	q.maxWaiting = 20 // all waiting at once
	for i := range 20 {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 7, byte(i), 1}), 6881)
		if d := q.Offer(&AdmitEntry{Addr: ap, Subnet: FairnessKey(ap, true), Class: AdmitNew, Heard: t0, Queued: t0}); d != 0 {
			t.Fatalf("offer %d dropped %d", i, d)
		}
	}
	var pinging []*AdmitEntry
	for round := 0; ; round++ {
		for {
			e, _ := q.Next(t0)
			if e == nil {
				break
			}
			pinging = append(pinging, e)
		}
		if round > 10 {
			break
		}
		if q.active != min(2, len(pinging)) && len(pinging) < q.maxPinging {
			t.Fatalf("round %d: %d slots taken, want 2", round, q.active)
		}
		for _, e := range pinging {
			q.Slowed(e) // every ping turns slow
		}
	}
	if len(pinging) != q.maxPinging || q.Len() != 20 {
		t.Fatalf("%d pings outstanding (bound %d), %d entries", len(pinging), q.maxPinging, q.Len())
	}
	q.Done(pinging[0])
	if e, _ := q.Next(t0); e == nil {
		t.Fatal("an ended slow ping did not make room for another")
	}
}

// Of equal entries, the lower address is pinged first and the higher one
// gives way first: the schedule never depends on map order.
func TestAdmitQueueTies(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for range 20 {
		q := NewAdmitQueue(1)
		q.maxWaiting = 3
		var first netip.AddrPort
		for i := range 4 { // the fourth replaces the worst of three equals
			ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(9 - i), 0, 1}), 6881)
			class := AdmitNew
			if i == 3 {
				class = AdmitRepeat
				first = ap
			}
			q.Offer(&AdmitEntry{Addr: ap, Subnet: FairnessKey(ap, true), Class: class, Heard: t0, Queued: t0})
		}
		if q.isWaiting(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, 0, 1}), 6881)) {
			t.Fatal("the highest of equal addresses was kept")
		}
		var got []netip.AddrPort
		for {
			e, _ := q.Next(t0)
			if e == nil {
				break
			}
			got = append(got, e.Addr)
			q.Done(e)
		}
		want := []netip.AddrPort{first,
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 7, 0, 1}), 6881),
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 8, 0, 1}), 6881)}
		if !slices.Equal(got, want) {
			t.Fatalf("pinged %v, want %v", got, want)
		}
	}
}

// A core Node confirms queriers on the schedule: no more than AdmitPings
// pings at once, more once they pass the short timeout, and a querier
// that answers enters the table.
func TestNodeAdmission(t *testing.T) {
	var id krpc.ID
	id[0] = 0x10
	n := New(Config{ID: id, Rand: rand.New(rand.NewPCG(1, 1)), AdmitPings: 2}, t0)
	querier := func(i byte) (krpc.ID, netip.AddrPort) {
		var qid krpc.ID
		qid[0], qid[1] = 0x80|i, i
		return qid, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, i, 0, 1}), 6881)
	}
	for i := range byte(6) {
		qid, from := querier(i)
		b, err := krpc.Encode(&krpc.Msg{T: "aa", Y: krpc.KindQuery, Q: krpc.MethodPing, A: &krpc.Args{ID: qid}})
		if err != nil {
			t.Fatal(err)
		}
		n.HandlePacket(t0, from, b)
	}
	pings := func() []Transmit {
		var out []Transmit
		for {
			tr, ok := n.PollTransmit()
			if !ok {
				return out
			}
			if tr.Query {
				out = append(out, tr)
			}
		}
	}
	first := pings()
	if len(first) != 2 {
		t.Fatalf("%d confirmation pings at once, want AdmitPings = 2", len(first))
	}
	wake, _ := n.NextTimeout()
	if d := wake.Sub(t0); d < MinAdmitTimeout || d > DefaultQueryTimeout {
		t.Fatalf("woken after %v, want the short timeout", d)
	}
	n.HandleTimeout(wake)
	if more := pings(); len(more) != 2 {
		t.Fatalf("%d more pings past the short timeout, want 2", len(more))
	}
	// The first querier answers its ping: it enters the table.
	var q krpc.Msg
	if err := krpc.Decode(first[0].Data, &q); err != nil {
		t.Fatal(err)
	}
	for i := range byte(6) {
		qid, from := querier(i)
		if from != first[0].To {
			continue
		}
		b, _ := krpc.Encode(&krpc.Msg{T: q.T, Y: krpc.KindResponse, R: &krpc.Return{ID: qid}})
		n.HandlePacket(wake, from, b)
		if _, ok := n.Table().Get(qid); !ok {
			t.Fatal("a querier that answered its confirmation ping is not in the table")
		}
		return
	}
	t.Fatalf("ping sent to %v, no querier", first[0].To)
}

// A querier is pinged to confirm it even while another query of ours to
// its address is out: that query may have gone to the node before it
// restarted, and never be answered. The confirmation's answer admits it,
// and counts as the answer to neither the other query nor its timeout.
func TestAdmitWhileQueryOut(t *testing.T) {
	var id, qid krpc.ID
	id[0], qid[0] = 0x10, 0x90
	from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, 0, 1}), 6881)
	n := New(Config{ID: id, Rand: rand.New(rand.NewPCG(1, 1))}, t0)
	var outcome error
	answered := false
	if _, err := n.Query(t0, from, krpc.MethodFindNode, &krpc.Args{Target: &qid}, func(_ time.Time, _ *krpc.Msg, err error) {
		answered, outcome = true, err
	}); err != nil {
		t.Fatal(err)
	}
	b, err := krpc.Encode(&krpc.Msg{T: "aa", Y: krpc.KindQuery, Q: krpc.MethodPing, A: &krpc.Args{ID: qid}})
	if err != nil {
		t.Fatal(err)
	}
	n.HandlePacket(t0, from, b)
	var ping *krpc.Msg
	for {
		tr, ok := n.PollTransmit()
		if !ok {
			break
		}
		var m krpc.Msg
		if err := krpc.Decode(tr.Data, &m); err != nil {
			t.Fatal(err)
		}
		if tr.Query && m.Q == krpc.MethodPing && tr.To == from {
			ping = &m
		}
	}
	if ping == nil {
		t.Fatal("no confirmation ping while a find_node to the querier is out")
	}
	r, _ := krpc.Encode(&krpc.Msg{T: ping.T, Y: krpc.KindResponse, R: &krpc.Return{ID: qid}})
	n.HandlePacket(t0.Add(time.Millisecond), from, r)
	if _, ok := n.Table().Get(qid); !ok {
		t.Fatal("the querier answered its confirmation ping and is not in the table")
	}
	if answered {
		t.Fatalf("the find_node ended with the ping's answer (%v)", outcome)
	}
}

func (q *AdmitQueue) isWaiting(a netip.AddrPort) bool {
	e, _ := find(q.waiting, a)
	return e != nil
}

// TestAdmitQueueNamed: nodes that a lookup's answers named wait behind
// every querier, even one heard earlier; named again, one stays named; one
// that then queries us takes the class of its query, not AdmitRepeat.
func TestAdmitQueueNamed(t *testing.T) {
	t0 := time.Unix(1000, 0)
	addr := func(b byte) netip.AddrPort { return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 5, b, 1}), 6881) }
	entry := func(b byte, class AdmitClass, at time.Duration) *AdmitEntry {
		ap := addr(b)
		return &AdmitEntry{Addr: ap, Subnet: FairnessKey(ap, true), Class: class, Heard: t0.Add(at), Queued: t0.Add(at)}
	}
	q := NewAdmitQueue(1)
	for _, e := range []*AdmitEntry{
		entry(1, AdmitNamed, 3*time.Second),
		entry(2, AdmitNew, 0),
		entry(3, AdmitNamed, 2*time.Second),
		entry(4, AdmitNamed, time.Second),
		entry(1, AdmitNamed, 4*time.Second), // named again: still named
		entry(4, AdmitNew, 5*time.Second),   // queries us: a querier now
	} {
		if d := q.Offer(e); d != 0 {
			t.Fatalf("offer %s dropped %d", e.Addr, d)
		}
	}
	want := []netip.AddrPort{addr(4), addr(2), addr(1), addr(3)}
	now := t0.Add(6 * time.Second)
	for i, w := range want {
		e, _ := q.Next(now)
		if e == nil || e.Addr != w {
			t.Fatalf("ping %d: got %v, want %s", i, e, w)
		}
		if i == 0 && e.Class != AdmitNew {
			t.Errorf("a named node that queried us has class %d, want AdmitNew (%d)", e.Class, AdmitNew)
		}
		q.Done(e)
	}
	// Named nodes that do not fit, or wait too long, are not counted as
	// dropped: they sent us nothing. A querier that does not fit is.
	for i := range q.maxWaiting + 5 {
		if d := q.Offer(entry(byte(10+i), AdmitNamed, 7*time.Second)); d != 0 {
			t.Fatalf("named node %d: dropped %d, want 0", i, d)
		}
	}
	if d := q.Offer(entry(100, AdmitNew, 8*time.Second)); d != 0 {
		t.Fatalf("a querier over the bound replaces a named node: dropped %d, want 0", d)
	}
	if _, expired := q.Next(t0.Add(8*time.Second + AdmitMaxWait + time.Second)); expired != 1 {
		t.Fatalf("expired %d, want 1 (the querier; the named nodes are not counted)", expired)
	}
	if q.Len() != 0 {
		t.Fatalf("%d entries left after they all expired", q.Len())
	}
}
