package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
	"github.com/dhtd/dhtd/routing"
)

// fakeFleet is a set of poisoning responders on a simulated network: each
// answers every query, with its own id to a ping and otherwise with an id
// next to the target, and lists perReply made-up nodes with ids next to
// the target: half at other fakes, half at addresses where nothing
// listens, and one at listed, an address given by the test (the victim's
// own, under another id). The fleet is consistent: a fake listed under an
// id answers with that id (both are nearID of the target and its
// address). They never store anything.
type fakeFleet struct {
	conns    []*simnet.Conn
	ids      []krpc.ID
	subnets  int // the fleet's /24s
	perReply int
	listed   netip.AddrPort
	queries  atomic.Int64
	wg       sync.WaitGroup
}

// fakeAddr is the address of the i-th of the fleet's fakes, spread over
// subnets /24s of 127.0.0.0/16 (IPs .1 to .250), ports 7000 and up.
func fakeAddr(i, subnets int) netip.AddrPort {
	ip := i / subnets
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(i % subnets), byte(1 + ip%250)}), uint16(7000+ip/250))
}

func (f *fakeFleet) addr(i int) netip.AddrPort { return fakeAddr(i, f.subnets) }

// deadAddr is an address where nothing listens, in one of many /24s.
func deadAddr(r *rand.Rand) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(r.IntN(256)), byte(1 + r.IntN(250))}), 6881)
}

// nearID returns the id the fleet gives a at target: the target's first
// 16 bytes, then 4 bytes of a hash of a.
func nearID(target krpc.ID, a netip.AddrPort) krpc.ID {
	id := target
	h := fnv.New32a()
	b, _ := a.MarshalBinary()
	h.Write(b)
	binary.BigEndian.PutUint32(id[16:], h.Sum32())
	return id
}

func startFakes(t *testing.T, s *simCluster, count, subnets, perReply int, listed netip.AddrPort) *fakeFleet {
	t.Helper()
	f := &fakeFleet{subnets: subnets, perReply: perReply, listed: listed}
	for i := range count {
		c, err := s.net.Listen(f.addr(i))
		if err != nil {
			t.Fatal(err)
		}
		f.conns = append(f.conns, c)
		f.ids = append(f.ids, s.newID())
	}
	for i := range f.conns {
		f.wg.Add(1)
		go f.serve(i)
	}
	t.Cleanup(func() {
		for _, c := range f.conns {
			_ = c.Close()
		}
		f.wg.Wait()
	})
	return f
}

func (f *fakeFleet) serve(i int) {
	defer f.wg.Done()
	c := f.conns[i]
	r := rand.New(rand.NewPCG(uint64(i), 99))
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		var q krpc.Msg
		if krpc.Decode(buf[:n], &q) != nil || q.Y != krpc.KindQuery || q.A == nil {
			continue
		}
		f.queries.Add(1)
		ret := &krpc.Return{ID: f.ids[i]}
		target := q.A.Target
		if target == nil {
			target = q.A.InfoHash
		}
		if target != nil {
			ret.ID = nearID(*target, c.AddrPort())
			ret.Token = "fake"
			for j := range f.perReply {
				a := deadAddr(r)
				switch {
				case j == 0 && f.listed.IsValid():
					a = f.listed
				case j%2 == 0:
					a = f.addr(r.IntN(len(f.conns)))
				}
				ret.Nodes = append(ret.Nodes, krpc.NodeInfo{ID: nearID(*target, a), Addr: a})
			}
		}
		b, err := krpc.Encode(&krpc.Msg{T: q.T, Y: krpc.KindResponse, R: ret})
		if err == nil {
			_, _ = c.WriteToAddrPort(b, from)
		}
	}
}

// ping makes every fake send one ping to addr, from its own address.
func (f *fakeFleet) ping(t *testing.T, addr netip.AddrPort) {
	for i, c := range f.conns {
		b, err := krpc.Encode(&krpc.Msg{T: "pp", Y: krpc.KindQuery, Q: krpc.MethodPing, A: &krpc.Args{ID: f.ids[i]}})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.WriteToAddrPort(b, addr)
	}
}

// TestSimLookupPoisoning: 2,000 fakes on loopback flood a node and answer
// every lookup with made-up nodes next to the target, most of them at dead
// addresses, one at the victim's own address under another id. With
// LimitLoopback on, they hold at most the per-subnet share of the
// victim's table, clean clients that join through the victim still find a
// legitimately announced peer 8 times out of 8, and the victim never
// queries its own address. The fleet is in one /24, or spread over
// eight.
func TestSimLookupPoisoning(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	for _, subnets := range []int{1, 8} {
		t.Run(fmt.Sprintf("%d_subnets", subnets), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testLookupPoisoning(t, subnets) })
		})
	}
}

