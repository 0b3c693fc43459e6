package node

import (
	"bytes"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
)

// TestHandleSampleInfohashes (BEP 51): a node holding 1,000
// infohashes answers with interval, num = 1000 and a sample of distinct
// stored infohashes that fits the packet; samples is present even when
// nothing is stored; a missing target is 203.
func TestHandleSampleInfohashes(t *testing.T) {
	_, from := hqSource(t)
	n := startNode(t, nil)
	q := hqQuery(krpc.MethodSampleInfohashes, &krpc.Args{ID: hqID("indexer"), Target: ptr(hqID("t"))})

	// Nothing stored: samples present and empty.
	r := hqAnswer(t, n, from, q)
	if r.R == nil || r.R.Samples == nil || len(*r.R.Samples) != 0 || r.R.Num == nil || *r.R.Num != 0 {
		t.Fatalf("empty node: reply %+v", r)
	}
	b := encodeReply(t, q, r, from)
	if !bytes.Contains(b, []byte("7:samples0:")) {
		t.Fatalf("empty samples not sent: %q", b)
	}

	rnd := rand.New(rand.NewPCG(5, 5))
	stored := make(map[krpc.ID]bool)
	now := time.Now()
	for i := range 1000 {
		ih := hqRandomID(rnd)
		stored[ih] = true
		// One peer per /24, so no source network meets its quota.
		n.peers.Announce(ih, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 6881), false, now)
	}
	hqPopulate(n, 50, rnd)
	n.owners.add(from.Addr(), time.Now()) // full replies (amplify.go)
	r = hqAnswer(t, n, from, q)
	if r.E != nil {
		t.Fatalf("error %v", r.E)
	}
	if r.R.Interval == nil || *r.R.Interval < 0 || *r.R.Interval > 21600 {
		t.Fatalf("interval %v, want 0..21600", r.R.Interval)
	}
	if *r.R.Num != 1000 {
		t.Fatalf("num %d, want 1000", *r.R.Num)
	}
	s := *r.R.Samples
	if len(s) != core.MaxSamples {
		t.Fatalf("%d samples, want %d", len(s), core.MaxSamples)
	}
	seen := make(map[krpc.ID]bool)
	for _, ih := range s {
		if !stored[ih] || seen[ih] {
			t.Fatalf("sample %s not stored or repeated", ih)
		}
		seen[ih] = true
	}
	if len(r.R.Nodes) == 0 {
		t.Fatal("no nodes")
	}
	if b := encodeReply(t, q, r, from); len(b) > 1024 {
		t.Fatalf("reply of %d bytes", len(b))
	}
	// The sample is reused within the interval.
	r2 := hqAnswer(t, n, from, q)
	if !slices.Equal(*r2.R.Samples, s) {
		t.Fatal("sample changed within its interval")
	}

	bad := hqAnswer(t, n, from, hqQuery(krpc.MethodSampleInfohashes, &krpc.Args{ID: hqID("indexer")}))
	if bad.E == nil || bad.E.Code != krpc.ErrCodeProtocol {
		t.Fatalf("no target: %+v, want 203", bad)
	}
}

// TestHandleGetPeersScrape (BEP 33): with scrape=1 the reply
// carries BFsd and BFpe whose estimates are within the filter's error of
// 30 seeds and 70 leechers, and still fits the packet.
func TestHandleGetPeersScrape(t *testing.T) {
	_, from := hqSource(t)
	n := startNode(t, nil)
	ih := hqID("swarm")
	now := time.Now()
	for i := range 100 {
		n.peers.Announce(ih, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 7, 0, byte(i + 1)}), 6881), i < 30, now)
	}
	hqPopulate(n, 50, rand.New(rand.NewPCG(6, 6)))
	q := hqQuery(krpc.MethodGetPeers, &krpc.Args{ID: hqID("scraper"), InfoHash: &ih, Scrape: 1})
	n.owners.add(from.Addr(), time.Now()) // full replies (amplify.go)
	r := hqAnswer(t, n, from, q)
	if r.R == nil || r.R.BFsd == nil || r.R.BFpe == nil {
		t.Fatalf("scrape reply without filters: %+v", r)
	}
	// With 100 IPs in 2048 bits and k = 2, the estimate's standard error is
	// a few percent; 15% is far outside it for a correct filter.
	for _, c := range []struct {
		name string
		f    *krpc.Bloom
		want float64
	}{{"BFsd", r.R.BFsd, 30}, {"BFpe", r.R.BFpe, 70}} {
		if got := c.f.Estimate(); math.Abs(got-c.want) > 0.15*c.want {
			t.Errorf("%s estimate %.1f, want %v", c.name, got, c.want)
		}
	}
	if b := encodeReply(t, q, r, from); len(b) > 1500 {
		t.Fatalf("scrape reply of %d bytes", len(b))
	}
	// Without scrape: no filters.
	q.A.Scrape = 0
	if r := hqAnswer(t, n, from, q); r.R.BFsd != nil || r.R.BFpe != nil {
		t.Fatal("filters sent without scrape=1")
	}
}

func ptr[T any](v T) *T { return &v }

// encodeReply fills in the envelope as krpc.Server does and encodes r.
func encodeReply(t *testing.T, q, r *krpc.Msg, from netip.AddrPort) []byte {
	t.Helper()
	r.T, r.Y, r.V = q.T, krpc.KindResponse, ClientVersion
	if r.E != nil {
		r.Y = krpc.KindError
	}
	ip := krpc.CompactAddr(from)
	r.IP = &ip
	b, err := krpc.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
