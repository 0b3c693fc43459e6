package node

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
	"github.com/dhtd/dhtd/metrics"
)

// TestSimAdmissionUnderPingFlood: sources that never answer send a node
// 10 pings a second, each from an address of its own (one packet each,
// far below any per-IP limit). A new honest node that joins through it
// must enter its routing table within 5 s of virtual time.
//
// The flood runs in virtual time (a synctest bubble) in 100 ms steps:
// time moves (query timeouts due fire), then one flooding ping arrives, then the
// honest node's queries, if any, follow. So the honest node always comes
// right after a flooding packet, the worst moment for it when a freed
// confirmation slot goes to whoever asks first.
//
// At 10 pings a second (the attack measured) the slots never all fill;
// at 40 they do, and the honest node, which queries more than once while
// it bootstraps, goes ahead of the one-packet sources.
func TestSimAdmissionUnderPingFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	for _, rate := range []int{10, 40} {
		t.Run(fmt.Sprintf("%dpps", rate), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testAdmissionUnderFlood(t, rate) })
		})
	}
}

func testAdmissionUnderFlood(t *testing.T, rate int) {
	const (
		joinAfter = 3 * time.Second  // the flood has filled every slot
		within    = 5 * time.Second  // the honest node must be in by then
		watch     = 30 * time.Second // how long the test watches after the join
		quiet     = 2 * time.Millisecond
	)
	step := time.Second / time.Duration(rate)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := newSim(t, uint64(rate), simnet.Config{})
	// The node under attack keeps the default query timeout (2 s).
	victim := s.startWith(s.newID(), s.newAddr(), nil, func(c *Config) { c.QueryTimeout = 2 * time.Second })
	// A few honest nodes give it a table (far from full).
	var others []*Node
	for range 6 {
		others = append(others, s.start(s.newID(), s.newAddr(), []netip.AddrPort{victim.Addr()}))
	}
	parallel(len(others), 6, func(i int) {
		if err := others[i].Bootstrap(ctx); err != nil {
			t.Errorf("bootstrap: %v", err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	s.settle(20 * time.Millisecond)
	tableBefore := victim.table.Len()

	// flood sends one ping to the victim from the i-th flooding address
	// (11.x.y.1: a /24 each, no node there) and closes it at once, so the
	// victim's confirmation ping is never answered.
	flood := func(i int) {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{11, byte(i >> 8), byte(i), 1}), 6881)
		c, err := s.net.Listen(addr)
		if err != nil {
			t.Fatalf("listen %s: %v", addr, err)
		}
		b, err := krpc.Encode(&krpc.Msg{T: "aa", Y: krpc.KindQuery, Q: krpc.MethodPing, A: &krpc.Args{ID: krpc.RandomID()}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteToAddrPort(b, victim.Addr()); err != nil {
			t.Fatal(err)
		}
		s.settle(quiet) // delivered and handled
		_ = c.Close()
	}

	start := time.Now()
	var (
		honest   *Node
		joined   time.Time
		boot                   = make(chan error, 1)
		admitted time.Duration = -1
		flooded  int
	)
	for k := 1; time.Since(start) < joinAfter+watch; k++ {
		if d := time.Until(start.Add(time.Duration(k) * step)); d > 0 {
			time.Sleep(d)
		}
		s.settle(quiet) // timeouts handled
		flood(k)
		flooded++
		if honest == nil && time.Since(start) >= joinAfter {
			honest = s.start(s.newID(), s.newAddr(), []netip.AddrPort{victim.Addr()})
			joined = time.Now()
			go func() { boot <- honest.Bootstrap(ctx) }()
			s.settle(20 * time.Millisecond)
		}
		if honest != nil {
			if _, ok := victim.table.Get(honest.ID()); ok {
				admitted = time.Since(joined)
				break
			}
		}
	}
	if honest == nil {
		t.Fatal("the honest node never started")
	}
	if err := <-boot; err != nil {
		t.Fatalf("honest node's bootstrap: %v", err)
	}
	drops := func(reason string) float64 {
		return testutil.ToFloat64(victim.metrics.PacketsDropped.WithLabelValues(reason))
	}
	outcome := fmt.Sprintf("not admitted in the %v watched", watch)
	if admitted >= 0 {
		outcome = fmt.Sprintf("admitted %v after joining", admitted.Round(time.Millisecond))
	}
	t.Logf("flood of %d pps for %v of virtual time (%d pings); table of %d nodes before; honest node %s; "+
		"confirmation pings dropped: %.0f queue_full, %.0f %s",
		rate, time.Since(start).Round(time.Millisecond), flooded, tableBefore, outcome,
		drops(metrics.DropQueueFull), drops(metrics.DropAdmissionBusy), metrics.DropAdmissionBusy)
	if admitted < 0 || admitted > within {
		t.Fatalf("honest node %s; want admitted within %v", outcome, within)
	}
	// Confirmation pings the schedule has no room for are admission_busy;
	// queue_full is the liveness timer's (which does not run here).
	if q := drops(metrics.DropQueueFull); q != 0 {
		t.Errorf("%.0f confirmation pings counted as %s", q, metrics.DropQueueFull)
	}
}

// TestAdmitQueueOrder: the schedule pings proven nodes first, then
// repeat queriers, then the rest, the most recently heard first in a
// class; it keeps one waiting node per subnet (a better one replaces it)
// and never more than its bound, and frees a slot with done.
func TestAdmitQueueOrder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	addr := func(a, b byte) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, a, b, 1}), 6881)
	}
	entry := func(a, b byte, class admitClass, at time.Duration) *admitEntry {
		ap := addr(a, b)
		return &admitEntry{addr: ap, subnet: fairnessKey(ap, true), class: class, heard: t0.Add(at), queued: t0.Add(at)}
	}
	q := newAdmitQueue(1)
	for _, e := range []*admitEntry{
		entry(1, 1, admitNew, 1*time.Second),
		entry(1, 2, admitNew, 3*time.Second),
		entry(1, 3, admitProven, 0),
		entry(1, 4, admitNew, 2*time.Second),
	} {
		if d := q.offer(e); d != 0 {
			t.Fatalf("offer %s dropped %d", e.addr, d)
		}
	}
	// 10.1.1.1 queries again: it rises to admitRepeat.
	if d := q.offer(entry(1, 1, admitNew, 4*time.Second)); d != 0 {
		t.Fatalf("repeat offer dropped %d", d)
	}
	want := []netip.AddrPort{addr(1, 3), addr(1, 1), addr(1, 2), addr(1, 4)}
	now := t0.Add(5 * time.Second)
	for i, w := range want {
		e, expired := q.next(now)
		if e == nil || e.addr != w || expired != 0 {
			t.Fatalf("ping %d: got %v (expired %d), want %s", i, e, expired, w)
		}
		if again, _ := q.next(now); again != nil {
			t.Fatalf("ping %d: a second slot was handed out (%s) with one slot", i, again.addr)
		}
		q.done(e)
	}
	if q.len() != 0 {
		t.Fatalf("%d entries left", q.len())
	}

	// One waiting node per subnet: a worse one is refused, a better one
	// replaces it.
	same := func(host byte, class admitClass, at time.Duration) *admitEntry {
		e := entry(2, 1, class, at)
		e.addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, 1, host}), 6881)
		return e
	}
	if d := q.offer(same(1, admitRepeat, 0)); d != 0 {
		t.Fatalf("first of the subnet dropped %d", d)
	}
	if d := q.offer(same(2, admitNew, time.Second)); d != 1 {
		t.Fatalf("worse node of a waiting subnet: dropped %d, want 1 (itself)", d)
	}
	if d := q.offer(same(3, admitProven, time.Second)); d != 1 {
		t.Fatalf("better node of a waiting subnet: dropped %d, want 1 (the one it replaced)", d)
	}
	if e, _ := q.next(now); e == nil || e.addr != same(3, 0, 0).addr {
		t.Fatalf("got %v, want the proven node of the subnet", e)
	}

	// The waiting list is bounded (4 per slot): a new node replaces the
	// worst one only if it is better.
	for i := range q.maxWaiting {
		if d := q.offer(entry(3, byte(i), admitRepeat, time.Duration(i)*time.Second)); d != 0 {
			t.Fatalf("offer %d dropped %d", i, d)
		}
	}
	if d := q.offer(entry(4, 1, admitNew, time.Hour)); d != 1 || q.waiting[addr(4, 1)] != nil {
		t.Fatalf("a new node over the bound: dropped %d, want itself", d)
	}
	if d := q.offer(entry(4, 2, admitProven, time.Hour)); d != 1 || q.waiting[addr(4, 2)] == nil || q.waiting[addr(3, 0)] != nil {
		t.Fatalf("a proven node over the bound: dropped %d, want the oldest repeat querier", d)
	}
	if len(q.waiting) != q.maxWaiting {
		t.Fatalf("%d waiting, bound %d", len(q.waiting), q.maxWaiting)
	}
	// Past admitMaxWait, waiting nodes are dropped.
	if _, expired := q.next(t0.Add(time.Hour + admitMaxWait + time.Second)); expired != q.maxWaiting {
		t.Fatalf("expired %d, want %d", expired, q.maxWaiting)
	}
}

