package node

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/routing"
)

// TestTraversalPassesOverSilentNodes: candidates answer at once (with no
// further nodes), except two of the K closest, which never answer. The
// lookup asks spares beyond the K closest once it has converged, ends with
// the K closest nodes that answered, and does not wait for the silent two:
// their queries never answer (no timeout ends them here), so a lookup that
// waited for them would never return.
func TestTraversalPassesOverSilentNodes(t *testing.T) {
	const k, alpha, count = 8, 5, 16
	target, infos := lookupNodes(count)
	silent := map[netip.AddrPort]bool{infos[1].Addr: true, infos[4].Addr: true}
	byAddr := idsByAddr(infos)
	query := func(_ context.Context, to netip.AddrPort, done krpc.Callback) (krpc.Call, error) {
		if !silent[to] { // the silent ones never call done
			done(&krpc.Msg{Y: krpc.KindResponse, R: &krpc.Return{ID: byAddr[to]}}, nil)
		}
		return krpc.Call{}, nil
	}
	tr := newTraversal(core.TraversalConfig{Self: krpc.RandomID(), Target: target, K: k, Alpha: alpha}, query, krpc.SystemClock{}, nil)
	// A measured round trip of 1ms: the silent queries turn slow at
	// minSlowAfter.
	tr.rtts.add(time.Millisecond)
	for _, n := range infos {
		tr.Seed(n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := tr.run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("the lookup waited for its silent nodes until the test's deadline")
	}
	var want []krpc.ID
	for _, n := range infos {
		if !silent[n.Addr] && len(want) < k {
			want = append(want, n.ID)
		}
	}
	var got []krpc.ID
	for _, f := range res.Closest {
		got = append(got, f.Node.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("closest = %x\nwant the K closest that answered %x", got, want)
	}
	// The K closest, the spares (at least core.MinSpare), nothing past them.
	if res.Queried < k+core.MinSpare || res.Queried > count {
		t.Errorf("queried %d, want between %d and %d", res.Queried, k+core.MinSpare, count)
	}
	if res.Failed != 0 {
		t.Errorf("failed = %d, want 0 (silent queries are cancelled, not failed)", res.Failed)
	}
}

// TestTraversalWaitsForSilentClosestAWhile: the closest candidate never
// answers and its queries never time out. The lookup asks it a second
// time at the short timeout, waits for it until its latest query is
// core.ClosestPatience old, and then ends with the K closest nodes that
// answered. In virtual time, so the waits are exact.
func TestTraversalWaitsForSilentClosestAWhile(t *testing.T) {
	synctest.Test(t, testTraversalWaitsForSilentClosestAWhile)
}

func testTraversalWaitsForSilentClosestAWhile(t *testing.T) {
	const k, alpha, count = 8, 5, 16
	target, infos := lookupNodes(count)
	silent := infos[0].Addr
	byAddr := idsByAddr(infos)
	var mu sync.Mutex
	var sent []time.Duration // when the silent node was asked, from the start
	start := time.Now()
	query := func(_ context.Context, to netip.AddrPort, done krpc.Callback) (krpc.Call, error) {
		if to == silent {
			mu.Lock()
			sent = append(sent, time.Since(start))
			mu.Unlock()
			return krpc.Call{}, nil // never answers, never times out
		}
		done(&krpc.Msg{Y: krpc.KindResponse, R: &krpc.Return{ID: byAddr[to]}}, nil)
		return krpc.Call{}, nil
	}
	tr := newTraversal(core.TraversalConfig{Self: krpc.RandomID(), Target: target, K: k, Alpha: alpha, Retry: true}, query, krpc.SystemClock{}, nil)
	tr.rtts.add(time.Millisecond) // the short timeout is its floor
	slow := tr.rtts.slowAfter()
	for _, n := range infos {
		tr.Seed(n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // virtual
	defer cancel()
	res := tr.run(ctx)
	if ctx.Err() != nil {
		t.Fatal("the lookup waited for its silent closest node until the test's deadline")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 2 || sent[0] != 0 || sent[1] != slow {
		t.Fatalf("the silent closest node was asked at %v, want at 0 and at the short timeout %v", sent, slow)
	}
	if want := slow + core.ClosestPatience(slow); res.Elapsed != want {
		t.Errorf("the lookup took %v, want %v: the retry, then the patience", res.Elapsed, want)
	}
	if len(res.Closest) != k || res.Closest[0].Node.Addr != infos[1].Addr {
		t.Errorf("%d closest, the first %v; want %d, the first %v (the closest that answered)", len(res.Closest), res.Closest[0].Node.Addr, k, infos[1].Addr)
	}
}

// lookupNodes returns a random target and count nodes at 10.0.0.x,
// closest to the target first.
func lookupNodes(count int) (krpc.ID, []krpc.NodeInfo) {
	target := krpc.RandomID()
	var infos []krpc.NodeInfo
	for i := range count {
		infos = append(infos, krpc.NodeInfo{ID: krpc.RandomID(), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 6881)})
	}
	slices.SortFunc(infos, func(a, b krpc.NodeInfo) int { return routing.CompareDistance(target, a.ID, b.ID) })
	return target, infos
}

// idsByAddr maps each node's address to its id.
func idsByAddr(infos []krpc.NodeInfo) map[netip.AddrPort]krpc.ID {
	m := make(map[netip.AddrPort]krpc.ID, len(infos))
	for _, n := range infos {
		m[n.Addr] = n.ID
	}
	return m
}

func TestRTTWindowSlowAfter(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		want    time.Duration
	}{
		{"empty", nil, time.Second},
		{"floor", []time.Duration{ms, 2 * ms, 3 * ms}, 20 * ms},
		// 10 samples 100..1000ms: median 600ms (1.5x = 900ms), 90th
		// percentile 1000ms (1.25x = 1250ms).
		{"tail", []time.Duration{100 * ms, 200 * ms, 300 * ms, 400 * ms, 500 * ms, 600 * ms, 700 * ms, 800 * ms, 900 * ms, 1000 * ms}, 1250 * ms},
		// all alike: 1.5x the median.
		{"steady", slices.Repeat([]time.Duration{40 * ms}, 20), 60 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w rttWindow
			for _, d := range tc.samples {
				w.add(d)
			}
			if got := w.slowAfter(); got != tc.want {
				t.Errorf("slowAfter = %v, want %v", got, tc.want)
			}
		})
	}
	// The window keeps the latest rttWindowSize samples: old slow ones
	// age out.
	var w rttWindow
	for range rttWindowSize {
		w.add(time.Second)
	}
	for range rttWindowSize {
		w.add(40 * ms)
	}
	if got := w.slowAfter(); got != 60*ms {
		t.Errorf("after %d fresh samples slowAfter = %v, want 60ms", rttWindowSize, got)
	}
}

// TestLookupNoGoroutinePerQuery: a lookup's queries answer through
// callbacks (krpc.Server.Go). With α queries out to nodes that do not
// answer, the node runs no goroutine for them: the only one added is the
// caller's, running the lookup. When the lookup ends (here cancelled), its
// queries still out are cancelled with it: none is left in flight.
func TestLookupNoGoroutinePerQuery(t *testing.T) {
	const alpha = 5
	n := startNode(t, func(c *Config) {
		c.Alpha = alpha
		c.QueryTimeout = time.Minute // nothing times out while the test looks
		c.MaintenanceInterval = time.Hour
	})
	// alpha silent nodes, each a socket that reads but never answers: the
	// lookup asks all of them at once, one query each.
	var socks []*net.UDPConn
	now := time.Now()
	for i := range alpha {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		socks = append(socks, c)
		n.table.Responded(krpc.NodeInfo{ID: krpc.RandomID(), Addr: krpc.AddrPortOf(c.LocalAddr())}, now, 0)
	}
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.FindNode(ctx, krpc.RandomID())
	}()
	buf := make([]byte, 2048)
	for _, c := range socks {
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatalf("no query reached %s: %v", c.LocalAddr(), err)
		}
	}
	if added := runtime.NumGoroutine() - base; added > 1 {
		t.Errorf("%d goroutines added with %d queries out, want 1 (the lookup's caller)", added, alpha)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the cancelled lookup did not return")
	}
	if got := n.srv.InFlight(); got != 0 {
		t.Errorf("%d queries in flight after the lookup ended, want 0", got)
	}
}
