package node

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// benchWriter is a krpc.ResponseWriter that encodes its answer into a
// reused buffer, with the envelope the server adds, as the read loop's
// writer does.
type benchWriter struct {
	from     netip.AddrPort
	tid      string
	answered bool
	m        krpc.Msg
	e        krpc.Error
	ip       krpc.CompactAddr
	out      []byte
	err      error
}

func (w *benchWriter) RemoteAddr() netip.AddrPort { return w.from }

func (w *benchWriter) Reply(r *krpc.Return) { w.m = krpc.Msg{R: r, Y: krpc.KindResponse}; w.encode() }

func (w *benchWriter) Error(code int64, msg string) {
	w.e = krpc.Error{Code: code, Msg: msg}
	w.m = krpc.Msg{E: &w.e, Y: krpc.KindError}
	w.encode()
}

func (w *benchWriter) encode() {
	w.answered = true
	w.ip = krpc.CompactAddr(w.from)
	w.m.T, w.m.V, w.m.IP = w.tid, ClientVersion, &w.ip
	w.out, w.err = krpc.AppendEncode(w.out[:0], &w.m)
}

func (w *benchWriter) Detach() krpc.ResponseWriter {
	panic("benchWriter: the benchmark's queries are answered at once")
}

// BenchmarkHandleQuery handles each query kind end to end without the
// socket, as the read loop does: decode the packet (krpc.Decode), answer it
// (handleQuery: table lookup, stores, token), and encode the reply into a
// reused buffer (krpc.AppendEncode) with the envelope the server adds
// (benchWriter). The
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
			w := &benchWriter{from: src, out: make([]byte, 0, 1500)}
			var q krpc.Msg
			b.ReportAllocs()
			for b.Loop() {
				if err := krpc.Decode(pkt, &q); err != nil {
					b.Fatal(err)
				}
				w.tid, w.answered = q.T, false
				n.handleQuery(w, &q)
				if w.err != nil || !w.answered || w.m.R == nil {
					b.Fatalf("%s: no response: %+v, %v", c.name, w.m, w.err)
				}
			}
			out := w.out
			b.SetBytes(int64(len(out)))
		})
	}
}
