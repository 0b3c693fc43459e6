package simnet

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

// Every test runs in a testing/synctest bubble: latencies and deadlines
// pass in virtual time, so the timings asserted are exact and a busy
// machine cannot change them.

// TestMain fails the package if any goroutine outlives its tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newNet(t *testing.T, cfg Config) *Network {
	t.Helper()
	n := New(cfg)
	t.Cleanup(func() { n.Close() })
	return n
}

func listen(t *testing.T, n *Network, addr string) *Conn {
	t.Helper()
	c, err := n.Listen(netip.MustParseAddrPort(addr))
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	return c
}

// read reads one packet with a deadline of d.
func read(t *testing.T, c *Conn, d time.Duration) ([]byte, net.Addr, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	n, from, err := c.ReadFrom(buf)
	return buf[:n], from, err
}

func TestDelivery(t *testing.T) { synctest.Test(t, testDelivery) }

func testDelivery(t *testing.T) {
	n := newNet(t, Config{Latency: 2 * time.Millisecond, Jitter: time.Millisecond})
	a := listen(t, n, "10.0.0.1:6881")
	b := listen(t, n, "10.0.0.2:6881")
	if got := a.LocalAddr().(*net.UDPAddr).AddrPort(); got != netip.MustParseAddrPort("10.0.0.1:6881") {
		t.Fatalf("LocalAddr = %v", got)
	}
	msg := []byte("hello")
	start := time.Now()
	if _, err := a.WriteTo(msg, b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	msg[0] = 'J' // the sender may reuse its buffer
	got, from, err := read(t, b, time.Second)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if el := time.Since(start); el < 2*time.Millisecond || el >= 3*time.Millisecond {
		t.Errorf("delivered after %v, want within the 2ms latency plus 1ms of jitter", el)
	}
	if string(got) != "hello" {
		t.Errorf("got %q, want hello", got)
	}
	if from.(*net.UDPAddr).AddrPort() != a.AddrPort() {
		t.Errorf("from %v, want %v", from, a.AddrPort())
	}
	// A reply through a plain net.Addr works too.
	if _, err := b.WriteTo([]byte("back"), from); err != nil {
		t.Fatal(err)
	}
	if got, _, err := read(t, a, time.Second); err != nil || string(got) != "back" {
		t.Fatalf("reply: %q, %v", got, err)
	}
	s := n.Stats()
	if s.Sent != 2 || s.Delivered != 2 || s.DroppedTotal() != 0 {
		t.Errorf("stats %+v, want 2 sent, 2 delivered, none dropped", s)
	}
}

func TestOrderWithoutLatency(t *testing.T) { synctest.Test(t, testOrderWithoutLatency) }

func testOrderWithoutLatency(t *testing.T) {
	n := newNet(t, Config{})
	a := listen(t, n, "10.0.0.1:1")
	b := listen(t, n, "10.0.0.2:1")
	for i := range 100 {
		a.WriteTo([]byte{byte(i)}, b.LocalAddr())
	}
	for i := range 100 {
		got, _, err := read(t, b, time.Second)
		if err != nil || got[0] != byte(i) {
			t.Fatalf("packet %d: %v %v", i, got, err)
		}
	}
}

func TestListen(t *testing.T) { synctest.Test(t, testListen) }

func testListen(t *testing.T) {
	n := newNet(t, Config{})
	a := listen(t, n, "10.0.0.1:6881")
	if _, err := n.Listen(a.AddrPort()); err == nil {
		t.Fatal("second Listen on the same address succeeded")
	}
	p1 := listen(t, n, "10.0.0.1:0")
	p2 := listen(t, n, "10.0.0.1:0")
	if p1.AddrPort().Port() == 0 || p1.AddrPort() == p2.AddrPort() {
		t.Fatalf("port 0 gave %v and %v", p1.AddrPort(), p2.AddrPort())
	}
	if _, err := n.Listen(netip.MustParseAddrPort("0.0.0.0:1")); err == nil {
		t.Fatal("Listen on an unspecified address succeeded")
	}
	// Close frees the address.
	a.Close()
	if _, err := n.Listen(a.AddrPort()); err != nil {
		t.Fatalf("Listen after Close: %v", err)
	}
}

func TestLossRate(t *testing.T) { synctest.Test(t, testLossRate) }

func testLossRate(t *testing.T) {
	const total, loss = 10000, 0.2
	n := newNet(t, Config{Loss: loss, Seed: 42, QueueLen: total})
	a := listen(t, n, "10.0.0.1:1")
	b := listen(t, n, "10.0.0.2:1")
	for range total {
		a.WriteTo([]byte("x"), b.LocalAddr())
	}
	// Every write is delivered or dropped by the time WriteTo returns
	// (no delay is configured): read exactly what was delivered, with a
	// deadline that only bounds the test, then check nothing more came.
	delivered := int(n.Stats().Delivered)
	got := 0
	for got < delivered {
		if _, _, err := read(t, b, 10*time.Second); err != nil {
			t.Fatalf("read %d of %d delivered packets: %v", got, delivered, err)
		}
		got++
	}
	if _, _, err := read(t, b, 10*time.Millisecond); err == nil {
		t.Fatalf("more than the %d delivered packets arrived", delivered)
	}
	rate := 1 - float64(got)/total
	// The binomial standard deviation is 0.4%; allow 5 of them.
	if rate < loss-0.02 || rate > loss+0.02 {
		t.Fatalf("loss rate %.3f, want %.2f ± 0.02", rate, loss)
	}
	s := n.Stats()
	if s.Sent != total || s.Dropped[DropLoss]+s.Delivered != total || s.Delivered != uint64(got) {
		t.Fatalf("stats %+v inconsistent with %d received", s, got)
	}
	t.Logf("loss %.2f configured, %.4f measured over %d packets", loss, rate, total)

	// SetLoss changes it at run time.
	n.SetLoss(1)
	a.WriteTo([]byte("x"), b.LocalAddr())
	if _, _, err := read(t, b, 20*time.Millisecond); err == nil {
		t.Fatal("packet delivered with loss 1")
	}
}

func TestDuplicateAndReorder(t *testing.T) { synctest.Test(t, testDuplicateAndReorder) }

func testDuplicateAndReorder(t *testing.T) {
	const total = 2000
	n := newNet(t, Config{Latency: time.Millisecond, Duplicate: 0.1, Reorder: 0.2, Seed: 7, QueueLen: 2 * total})
	a := listen(t, n, "10.0.0.1:1")
	b := listen(t, n, "10.0.0.2:1")
	for i := range total {
		a.WriteTo([]byte{byte(i >> 8), byte(i)}, b.LocalAddr())
	}
	got, inversions, last := 0, 0, -1
	for {
		p, _, err := read(t, b, 50*time.Millisecond)
		if err != nil {
			break
		}
		got++
		v := int(p[0])<<8 | int(p[1])
		if v < last {
			inversions++
		}
		last = v
	}
	s := n.Stats()
	if got != total+int(s.Duplicated) || s.Duplicated < total/20 || s.Duplicated > total/5 {
		t.Fatalf("received %d, duplicated %d, sent %d", got, s.Duplicated, total)
	}
	if inversions == 0 {
		t.Fatal("no packet was reordered")
	}
	t.Logf("%d received, %d duplicates, %d out of order", got, s.Duplicated, inversions)
}

func TestPartitionAndHeal(t *testing.T) { synctest.Test(t, testPartitionAndHeal) }

func testPartitionAndHeal(t *testing.T) {
	n := newNet(t, Config{Latency: time.Millisecond})
	a1 := listen(t, n, "10.0.1.1:1")
	a2 := listen(t, n, "10.0.1.2:1")
	b1 := listen(t, n, "10.0.2.1:1")
	n.Partition([]netip.Addr{a1.AddrPort().Addr(), a2.AddrPort().Addr()}, []netip.Addr{b1.AddrPort().Addr()})

	a1.WriteTo([]byte("cut"), b1.LocalAddr())
	b1.WriteTo([]byte("cut"), a1.LocalAddr())
	if _, _, err := read(t, b1, 30*time.Millisecond); err == nil {
		t.Fatal("packet crossed the partition a->b")
	}
	if _, _, err := read(t, a1, 30*time.Millisecond); err == nil {
		t.Fatal("packet crossed the partition b->a")
	}
	a1.WriteTo([]byte("same side"), a2.LocalAddr())
	if _, _, err := read(t, a2, time.Second); err != nil {
		t.Fatalf("same-side packet: %v", err)
	}
	if got := n.Stats().Dropped[DropPartition]; got != 2 {
		t.Fatalf("partition drops %d, want 2", got)
	}

	n.Heal()
	a1.WriteTo([]byte("healed"), b1.LocalAddr())
	if p, _, err := read(t, b1, time.Second); err != nil || string(p) != "healed" {
		t.Fatalf("after Heal: %q %v", p, err)
	}
}

func TestPartitionDropsInFlight(t *testing.T) { synctest.Test(t, testPartitionDropsInFlight) }

func testPartitionDropsInFlight(t *testing.T) {
	n := newNet(t, Config{Latency: 50 * time.Millisecond})
	a := listen(t, n, "10.0.1.1:1")
	b := listen(t, n, "10.0.2.1:1")
	a.WriteTo([]byte("x"), b.LocalAddr())
	n.Partition([]netip.Addr{a.AddrPort().Addr()}, []netip.Addr{b.AddrPort().Addr()})
	if _, _, err := read(t, b, 150*time.Millisecond); err == nil {
		t.Fatal("in-flight packet crossed a partition made before its delivery")
	}
}

func TestSetDown(t *testing.T) { synctest.Test(t, testSetDown) }

func testSetDown(t *testing.T) {
	n := newNet(t, Config{})
	a := listen(t, n, "10.0.0.1:1")
	b := listen(t, n, "10.0.0.2:1")
	n.SetDown(b.AddrPort(), true)
	a.WriteTo([]byte("to b"), b.LocalAddr())
	b.WriteTo([]byte("from b"), a.LocalAddr())
	if _, _, err := read(t, b, 20*time.Millisecond); err == nil {
		t.Fatal("down node received")
	}
	if _, _, err := read(t, a, 20*time.Millisecond); err == nil {
		t.Fatal("down node's packet delivered")
	}
	n.SetDown(b.AddrPort(), false)
	a.WriteTo([]byte("up"), b.LocalAddr())
	if _, _, err := read(t, b, time.Second); err != nil {
		t.Fatalf("after SetDown false: %v", err)
	}
	if s := n.Stats(); s.Dropped[DropDown] != 2 {
		t.Fatalf("down drops %d, want 2", s.Dropped[DropDown])
	}
}

func TestQueueOverflowAndNoListener(t *testing.T) { synctest.Test(t, testQueueOverflowAndNoListener) }

func testQueueOverflowAndNoListener(t *testing.T) {
	n := newNet(t, Config{QueueLen: 4})
	a := listen(t, n, "10.0.0.1:1")
	b := listen(t, n, "10.0.0.2:1")
	for range 10 {
		a.WriteTo([]byte("x"), b.LocalAddr())
	}
	a.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.9.9.9:1")))
	s := n.Stats()
	if s.Delivered != 4 || s.Dropped[DropQueueFull] != 6 || s.Dropped[DropNoListener] != 1 {
		t.Fatalf("stats %+v, want 4 delivered, 6 queue_full, 1 no_listener", s)
	}
}

func TestReadDeadline(t *testing.T) { synctest.Test(t, testReadDeadline) }

func testReadDeadline(t *testing.T) {
	n := newNet(t, Config{})
	a := listen(t, n, "10.0.0.1:1")

	start := time.Now()
	_, _, err := read(t, a, 30*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past deadline: %v, want a timeout", err)
	}
	if el := time.Since(start); el != 30*time.Millisecond {
		t.Fatalf("deadline of 30ms returned after %v", el)
	}

	// A deadline already past fails at once.
	a.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := a.ReadFrom(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past deadline: %v", err)
	}

	// Moving the deadline applies to a reader already blocked.
	a.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, err := a.ReadFrom(make([]byte, 10))
		done <- err
	}()
	synctest.Wait() // the reader is blocked
	a.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blocked reader: %v, want a timeout", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a deadline set while blocked did not unblock the reader")
	}

	// A write deadline in the past fails writes.
	a.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := a.WriteTo([]byte("x"), a.LocalAddr()); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past deadline: %v", err)
	}
	a.SetDeadline(time.Time{})
	if _, err := a.WriteTo([]byte("x"), a.LocalAddr()); err != nil {
		t.Fatalf("write without deadline: %v", err)
	}
}

