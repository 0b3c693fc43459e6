package node

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/storage"
)

// floodHarness drives a node's put, announce_peer, get and get_peers
// handlers directly, in virtual time: it is made and used inside a
// synctest bubble, where time.Sleep moves the node's clock.
type floodHarness struct {
	t *testing.T
	n *Node
}

// newFloodHarness starts a node on a simulated network; mod, if not nil,
// is applied to its Config last.
func newFloodHarness(t *testing.T, mod func(*Config)) *floodHarness {
	s := newSim(t, 1, simnet.Config{})
	return &floodHarness{t: t, n: s.startWith(s.newID(), s.newAddr(), nil, mod)}
}

func (h *floodHarness) query(from netip.AddrPort, method string, a krpc.Args) *krpc.Msg {
	a.ID = hqID("flood")
	return hqAnswer(h.t, h.n, from, hqQuery(method, &a))
}

func (h *floodHarness) token(from netip.AddrPort, target krpc.ID) string {
	return h.n.tokens.Issue(from.Addr(), target, time.Now())
}

// putImmutable puts v from from and reports whether it was acknowledged.
func (h *floodHarness) putImmutable(from netip.AddrPort, v []byte) bool {
	r := h.query(from, krpc.MethodPut, krpc.Args{V: v, Token: h.token(from, storage.ImmutableTarget(v))})
	return r.E == nil
}

// putMutable puts v signed by priv (seq 1, no salt) from from.
func (h *floodHarness) putMutable(from netip.AddrPort, priv ed25519.PrivateKey, v []byte) bool {
	pub := priv.Public().(ed25519.PublicKey)
	seq := int64(1)
	r := h.query(from, krpc.MethodPut, krpc.Args{
		V: v, K: string(pub), Sig: string(storage.SignMutable(priv, nil, seq, v)), Seq: &seq,
		Token: h.token(from, storage.MutableTarget(pub, nil)),
	})
	return r.E == nil
}

// announce announces from (its IP and port) for ih.
func (h *floodHarness) announce(from netip.AddrPort, ih krpc.ID) bool {
	port := int64(from.Port())
	r := h.query(from, krpc.MethodAnnouncePeer, krpc.Args{InfoHash: &ih, Port: &port, Token: h.token(from, ih)})
	return r.E == nil
}

// served reports whether a get for target from from returns v.
func (h *floodHarness) served(from netip.AddrPort, target krpc.ID, v []byte) bool {
	r := h.query(from, krpc.MethodGet, krpc.Args{Target: &target})
	return r.R != nil && bytes.Equal(r.R.V, v)
}

// peerServed reports whether a get_peers for ih from from lists peer.
func (h *floodHarness) peerServed(from netip.AddrPort, ih krpc.ID, peer netip.AddrPort) bool {
	h.n.owners.add(from.Addr(), time.Now()) // full replies (amplify.go)
	r := h.query(from, krpc.MethodGetPeers, krpc.Args{InfoHash: &ih})
	return r.R != nil && slices.Contains(r.R.Values, peer)
}

// floodAddr is host h of the attacking network i: 10.66.i.0/24.
func floodAddr(i, h int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 66, byte(i), byte(h)}), uint16(10000+h))
}

// TestStorageFloodKeepsEarlierItems is the acceptance test of the
// per-source quotas: legitimate clients store 20 immutable items, 23
// mutable items and 20 peers; then a flood of puts and announces, more than
// the store holds (10,000 items, 10,000 infohashes), runs at full speed for
// 30 s of virtual time. At least 90% of the earlier items and peers must
// still be served.
//
// From four /24s, the quotas stop the flood at 2% of the store per network.
// From 250 /24s, the flood fills the store, and fair-share eviction takes
// room from the flooding networks, which hold more than the earlier ones.
// Without either, XOR-distance eviction kept the 10,000 closest of
// everything put, so the earlier items survived only in proportion.
func TestStorageFloodKeepsEarlierItems(t *testing.T) {
	tests := []struct {
		name      string
		floodNets int
		perNet    int  // puts, and announces, per flooding network
		wantFull  bool // the flood fills both stores
	}{
		{"four /24s", 4, 8000, false},
		{"250 /24s", 250, 60, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testStorageFlood(t, tt.floodNets, tt.perNet, tt.wantFull) })
		})
	}
}

