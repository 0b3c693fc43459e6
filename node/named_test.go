package node

import (
	"context"
	"net/netip"
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
			rid := target
			rid[10] ^= byte(r + 1)
			named := append(append([]krpc.NodeInfo(nil), near[7*r:7*r+7]...), xinfo)
			addr := startRawResponder(t, s, func(*krpc.Msg) *krpc.Return { return &krpc.Return{ID: rid, Nodes: named} })
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

// TestBootstrapProbesBuckets: once the lookup of our own id has ended,
// Bootstrap probes each bucket with room (core.Node.ProbeBuckets), and a
// node a probe's answer names gets a confirmation ping before any lookup
// asks it. The only node we know, a raw responder r, answers the lookup
// of our own id with no nodes, and every other find_node with y: so y is
// named by the probes and by the refresh lookups after them, never by
// the bootstrap lookup.
func TestBootstrapProbesBuckets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s := newSim(t, 13, simnet.Config{})
		oid := s.newID()
		yid := oid
		yid[0] ^= 0x80 // our farthest bucket, not one of the deepest
		y := s.start(yid, s.newAddr(), nil)
		yinfo := krpc.NodeInfo{ID: yid, Addr: y.Addr()}

		rid := oid
		rid[0] ^= 0x40
		raddr := startRawResponder(t, s, func(q *krpc.Msg) *krpc.Return {
			r := &krpc.Return{ID: rid}
			if q.Q == krpc.MethodFindNode && q.A.Target != nil && *q.A.Target != oid {
				r.Nodes = krpc.CompactNodes{yinfo}
			}
			return r
		})
		ours := s.start(oid, s.newAddr(), []netip.AddrPort{raddr})
		if err := ours.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		s.settle(time.Second)
		if got := testutil.ToFloat64(y.metrics.QueriesReceived.WithLabelValues("ping")); got < 1 {
			t.Errorf("y received %v pings, want the probe's confirmation ping", got)
		}
		if e, ok := ours.table.Get(yid); !ok || !e.Confirmed() {
			t.Errorf("y in our table: %v (confirmed %v); want a confirmed entry", ok, ok && e.Confirmed())
		}
	})
}

// startRawResponder listens at a new address of s's network and answers
// every query it receives with the return values answer gives, from a
// goroutine of its own until the test ends; it returns the address.
func startRawResponder(t *testing.T, s *simCluster, answer func(q *krpc.Msg) *krpc.Return) netip.AddrPort {
	t.Helper()
	addr := s.newAddr()
	conn, err := s.net.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
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
			b, err := krpc.Encode(&krpc.Msg{T: q.T, Y: krpc.KindResponse, R: answer(&q)})
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = conn.WriteToAddrPort(b, from)
		}
	}()
	return addr
}