func TestCloseUnblocksReaders(t *testing.T) { synctest.Test(t, testCloseUnblocksReaders) }

func testCloseUnblocksReaders(t *testing.T) {
	n := newNet(t, Config{})
	a := listen(t, n, "10.0.0.1:1")
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := a.ReadFrom(make([]byte, 10))
			errs <- err
		}()
	}
	synctest.Wait() // every reader is blocked
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		var oe *net.OpError
		if !errors.Is(err, net.ErrClosed) || !errors.As(err, &oe) {
			t.Fatalf("reader after Close: %v, want *net.OpError wrapping net.ErrClosed", err)
		}
	}
	if err := a.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.WriteTo([]byte("x"), a.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
}

func TestNetworkCloseStopsEverything(t *testing.T) {
	defer goleak.VerifyNone(t) // after the bubble: its goroutines are gone
	synctest.Test(t, testNetworkCloseStopsEverything)
}

func testNetworkCloseStopsEverything(t *testing.T) {
	n := New(Config{Latency: 20 * time.Millisecond, Jitter: 5 * time.Millisecond})
	var conns []*Conn
	for i := range 50 {
		c, err := n.Listen(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 6881))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() { // a reader per conn, echoing what it gets
			defer wg.Done()
			buf := make([]byte, 100)
			for {
				k, from, err := c.ReadFrom(buf)
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("reader: %v", err)
					}
					return
				}
				c.WriteTo(buf[:k], from)
			}
		}()
		for _, d := range conns[:10] {
			c.WriteTo([]byte("ping"), d.LocalAddr())
		}
	}
	time.Sleep(30 * time.Millisecond)
	n.Close()
	wg.Wait() // every reader saw net.ErrClosed
	if _, err := n.Listen(netip.MustParseAddrPort("10.1.1.1:1")); !errors.Is(err, ErrNetworkClosed) {
		t.Fatalf("Listen after Close: %v", err)
	}
	s := n.Stats()
	t.Logf("stats at close: %+v", s)
	if s.Delivered == 0 {
		t.Fatal("nothing delivered")
	}
}

