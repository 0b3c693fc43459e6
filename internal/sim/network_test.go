package sim

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/dhtd/dhtd/krpc"
)

// Events come out in (time, sequence) order: by time, and in the order
// they were queued when times are equal.
func TestQueueOrder(t *testing.T) {
	n := NewNetwork(NetConfig{Seed: 1})
	var got []int
	for i := range 500 {
		at := time.Duration(n.Rand.IntN(50)) * time.Millisecond
		n.At(at, func() { got = append(got, int(at/time.Millisecond)*1000+i) })
	}
	n.Run(time.Second)
	if len(got) != 500 {
		t.Fatalf("%d events ran, want 500", len(got))
	}
	if !slices.IsSorted(got) {
		t.Fatalf("events out of (time, sequence) order: %v", got[:20])
	}
}

// Round trips are drawn once per pair (symmetric, stable) from a
// heavy-tailed distribution with a median near MedianRTT.
func TestRTTModel(t *testing.T) {
	n := NewNetwork(NetConfig{Seed: 3})
	var rtts []time.Duration
	for a := int32(0); a < 200; a++ {
		for b := a + 1; b < 200; b += 7 {
			if n.RTT(a, b) != n.RTT(b, a) {
				t.Fatalf("RTT(%d,%d) != RTT(%d,%d)", a, b, b, a)
			}
			rtts = append(rtts, n.RTT(a, b))
		}
	}
	slices.Sort(rtts)
	med, p99 := rtts[len(rtts)/2], rtts[len(rtts)*99/100]
	if med < 85*time.Millisecond || med > 115*time.Millisecond {
		t.Errorf("median RTT %v, want about 100ms", med)
	}
	if p99 < 3*med {
		t.Errorf("p99 RTT %v is not heavy-tailed against the median %v", p99, med)
	}
	if other := NewNetwork(NetConfig{Seed: 4}); other.RTT(1, 2) == n.RTT(1, 2) && other.RTT(3, 4) == n.RTT(3, 4) {
		t.Errorf("seeds 3 and 4 draw the same round trips")
	}
}

// The order holds while events queue more events as they run (pushes and
// pops interleaved, the queue growing and shrinking).
func TestQueueOrderInterleaved(t *testing.T) {
	n := NewNetwork(NetConfig{Seed: 2})
	type key struct{ at, seq int }
	var got []key
	seq := 0
	var schedule func(depth int)
	schedule = func(depth int) {
		seq++
		k := key{int(n.Elapsed()/time.Millisecond) + n.Rand.IntN(20), seq}
		n.At(time.Duration(k.at)*time.Millisecond, func() {
			got = append(got, k)
			if depth < 3 {
				for range n.Rand.IntN(3) {
					schedule(depth + 1)
				}
			}
		})
	}
	for range 300 {
		schedule(0)
	}
	n.Run(time.Hour)
	if len(got) != seq {
		t.Fatalf("%d events ran, want %d", len(got), seq)
	}
	if !slices.IsSortedFunc(got, func(a, b key) int {
		if a.at != b.at {
			return a.at - b.at
		}
		return a.seq - b.seq
	}) {
		t.Fatalf("events out of (time, sequence) order")
	}
	if seq < 600 {
		t.Fatalf("only %d events: the test does not interleave", seq)
	}
}

// TestPeerAt: peers at their scattered address are found by inverting it,
// others through byAddr, and an unknown address is not found.
func TestPeerAt(t *testing.T) {
	for _, i := range []int32{0, 1, 2, 255, 256, 99999, 1<<27 - 1} {
		if got, ok := scatteredIndex(ScatteredAddr(i)); !ok || got != i {
			t.Fatalf("scatteredIndex(ScatteredAddr(%d)) = %d, %v", i, got, ok)
		}
	}
	n := NewNetwork(NetConfig{Seed: 1})
	var id krpc.ID
	a := n.AddPeer(ScatteredAddr(0), id, false)
	b := n.AddPeer(netip.MustParseAddrPort("66.66.66.1:6881"), id, false)
	c := n.AddPeer(ScatteredAddr(7), id, false) // index 2, at another's address
	for _, p := range []*Peer{a, b, c} {
		if got, ok := n.peerAt(p.Addr); !ok || got != p.Index {
			t.Errorf("peerAt(%v) = %d, %v; want %d", p.Addr, got, ok, p.Index)
		}
	}
	for _, addr := range []netip.AddrPort{ScatteredAddr(1), ScatteredAddr(2), netip.MustParseAddrPort("66.66.66.2:6881"),
		netip.AddrPortFrom(ScatteredAddr(0).Addr(), 6882)} {
		if got, ok := n.peerAt(addr); ok {
			t.Errorf("peerAt(%v) = %d, want none", addr, got)
		}
	}
}

// Two goroutines hand a signal back and forth through two latches: a wait
// never returns before a post it has not seen, even when a poster is
// slow between counting its post and waking the waiter (a late wake-up
// meant for an earlier round, which once let a window start before the
// last had ended).
func TestLatchNeverEarly(t *testing.T) {
	ping, pong := newLatch(), newLatch()
	const rounds = 20000
	done := make(chan error, 1)
	go func() {
		var seen uint64
		for i := range uint64(rounds) {
			if seen = ping.wait(seen); seen != i+1 {
				done <- fmt.Errorf("ping wait returned %d in round %d", seen, i+1)
				return
			}
			pong.post()
		}
		done <- nil
	}()
	var seen uint64
	for i := range uint64(rounds) {
		ping.post()
		if seen = pong.wait(seen); seen != i+1 {
			t.Fatalf("pong wait returned %d in round %d", seen, i+1)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A Peer fills two cache lines, the second starting at ID: the fields
// other workers read when they send it a packet share no line with those
// its own worker writes.
func TestPeerLayout(t *testing.T) {
	var p Peer
	if size, id := unsafe.Sizeof(p), unsafe.Offsetof(p.ID); size != 128 || id != 64 {
		t.Fatalf("Peer is %d bytes with ID at %d, want 128 and 64", size, id)
	}
	if off := unsafe.Offsetof(p.Addr) + unsafe.Sizeof(p.Addr); off > 64 {
		t.Fatalf("Addr ends at %d, past the first cache line", off)
	}
}
