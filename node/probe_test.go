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

		raddr := s.newAddr()
		conn, err := s.net.Listen(raddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		rid := oid
		rid[0] ^= 0x40
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
				r := &krpc.Return{ID: rid}
				if q.Q == krpc.MethodFindNode && q.A.Target != nil && *q.A.Target != oid {
					r.Nodes = krpc.CompactNodes{yinfo}
				}
				b, err := krpc.Encode(&krpc.Msg{T: q.T, Y: krpc.KindResponse, R: r})
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = conn.WriteToAddrPort(b, from)
			}
		}()
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
