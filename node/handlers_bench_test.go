package node

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// BenchmarkHandleQuery handles each query kind end to end without the
// socket, as the read loop does: decode the packet (krpc.Decode), answer it
// (handleQuery: table lookup, stores, token), and encode the reply into a
// reused buffer (krpc.AppendEncode) with the envelope the server adds. The
// node has a full-size table (2,000 random nodes offered), 50 peers on the
// get_peers infohash and an immutable item on the get target. allocs/op is
// the allocations of one handled packet.
func BenchmarkHandleQuery(b *testing.B) {
	n := startNode(b, nil)
	rnd := rand.New(rand.NewPCG(5, 6))
	hqPopulate(n, 2000, rnd)
	_, src := hqSource(b)
	now := time.Now()
	ih := hqRandomID(rnd)
	for i := range 50 {
		n.peers.Announce(ih, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i), 1}), 6881), false, now)
	}
	item := storage.Item{V: []byte("12:Hello World!")}
	if err := n.items.Put(item, nil, now); err != nil {
		b.Fatal(err)
	}
	itemTarget := item.Target()
	target := hqRandomID(rnd)
	querier := hqRandomID(rnd)
	cases := []struct {
		name string
		q    *krpc.Msg
	}{
		{"ping", &krpc.Msg{Q: krpc.MethodPing, A: &krpc.Args{ID: querier}}},
		{"find_node", &krpc.Msg{Q: krpc.MethodFindNode, A: &krpc.Args{ID: querier, Target: &target}}},
		{"get_peers", &krpc.Msg{Q: krpc.MethodGetPeers, A: &krpc.Args{ID: querier, InfoHash: &ih}}},
		{"get_peers_empty", &krpc.Msg{Q: krpc.MethodGetPeers, A: &krpc.Args{ID: querier, InfoHash: &target}}},
		{"get", &krpc.Msg{Q: krpc.MethodGet, A: &krpc.Args{ID: querier, Target: &itemTarget}}},
	}
	for _, c := range cases {
		c.q.T, c.q.Y, c.q.V = "aa", krpc.KindQuery, "LT\x02\x00"
		pkt, err := krpc.Encode(c.q)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			out := make([]byte, 0, 1500)
			ip := krpc.CompactAddr(src)
			var q krpc.Msg
			b.ReportAllocs()
			for b.Loop() {
				if err := krpc.Decode(pkt, &q); err != nil {
					b.Fatal(err)
				}
				r := n.handleQuery(src, &q)
				if r == nil || r.R == nil {
					b.Fatalf("%s: no response: %+v", c.name, r)
				}
				r.T, r.Y, r.V, r.IP = q.T, krpc.KindResponse, ClientVersion, &ip
				if out, err = krpc.AppendEncode(out[:0], r); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(out)))
		})
	}
}
