// Package fakenode holds scripted DHT nodes for tests: a UDP socket on
// 127.0.0.1 that answers get and get_peers with a token (and every other
// query with its id), and answers writes (put, announce_peer) as a test
// says: with one KRPC error, or not at all. It records the queries it
// receives.
package fakenode

import (
	"net"
	"net/netip"
	"testing"

	"github.com/dhtd/dhtd/krpc"
)

// Token is the write token a fake node hands out.
const Token = "tok"

// Query is one query a fake node received.
type Query struct {
	Method string
	ID     krpc.ID // the querier's id
}

// Node is a running fake node. It stops when the test ends.
type Node struct {
	Addr netip.AddrPort
	// Queries receives each query, while it has room (1024); later
	// queries are answered but not recorded.
	Queries <-chan Query
}

// Refuser starts a node with id that refuses every write with the KRPC
// error code and msg.
func Refuser(t testing.TB, id krpc.ID, code int64, msg string) *Node {
	t.Helper()
	return start(t, id, func(q *krpc.Msg) *krpc.Msg {
		return &krpc.Msg{T: q.T, Y: krpc.KindError, E: &krpc.Error{Code: code, Msg: msg}}
	})
}

// Mute starts a node with id that never answers a write.
func Mute(t testing.TB, id krpc.ID) *Node {
	t.Helper()
	return start(t, id, func(*krpc.Msg) *krpc.Msg { return nil })
}

// start serves queries until the test ends; write answers put and
// announce_peer (nil: no answer).
func start(t testing.TB, id krpc.ID, write func(q *krpc.Msg) *krpc.Msg) *Node {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	seen := make(chan Query, 1024)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed
			}
			var q krpc.Msg
			if krpc.Decode(buf[:n], &q) != nil || q.Y != krpc.KindQuery {
				continue
			}
			select {
			case seen <- Query{Method: q.Q, ID: q.A.ID}:
			default:
			}
			reply := &krpc.Msg{T: q.T, Y: krpc.KindResponse, R: &krpc.Return{ID: id}}
			switch q.Q {
			case krpc.MethodGet, krpc.MethodGetPeers:
				reply.R.Token = Token
			case krpc.MethodPut, krpc.MethodAnnouncePeer:
				reply = write(&q)
			}
			if reply == nil {
				continue
			}
			if b, err := krpc.Encode(reply); err == nil {
				_, _ = pc.WriteToUDPAddrPort(b, from)
			}
		}
	}()
	return &Node{Addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), Queries: seen}
}
