package routing

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// farBucketTable returns a table whose bucket 0 is a full far bucket: node
// i of far answered at t0+i minutes. Bucket 1 holds one node, which
// answered at t0+10m.
func farBucketTable(t *testing.T, r *rand.Rand) (tb *Table, far []krpc.NodeInfo) {
	t.Helper()
	self := randID(r)
	tb = NewTable(self, Config{FixedBuckets: true})
	for i := range DefaultK {
		n := ni(idWithPrefix(r, self, 0), i)
		far = append(far, n)
		tb.Responded(n, t0.Add(time.Duration(i)*time.Minute), 0)
	}
	tb.Responded(ni(idWithPrefix(r, self, 1), 100), t0.Add(10*time.Minute), 0) // forces the split
	if tb.NumBuckets() != 2 || tb.Len() != DefaultK+1 {
		t.Fatalf("setup: %d buckets, %d nodes", tb.NumBuckets(), tb.Len())
	}
	return tb, far
}

func TestReplacement(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 15))

	t.Run("all good: newcomer waits in cache", func(t *testing.T) {
		tb, _ := farBucketTable(t, r)
		n := ni(idWithPrefix(r, tb.Self(), 0), 200)
		if ping := tb.Responded(n, t0.Add(10*time.Minute), 0); ping != nil {
			t.Errorf("Responded returned %v to ping, want none", ping)
		}
		if _, ok := tb.Get(n.ID); ok {
			t.Errorf("newcomer is live in a full bucket of good nodes")
		}
		checkInvariants(t, tb)
	})

	t.Run("questionable pinged, replaced after two failures", func(t *testing.T) {
		tb, far := farBucketTable(t, r)
		now := t0.Add(20 * time.Minute) // far[0..5] are questionable
		n := ni(idWithPrefix(r, tb.Self(), 0), 200)
		ping := tb.Responded(n, now, 0)
		if !slices.Equal(ping, far[:6]) {
			t.Fatalf("Responded returned %v to ping, want far[0..5] least recently seen first", ping)
		}
		if _, ok := tb.Get(n.ID); ok {
			t.Fatalf("newcomer went live before a slot freed")
		}
		tb.Failed(far[0].Addr, now.Add(time.Second))
		if _, ok := tb.Get(far[0].ID); !ok {
			t.Fatalf("node dropped after one failure; BEP 5 retries once")
		}
		tb.Failed(far[0].Addr, now.Add(2*time.Second))
		if _, ok := tb.Get(far[0].ID); ok {
			t.Errorf("bad node still live")
		}
		if _, ok := tb.Get(n.ID); !ok {
			t.Errorf("cached node not promoted")
		}
		if tb.Len() != DefaultK+1 {
			t.Errorf("Len = %d", tb.Len())
		}
		if lc := tb.Snapshot(now)[0].LastChanged; !lc.Equal(now.Add(2 * time.Second)) {
			t.Errorf("bucket lastChanged = %v after replacement", lc)
		}
		checkInvariants(t, tb)
	})

	t.Run("bad node replaced at once", func(t *testing.T) {
		tb, far := farBucketTable(t, r)
		tb.Failed(far[3].Addr, t0)
		tb.Failed(far[3].Addr, t0) // empty cache: stays, bad
		if _, ok := tb.Get(far[3].ID); !ok {
			t.Fatalf("bad node with empty cache removed")
		}
		n := ni(idWithPrefix(r, tb.Self(), 0), 200)
		if ping := tb.Responded(n, t0.Add(time.Minute), 0); ping != nil {
			t.Errorf("ping = %v", ping)
		}
		if _, ok := tb.Get(n.ID); !ok {
			t.Errorf("newcomer did not replace the bad node")
		}
		if _, ok := tb.Get(far[3].ID); ok {
			t.Errorf("bad node still live")
		}
		checkInvariants(t, tb)
	})

	t.Run("only unconfirmed candidates: bad node removed", func(t *testing.T) {
		tb, far := farBucketTable(t, r)
		now := t0.Add(20 * time.Minute)
		c := ni(idWithPrefix(r, tb.Self(), 0), 300)
		if !tb.Heard(c, now) {
			t.Errorf("Heard = false for a bucket with questionable nodes")
		}
		tb.Failed(far[1].Addr, now)
		tb.Failed(far[1].Addr, now)
		if _, ok := tb.Get(far[1].ID); ok {
			t.Errorf("bad node kept although the cache has a candidate")
		}
		if _, ok := tb.Get(c.ID); ok {
			t.Errorf("unconfirmed candidate promoted")
		}
		if got := tb.Candidates(now, 0); !slices.Equal(got, []krpc.NodeInfo{c}) {
			t.Errorf("Candidates = %v, want the heard node", got)
		}
		// It answers our ping: now it takes the free slot.
		tb.Responded(c, now.Add(time.Second), 0)
		if _, ok := tb.Get(c.ID); !ok {
			t.Errorf("candidate not live after answering")
		}
		checkInvariants(t, tb)
	})

	t.Run("failing cached node is removed", func(t *testing.T) {
		tb, _ := farBucketTable(t, r)
		c := ni(idWithPrefix(r, tb.Self(), 0), 300)
		tb.Heard(c, t0)
		tb.Failed(c.Addr, t0)
		if got := len(tb.Snapshot(t0)[0].Replacements); got != 0 {
			t.Errorf("cache holds %d entries after failure", got)
		}
		if got := tb.Replacements(); got != 0 {
			t.Errorf("Replacements() = %d after failure", got)
		}
		checkInvariants(t, tb)
	})

	t.Run("cache bounded, unconfirmed evicted first", func(t *testing.T) {
		tb, _ := farBucketTable(t, r)
		now := t0.Add(time.Minute)
		confirmed := ni(idWithPrefix(r, tb.Self(), 0), 400)
		tb.Responded(confirmed, now, 0)
		for i := range 20 {
			tb.Heard(ni(idWithPrefix(r, tb.Self(), 0), 500+i), now.Add(time.Duration(i)*time.Second))
		}
		repl := tb.Snapshot(now)[0].Replacements
		if len(repl) != DefaultReplacementSize {
			t.Fatalf("cache size %d", len(repl))
		}
		if got := tb.Replacements(); got != DefaultReplacementSize {
			t.Errorf("Replacements() = %d, want %d", got, DefaultReplacementSize)
		}
		if !slices.ContainsFunc(repl, func(s NodeSnapshot) bool { return s.ID == confirmed.ID.String() }) {
			t.Errorf("confirmed candidate evicted by unconfirmed ones")
		}
		checkInvariants(t, tb)
	})
}

