package node

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/storage"
)

// startCore starts a CoreNode on a fresh 127.0.0.1:0 socket, closed when
// the test ends.
func startCore(t *testing.T) *CoreNode {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := StartCore(conn, CoreConfig{Core: core.Config{ID: krpc.RandomID()}})
	t.Cleanup(func() { c.Close() })
	return c
}

// await returns what ch delivers, failing the test after a bound.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing within 10 s", what)
		var zero T
		return zero
	}
}

// TestCoreNodeOnLoopback: core nodes (the simulator's node, driven from a
// real UDP socket by CoreNode) and a daemon node form a network on
// loopback. The daemon pings a core node and learns its id (with our
// "v" and the daemon's address as "ip", BEP 42); the core
// nodes join through the daemon; a core node's find_node lookup finds
// another by its id, and the daemon's finds each of them; an item a core
// node puts is found by the daemon's get, stored by the core nodes.
func TestCoreNodeOnLoopback(t *testing.T) {
	d := startNode(t, nil)
	cores := []*CoreNode{startCore(t), startCore(t), startCore(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var ids []krpc.ID
	for _, c := range cores {
		var id krpc.ID
		c.Do(func(n *core.Node, _ time.Time) { id = n.ID() })
		ids = append(ids, id)
	}
	m, err := d.srv.Query(ctx, cores[0].Addr(), krpc.MethodPing, &krpc.Args{ID: d.ID()})
	if err != nil || m.R.ID != ids[0] || m.V != ClientVersion || m.IP == nil || m.IP.AddrPort() != d.Addr() {
		t.Fatalf("daemon's ping of a core node: %+v, %v; want id %v, v %q and ip %s", m, err, ids[0], ClientVersion, d.Addr())
	}
	for i, c := range cores {
		joined := make(chan core.Result, 1)
		c.Do(func(n *core.Node, now time.Time) {
			n.Bootstrap(now, []netip.AddrPort{d.Addr()}, func(r core.Result) { joined <- r })
		})
		if r := await(t, joined, "bootstrap"); len(r.Closest) == 0 {
			t.Fatalf("core node %d: bootstrap through the daemon found nobody", i)
		}
	}
	// Every core node has joined: the last one's lookup of the first's id
	// must end with it.
	found := make(chan core.Result, 1)
	cores[2].Do(func(n *core.Node, now time.Time) {
		n.FindNode(now, ids[0], func(r core.Result) { found <- r })
	})
	if r := await(t, found, "find_node"); len(r.Closest) == 0 || r.Closest[0].Node.ID != ids[0] {
		t.Fatalf("core find_node of %v: closest %+v", ids[0], r.Closest)
	}
	for i, id := range ids {
		res, err := d.FindNode(ctx, id)
		if err != nil || len(res.Closest) == 0 || res.Closest[0].Node.ID != id {
			t.Fatalf("daemon find_node of core node %d: %+v, %v", i, res.Closest, err)
		}
	}

	v := []byte("12:a core value")
	stored := make(chan core.StoreResult, 1)
	cores[1].Do(func(n *core.Node, now time.Time) {
		n.Put(now, v, func(r core.StoreResult) { stored <- r })
	})
	if r := await(t, stored, "put"); r.Stored == 0 {
		t.Fatalf("core put: stored on no node (lookup %+v)", r.Lookup)
	}
	res, err := d.Get(ctx, storage.ImmutableTarget(v), GetOptions{})
	if err != nil || !res.Found || string(res.Item.V) != string(v) {
		t.Fatalf("daemon get of the core node's item: %+v, %v", res, err)
	}
	held := 0
	for _, c := range cores {
		c.Do(func(n *core.Node, now time.Time) {
			if n.HasItem(storage.ImmutableTarget(v), now) {
				held++
			}
		})
	}
	if held == 0 {
		t.Error("no core node holds the item")
	}
}

// TestCoreNodeClose: Close stops the read loop and the timer and closes
// the socket; Do after it does nothing.
func TestCoreNodeClose(t *testing.T) {
	c := startCore(t)
	addr := c.Addr()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	called := false
	c.Do(func(*core.Node, time.Time) { called = true })
	if called {
		t.Error("Do ran after Close")
	}
	// The port is free again: the socket is closed.
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatalf("the closed node's port: %v", err)
	}
	conn.Close()
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCoreNodeLimiter: with a Limiter, the datagrams of a source over its
// limit are dropped before the node decodes them: of 20 pings from one
// address (burst 5, loopback limited) 5 are answered and 15 counted as
// limited; another source still gets its answer.
func TestCoreNodeLimiter(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	lim := krpc.NewIPLimiter(krpc.IPLimiterConfig{Rate: 0.001, Burst: 5, Slots: 1024, LimitLoopback: true})
	c := StartCore(conn, CoreConfig{Core: core.Config{ID: krpc.RandomID()}, Limiter: lim})
	t.Cleanup(func() { c.Close() })
	flooder, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 4)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ping, err := krpc.Encode(&krpc.Msg{T: "aa", Y: krpc.KindQuery, Q: krpc.MethodPing, A: &krpc.Args{ID: krpc.RandomID()}})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if _, err := flooder.WriteToUDPAddrPort(ping, c.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	// The other source's ping is handled after the 20 (one socket, one
	// read loop): its answer means the flood has been dealt with.
	if _, err := other.WriteToUDPAddrPort(ping, c.Addr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	// read returns the next answer u receives, passing over the node's
	// pings of a new querier (BEP 5).
	read := func(u *net.UDPConn, who string) {
		t.Helper()
		if err := u.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		for {
			k, _, err := u.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("%s: no answer: %v", who, err)
			}
			var m krpc.Msg
			if err := krpc.Decode(buf[:k], &m); err != nil {
				t.Fatalf("%s: %q: %v", who, buf[:k], err)
			}
			if m.Y == krpc.KindQuery {
				continue
			}
			if m.Y != krpc.KindResponse || m.T != "aa" {
				t.Fatalf("%s: %q is not an answer to our ping", who, buf[:k])
			}
			return
		}
	}
	read(other, "the other source")
	if got := c.Limited(); got != 15 {
		t.Fatalf("limited %d datagrams, want 15 (20 over a burst of 5)", got)
	}
	for i := range 5 {
		read(flooder, "flood answer "+string(rune('1'+i)))
	}
}

// TestCoreNodeQueries: the driver's own queries (the daemon's). A
// callback starts another query (callbacks run outside the driver's
// lock) and keeps its answer; Answered sees each answer first; a query
// cancelled before its answer never reaches its callback; the events
// count what went out by kind; with the reply budget spent, answers are
// dropped; Close ends the queries still out with krpc.ErrClosed.
func TestCoreNodeQueries(t *testing.T) {
	peer := startCore(t)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sent, dropped, seen []string
	budget := krpc.NewByteBudget(1, 1) // no room for a reply
	c := StartCore(conn, CoreConfig{
		Core: core.Config{ID: krpc.RandomID(), MaxPending: 4, NoUpkeep: true,
			// Answers every query, and admits nobody (as the daemon's
			// handler would, on its own schedule).
			Handler: func(_ *core.Node, _ core.Query, w core.Writer) { w.Reply(&krpc.Return{}) }},
		ReplyBudget: budget,
		Events: krpc.Events{
			Sent:    func(kind string, _ int) { mu.Lock(); sent = append(sent, kind); mu.Unlock() },
			Dropped: func(reason string) { mu.Lock(); dropped = append(dropped, reason); mu.Unlock() },
		},
		Answered: func(from netip.AddrPort, method string, _ *krpc.Msg, _ time.Duration) {
			mu.Lock()
			seen = append(seen, method)
			mu.Unlock()
		},
	})
	t.Cleanup(func() { c.Close() })

	type result struct {
		m   *krpc.Msg
		err error
	}
	second := make(chan result, 1)
	first := make(chan result, 1)
	_, err = c.Go(peer.Addr(), krpc.MethodPing, nil, func(m *krpc.Msg, err error) {
		first <- result{m, err}
		target := krpc.RandomID()
		if _, err := c.Go(peer.Addr(), krpc.MethodFindNode, &krpc.Args{Target: &target}, func(m *krpc.Msg, err error) {
			second <- result{m, err}
		}); err != nil {
			second <- result{nil, err}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	r1, r2 := await(t, first, "ping"), await(t, second, "find_node started by the ping's callback")
	var peerID krpc.ID
	peer.Do(func(n *core.Node, _ time.Time) { peerID = n.ID() })
	for _, r := range []result{r1, r2} {
		if r.err != nil || r.m == nil || r.m.R == nil || r.m.R.ID != peerID {
			t.Fatalf("answer %+v, %v: want the peer's", r.m, r.err)
		}
	}

	// A ping to a silent address, cancelled: its callback never runs.
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silentAddr := krpc.AddrPortOf(silent.LocalAddr())
	call, err := c.Go(silentAddr, krpc.MethodPing, nil, func(*krpc.Msg, error) { t.Error("a cancelled query's callback ran") })
	if err != nil {
		t.Fatal(err)
	}
	if !call.Cancel() {
		t.Fatal("Cancel of an unanswered query reports it ended")
	}
	// The peer pings us (it heard our queries); our answer is over budget.
	ping, err := krpc.Encode(&krpc.Msg{T: "zz", Y: krpc.KindQuery, Q: krpc.MethodPing, A: &krpc.Args{ID: krpc.RandomID()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := silent.WriteToUDPAddrPort(ping, c.Addr()); err != nil {
		t.Fatal(err)
	}
	// A query left out when the node closes ends with ErrClosed.
	closed := make(chan result, 1)
	if _, err := c.Go(silentAddr, krpc.MethodPing, nil, func(m *krpc.Msg, err error) { closed <- result{m, err} }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(dropped, krpc.DropBandwidth)
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if r := await(t, closed, "the query out at Close"); !errors.Is(r.err, krpc.ErrClosed) {
		t.Fatalf("query out at Close: %v, want krpc.ErrClosed", r.err)
	}
	if _, err := c.Go(peer.Addr(), krpc.MethodPing, nil, func(*krpc.Msg, error) {}); !errors.Is(err, krpc.ErrClosed) {
		t.Fatalf("Go after Close: %v, want krpc.ErrClosed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{krpc.MethodPing, krpc.MethodFindNode}; !slices.Equal(seen, want) {
		t.Errorf("Answered saw %v, want %v", seen, want)
	}
	if want := slices.Repeat([]string{krpc.PacketQuery}, 4); !slices.Equal(sent, want) {
		t.Errorf("sent %v, want %v (four queries, the answer over budget)", sent, want)
	}
}
