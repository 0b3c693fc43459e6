package node

import (
	"context"
	"fmt"
	"net/netip"
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
	// queue_full is the pings answers ask for (pingAsync).
	if q := drops(metrics.DropQueueFull); q != 0 {
		t.Errorf("%.0f confirmation pings counted as %s", q, metrics.DropQueueFull)
	}
}