func TestHeard(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 17))
	self := randID(r)
	tb := NewTable(self, Config{FixedBuckets: true})
	known := ni(idWithPrefix(r, self, 2), 1)
	tb.Responded(known, t0, 0)

	unknown := ni(idWithPrefix(r, self, 3), 2)
	if !tb.Heard(unknown, t0) {
		t.Errorf("Heard(unknown, room) = false")
	}
	if _, ok := tb.Get(unknown.ID); ok || tb.Len() != 1 {
		t.Errorf("unproven node entered a live bucket")
	}
	tests := []struct {
		name string
		n    krpc.NodeInfo
	}{
		{"known node", known},
		{"known addr, other id", krpc.NodeInfo{ID: randID(r), Addr: known.Addr}},
		{"known id, other addr", krpc.NodeInfo{ID: known.ID, Addr: testAddr(9)}},
	}
	for _, tt := range tests {
		if tb.Heard(tt.n, t0.Add(time.Minute)) {
			t.Errorf("%s: Heard = true", tt.name)
		}
	}
	e, _ := tb.Get(known.ID)
	if e.Addr != known.Addr || !e.LastQuery.Equal(t0.Add(time.Minute)) {
		t.Errorf("known entry = %+v", e)
	}
	if tb.Len() != 1 {
		t.Errorf("Len = %d", tb.Len())
	}
	checkInvariants(t, tb)

	t.Run("bad live node that queries us is worth a ping", func(t *testing.T) {
		tb, far := farBucketTable(t, r)
		tb.Failed(far[2].Addr, t0)
		tb.Failed(far[2].Addr, t0)
		if !tb.Heard(far[2], t0.Add(time.Minute)) {
			t.Errorf("Heard(bad node) = false")
		}
		if tb.Heard(far[3], t0.Add(time.Minute)) {
			t.Errorf("Heard(good node) = true")
		}
	})

	t.Run("full bucket of good nodes", func(t *testing.T) {
		tb, _ := farBucketTable(t, r)
		if tb.Heard(ni(idWithPrefix(r, tb.Self(), 0), 900), t0.Add(8*time.Minute)) {
			t.Errorf("Heard = true for a far bucket full of good nodes")
		}
	})
	// A full bucket of good nodes remembers until when they are all good
	// (bucket.goodUntil); a failure, or the good window passing for its
	// oldest node, must still make it want a node at once.
	t.Run("good bucket turns wanting", func(t *testing.T) {
		tb, far := farBucketTable(t, r)
		at := t0.Add(8 * time.Minute)
		heard := ni(idWithPrefix(r, tb.Self(), 0), 901)
		if tb.Heard(heard, at) {
			t.Fatalf("Heard = true for a far bucket full of good nodes")
		}
		// The heard node fails its ping and leaves the cache, so the node
		// that turns bad next stays live (no replacement).
		tb.Failed(heard.Addr, at)
		for range DefaultMaxFailures {
			tb.Failed(far[5].Addr, at)
		}
		if st, ok := tb.Get(far[5].ID); !ok || st.State(at) != Bad {
			t.Fatalf("setup: far[5] is %+v, %v; want a live bad node", st, ok)
		}
		if !tb.Heard(ni(idWithPrefix(r, tb.Self(), 0), 902), at) {
			t.Errorf("Heard = false once a node of the bucket turned bad")
		}
		tb, _ = farBucketTable(t, r)
		if tb.Heard(ni(idWithPrefix(r, tb.Self(), 0), 903), at) {
			t.Fatalf("Heard = true for a far bucket full of good nodes")
		}
		// far[0] answered at t0: questionable from t0+GoodWindow on.
		if !tb.Heard(ni(idWithPrefix(r, tb.Self(), 0), 904), t0.Add(DefaultGoodWindow)) {
			t.Errorf("Heard = false once the bucket's oldest node left the good window")
		}
	})
}

