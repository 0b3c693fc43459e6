package node

import (
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
	"github.com/dhtd/dhtd/routing"
)

// bep42ID returns an id that verifies for ip (BEP 42).
func bep42ID(t *testing.T, ip string) krpc.ID {
	t.Helper()
	addr := netip.MustParseAddr(ip)
	id := routing.GenerateID(addr, 3, rand.Reader)
	if !routing.MatchesIP(id, addr) {
		t.Fatalf("generated id %s does not match %s", id, ip)
	}
	return id
}

// TestBEP42Enforce: in enforce mode a node whose id does not
// match its address gets 203, never enters the table, and is not queried
// when another node names it; matching nodes are served as usual. Loopback
// is normally exempt (BEP 42), so the node under test sets LimitLoopback.
// On the simulated network (at loopback addresses), in virtual time.
func TestBEP42Enforce(t *testing.T) { synctest.Test(t, testBEP42Enforce) }

func testBEP42Enforce(t *testing.T) {
	s := newSim(t, 18, simnet.Config{})
	at := func(ip string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(ip), 6881) }
	strict := s.startWith(bep42ID(t, "127.0.0.1"), at("127.0.0.1"), nil, func(c *Config) {
		c.BEP42 = routing.BEP42Enforce
		c.LimitLoopback = true
	})
	good := s.start(bep42ID(t, "127.0.0.2"), at("127.0.0.2"), nil)
	badID := s.newID()
	for routing.MatchesIP(badID, netip.MustParseAddr("127.0.0.3")) { // p = 2^-21
		badID = s.newID()
	}
	bad := s.start(badID, at("127.0.0.3"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // simulated
	defer cancel()

	// The mismatching node's query: error 203, not added.
	_, _, err := bad.Ping(ctx, strict.Addr())
	var ke *krpc.Error
	if !errors.As(err, &ke) || ke.Code != krpc.ErrCodeProtocol {
		t.Fatalf("ping from a mismatching id: %v, want KRPC error 203", err)
	}
	// The matching node's query: answered, and the node is in the table.
	if _, _, err := good.Ping(ctx, strict.Addr()); err != nil {
		t.Fatalf("ping from a matching id: %v", err)
	}
	if _, _, err := strict.Ping(ctx, good.Addr()); err != nil {
		t.Fatalf("strict pings the matching node: %v", err)
	}
	if _, ok := strict.table.Get(good.ID()); !ok {
		t.Fatal("matching responder not added")
	}

	// Its own queries: a mismatching responder is not added.
	if _, _, err := strict.Ping(ctx, bad.Addr()); err != nil {
		t.Fatalf("strict pings the mismatching node: %v", err)
	}
	if _, ok := strict.table.Get(bad.ID()); ok {
		t.Fatal("mismatching responder added to the table")
	}

	// good knows bad; a lookup from strict through good never queries bad.
	if _, _, err := good.Ping(ctx, bad.Addr()); err != nil {
		t.Fatal(err)
	}
	if _, ok := good.table.Get(bad.ID()); !ok {
		t.Fatal("setup: good does not know bad")
	}
	findNodes := func() float64 {
		return testutil.ToFloat64(bad.metrics.QueriesReceived.WithLabelValues("find_node"))
	}
	before := findNodes()
	res, err := strict.FindNode(ctx, bad.ID())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Closest {
		if f.Node.ID == bad.ID() {
			t.Fatalf("lookup result holds the mismatching node: %v", res.Closest)
		}
	}
	if _, ok := findFound(res.Closest, good.ID()); !ok {
		t.Fatalf("lookup result lacks the matching node: %v", res.Closest)
	}
	if _, ok := strict.table.Get(bad.ID()); ok {
		t.Fatal("mismatching node added after the lookup")
	}
	if got := findNodes(); got != before {
		t.Fatalf("the mismatching node received %v find_node queries during the lookup", got-before)
	}
}

// TestBEP42PreferMode: New accepts prefer mode (the result's preference
// is core.Traversal's, tested there).
func TestBEP42PreferMode(t *testing.T) {
	// New accepts the mode.
	cfg := LoopbackConfig()
	cfg.BEP42 = routing.BEP42Prefer
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New with prefer mode: %v", err)
	}
	n.Close()
}

func TestIPVoter(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.5")
	b := netip.MustParseAddr("198.51.100.77")
	var v ipVoter
	if got := v.vote(netip.MustParseAddr("1.1.1.1"), a); got.IsValid() {
		t.Fatalf("decided %s after one vote", got)
	}
	// A second voter from the same /24 does not make two.
	if got := v.vote(netip.MustParseAddr("1.1.1.2"), a); got.IsValid() {
		t.Fatalf("decided %s on two votes from one /24", got)
	}
	if got := v.vote(netip.MustParseAddr("2.2.2.2"), a); got != a {
		t.Fatalf("decision %v after two subnets agree, want %s", got, a)
	}
	// A Sybil /24 voting for b many times counts once.
	for i := range 50 {
		v.vote(netip.AddrFrom4([4]byte{9, 9, 9, byte(i)}), b)
	}
	if got := v.decided(); got != a {
		t.Fatalf("one /24 swung the vote to %v", got)
	}
	// Three more subnets for b: b leads.
	for i := range 3 {
		v.vote(netip.AddrFrom4([4]byte{byte(20 + i), 1, 1, 1}), b)
	}
	if got := v.decided(); got != b {
		t.Fatalf("decision %v, want %s with more subnets", got, b)
	}
	// Bounded: a flood of distinct candidates keeps at most
	// voterMaxCandidates, and the leader survives.
	for i := range 1000 {
		v.vote(netip.AddrFrom4([4]byte{30, byte(i >> 8), byte(i), 1}), netip.AddrFrom4([4]byte{100, byte(i >> 8), byte(i), 1}))
	}
	if len(v.votes) > voterMaxCandidates {
		t.Fatalf("%d candidates tracked, bound %d", len(v.votes), voterMaxCandidates)
	}
	if got := v.decided(); got != b {
		t.Fatalf("decision %v after a candidate flood, want %s", got, b)
	}
}

// TestExternalIPLearned: a node learns the address its neighbours see it
// at from the "ip" of their responses. On the simulated network (at
// loopback addresses), in virtual time.
func TestExternalIPLearned(t *testing.T) { synctest.Test(t, testExternalIPLearned) }

func testExternalIPLearned(t *testing.T) {
	s := newSim(t, 19, simnet.Config{})
	at := func(ip string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(ip), 6881) }
	n := s.start(s.newID(), at("127.0.0.1"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // simulated
	defer cancel()
	if _, ok := n.votedIP(); ok {
		t.Fatal("external address decided before any response")
	}
	// Responders on two distinct /24s.
	for _, ip := range []string{"127.0.1.1", "127.0.2.1"} {
		o := s.start(s.newID(), at(ip), nil)
		if _, _, err := n.Ping(ctx, o.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	got, ok := n.votedIP()
	if !ok || got != n.Addr().Addr() {
		t.Fatalf("votedIP() = %v, %v; want %s", got, ok, n.Addr().Addr())
	}
}