func testStorageFlood(t *testing.T, floodNets, perNet int, wantFull bool) {
	const floodLength = 30 * time.Second
	h := newFloodHarness(t, nil)
	rnd := rand.New(rand.NewPCG(13, 6))

	// Earlier legitimate writes, each kind from its own network.
	immFrom := netip.MustParseAddrPort("198.51.100.7:6881")
	mutFrom := netip.MustParseAddrPort("203.0.113.9:6881")
	var imm [][]byte
	for i := range 20 {
		v := []byte(fmt.Sprintf("13:legit item %02d", i))
		if !h.putImmutable(immFrom, v) {
			t.Fatalf("legit immutable put %d refused", i)
		}
		imm = append(imm, v)
	}
	var keys []ed25519.PrivateKey
	for i := range 23 {
		seed := make([]byte, ed25519.SeedSize)
		seed[0], seed[1] = 0x4c, byte(i)
		priv := ed25519.NewKeyFromSeed(seed)
		if !h.putMutable(mutFrom, priv, []byte(fmt.Sprintf("9:mutable%02d", i))) {
			t.Fatalf("legit mutable put %d refused", i)
		}
		keys = append(keys, priv)
	}
	type peerAt struct {
		ih   krpc.ID
		peer netip.AddrPort
	}
	var peers []peerAt
	for i := range 20 {
		p := peerAt{hqRandomID(rnd), netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), 51413)}
		if !h.announce(p.peer, p.ih) {
			t.Fatalf("legit announce %d refused", i)
		}
		peers = append(peers, p)
	}
	time.Sleep(time.Minute)

	// The flood: round robin over the networks, the clock advancing
	// evenly over floodLength.
	total := floodNets * perNet
	tick := floodLength / time.Duration(total)
	var acked int
	for i := range perNet {
		for net := range floodNets {
			from := floodAddr(net, 1+i%200)
			v := fmt.Appendf(nil, "20:flood %03d %010d", net, i)
			if h.putImmutable(from, v) {
				acked++
			}
			if h.announce(from, hqRandomID(rnd)) {
				acked++
			}
			time.Sleep(tick)
		}
	}
	is, ps := h.n.items.Stats(), h.n.peers.Stats()
	t.Logf("flood: %d writes from %d /24s over %s, %d acknowledged; stored %d items, %d infohashes",
		2*total, floodNets, floodLength, acked, is.Immutable+is.Mutable, ps.Infohashes)
	if full := is.Immutable+is.Mutable == h.n.items.Config().MaxItems && ps.Infohashes == h.n.peers.Config().MaxInfohashes; full != wantFull {
		t.Errorf("stores full = %v, want %v", full, wantFull)
	}

	// What is still served, read from yet another network.
	reader := netip.MustParseAddrPort("100.64.0.1:6881")
	var gotImm, gotMut, gotPeers int
	for _, v := range imm {
		if h.served(reader, storage.ImmutableTarget(v), v) {
			gotImm++
		}
	}
	for i, priv := range keys {
		pub := priv.Public().(ed25519.PublicKey)
		if h.served(reader, storage.MutableTarget(pub, nil), []byte(fmt.Sprintf("9:mutable%02d", i))) {
			gotMut++
		}
	}
	for _, p := range peers {
		if h.peerServed(reader, p.ih, p.peer) {
			gotPeers++
		}
	}
	t.Logf("still served after the flood: immutable %d/%d, mutable %d/%d, peers %d/%d",
		gotImm, len(imm), gotMut, len(keys), gotPeers, len(peers))
	for _, c := range []struct {
		kind      string
		got, want int
	}{{"immutable", gotImm, len(imm)}, {"mutable", gotMut, len(keys)}, {"peers", gotPeers, len(peers)}} {
		if c.got*10 < c.want*9 {
			t.Errorf("%s: %d of %d earlier entries served, want at least 90%%", c.kind, c.got, c.want)
		}
	}
}

// TestStoreQuotaOnTheWire: with a quota of two entries per network, a
// third new item from one network is answered 202 "storage full" and a
// third announce is acknowledged but not stored (as libtorrent ignores
// announces it cannot keep); both are counted with reason "quota".
// Loopback sources are exempt unless LimitLoopback is set.
func TestStoreQuotaOnTheWire(t *testing.T) {
	tests := []struct {
		name          string
		from          string
		limitLoopback bool
		wantRefused   bool
	}{
		{"public source", "10.7.0.1", false, true},
		{"loopback exempt", "127.0.0.1", false, false},
		{"loopback limited", "127.0.0.1", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newFloodHarness(t, func(c *Config) {
					c.LimitLoopback = tt.limitLoopback
					c.Items.MaxPerSource = 2
					c.Peers.MaxPerSource = 2
				})
				n := h.n
				rejected := func(kind string) float64 {
					return testutil.ToFloat64(n.metrics.StorageRejections.WithLabelValues(kind, metrics.RejectQuota))
				}
				for i := range 3 {
					ip := netip.MustParseAddr(tt.from)
					for range i {
						ip = ip.Next() // another host of the same /24
					}
					from := netip.AddrPortFrom(ip, uint16(7000+i))
					v := fmt.Appendf(nil, "7:quota-%d", i)
					target := storage.ImmutableTarget(v)
					r := h.query(from, krpc.MethodPut, krpc.Args{V: v, Token: h.token(from, target)})
					refused := i == 2 && tt.wantRefused
					if refused {
						if r.E == nil || r.E.Code != krpc.ErrCodeServer || r.E.Msg != "storage full" {
							t.Errorf("put %d over quota: reply %+v, want 202 storage full", i, r)
						}
					} else if r.E != nil {
						t.Errorf("put %d: %v", i, r.E)
					}
					ih := hqID(fmt.Sprint("quota-ih-", i))
					if !h.announce(from, ih) {
						t.Errorf("announce %d answered with an error", i)
					}
					if got := h.peerServed(netip.MustParseAddrPort("100.64.0.1:1"), ih, from); got == refused {
						t.Errorf("announce %d stored = %v, want %v", i, got, !refused)
					}
				}
				want := 0.0
				if tt.wantRefused {
					want = 1
				}
				if got := rejected(metrics.StoreImmutable); got != want {
					t.Errorf("immutable quota rejections = %v, want %v", got, want)
				}
				if got := rejected(metrics.StorePeer); got != want {
					t.Errorf("peer quota rejections = %v, want %v", got, want)
				}
				// One network holds everything: 2 entries at its quota, else 3.
				wantTop := 3 - int(want)
				is, ps := n.items.Stats(), n.peers.Stats()
				if is.Sources != 1 || is.TopSource != wantTop || ps.Sources != 1 || ps.TopSource != wantTop {
					t.Errorf("sources: items %d (top %d), infohashes %d (top %d); want 1 (top %d) each",
						is.Sources, is.TopSource, ps.Sources, ps.TopSource, wantTop)
				}
			})
		})
	}
}