func TestRefused(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 19))
	self := randID(r)
	id := randID(r)
	tests := []struct {
		name string
		n    krpc.NodeInfo
	}{
		{"own id", ni(self, 1)},
		{"zero id", ni(krpc.ID{}, 1)},
		{"port 0", krpc.NodeInfo{ID: id, Addr: netip.MustParseAddrPort("11.0.0.1:0")}},
		{"unspecified v4", krpc.NodeInfo{ID: id, Addr: netip.MustParseAddrPort("0.0.0.0:6881")}},
		{"0.x address", krpc.NodeInfo{ID: id, Addr: netip.MustParseAddrPort("0.1.2.3:6881")}},
		{"unspecified v6", krpc.NodeInfo{ID: id, Addr: netip.MustParseAddrPort("[::]:6881")}},
		{"multicast", krpc.NodeInfo{ID: id, Addr: netip.MustParseAddrPort("224.0.0.1:6881")}},
		{"broadcast", krpc.NodeInfo{ID: id, Addr: netip.MustParseAddrPort("255.255.255.255:6881")}},
		{"invalid", krpc.NodeInfo{ID: id}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := NewTable(self, Config{FixedBuckets: true})
			if ping := tb.Responded(tt.n, t0, 0); ping != nil || tb.Len() != 0 {
				t.Errorf("Responded accepted %v", tt.n)
			}
			if tb.Heard(tt.n, t0) || len(tb.Candidates(t0, 0)) != 0 {
				t.Errorf("Heard accepted %v", tt.n)
			}
		})
	}

	t.Run("same addr, new id replaces via Responded only", func(t *testing.T) {
		tb := NewTable(self, Config{FixedBuckets: true})
		a, b, c := ni(randID(r), 1), ni(randID(r), 1), ni(randID(r), 1)
		tb.Responded(a, t0, 0)
		tb.Heard(c, t0) // unconfirmed claim: ignored
		if _, ok := tb.Get(a.ID); !ok || len(tb.Candidates(t0, 0)) != 0 {
			t.Fatalf("unconfirmed claim on a known addr changed the table")
		}
		tb.Responded(b, t0, 0)
		if _, ok := tb.Get(a.ID); ok {
			t.Errorf("old id still live at its addr")
		}
		if e, ok := tb.Get(b.ID); !ok || e.Addr != a.Addr || tb.Len() != 1 {
			t.Errorf("new id not live at the addr")
		}
		checkInvariants(t, tb)
	})

	t.Run("known id at new addr ignored", func(t *testing.T) {
		tb := NewTable(self, Config{FixedBuckets: true})
		a := ni(randID(r), 1)
		tb.Responded(a, t0, 0)
		tb.Responded(krpc.NodeInfo{ID: a.ID, Addr: testAddr(2)}, t0, 0)
		if e, _ := tb.Get(a.ID); e.Addr != a.Addr || tb.Len() != 1 {
			t.Errorf("entry moved to %v", e.Addr)
		}
		checkInvariants(t, tb)
	})

	t.Run("unconfirmed id claim loses to proven address", func(t *testing.T) {
		tb := NewTable(self, Config{FixedBuckets: true})
		spoof := ni(randID(r), 1)
		tb.Heard(spoof, t0)
		real := krpc.NodeInfo{ID: spoof.ID, Addr: testAddr(2)}
		tb.Responded(real, t0, 0)
		if e, ok := tb.Get(real.ID); !ok || e.Addr != real.Addr {
			t.Errorf("proven node not live at its address: %+v", e)
		}
		checkInvariants(t, tb)
	})

	t.Run("IPv4-mapped addresses are one endpoint", func(t *testing.T) {
		tb := NewTable(self, Config{FixedBuckets: true})
		mapped := krpc.NodeInfo{ID: randID(r), Addr: netip.MustParseAddrPort("[::ffff:11.2.3.4]:6881")}
		tb.Responded(mapped, t0, 0)
		want := netip.MustParseAddrPort("11.2.3.4:6881")
		if e, _ := tb.Get(mapped.ID); e.Addr != want {
			t.Errorf("addr = %v, want %v", e.Addr, want)
		}
		tb.Failed(want, t0)
		tb.Failed(mapped.Addr, t0)
		if e, _ := tb.Get(mapped.ID); e.Failures != 2 {
			t.Errorf("failures = %d, want 2", e.Failures)
		}
	})
}

