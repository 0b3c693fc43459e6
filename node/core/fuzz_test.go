package core

import (
	"testing"
	"time"
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
		if len(n.pending) > maxPending {
			t.Fatalf("%d pending queries", len(n.pending))
		}
	})
}