func TestSimLinkLoss(t *testing.T) { synctest.Test(t, testSimLinkLoss) }

func testSimLinkLoss(t *testing.T) {
	const total = 2000
	n := newNet(t, Config{Seed: 9, QueueLen: total})
	a := listen(t, n, "10.0.0.1:1")
	b := listen(t, n, "10.0.0.2:1")
	c := listen(t, n, "10.0.0.3:1")
	n.SetLinkLoss(a.AddrPort().Addr(), b.AddrPort().Addr(), 0.5)
	for range total {
		a.WriteTo([]byte("x"), b.LocalAddr())
		a.WriteTo([]byte("x"), c.LocalAddr()) // another link: no loss
		b.WriteTo([]byte("x"), a.LocalAddr()) // the reverse direction: no loss
	}
	// Without latency a write is delivered (or dropped) before WriteTo
	// returns, so what arrived is what sits in the inbox: read exactly
	// that, with a deadline that only bounds the test.
	count := func(conn *Conn) int {
		queued := len(conn.inbox)
		for i := range queued {
			if _, _, err := read(t, conn, 10*time.Second); err != nil {
				t.Fatalf("read %d of %d queued packets: %v", i, queued, err)
			}
		}
		return queued
	}
	ab, ac, ba := count(b), count(c), count(a)
	if ac != total || ba != total {
		t.Fatalf("lossless links delivered a->c %d, b->a %d of %d", ac, ba, total)
	}
	// binomial sd is about 1.1%; allow 5 of them.
	if rate := 1 - float64(ab)/total; rate < 0.44 || rate > 0.56 {
		t.Fatalf("a->b loss %.3f, want 0.5 ± 0.06", rate)
	}
	n.SetLinkLoss(a.AddrPort().Addr(), b.AddrPort().Addr(), 0)
	a.WriteTo([]byte("x"), b.LocalAddr())
	if _, _, err := read(t, b, time.Second); err != nil {
		t.Fatalf("after removing the link loss: %v", err)
	}
}

func TestSimWaitQuiet(t *testing.T) { synctest.Test(t, testSimWaitQuiet) }

func testSimWaitQuiet(t *testing.T) {
	n := newNet(t, Config{Latency: 30 * time.Millisecond})
	a := listen(t, n, "10.0.0.1:1")
	b := listen(t, n, "10.0.0.2:1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.WriteTo([]byte("x"), b.LocalAddr())
	start := time.Now()
	if err := n.WaitQuiet(ctx, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// The packet was in flight for 30ms: quiet means delivered, too.
	if el := time.Since(start); el < 25*time.Millisecond {
		t.Fatalf("quiet after %v with a packet in flight for 30ms", el)
	}
	if s := n.Stats(); s.InFlight != 0 || s.Delivered != 1 {
		t.Fatalf("stats after WaitQuiet: %+v", s)
	}
	// With nothing sent, it still waits the quiet period from the call.
	start = time.Now()
	if err := n.WaitQuiet(ctx, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("idle network quiet after %v, want >= 20ms from the call", el)
	}
	// A context that ends first wins.
	short, cancelShort := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancelShort()
	a.WriteTo([]byte("y"), b.LocalAddr())
	if err := n.WaitQuiet(short, time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitQuiet past its context: %v", err)
	}
}