func TestAddressLimits(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 21))
	self := randID(r)

	t.Run("MaxPerIP", func(t *testing.T) {
		tb := NewTable(self, Config{FixedBuckets: true, MaxPerIP: 2})
		ip := netip.MustParseAddr("11.9.9.9")
		for port := range uint16(5) {
			tb.Responded(krpc.NodeInfo{ID: randID(r), Addr: netip.AddrPortFrom(ip, 7000+port)}, t0, 0)
			tb.Heard(krpc.NodeInfo{ID: randID(r), Addr: netip.AddrPortFrom(ip, 8000+port)}, t0)
		}
		if got := tb.Len() + len(tb.Candidates(t0, 0)); got != 2 {
			t.Errorf("%d entries share one IP, want 2", got)
		}
		checkInvariants(t, tb)
	})

	t.Run("MaxPerIP: proven node evicts unconfirmed entry", func(t *testing.T) {
		tb := NewTable(self, Config{FixedBuckets: true, MaxPerIP: 1})
		heard := krpc.NodeInfo{ID: randID(r), Addr: netip.MustParseAddrPort("11.8.8.8:7000")}
		proven := krpc.NodeInfo{ID: randID(r), Addr: netip.MustParseAddrPort("11.8.8.8:7001")}
		other := krpc.NodeInfo{ID: randID(r), Addr: netip.MustParseAddrPort("11.8.8.8:7002")}
		tb.Heard(heard, t0)
		tb.Responded(proven, t0, 0)
		if _, ok := tb.Get(proven.ID); !ok || len(tb.Candidates(t0, 0)) != 0 {
			t.Errorf("proven node not preferred over an unconfirmed one at its IP")
		}
		tb.Responded(other, t0, 0) // the slot is held by a live node: refused
		if _, ok := tb.Get(other.ID); ok || tb.Len() != 1 {
			t.Errorf("second live node at one IP with MaxPerIP=1")
		}
		checkInvariants(t, tb)
	})

	t.Run("MaxPerSubnetPerBucket", func(t *testing.T) {
		tb := NewTable(self, Config{FixedBuckets: true, MaxPerSubnetPerBucket: 1})
		for i := range 4 {
			a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{11, 5, 5, byte(10 + i)}), 6881)
			tb.Responded(krpc.NodeInfo{ID: idWithPrefix(r, self, 0), Addr: a}, t0, 0)
		}
		tb.Responded(krpc.NodeInfo{ID: idWithPrefix(r, self, 0), Addr: netip.MustParseAddrPort("11.5.6.1:6881")}, t0, 0)
		v6 := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
		tb.Responded(krpc.NodeInfo{ID: idWithPrefix(r, self, 0), Addr: v6("[2001:db8:1:1::1]:6881")}, t0, 0)
		tb.Responded(krpc.NodeInfo{ID: idWithPrefix(r, self, 0), Addr: v6("[2001:db8:1:1::2]:6881")}, t0, 0)
		tb.Responded(krpc.NodeInfo{ID: idWithPrefix(r, self, 0), Addr: v6("[2001:db8:1:2::1]:6881")}, t0, 0)
		if got := tb.Len(); got != 4 {
			t.Errorf("Len = %d, want 4 (one per /24 or /64)", got)
		}
		checkInvariants(t, tb)
	})

	t.Run("unlimited by default", func(t *testing.T) {
		tb := NewTable(self, Config{FixedBuckets: true})
		for port := range uint16(5) {
			tb.Responded(krpc.NodeInfo{ID: randID(r), Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 7000+port)}, t0, 0)
		}
		if tb.Len() != 5 {
			t.Errorf("Len = %d, want 5 loopback nodes", tb.Len())
		}
	})
}