func testLookupPoisoning(t *testing.T, subnets int) {
	const (
		honestNodes = 40
		fakes       = 2000
		perReply    = 40 // what fits in one reply
		clients     = 8
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // simulated
	defer cancel()
	s := newSim(t, 7, simnet.Config{})
	limit := func(c *Config) { c.LimitLoopback = true }
	var selfQueries atomic.Int64
	var victim *Node
	victimAddr := s.newAddr()
	victim = s.startWith(s.newID(), victimAddr, nil, limit)
	countSelf := func(from netip.AddrPort, _ string) {
		if from == victimAddr {
			selfQueries.Add(1)
		}
	}
	victim.onQuery.Store(&countSelf)
	var honest []*Node
	for range honestNodes {
		honest = append(honest, s.startWith(s.newID(), s.newAddr(), []netip.AddrPort{victim.Addr()}, limit))
	}
	for range 2 {
		parallel(len(honest), 16, func(i int) { _ = honest[i].Bootstrap(ctx) })
	}
	// A peer is announced while the network is clean.
	ih := s.newID()
	const peerPort = 51413
	announcer := honest[0]
	if _, err := announcer.Announce(ctx, ih, AnnounceOptions{Port: peerPort}); err != nil {
		t.Fatalf("announce: %v", err)
	}
	peer := netip.AddrPortFrom(announcer.Addr().Addr(), peerPort)

	// The attack: every fake pings the victim (three rounds), and the
	// victim's own lookups meet them.
	fleet := startFakes(t, s, fakes, subnets, perReply, victim.Addr())
	for range 3 {
		fleet.ping(t, victim.Addr())
		s.settle(50 * time.Millisecond)
	}
	if err := victim.Bootstrap(ctx); err != nil {
		t.Fatalf("victim bootstrap: %v", err)
	}
	fleet.ping(t, victim.Addr())
	s.settle(50 * time.Millisecond)

	// The fakes' share of the victim's table: per bucket, at most
	// MaxPerSubnetPerBucket of each of the fleet's /24s.
	fleetNet := netip.MustParsePrefix("127.0.0.0/16")
	tcfg := victim.table.Config()
	var fakeLive, total int
	buckets := victim.table.Snapshot(time.Now())
	for _, b := range buckets {
		perSubnet := make(map[netip.Prefix]int)
		for _, ns := range b.Nodes {
			total++
			if ap, err := netip.ParseAddrPort(ns.Addr); err == nil && fleetNet.Contains(ap.Addr()) {
				fakeLive++
				if perSubnet[routing.Subnet(ap.Addr())]++; perSubnet[routing.Subnet(ap.Addr())] > tcfg.MaxPerSubnetPerBucket {
					t.Errorf("bucket %d holds more than %d fakes of %s", b.Index, tcfg.MaxPerSubnetPerBucket, routing.Subnet(ap.Addr()))
				}
			}
		}
	}
	share := subnets * tcfg.MaxPerSubnetPerBucket * len(buckets)
	t.Logf("victim's table: %d of %d live nodes are fakes (per-subnet share: %d /24s x %d per bucket x %d buckets = %d)",
		fakeLive, total, subnets, tcfg.MaxPerSubnetPerBucket, len(buckets), share)
	if fakeLive > share {
		t.Errorf("fakes hold %d table slots, more than the per-subnet share %d", fakeLive, share)
	}

	// Clean clients join through the victim alone and look the peer up.
	var found atomic.Int64
	var queried, failed atomic.Int64
	cl := make([]*Node, clients)
	for i := range cl {
		cl[i] = s.startWith(s.newID(), s.newAddr(), []netip.AddrPort{victim.Addr()}, limit)
	}
	parallel(clients, clients, func(i int) {
		if err := cl[i].Bootstrap(ctx); err != nil {
			t.Logf("client %d bootstrap: %v", i, err)
		}
		res, err := cl[i].GetPeers(ctx, ih, nil)
		queried.Add(int64(res.Lookup.Queried))
		failed.Add(int64(res.Lookup.Failed))
		for _, p := range res.Peers {
			if p == peer {
				found.Add(1)
				return
			}
		}
		t.Logf("client %d: peer not found (err %v, %d queried, %d failed)", i, err, res.Lookup.Queried, res.Lookup.Failed)
	})
	// The victim's own lookup, for the self-address check.
	vres, _ := victim.GetPeers(ctx, ih, nil)
	t.Logf("clean lookups found the peer %d of %d times (%d queries, %d failed); victim's own lookup: %d queried, %d failed, %d peers; "+
		"fakes got %d queries; the victim queried its own address %d times",
		found.Load(), clients, queried.Load(), failed.Load(), vres.Lookup.Queried, vres.Lookup.Failed, len(vres.Peers),
		fleet.queries.Load(), selfQueries.Load())
	if found.Load() != clients {
		t.Errorf("clean lookups found the peer %d of %d times", found.Load(), clients)
	}
	if n := selfQueries.Load(); n != 0 {
		t.Errorf("the victim queried its own address %d times", n)
	}
}
