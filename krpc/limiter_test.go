package krpc

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

func TestIPLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	a := netip.MustParseAddr("203.0.113.7")
	b := netip.MustParseAddr("198.51.100.9")
	l := NewIPLimiter(IPLimiterConfig{Rate: 10, Burst: 5})

	for i := range 5 {
		if !l.Allow(a, t0) {
			t.Fatalf("packet %d of the burst refused", i)
		}
	}
	if l.Allow(a, t0) {
		t.Fatal("packet beyond the burst allowed")
	}
	if !l.Allow(b, t0) {
		t.Fatal("another IP refused because of the first one's burst")
	}
	// 10/s: one token per 100 ms.
	if l.Allow(a, t0.Add(50*time.Millisecond)) {
		t.Fatal("allowed before a token refilled")
	}
	if !l.Allow(a, t0.Add(100*time.Millisecond)) {
		t.Fatal("refused after a token refilled")
	}
	// Refill caps at Burst.
	later := t0.Add(time.Hour)
	n := 0
	for l.Allow(a, later) {
		n++
	}
	if n != 5 {
		t.Fatalf("after an hour idle %d packets allowed, want the burst of 5", n)
	}
	// A clock step back refills nothing and refuses nothing extra.
	if l.Allow(a, t0) {
		t.Fatal("clock step back refilled the bucket")
	}
	// The same IP in IPv4-mapped form shares the bucket.
	if l.Allow(netip.AddrFrom16(a.As16()), later) {
		t.Fatal("IPv4-mapped form of a limited IP allowed")
	}
}

func TestIPLimiterIPv6PerSlash64(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := NewIPLimiter(IPLimiterConfig{Rate: 1, Burst: 2})
	x := netip.MustParseAddr("2001:db8:1:2::1")
	y := netip.MustParseAddr("2001:db8:1:2:ffff::9") // same /64
	z := netip.MustParseAddr("2001:db8:1:3::1")      // another /64
	if !l.Allow(x, t0) || !l.Allow(y, t0) {
		t.Fatal("burst refused")
	}
	if l.Allow(x, t0) {
		t.Fatal("a /64 got more than its burst by varying the interface id")
	}
	if !l.Allow(z, t0) {
		t.Fatal("another /64 refused")
	}
}

// TestIPLimiterLoopback: loopback sources (all of 127.0.0.0/8, ::1, and
// IPv4-mapped forms) are exempt unless LimitLoopback is set.
func TestIPLimiterLoopback(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	for _, s := range []string{"127.0.0.1", "127.5.6.7", "::1", "::ffff:127.0.0.1"} {
		lo := netip.MustParseAddr(s)
		exempt := NewIPLimiter(IPLimiterConfig{Rate: 1, Burst: 1})
		limited := NewIPLimiter(IPLimiterConfig{Rate: 1, Burst: 1, LimitLoopback: true})
		for i := range 10 {
			if !exempt.Allow(lo, t0) {
				t.Fatalf("%s: packet %d refused with loopback exempt", s, i)
			}
		}
		limited.Allow(lo, t0)
		if limited.Allow(lo, t0) {
			t.Fatalf("%s: not limited with LimitLoopback", s)
		}
	}
}

// TestIPLimiterStateBounded: a flood from a million distinct (spoofed)
// sources leaves the limiter's table at its configured size.
func TestIPLimiterStateBounded(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := NewIPLimiter(IPLimiterConfig{Slots: 1000})
	if got := len(l.slots); got != 1024 {
		t.Fatalf("%d slots, want 1000 rounded up to 1024", got)
	}
	for i := range 1_000_000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.Allow(ip, t0)
	}
	if got := len(l.slots); got != 1024 {
		t.Fatalf("table grew to %d slots", got)
	}
}

func TestByteBudget(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	b := NewByteBudget(1000, 2000)
	if !b.Take(1500, t0) || !b.Take(500, t0) {
		t.Fatal("burst refused")
	}
	if b.Take(1, t0) {
		t.Fatal("byte beyond the burst allowed")
	}
	if !b.Take(500, t0.Add(500*time.Millisecond)) {
		t.Fatal("refill at 1000 B/s: 500 bytes after 500 ms refused")
	}
	if b.Take(3000, t0.Add(time.Hour)) {
		t.Fatal("a reply larger than the burst allowed")
	}
}