// TestPrefer (BEP 42 prefer mode): a preferred node that answers takes the
// slot of the least recently seen node that is not preferred in a full
// bucket of good nodes; that node waits in the cache; a bucket of
// preferred nodes keeps them.
func TestPrefer(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 17))
	self := randID(r)
	preferred := make(map[krpc.ID]bool)
	tb := NewTable(self, Config{FixedBuckets: true, Prefer: func(n krpc.NodeInfo) bool { return preferred[n.ID] }})
	var far []krpc.NodeInfo
	for i := range DefaultK {
		n := ni(idWithPrefix(r, self, 0), i)
		far = append(far, n)
		if i >= 4 {
			preferred[n.ID] = true // far[4..7] preferred, far[0..3] not
		}
		tb.Responded(n, t0.Add(time.Duration(i)*time.Minute), 0)
	}
	tb.Responded(ni(idWithPrefix(r, self, 1), 100), t0.Add(10*time.Minute), 0) // split: bucket 0 is far and full
	now := t0.Add(11 * time.Minute)                                            // all good

	plain := ni(idWithPrefix(r, self, 0), 200)
	tb.Responded(plain, now, 0)
	if _, ok := tb.Get(plain.ID); ok {
		t.Fatal("a node that is not preferred took a slot in a bucket of good nodes")
	}
	for i := range 4 {
		p := ni(idWithPrefix(r, self, 0), 300+i)
		preferred[p.ID] = true
		tb.Responded(p, now, 0)
		if _, ok := tb.Get(p.ID); !ok {
			t.Fatalf("preferred node %d not admitted", i)
		}
		if _, ok := tb.Get(far[i].ID); ok {
			t.Fatalf("preferred node %d did not displace far[%d], the least recently seen not preferred", i, i)
		}
		checkInvariants(t, tb)
	}
	// Only preferred nodes left: the next one waits.
	p := ni(idWithPrefix(r, self, 0), 400)
	preferred[p.ID] = true
	tb.Responded(p, now, 0)
	if _, ok := tb.Get(p.ID); ok {
		t.Fatal("preferred node displaced another preferred node")
	}
	for _, n := range far[4:] {
		if _, ok := tb.Get(n.ID); !ok {
			t.Fatalf("preferred node %v lost its slot", n)
		}
	}
	checkInvariants(t, tb)
}

