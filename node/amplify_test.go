package node

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// TestAmplificationGuard: replies to a querier that has not shown
// it owns its address stay within Config.UnverifiedReplyBytes (a BEP 44
// value excepted); once it presents a valid token, or answers one of our
// queries, it gets full replies.
func TestAmplificationGuard(t *testing.T) {
	_, from := hqSource(t)
	n := startNode(t, nil)
	rnd := rand.New(rand.NewPCG(8, 8))
	hqPopulate(n, 50, rnd)
	now := time.Now()
	ih := hqID("big swarm")
	for i := range 200 {
		n.peers.Announce(ih, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 6881), i%2 == 0, now)
	}
	for range 100 {
		n.peers.Announce(hqRandomID(rnd), netip.MustParseAddrPort("10.8.0.1:6881"), false, now)
	}
	v := bstr(string(make([]byte, 990))) // a 995-byte value
	put := krpc.Args{ID: hqID("putter"), V: v, Token: n.tokens.Issue(from.Addr(), storage.ImmutableTarget(v), now)}
	target := storage.ImmutableTarget(v)

	queries := []struct {
		name string
		q    *krpc.Msg
	}{
		{"get_peers", hqQuery(krpc.MethodGetPeers, &krpc.Args{ID: hqID("q"), InfoHash: &ih})},
		{"get_peers scrape", hqQuery(krpc.MethodGetPeers, &krpc.Args{ID: hqID("q"), InfoHash: &ih, Scrape: 1})},
		{"sample_infohashes", hqQuery(krpc.MethodSampleInfohashes, &krpc.Args{ID: hqID("q"), Target: &ih})},
	}
	size := func(q, r *krpc.Msg) int { return len(encodeReply(t, q, r, from)) }

	// Unverified: every reply within the cap.
	capBytes := n.cfg.UnverifiedReplyBytes
	unverified := map[string]int{}
	for _, c := range queries {
		r := hqAnswer(t, n, from, c.q)
		if r.E != nil {
			t.Fatalf("%s: %v", c.name, r.E)
		}
		unverified[c.name] = size(c.q, r)
		if unverified[c.name] > capBytes {
			t.Errorf("%s to an unverified querier: %d bytes, cap %d", c.name, unverified[c.name], capBytes)
		}
	}

	// An unverified scraper still gets both filters, without nodes.
	if r := hqAnswer(t, n, from, queries[1].q); r.R.BFsd == nil || r.R.BFpe == nil || len(r.R.Nodes) != 0 {
		t.Fatalf("unverified scrape: filters %v %v, %d nodes; want filters and no nodes", r.R.BFsd != nil, r.R.BFpe != nil, len(r.R.Nodes))
	}

	// A put with a valid token proves the address (and stores the value).
	if r := hqAnswer(t, n, from, hqQuery(krpc.MethodPut, &put)); r.E != nil {
		t.Fatalf("put: %v", r.E)
	}
	if !n.owners.has(from.Addr(), time.Now()) {
		t.Fatal("a valid token did not mark the address as proven")
	}
	for _, c := range queries {
		r := hqAnswer(t, n, from, c.q)
		if got := size(c.q, r); got <= unverified[c.name] {
			t.Errorf("%s to a proven querier: %d bytes, no more than unverified (%d)", c.name, got, unverified[c.name])
		}
	}

	// Another, unverified source: a stored value comes back in full, but
	// without nodes.
	other := netip.MustParseAddrPort("127.0.0.9:6881")
	g := hqQuery(krpc.MethodGet, &krpc.Args{ID: hqID("getter"), Target: &target})
	r := hqAnswer(t, n, other, g)
	if string(r.R.V) != string(v) {
		t.Fatal("value withheld from an unverified getter")
	}
	if len(r.R.Nodes) != 0 {
		t.Fatal("nodes sent with a value to an unverified getter")
	}
	if r := hqAnswer(t, n, from, g); len(r.R.Nodes) == 0 {
		t.Fatal("no nodes with the value for a proven getter")
	}
	if got := testutil.ToFloat64(n.metrics.RepliesTrimmed); got < 4 {
		t.Fatalf("dhtd_replies_trimmed_total = %v, want >= 4 (values, nodes for filters, samples, nodes)", got)
	}
}
