package krpc

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// discardBatch is a batchWriter that takes every reply and sends nothing.
type discardBatch struct{ sent int }

func (d *discardBatch) writeBatch(b *replyBatch, from int) (int, error) {
	d.sent += b.n - from
	return b.n - from, nil
}

// BenchmarkServerQuery is the read loop's work for one query without the
// socket: the checks before decoding, the decode, the handler (a ping
// answered from a reused reply) and the encode of its reply onto the read
// loop's batch, flushed every batchSize packets as readLoopBatch does.
// allocs/op is the server's allocations per answered query.
func BenchmarkServerQuery(b *testing.B) {
	id := rawID()
	ret := Return{ID: id}
	h := HandlerFunc(func(w ResponseWriter, q *Msg) {
		if q.Q == MethodPing {
			w.Reply(&ret)
		}
	})
	s := &Server{handler: h, cfg: ServerConfig{ClientVersion: "TS\x00\x01"}}
	s.loopW.s = s
	s.cfg.setDefaults()
	d := &discardBatch{}
	s.loopOut.out = make([]byte, 0, 1536)
	s.loopOut.batch = newReplyBatch(d)
	pkt, err := Encode(&Msg{T: "aa", Y: KindQuery, Q: MethodPing, A: &Args{ID: ID([]byte("querier-id-012345678"))}, V: "LT\x02\x00"})
	if err != nil {
		b.Fatal(err)
	}
	from := netip.MustParseAddrPort("10.1.2.3:6881")
	var m Msg
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.handlePacket(pkt, from, &m)
		if i++; i%batchSize == 0 {
			s.flush(s.loopOut.batch)
		}
	}
	s.flush(s.loopOut.batch)
	if d.sent != i {
		b.Fatalf("%d replies sent for %d queries", d.sent, i)
	}
}

// BenchmarkTransactions is the transaction table's work for one query
// answered in turn with 64 in flight: Add, then Match of the oldest.
func BenchmarkTransactions(b *testing.B) {
	tx := NewTransactions[int](2*time.Second, rand.New(rand.NewPCG(1, 2)), lateIDs)
	now := time.Unix(1e9, 0)
	to := netip.MustParseAddrPort("10.1.2.3:6881")
	var ring [64]string
	for i := range ring {
		h, _ := tx.Add(now, to, i)
		ring[i] = h.TID()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		slot := i % len(ring)
		if _, reason := tx.Match(ring[slot], to); reason != "" {
			b.Fatal(reason)
		}
		h, _ := tx.Add(now, to, i)
		ring[slot] = h.TID()
		i++
	}
}