// TestRetry: a bad node kept for want of a replacement is offered for a
// ping RetryBase after it went bad, then after doubling waits up to
// RetryMax; an answer makes it good again.
func TestRetry(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 19))
	tb, far := farBucketTable(t, r)
	n := far[0]
	now := t0.Add(20 * time.Minute)
	tb.Failed(n.Addr, now)
	tb.Failed(n.Addr, now) // bad; the cache is empty, so it stays
	if e, ok := tb.Get(n.ID); !ok || e.State(now) != Bad {
		t.Fatalf("setup: %v %v", e, ok)
	}
	due := func(at time.Time) bool { return slices.Contains(tb.Retry(at, 0), n) }
	wait := DefaultRetryBase
	for failures := 2; failures < 10; failures++ {
		if due(now.Add(wait - time.Second)) {
			t.Fatalf("%d failures: due before %v", failures, wait)
		}
		if !due(now.Add(wait)) {
			t.Fatalf("%d failures: not due after %v", failures, wait)
		}
		now = now.Add(wait)
		tb.Failed(n.Addr, now)
		wait = min(2*wait, DefaultRetryMax)
	}
	if wait != DefaultRetryMax {
		t.Fatalf("wait %v never reached the cap", wait)
	}
	tb.Responded(n, now.Add(time.Second), 0)
	if e, _ := tb.Get(n.ID); e.State(now.Add(time.Second)) != Good {
		t.Fatalf("answered node is %v, want good", e.State(now.Add(time.Second)))
	}
	if len(tb.Retry(now.Add(time.Hour), 0)) != 0 {
		t.Fatal("Retry offers nodes that are not bad")
	}
	checkInvariants(t, tb)
}

// TestUpkeepScansAfterAllGood: once a scan has found a bucket all good,
// the upkeep's scans pass it over until its first node stops being good,
// but a failure, or a node's going stale, is still seen.
func TestUpkeepScansAfterAllGood(t *testing.T) {
	r := rand.New(rand.NewPCG(40, 41))
	tb, far := farBucketTable(t, r)
	at := t0.Add(11 * time.Minute) // every node answered within the good window
	if q := tb.Questionable(at, 0); len(q) != 0 {
		t.Fatalf("all good: %d questionable", len(q))
	}
	if tb.buckets[0].goodUntil.IsZero() {
		t.Fatal("a scan of an all-good bucket did not note until when it is")
	}
	// far[0] answered at t0: good until t0 + GoodWindow.
	if want := t0.Add(DefaultGoodWindow); !tb.buckets[0].goodUntil.Equal(want) {
		t.Fatalf("goodUntil %v, want %v", tb.buckets[0].goodUntil, want)
	}
	if q := tb.Questionable(t0.Add(DefaultGoodWindow), 0); !slices.Equal(q, far[:1]) {
		t.Fatalf("at the end of far[0]'s window: questionable %v, want far[0]", q)
	}
	// A fresh scan marks the bucket all good again, then far[1] fails
	// until it is bad: Retry must find it although the mark would say
	// otherwise.
	tb.Responded(far[0], at, 0)
	if q := tb.Questionable(at, 0); len(q) != 0 {
		t.Fatalf("after far[0] answered: %d questionable", len(q))
	}
	for range DefaultMaxFailures {
		tb.Failed(far[1].Addr, at)
	}
	// Due after DefaultRetryBase, while the other nodes are all still good.
	if got := tb.Retry(at.Add(DefaultRetryBase), 0); !slices.Equal(got, far[1:2]) {
		t.Fatalf("Retry after far[1] went bad = %v, want far[1]", got)
	}
	checkInvariants(t, tb)
}
