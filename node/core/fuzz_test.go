package core

import (
	"net/netip"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// FuzzHandlePacket feeds arbitrary datagrams to a node: it never panics,
// never queues more than one answer per datagram, and keeps its
// transaction table bounded.
func FuzzHandlePacket(f *testing.F) {
	for _, s := range []string{
		"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
		"d1:ad2:id20:abcdefghij01234567895:token4:abcd1:v5:helloe1:q3:put1:t2:aa1:y1:qe",
		"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
		"d1:eli201e5:errore1:t2:aa1:y1:ee",
		"de",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := newTestNode(1, 1, nil)
		n.HandlePacket(t0, addr(2), data)
		answers := 0
		for {
			tr, ok := n.PollTransmit()
			if !ok {
				break
			}
			if !tr.Query {
				answers++
			}
		}
		if answers > 1 {
			t.Fatalf("%d answers to one datagram", answers)
		}
		n.HandleTimeout(t0.Add(time.Hour))
		if n.pending.Len() > DefaultMaxPending {
			t.Fatalf("%d pending queries", n.pending.Len())
		}
	})
}

// FuzzTraversal answers every query of a lookup with one arbitrary
// message (what a responder says is the lookup's hostile input): the
// lookup never panics, ends, keeps its candidate list bounded, never asks
// our own address, and returns at most K nodes that answered.
func FuzzTraversal(f *testing.F) {
	for _, s := range []string{
		"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
		"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes26:abcdefghij0123456789\x0a\x00\x00\x01\x1a\xe1e1:t2:aa1:y1:re",
		"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes52:abcdefghij0123456789\x0a\x00\x00\x01\x1a\xe1bbcdefghij0123456789\x0a\x09\x09\x09\x1a\xe1e1:t2:aa1:y1:re",
		"d1:rd2:id20:mnopqrstuvwxyz1234566:nodes638:abcdefghij0123456789\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1e1:t2:aa1:y1:re",
		"d1:eli201e5:errore1:t2:aa1:y1:ee",
	} {
		f.Add([]byte(s))
	}
	self := krpc.NodeInfo{ID: krpc.ID{9}, Addr: v4(10, 9, 9, 9, 6881)}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m krpc.Msg
		if err := krpc.Decode(data, &m); err != nil || m.R == nil {
			return
		}
		tr := NewTraversal(TraversalConfig{
			Self: self.ID, Target: krpc.ID{1}, K: 8, Alpha: 3, MaxPerSubnet: 2, Retry: true,
			IsSelf: func(a netip.AddrPort) bool { return a == self.Addr },
		}, t0)
		tr.SeedAddr(v4(10, 0, 0, 1, 6881))
		tr.Seed(krpc.NodeInfo{ID: m.R.ID, Addr: v4(10, 0, 0, 2, 6881)})
		tr.Seed(krpc.NodeInfo{ID: krpc.ID{1, 1}, Addr: v4(10, 0, 0, 3, 6881)})
		s := &script{replies: map[netip.AddrPort]*krpc.Return{}, asked: map[netip.AddrPort]int{}, all: m.R}
		s.drive(t, tr)
		if tr.Len() > maxCandidates {
			t.Fatalf("%d candidates, bound %d", tr.Len(), maxCandidates)
		}
		if s.asked[self.Addr] != 0 {
			t.Fatal("our own address was queried")
		}
		if c := tr.Closest(); len(c) > 8 {
			t.Fatalf("%d nodes in the result", len(c))
		}
		if tr.InFlight() != 0 {
			t.Fatalf("%d queries counted in flight at the end", tr.InFlight())
		}
	})
}