// TestServerReplyBudget: replies beyond the byte budget are not sent and
// are counted as bandwidth drops; the Accept hook refuses before decoding.
func TestServerReplyBudget(t *testing.T) {
	var calls atomic.Int64
	clock := time.Unix(1_700_000_000, 0)
	srv, log := newTestServer(t, pingHandler(rawID(), &calls), ServerConfig{
		ReplyBudget: NewByteBudget(1, 100), // room for one ping reply (~60 bytes), then ~nothing
		Clock:       fixedClock{clock},
	})
	c := newRawSocket(t)
	ping := func(tid string) {
		sendMsg(t, c, srv.LocalAddr(), &Msg{T: tid, Y: KindQuery, Q: MethodPing, A: &Args{ID: rawID()}})
	}
	ping("a1")
	if m, _ := readMsg(t, c); m.T != "a1" {
		t.Fatalf("first reply tid %q", m.T)
	}
	ping("a2")
	if r := log.nextDrop(t); r != DropBandwidth {
		t.Fatalf("second ping: drop %q, want %q", r, DropBandwidth)
	}
	if calls.Load() != 2 {
		t.Fatalf("handler called %d times, want 2", calls.Load())
	}
}

// TestServerAcceptRefusesBeforeDecode: a packet the Accept hook refuses
// never reaches the decoder or the handler.
func TestServerAcceptRefusesBeforeDecode(t *testing.T) {
	var calls atomic.Int64
	srv, log := newTestServer(t, pingHandler(rawID(), &calls), ServerConfig{
		Accept: func(netip.AddrPort, int) bool { return false },
	})
	c := newRawSocket(t)
	sendMsg(t, c, srv.LocalAddr(), &Msg{T: "a1", Y: KindQuery, Q: MethodPing, A: &Args{ID: rawID()}})
	if r := log.nextDrop(t); r != DropRateLimited {
		t.Fatalf("drop %q, want %q", r, DropRateLimited)
	}
	if calls.Load() != 0 {
		t.Fatal("refused packet reached the handler")
	}
}

// fixedClock is a Clock frozen at one instant.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

func (c fixedClock) AfterFunc(d time.Duration, f func()) Timer { return SystemClock{}.AfterFunc(d, f) }

// TestLimiterSetRate: a running limiter and byte budget take a new rate
// (a reload), and a rate <= 0 switches them off.
func TestLimiterSetRate(t *testing.T) {
	now := time.Unix(1000, 0)
	ip := netip.MustParseAddr("192.0.2.7")
	l := NewIPLimiter(IPLimiterConfig{Rate: 1, Burst: 1, Slots: 16})
	if !l.Allow(ip, now) || l.Allow(ip, now) {
		t.Fatal("rate 1, burst 1: want the first packet allowed, the second refused")
	}
	l.SetRate(0, 0)
	for i := range 10 {
		if !l.Allow(ip, now) {
			t.Fatalf("switched off: packet %d refused", i)
		}
	}
	l.SetRate(100, 3)
	if c := l.Config(); c.Rate != 100 || c.Burst != 3 {
		t.Fatalf("config after SetRate(100, 3): %+v", c)
	}
	later := now.Add(time.Second) // refills to the new burst
	allowed := 0
	for range 10 {
		if l.Allow(ip, later) {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("burst 3: %d of 10 packets allowed at once", allowed)
	}

	b := NewByteBudget(10, 10)
	if !b.Take(10, now) || b.Take(1, now) {
		t.Fatal("budget 10: want 10 bytes taken, then none")
	}
	b.SetRate(0, 0)
	if !b.Take(1<<20, now) {
		t.Error("switched-off budget refused a reply")
	}
}

// BenchmarkIPLimiterAllow: one Allow per packet from 4096 distinct
// sources spread over the default table.
func BenchmarkIPLimiterAllow(b *testing.B) {
	t0 := time.Unix(1_700_000_000, 0)
	l := NewIPLimiter(IPLimiterConfig{Rate: 1e9, Burst: 1e9})
	ips := make([]netip.Addr, 4096)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
	}
	for i := 0; b.Loop(); i++ {
		l.Allow(ips[i&4095], t0.Add(time.Duration(i)))
	}
}
