package node

import (
	"context"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
)

// floodHeapBound is the most the heap of the whole test process (the node,
// the flooder and the test's own buffers) may grow, at any sample during
// the flood, above what it held (after a GC) before the flood.
const floodHeapBound = 32 << 20

// floodPackets builds n packets, half garbage (random bytes, truncated and
// non-canonical bencode) and half well-formed queries of every method.
func floodPackets(n int) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	id := krpc.RandomID()
	target := krpc.RandomID()
	var good [][]byte
	for _, q := range []struct {
		method string
		args   krpc.Args
	}{
		{krpc.MethodPing, krpc.Args{ID: id}},
		{krpc.MethodFindNode, krpc.Args{ID: id, Target: &target}},
		{krpc.MethodGetPeers, krpc.Args{ID: id, InfoHash: &target}},
		{krpc.MethodGet, krpc.Args{ID: id, Target: &target}},
	} {
		a := q.args
		b, err := krpc.Encode(&krpc.Msg{T: "aa", Y: krpc.KindQuery, Q: q.method, A: &a})
		if err != nil {
			panic(err)
		}
		good = append(good, b)
	}
	bad := [][]byte{
		[]byte("d1:ad2:id20:"), // truncated
		[]byte("d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:abcdefghij0123456789ee"), // unsorted keys
		[]byte("i42e"),
	}
	out := make([][]byte, n)
	for i := range out {
		switch {
		case i%2 == 0:
			out[i] = good[r.IntN(len(good))]
		case i%4 == 1:
			b := make([]byte, 21+r.IntN(1400))
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			out[i] = b
		default:
			out[i] = bad[r.IntN(len(bad))]
		}
	}
	return out
}

// TestFloodBounded: one source sends 50,000 garbage and
// well-formed queries as fast as it can; the node's heap stays bounded,
// queries from another source keep being answered, and the refused packets
// show in the metrics by reason.
func TestFloodBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("network test")
	}
	n := startNode(t, func(c *Config) {
		c.Listen = "127.0.0.1:0"
		c.LimitLoopback = true // the per-IP limit applies on loopback here
	})
	client := startNode(t, func(c *Config) { c.Listen = "127.0.0.3:0"; c.LimitLoopback = true })

	flooder, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()
	to := net.UDPAddrFromAddrPort(n.Addr())
	pkts := floodPackets(50000)

	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	var maxHeap uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // sample the heap while the flood runs
		defer wg.Done()
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			maxHeap = max(maxHeap, ms.HeapAlloc-min(ms.HeapAlloc, base.HeapAlloc))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	floodDone := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		for _, p := range pkts {
			_, _ = flooder.WriteTo(p, to)
		}
		floodDone <- time.Since(start)
	}()

	// Meanwhile, the other source pings; each ping is answered.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var pings, answered int
	var elapsed time.Duration
	for done := false; !done || pings < 50; {
		select {
		case elapsed = <-floodDone:
			done = true
		default:
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, _, err := client.Ping(pctx, n.Addr())
		pcancel()
		pings++
		if err == nil {
			answered++
		}
		if ctx.Err() != nil {
			t.Fatal("flood did not end in time")
		}
	}
	close(stop)
	wg.Wait()

	limited := testutil.ToFloat64(n.metrics.PacketsDropped.WithLabelValues(krpc.DropRateLimited))
	received := testutil.ToFloat64(n.metrics.PacketsReceived.WithLabelValues(krpc.PacketQuery))
	t.Logf("flood of %d packets sent in %v; node refused %.0f as rate_limited, took %.0f queries; "+
		"other source: %d/%d pings answered; peak heap growth %.1f MiB over %.1f MiB before (bound %d MiB)",
		len(pkts), elapsed.Round(time.Millisecond), limited, received, answered, pings,
		float64(maxHeap)/(1<<20), float64(base.HeapAlloc)/(1<<20), floodHeapBound>>20)
	if limited == 0 {
		t.Errorf("no packet refused as rate_limited")
	}
	if answered < pings*90/100 {
		t.Errorf("only %d of %d pings from another source answered during the flood", answered, pings)
	}
	if maxHeap > floodHeapBound {
		t.Errorf("peak heap growth %d bytes, bound %d", maxHeap, floodHeapBound)
	}
}