// TestAdmitQueueBuckets: in a class, a node of a bucket with no ping in
// flight goes before newer nodes of a bucket that has one.
func TestAdmitQueueBuckets(t *testing.T) {
	t0 := time.Unix(1000, 0)
	q := newAdmitQueue(4)
	for i := range 6 {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 5, byte(i), 1}), 6881)
		bucket := 0
		if i == 0 {
			bucket = 7 // the oldest node, alone in its bucket
		}
		q.offer(&admitEntry{addr: ap, subnet: fairnessKey(ap, true), bucket: bucket, class: admitNew, heard: t0.Add(time.Duration(i) * time.Second), queued: t0})
	}
	var got []int
	for {
		e, _ := q.next(t0.Add(time.Second))
		if e == nil {
			break
		}
		got = append(got, e.bucket)
	}
	// The newest node of bucket 0 first, then bucket 7's, then bucket 0.
	if want := []int{0, 7, 0, 0}; !slices.Equal(got, want) {
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
		if got := fairnessKey(ap(tc.a), tc.limited) == fairnessKey(ap(tc.b), tc.limited); got != tc.same {
			t.Errorf("%s and %s (LimitLoopback %v): same unit %v, want %v", tc.a, tc.b, tc.limited, got, tc.same)
		}
	}
}

// TestAdmitQueueSlow: a ping past the short timeout frees its slot for
// the next node but still counts until it ends, up to four per slot.
func TestAdmitQueueSlow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	q := newAdmitQueue(2)
	q.maxWaiting = 20 // all waiting at once
	for i := range 20 {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 7, byte(i), 1}), 6881)
		if d := q.offer(&admitEntry{addr: ap, subnet: fairnessKey(ap, true), class: admitNew, heard: t0, queued: t0}); d != 0 {
			t.Fatalf("offer %d dropped %d", i, d)
		}
	}
	var pinging []*admitEntry
	for round := 0; ; round++ {
		for {
			e, _ := q.next(t0)
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
			q.slowed(e) // every ping turns slow
		}
	}
	if len(pinging) != q.maxPinging || q.len() != 20 {
		t.Fatalf("%d pings outstanding (bound %d), %d entries", len(pinging), q.maxPinging, q.len())
	}
	q.done(pinging[0])
	if e, _ := q.next(t0); e == nil {
		t.Fatal("an ended slow ping did not make room for another")
	}
}
