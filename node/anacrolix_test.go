package node

// Regression tests against the exact packets anacrolix/dht 2.x sends (its
// krpc.MsgArgs encoded with anacrolix/torrent/bencode: keys sorted, zero K
// and Sig arrays left out, Seq a pointer that every put sets). The bytes
// below were produced by that encoder; each test rebuilds them around the
// token and ids of its run.

import (
	"bytes"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

// rawSocket is a querier that speaks to a node through its own UDP socket
// on 127.0.0.1, byte for byte.
type rawSocket struct {
	t    *testing.T
	conn *net.UDPConn
	addr netip.AddrPort
}

func newRawSocket(t *testing.T) *rawSocket {
	t.Helper()
	c, addr := hqSource(t)
	return &rawSocket{t: t, conn: c, addr: addr}
}

// exchange sends pkt to to and returns the decoded reply with transaction
// id tid, skipping the queries the node sends us meanwhile (its pings that
// confirm a new sender). It fails the test after 5 s without a reply.
func (s *rawSocket) exchange(to netip.AddrPort, pkt []byte, tid string) *krpc.Msg {
	s.t.Helper()
	if _, err := s.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		s.t.Fatalf("send: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	if err := s.conn.SetReadDeadline(deadline); err != nil {
		s.t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for {
		nr, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			s.t.Fatalf("no reply to %q: %v", pkt, err)
		}
		var m krpc.Msg
		if from != to || krpc.Decode(buf[:nr], &m) != nil || m.Y == krpc.KindQuery || m.T != tid {
			continue
		}
		return &m
	}
}

// anacrolixQuery is the bencoding anacrolix/dht gives a lookup query of
// method (find_node, get_peers or get) from id for key, with its default
// want of n4 and n6.
func anacrolixQuery(method string, id, key krpc.ID, tid string) []byte {
	keyName := "6:target"
	if method == krpc.MethodGetPeers {
		keyName = "9:info_hash"
	}
	return []byte("d1:ad2:id20:" + string(id[:]) + keyName + "20:" + string(key[:]) +
		"4:wantl2:n42:n6ee1:q" + strconv.Itoa(len(method)) + ":" + method +
		"1:t" + strconv.Itoa(len(tid)) + ":" + tid + "1:y1:qe")
}

// anacrolixImmutablePut is the put anacrolix/dht sends for an immutable
// item whose bencoded value is v: "seq" is 0, k and sig are absent.
func anacrolixImmutablePut(id krpc.ID, token string, v []byte, tid string) []byte {
	return []byte("d1:ad2:id20:" + string(id[:]) + "3:seqi0e5:token" +
		strconv.Itoa(len(token)) + ":" + token + "1:v" + string(v) +
		"e1:q3:put1:t" + strconv.Itoa(len(tid)) + ":" + tid + "1:y1:qe")
}

// TestAnacrolixImmutablePut: an immutable put carrying "seq": 0 and
// neither k nor sig, as anacrolix/dht sends every immutable put, is stored
// (BEP 44 tells mutable from immutable by k and sig) and read back.
func TestAnacrolixImmutablePut(t *testing.T) {
	n := startNode(t, nil)
	s := newRawSocket(t)
	id := krpc.ID{0xa0, 0xa1, 0xa2, 0xa3}
	v := []byte("12:Hello World!")
	target := storage.ImmutableTarget(v)

	// Its shape, pinned: the bytes anacrolix/dht's encoder produced for
	// this put with id a0a1...b3, token 01020304 and t 0007.
	var fixedID krpc.ID
	for i := range fixedID {
		fixedID[i] = byte(0xa0 + i)
	}
	want := "d1:ad2:id20:\xa0\xa1\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xaa\xab\xac\xad\xae\xaf\xb0\xb1\xb2\xb3" +
		"3:seqi0e5:token4:\x01\x02\x03\x041:v12:Hello World!e1:q3:put1:t2:\x00\x071:y1:qe"
	if got := anacrolixImmutablePut(fixedID, "\x01\x02\x03\x04", v, "\x00\x07"); string(got) != want {
		t.Fatalf("packet builder drifted:\n got %q\nwant %q", got, want)
	}

	g := s.exchange(n.Addr(), anacrolixQuery(krpc.MethodGet, id, target, "\x00\x01"), "\x00\x01")
	if g.R == nil || g.R.Token == "" {
		t.Fatalf("get: %+v %+v, want a token", g.R, g.E)
	}
	if len(g.R.V) != 0 {
		t.Fatalf("get before the put returned v %q", g.R.V)
	}
	p := s.exchange(n.Addr(), anacrolixImmutablePut(id, g.R.Token, v, "\x00\x02"), "\x00\x02")
	if p.E != nil {
		t.Fatalf("anacrolix/dht's immutable put refused: %d %q", p.E.Code, p.E.Msg)
	}
	if p.R == nil || p.R.ID != n.ID() {
		t.Fatalf("put reply %+v, want a response with our id", p)
	}
	it, ok := n.items.Get(target, n.clock.Now())
	if !ok || it.Mutable || !bytes.Equal(it.V, v) || it.Seq != 0 {
		t.Fatalf("stored: present %v mutable %v v %q seq %d; want immutable %q", ok, it.Mutable, it.V, it.Seq, v)
	}
	g = s.exchange(n.Addr(), anacrolixQuery(krpc.MethodGet, id, target, "\x00\x03"), "\x00\x03")
	if g.R == nil || string(g.R.V) != string(v) || g.R.Seq != nil || g.R.K != "" || g.R.Sig != "" {
		t.Fatalf("get after the put: %+v, want v %q and no seq, k or sig", g.R, v)
	}

	// A put that carries a seq and a sig but no k stays malformed.
	g = s.exchange(n.Addr(), anacrolixQuery(krpc.MethodGet, id, target, "\x00\x04"), "\x00\x04")
	sigNoK := []byte("d1:ad2:id20:" + string(id[:]) + "3:seqi0e3:sig64:" + string(make([]byte, 64)) +
		"5:token" + strconv.Itoa(len(g.R.Token)) + ":" + g.R.Token + "1:v" + string(v) + "e1:q3:put1:t2:\x00\x051:y1:qe")
	if e := s.exchange(n.Addr(), sigNoK, "\x00\x05"); e.E == nil || e.E.Code != krpc.ErrCodeProtocol {
		t.Fatalf("put with seq and sig but no k: %+v, want error 203", e)
	}
}

// TestRepliesNeverListQuerier: find_node, get_peers and get replies (the
// queries as anacrolix/dht sends them, want n4 and n6) never hand the
// querier its own entry, whether the table holds it under its id, its
// address or both; they hold the K closest of the other nodes.
func TestRepliesNeverListQuerier(t *testing.T) {
	cases := []struct {
		name string
		// entries puts the querier (id q at addr) into the table.
		entries func(q krpc.ID, addr netip.AddrPort) []krpc.NodeInfo
	}{
		{"same id and address", func(q krpc.ID, addr netip.AddrPort) []krpc.NodeInfo {
			return []krpc.NodeInfo{{ID: q, Addr: addr}}
		}},
		{"same address, an earlier id", func(q krpc.ID, addr netip.AddrPort) []krpc.NodeInfo {
			old := q
			old[krpc.IDLen-1] ^= 1
			return []krpc.NodeInfo{{ID: old, Addr: addr}}
		}},
		{"same id, another address", func(q krpc.ID, _ netip.AddrPort) []krpc.NodeInfo {
			return []krpc.NodeInfo{{ID: q, Addr: netip.MustParseAddrPort("10.200.0.1:6881")}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, nil)
			rnd := rand.New(rand.NewPCG(5, 6))
			hqPopulate(n, 100, rnd)
			s := newRawSocket(t)
			q := hqRandomID(rnd)
			planted := tc.entries(q, s.addr)
			for _, e := range planted {
				n.table.Responded(e, time.Now(), 0)
				if _, ok := n.table.Get(e.ID); !ok {
					t.Fatalf("table did not take the querier's entry %v", e)
				}
			}
			isQuerier := func(c krpc.NodeInfo) bool { return c.ID == q || c.Addr == s.addr }
			// The querier's own id as the target: unfiltered, its entry
			// would come first.
			if first := hqClosest(n, q, 1); !isQuerier(first[0]) {
				t.Fatalf("closest to the querier's id is %v, want the planted entry", first[0])
			}
			want := slices.DeleteFunc(hqClosest(n, q, n.table.Len()), isQuerier)[:n.cfg.K]
			for i, method := range []string{krpc.MethodFindNode, krpc.MethodGetPeers, krpc.MethodGet} {
				tid := string([]byte{0, byte(i)})
				m := s.exchange(n.Addr(), anacrolixQuery(method, q, q, tid), tid)
				if m.R == nil {
					t.Fatalf("%s: %+v", method, m.E)
				}
				if slices.ContainsFunc(m.R.Nodes, isQuerier) || slices.ContainsFunc(m.R.Nodes6, isQuerier) {
					t.Fatalf("%s: nodes %v nodes6 %v list the querier %s@%s", method, m.R.Nodes, m.R.Nodes6, q, s.addr)
				}
				hqWantNodes(t, m.R.Nodes, want)
			}
		})
	}
}

// TestRepliesNeverListQuerierDualStack: a dual-stack node (BEP 32, a
// linked pair) asked over IPv4 with want n4 and n6 leaves the querier's id
// out of nodes6 too, which comes from the IPv6 node's table.
func TestRepliesNeverListQuerierDualStack(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback")
	}
	n4 := startNode(t, nil)
	n6 := startNode(t, func(c *Config) { c.Listen = "[::1]:0" })
	Link(n4, n6)
	rnd := rand.New(rand.NewPCG(7, 8))
	now := time.Now()
	s := newRawSocket(t)
	q := hqRandomID(rnd)
	// The querier, dual-stack too, is known by its id at its IPv6 address
	// (entered first, so that its bucket has room).
	self6 := krpc.NodeInfo{ID: q, Addr: netip.MustParseAddrPort("[2001:db8::ffff]:6881")}
	n6.table.Responded(self6, now, 0)
	if _, ok := n6.table.Get(q); !ok {
		t.Fatal("IPv6 table did not take the querier's entry")
	}
	for i := range 50 {
		addr := netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(i + 1), 15: 1}), 6881)
		n6.table.Responded(krpc.NodeInfo{ID: hqRandomID(rnd), Addr: addr}, now, 0)
	}
	all6 := n6.table.Nodes()
	slices.SortFunc(all6, func(a, b krpc.NodeInfo) int { return routing.CompareDistance(q, a.ID, b.ID) })
	if all6[0] != self6 {
		t.Fatalf("closest to the querier's id is %v, want its own entry", all6[0])
	}
	want := slices.DeleteFunc(all6, func(c krpc.NodeInfo) bool { return c.ID == q })[:n4.cfg.K]
	m := s.exchange(n4.Addr(), anacrolixQuery(krpc.MethodFindNode, q, q, "\x00\x09"), "\x00\x09")
	if m.R == nil {
		t.Fatalf("find_node: %+v", m.E)
	}
	if !slices.Equal(m.R.Nodes6, want) {
		t.Fatalf("nodes6:\n got %v\nwant %v (the K closest without the querier %s)", m.R.Nodes6, want, q)
	}
}
