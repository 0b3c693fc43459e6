package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// fillBucket returns the bucket of the i-th responder of fillTable: the
// first 128 go to bucket 0, the next 64 to bucket 1, then 32, 16, and 8
// per bucket after that, the sizes of libtorrent's extended table. dhtd's
// buckets from the fourth on hold more (routing.Config.FixedBuckets), so
// its table keeps every one.
func fillBucket(i int) int {
	for b, size := range []int{128, 64, 32, 16} {
		if i < size {
			return b
		}
		i -= size
	}
	return 4 + i/8
}

// fillTable offers count responders to the target's routing table: each
// sends a ping with an id that shares b leading bits with the target's
// id, b filling the buckets of an extended table in turn (fillBucket),
// from its own socket and loopback address, and answers the ping the target sends back to
// confirm it (BEP 5). It returns how many nodes a find_node for the
// target's own id then returns.
func fillTable(ctx context.Context, target netip.AddrPort, count int) (int, error) {
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, fmt.Errorf("fill: %w", err)
	}
	defer probe.Close()
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	self := randomID(rnd)
	tid := 0
	ask := func(method string, tgt *krpc.ID) (*krpc.Msg, error) {
		tid++
		m := krpc.Msg{T: fmt.Sprintf("f%d", tid), Y: krpc.KindQuery, Q: method, A: &krpc.Args{ID: self, Target: tgt}, RO: 1}
		b, err := krpc.Encode(&m)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, 4096)
		for try := 0; try < 3; try++ {
			if _, err := probe.WriteToUDPAddrPort(b, target); err != nil {
				return nil, fmt.Errorf("fill: send %s: %w", method, err)
			}
			_ = probe.SetReadDeadline(time.Now().Add(time.Second))
			for {
				n, _, err := probe.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				var r krpc.Msg
				if krpc.Decode(buf[:n], &r) == nil && r.T == m.T && r.R != nil {
					return &r, nil
				}
			}
		}
		return nil, fmt.Errorf("fill: %s to %s: no answer", method, target)
	}
	pong, err := ask(krpc.MethodPing, nil)
	if err != nil {
		return 0, err
	}
	tid0 := pong.R.ID
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conns := make([]*net.UDPConn, 0, count)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
		wg.Wait()
	}()
	for i := range count {
		id := tid0
		bit := min(fillBucket(i), 159)
		id[bit/8] ^= 0x80 >> (bit % 8) // first differing bit: the bucket
		for j := bit + 1; j < 160; j++ {
			if rnd.UintN(2) == 1 {
				id[j/8] ^= 0x80 >> (j % 8)
			}
		}
		src := netip.AddrFrom4([4]byte{127, 0, 2 + byte(i/250), byte(1 + i%250)})
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		if err != nil {
			return 0, fmt.Errorf("fill: socket on %s: %w", src, err)
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			out := make([]byte, 0, 256)
			var m krpc.Msg
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				if krpc.Decode(buf[:n], &m) == nil && m.Y == krpc.KindQuery {
					out = answerQuery(out, id, &m)
					_, _ = c.WriteToUDPAddrPort(out, from)
				}
			}
		}()
		q := krpc.Msg{T: "pi", Y: krpc.KindQuery, Q: krpc.MethodPing, A: &krpc.Args{ID: id}}
		b, _ := krpc.Encode(&q)
		if _, err := c.WriteToUDPAddrPort(b, target); err != nil {
			return 0, fmt.Errorf("fill: ping from %s: %w", src, err)
		}
		// The target confirms new senders with a bounded number of pings
		// in flight (dhtd: 16); pace the offers under that.
		if i%8 == 7 {
			time.Sleep(30 * time.Millisecond)
		}
	}
	// Wait until a find_node for the target's own id comes back full and
	// stops growing.
	best, stable := 0, 0
	for ctx.Err() == nil && stable < 5 {
		time.Sleep(100 * time.Millisecond)
		r, err := ask(krpc.MethodFindNode, &tid0)
		if err != nil {
			return 0, err
		}
		if n := len(r.R.Nodes); n > best {
			best, stable = n, 0
		} else {
			stable++
		}
	}
	return best, nil
}
