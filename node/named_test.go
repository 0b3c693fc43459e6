package node

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
)

// TestLookupPingsNamedNodes: the daemon's lookups, like the simulator's
// nodes, confirm with a ping a node that answers named and the lookup did
// not ask, when it falls in one of the table's deepest buckets
// (core.Node.AdmitNamed); its answer admits it. Here two responders name
// x, a node one bit from our id, after 7 nodes near the target each: the
// 14 are closer to the target than x, answer, and hold the lookup's K
// closest, so the lookup never asks x.
func TestLookupPingsNamedNodes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s := newSim(t, 11, simnet.Config{})
		ours := s.start(s.newID(), s.newAddr(), nil)
		target := ours.ID()
		target[0] ^= 0x80 // in our farthest bucket
		xid := ours.ID()
		xid[19] ^= 1
		x := s.start(xid, s.newAddr(), nil)
		xinfo := krpc.NodeInfo{ID: xid, Addr: x.Addr()}
		var near []krpc.NodeInfo
		for i := range 14 {
			id := target
			id[18] ^= byte(i + 1)
			n := s.start(id, s.newAddr(), nil)
			near = append(near, krpc.NodeInfo{ID: id, Addr: n.Addr()})
		}
		for r := range 2 {
			addr := s.newAddr()
			conn, err := s.net.Listen(addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			rid := target
			rid[10] ^= byte(r + 1)
			named := append(append([]krpc.NodeInfo(nil), near[7*r:7*r+7]...), xinfo)
			go func() {
				buf := make([]byte, 2048)
				for {
					k, from, err := conn.ReadFromAddrPort(buf)
					if err != nil {
						return
					}
					var q krpc.Msg
					if krpc.Decode(buf[:k], &q) != nil || q.Y != krpc.KindQuery {
						continue
					}
					b, err := krpc.Encode(&krpc.Msg{T: q.T, Y: krpc.KindResponse, R: &krpc.Return{ID: rid, Nodes: named}})
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = conn.WriteToAddrPort(b, from)
				}
			}()
			ours.table.Responded(krpc.NodeInfo{ID: rid, Addr: addr}, time.Now(), time.Millisecond)
		}
		if _, ok := ours.table.Get(xid); ok {
			t.Fatal("x is in our table before the lookup")
		}
		res, err := ours.FindNode(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range res.Closest {
			if f.Node.ID == xid {
				t.Fatal("the lookup asked x: it is among the closest that answered")
			}
		}
		s.settle(100 * time.Millisecond) // the confirmation ping and its answer
		if got := testutil.ToFloat64(x.metrics.QueriesReceived.WithLabelValues("find_node")); got != 0 {
			t.Errorf("x received %v find_node queries, want none: the lookup asked it", got)
		}
		if got := testutil.ToFloat64(x.metrics.QueriesReceived.WithLabelValues("ping")); got != 1 {
			t.Errorf("x received %v pings, want 1 (the confirmation)", got)
		}
		if e, ok := ours.table.Get(xid); !ok || !e.Confirmed() {
			t.Errorf("x in our table: %v (confirmed %v); want a confirmed entry", ok, ok && e.Confirmed())
		}
	})
}
