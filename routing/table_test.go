package routing

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// testAddr returns a distinct public-looking IPv4 endpoint per i, each in
// its own /24 (for i < 65536).
func testAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{11, byte(i >> 8), byte(i), 1}), 6881)
}

func ni(id krpc.ID, i int) krpc.NodeInfo { return krpc.NodeInfo{ID: id, Addr: testAddr(i)} }

// checkInvariants verifies the structural invariants of tb.
func checkInvariants(t *testing.T, tb *Table) {
	t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	last := len(tb.buckets) - 1
	live, tracked := 0, 0
	for i, b := range tb.buckets {
		if len(b.nodes) > tb.capacity(i) {
			t.Errorf("bucket %d has %d nodes > its capacity %d", i, len(b.nodes), tb.capacity(i))
		}
		if len(b.repl) > tb.cfg.ReplacementSize {
			t.Errorf("bucket %d has %d cached > %d", i, len(b.repl), tb.cfg.ReplacementSize)
		}
		for _, e := range append(slices.Clone(b.nodes), b.repl...) {
			c := CommonPrefixLen(tb.self, e.info.ID)
			if (i < last && c != i) || (i == last && c < last) {
				t.Errorf("bucket %d (last %d) holds node with prefix length %d", i, last, c)
			}
			if tb.byAddr.addr(e.info.Addr) != e || tb.byID.id(e.info.ID) != e {
				t.Errorf("node %s not indexed", e.info)
			}
			tracked++
		}
		for j, e := range b.nodes {
			if !e.live {
				t.Errorf("live list holds non-live entry %s", e.info)
			}
			if j >= len(b.keys) || b.keys[j] != idKey(&e.info.ID) {
				t.Errorf("bucket %d: key %d does not match node %s", i, j, e.info)
			}
		}
		if len(b.keys) != len(b.nodes) {
			t.Errorf("bucket %d: %d keys for %d nodes", i, len(b.keys), len(b.nodes))
		}
		for _, e := range b.repl {
			if e.live {
				t.Errorf("cache holds live entry %s", e.info)
			}
		}
		live += len(b.nodes)
	}
	if live != tb.live {
		t.Errorf("live count %d, counted %d", tb.live, live)
	}
	if tb.byAddr.len() != tracked || tb.byID.len() != tracked {
		t.Errorf("indexes hold %d/%d entries, lists %d", tb.byAddr.len(), tb.byID.len(), tracked)
	}
	if tb.cfg.MaxPerIP == 0 {
		if tb.perIP != nil {
			t.Errorf("per-IP counts kept with MaxPerIP off: %d addresses", len(tb.perIP))
		}
		return
	}
	n := 0
	for _, c := range tb.perIP {
		n += c
	}
	if n != tracked {
		t.Errorf("per-IP counts sum to %d, want %d", n, tracked)
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		name        string
		cpls        []int // shared prefix lengths of the nodes inserted, in order
		wantBuckets int
		wantLen     int
	}{
		{"one bucket until full", rep(0, 8), 1, 8},
		{"full far bucket does not split", rep(0, 12), 2, 8},
		{"split redistributes", append(append(rep(0, 4), rep(1, 4)...), 2), 2, 9},
		{"split chain toward self", rep(5, 9), 7, 8},
		{"deep chain", rep(150, 20), 152, 8},
		{"far bucket full then near nodes", append(rep(0, 10), rep(3, 10)...), 5, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(len(tt.cpls))))
			self := randID(r)
			tb := NewTable(self, Config{FixedBuckets: true})
			for i, c := range tt.cpls {
				tb.Responded(ni(idWithPrefix(r, self, c), i), t0, time.Millisecond)
				checkInvariants(t, tb)
			}
			if got := tb.NumBuckets(); got != tt.wantBuckets {
				t.Errorf("NumBuckets = %d, want %d", got, tt.wantBuckets)
			}
			if got := tb.Len(); got != tt.wantLen {
				t.Errorf("Len = %d, want %d", got, tt.wantLen)
			}
		})
	}

	t.Run("random", func(t *testing.T) {
		r := rand.New(rand.NewPCG(8, 9))
		tb := NewTable(randID(r), Config{FixedBuckets: true})
		for i := range 3000 {
			tb.Responded(ni(randID(r), i), t0, 0)
		}
		checkInvariants(t, tb)
		if tb.NumBuckets() < 5 || tb.NumBuckets() > 20 {
			t.Errorf("NumBuckets = %d for 3000 random nodes", tb.NumBuckets())
		}
	})
}

func rep(v, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func TestClosestMatchesBruteForce(t *testing.T) {
	for _, k := range []int{8, 64} {
		for seed := range uint64(3) {
			r := rand.New(rand.NewPCG(seed, uint64(k)))
			tb := NewTable(randID(r), Config{K: k})
			for i := range 1000 {
				tb.Responded(ni(randID(r), i), t0, 0)
			}
			checkInvariants(t, tb)
			known := tb.Nodes()
			for range 10 {
				target := randID(r)
				if r.IntN(3) == 0 {
					target = idWithPrefix(r, tb.Self(), r.IntN(12)) // near our own id
				}
				want := slices.Clone(known)
				slices.SortFunc(want, func(a, b krpc.NodeInfo) int {
					return bigDist(target, a.ID).Cmp(bigDist(target, b.ID))
				})
				for _, n := range []int{1, 3, 8, 20, 33, 100, len(known), len(known) + 5} {
					got := tb.Closest(target, n)
					w := want[:min(n, len(want))]
					if !slices.Equal(got, w) {
						t.Fatalf("K=%d seed=%d n=%d: Closest differs from brute force\n got %v\nwant %v", k, seed, n, got, w)
					}
				}
			}
		}
	}
}

// TestClosestClustered runs Closest on ids that agree on their first 12
// bytes with the target, so ordering is decided by the low-order bytes.
func TestClosestClustered(t *testing.T) {
	r := rand.New(rand.NewPCG(40, 41))
	base := randID(r)
	tb := NewTable(randID(r), Config{FixedBuckets: true, K: 300})
	for i := range 200 {
		id := base
		for j := 12; j < krpc.IDLen; j++ {
			id[j] = byte(r.Uint32())
		}
		tb.Responded(ni(id, i), t0, 0)
	}
	known := tb.Nodes()
	for range 20 {
		target := base
		for j := 12; j < krpc.IDLen; j++ {
			target[j] = byte(r.Uint32())
		}
		want := slices.Clone(known)
		slices.SortFunc(want, func(a, b krpc.NodeInfo) int {
			return bigDist(target, a.ID).Cmp(bigDist(target, b.ID))
		})
		for _, n := range []int{8, 32, 50} {
			if got := tb.Closest(target, n); !slices.Equal(got, want[:n]) {
				t.Fatalf("n=%d: Closest differs from brute force", n)
			}
		}
	}
}

func TestClosestSkipsBadAndFilters(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 11))
	self := randID(r)
	tb := NewTable(self, Config{FixedBuckets: true})
	var nodes []krpc.NodeInfo
	for i := range 5 {
		n := ni(idWithPrefix(r, self, i), i)
		nodes = append(nodes, n)
		tb.Responded(n, t0, 0)
	}
	// Empty caches: the failing node stays but is bad.
	tb.Failed(nodes[0].Addr, t0)
	tb.Failed(nodes[0].Addr, t0)
	if e, ok := tb.Get(nodes[0].ID); !ok || e.State(t0) != Bad {
		t.Fatalf("node 0: ok=%v state=%v, want bad and kept", ok, e.State(t0))
	}
	if got := tb.Closest(nodes[0].ID, 10); len(got) != 4 || slices.Contains(got, nodes[0]) {
		t.Errorf("Closest = %v, want the 4 non-bad nodes", got)
	}
	if got := tb.Closest(self, 0); got != nil {
		t.Errorf("Closest(n=0) = %v", got)
	}
	odd := func(e Entry) bool { return e.ID == nodes[1].ID || e.ID == nodes[3].ID }
	if got := tb.ClosestFunc(nodes[3].ID, 8, odd); !slices.Equal(got, []krpc.NodeInfo{nodes[3], nodes[1]}) {
		t.Errorf("ClosestFunc = %v", got)
	}
}

func TestEntryState(t *testing.T) {
	gw := DefaultGoodWindow
	tests := []struct {
		name         string
		lastResponse time.Duration // before now; -1 = never
		lastQuery    time.Duration // before now; -1 = never
		failures     int
		want         State
	}{
		{"fresh answer", 0, -1, 0, Good},
		{"answer 14m59s ago", gw - time.Second, -1, 0, Good},
		{"answer exactly 15m ago", gw, -1, 0, Questionable},
		{"answer 1h ago", time.Hour, -1, 0, Questionable},
		{"old answer, recent query", time.Hour, time.Minute, 0, Good},
		{"old answer, old query", time.Hour, gw, 0, Questionable},
		{"never answered, recent query", -1, 0, 0, Questionable},
		{"one failure", 0, -1, 1, Good},
		{"two failures", 0, -1, 2, Bad},
		{"many failures", time.Hour, 0, 5, Bad},
	}
	now := t0.Add(24 * time.Hour)
	at := func(d time.Duration) time.Time {
		if d < 0 {
			return time.Time{}
		}
		return now.Add(-d)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Entry{LastResponse: at(tt.lastResponse), LastQuery: at(tt.lastQuery), Failures: tt.failures}
			if got := e.State(now); got != tt.want {
				t.Errorf("State = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStateTransitions(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 13))
	tb := NewTable(randID(r), Config{FixedBuckets: true})
	if c := tb.Config(); c.K != DefaultK || c.MaxFailures != DefaultMaxFailures || c.GoodWindow != DefaultGoodWindow {
		t.Fatalf("defaults not applied: %+v", c)
	}
	n := ni(randID(r), 1)
	tb.Responded(n, t0, 30*time.Millisecond)
	state := func(now time.Time) State {
		t.Helper()
		e, ok := tb.Get(n.ID)
		if !ok {
			t.Fatalf("node missing")
		}
		return e.State(now)
	}
	steps := []struct {
		name string
		do   func()
		now  time.Time
		want State
	}{
		{"just answered", nil, t0, Good},
		{"14 min later", nil, t0.Add(14 * time.Minute), Good},
		{"15 min later", nil, t0.Add(15 * time.Minute), Questionable},
		{"it queries us", func() { tb.Heard(n, t0.Add(20*time.Minute)) }, t0.Add(21 * time.Minute), Good},
		{"query goes stale", nil, t0.Add(35 * time.Minute), Questionable},
		{"first failure", func() { tb.Failed(n.Addr, t0.Add(36*time.Minute)) }, t0.Add(36 * time.Minute), Questionable},
		{"second failure", func() { tb.Failed(n.Addr, t0.Add(37*time.Minute)) }, t0.Add(37 * time.Minute), Bad},
		{"answers again", func() { tb.Responded(n, t0.Add(38*time.Minute), 0) }, t0.Add(38 * time.Minute), Good},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do()
		}
		if got := state(s.now); got != s.want {
			t.Fatalf("%s: state %v, want %v", s.name, got, s.want)
		}
	}
	e, _ := tb.Get(n.ID)
	if e.Failures != 0 || e.RTT != 30*time.Millisecond || !e.FirstSeen.Equal(t0) || !e.Confirmed() {
		t.Errorf("entry after recovery = %+v", e)
	}
	if g, q, b := tb.Counts(t0.Add(time.Hour)); g != 0 || q != 1 || b != 0 {
		t.Errorf("Counts = %d,%d,%d, want 0,1,0", g, q, b)
	}
}

func TestRefreshTargets(t *testing.T) {
	r := rand.New(rand.NewPCG(22, 23))
	self := randID(r)
	tb := NewTable(self, Config{FixedBuckets: true})

	if got := tb.RefreshTargets(t0, 0); len(got) != 1 {
		t.Fatalf("new table: %d targets, want 1", len(got))
	}
	if got := tb.RefreshTargets(t0.Add(time.Minute), 0); len(got) != 0 {
		t.Fatalf("targets right after a refresh: %v", got)
	}
	// Buckets 0..4 plus the last, all changed at t0+1m.
	for c := range 5 {
		for i := range 9 {
			tb.Responded(ni(idWithPrefix(r, self, c), c*100+i), t0.Add(time.Minute), 0)
		}
	}
	nb := tb.NumBuckets()
	if nb < 5 {
		t.Fatalf("setup: %d buckets", nb)
	}
	// Bucket 2 changes later (a node answers).
	e := tb.Snapshot(t0)[2].Nodes[0]
	id, _ := krpc.ParseID(e.ID)
	tb.Responded(krpc.NodeInfo{ID: id, Addr: netip.MustParseAddrPort(e.Addr)}, t0.Add(10*time.Minute), 0)

	now := t0.Add(16 * time.Minute)
	// A limit leaves the stale buckets past it for later calls, which
	// take them farthest first, each once.
	tb2 := NewTable(self, Config{FixedBuckets: true})
	for c := range 5 {
		for i := range 9 {
			tb2.Responded(ni(idWithPrefix(r, self, c), c*100+i), t0, 0)
		}
	}
	if tb2.NumBuckets() < 5 {
		t.Fatalf("setup: %d buckets", tb2.NumBuckets())
	}
	var order []int
	for range tb2.NumBuckets() + 1 {
		got := tb2.RefreshTargets(now, 2)
		if len(got) > 2 {
			t.Fatalf("%d targets past a limit of 2", len(got))
		}
		for _, target := range got {
			order = append(order, min(CommonPrefixLen(self, target), tb2.NumBuckets()-1))
		}
	}
	for i, b := range order {
		if b != i {
			t.Fatalf("limited calls refreshed buckets %v, want each of 0..%d once, in order", order, tb2.NumBuckets()-1)
		}
	}
	if len(order) != tb2.NumBuckets() {
		t.Fatalf("limited calls refreshed %d of %d stale buckets", len(order), tb2.NumBuckets())
	}
	targets := tb.RefreshTargets(now, 0)
	var got []int
	for _, target := range targets {
		c := CommonPrefixLen(self, target)
		i := min(c, nb-1)
		if i < nb-1 && c != i {
			t.Errorf("target %s has prefix length %d", target, c)
		}
		got = append(got, i)
	}
	var want []int
	for i := range nb {
		if i != 2 {
			want = append(want, i)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("refreshed buckets %v, want %v", got, want)
	}
	if again := tb.RefreshTargets(now.Add(time.Minute), 0); len(again) != 0 {
		t.Errorf("buckets returned again at once: %d", len(again))
	}
	if later := tb.RefreshTargets(t0.Add(26*time.Minute), 0); len(later) != 1 {
		t.Errorf("at +26m: %d targets, want only bucket 2", len(later))
	}
}

// TestFillTargets: a target in each bucket that has room, in bucket
// order, and none in a full one.
func TestFillTargets(t *testing.T) {
	r := rand.New(rand.NewPCG(24, 25))
	self := randID(r)
	tb := NewTable(self, Config{FixedBuckets: true})
	if got := tb.FillTargets(MaxBuckets); len(got) != 1 {
		t.Fatalf("new table: %d targets, want 1", len(got))
	}
	// Buckets 0..4 get 9 nodes each (K = 8: full once split off), bucket
	// 1 only 3.
	for c := range 5 {
		count := 9
		if c == 1 {
			count = 3
		}
		for i := range count {
			tb.Responded(ni(idWithPrefix(r, self, c), c*100+i), t0, 0)
		}
	}
	nb := tb.NumBuckets()
	var want []int
	for i, b := range tb.Snapshot(t0) {
		if len(b.Nodes) < b.Capacity {
			want = append(want, i)
		}
	}
	if !slices.Contains(want, 1) || slices.Contains(want, 0) {
		t.Fatalf("setup: buckets with room %v, want 1 among them and not 0", want)
	}
	var got []int
	for _, target := range tb.FillTargets(MaxBuckets) {
		got = append(got, min(CommonPrefixLen(self, target), nb-1))
	}
	if !slices.Equal(got, want) {
		t.Errorf("fill targets in buckets %v, want %v", got, want)
	}
	// Up to bucket 2 only: the deeper ones are left out.
	if got := len(tb.FillTargets(2)); got != len(slices.DeleteFunc(slices.Clone(want), func(i int) bool { return i > 2 })) {
		t.Errorf("FillTargets(2): %d targets, want those of %v up to bucket 2", got, want)
	}
}

func TestQuestionableOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(24, 25))
	tb, far := farBucketTable(t, r)
	got := tb.Questionable(t0.Add(20*time.Minute), 3)
	if !slices.Equal(got, far[:3]) {
		t.Errorf("Questionable = %v, want far[0..2]", got)
	}
	if got := tb.Questionable(t0.Add(time.Minute), 0); len(got) != 0 {
		t.Errorf("fresh table: %d questionable", len(got))
	}
}

func TestRemoveAndNodes(t *testing.T) {
	r := rand.New(rand.NewPCG(26, 27))
	tb := NewTable(randID(r), Config{FixedBuckets: true})
	a, b := ni(randID(r), 1), ni(randID(r), 2)
	tb.Responded(a, t0, 0)
	tb.Responded(b, t0, 0)
	tb.Remove(a.ID)
	tb.Remove(randID(r)) // unknown: no-op
	if got := tb.Nodes(); !slices.Equal(got, []krpc.NodeInfo{b}) {
		t.Errorf("Nodes = %v", got)
	}
	checkInvariants(t, tb)
}

func TestSnapshotJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(28, 29))
	tb, far := farBucketTable(t, r)
	tb.Heard(ni(idWithPrefix(r, tb.Self(), 0), 50), t0)
	snap := tb.Snapshot(t0.Add(20 * time.Minute))
	if len(snap) != 2 || !snap[1].Last || snap[0].Last {
		t.Fatalf("snapshot shape: %+v", snap)
	}
	if s := snap[0].Nodes[0]; s.ID != far[0].ID.String() || s.State != "questionable" || !s.Confirmed {
		t.Errorf("node snapshot = %+v", s)
	}
	if s := snap[0].Replacements; len(s) != 1 || s[0].Confirmed {
		t.Errorf("replacements = %+v", s)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	for _, want := range []string{`"state":"good"`, `"state":"questionable"`, `"replacements":[`, `"rtt_ns":0`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s", want)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	r := rand.New(rand.NewPCG(30, 31))
	tb := NewTable(randID(r), Config{})
	ids := make([]krpc.ID, 2000)
	for i := range ids {
		ids[i] = randID(r)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < len(ids); i += 8 {
				now := t0.Add(time.Duration(i) * time.Second)
				n := ni(ids[i], i)
				switch i % 4 {
				case 0, 1:
					tb.Responded(n, now, time.Millisecond)
				case 2:
					tb.Heard(n, now)
				case 3:
					tb.Failed(testAddr(i-3), now)
				}
				tb.Closest(ids[i], 8)
				if i%50 == 0 {
					tb.Snapshot(now)
					tb.RefreshTargets(now, 0)
					tb.Questionable(now, 4)
					tb.Counts(now)
				}
			}
		})
	}
	wg.Wait()
	checkInvariants(t, tb)
}

func BenchmarkTableInsert(b *testing.B) {
	r := rand.New(rand.NewPCG(32, 33))
	nodes := make([]krpc.NodeInfo, 1<<16)
	for i := range nodes {
		nodes[i] = ni(randID(r), i)
	}
	tb := NewTable(randID(r), Config{FixedBuckets: true})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%len(nodes) == 0 && i > 0 {
			tb = NewTable(tb.Self(), Config{FixedBuckets: true})
		}
		tb.Responded(nodes[i%len(nodes)], t0, time.Millisecond)
	}
}

// BenchmarkClosest: a find_node answer's lookup of the table, in fixed
// tables of K = 8 and 64 and in the default extended table, each offered
// 20,000 random responders.
func BenchmarkClosest(b *testing.B) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"K=8", Config{FixedBuckets: true, K: 8}},
		{"K=64", Config{FixedBuckets: true, K: 64}},
		{"extended", Config{}},
	} {
		r := rand.New(rand.NewPCG(34, uint64(max(c.cfg.K, DefaultK))))
		tb := NewTable(randID(r), c.cfg)
		for i := range 20000 {
			tb.Responded(ni(randID(r), i), t0, 0)
		}
		targets := make([]krpc.ID, 256)
		for i := range targets {
			targets[i] = randID(r)
		}
		b.Run(c.name+"/live="+strconv.Itoa(tb.Len()), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tb.Closest(targets[i%len(targets)], 8)
				i++
			}
		})
	}
}

// TestExtendedBuckets: by default the two farthest buckets, once split
// off, hold 16 and 8 times K (libtorrent's extended routing table), and
// every other but the last 4K; the last bucket holds K and splits as BEP 5
// has it; FixedBuckets gives K everywhere.
func TestExtendedBuckets(t *testing.T) {
	for _, fixed := range []bool{false, true} {
		r := rand.New(rand.NewPCG(40, 41))
		tb := NewTable(randID(r), Config{FixedBuckets: fixed})
		// 300 nodes for each of the first 8 buckets: more than any holds.
		for cpl := range 8 {
			for i := range 300 {
				tb.Responded(ni(idWithPrefix(r, tb.Self(), cpl), cpl*1000+i), t0, 0)
			}
		}
		checkInvariants(t, tb)
		snap := tb.Snapshot(t0)
		want := []int{128, 64, 32, 32, 32, 32, 32}
		if fixed {
			want = []int{8, 8, 8, 8, 8, 8, 8}
		}
		for i, w := range want {
			if got := len(snap[i].Nodes); got != w || snap[i].Capacity != w {
				t.Errorf("fixed=%v: bucket %d holds %d nodes, capacity %d; want %d", fixed, i, got, snap[i].Capacity, w)
			}
		}
		if last := snap[len(snap)-1]; !last.Last || last.Capacity != 8 || len(last.Nodes) > 8 {
			t.Errorf("fixed=%v: last bucket %d holds %d, capacity %d; want at most K=8", fixed, last.Index, len(last.Nodes), last.Capacity)
		}
	}
}

// Questionable with a small limit selects the least recently seen nodes
// without sorting every questionable node: it must return the prefix of
// the full, sorted list, ties (several nodes last seen at the same time)
// included.
func TestQuestionableLimitIsPrefix(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	tb := NewTable(randID(r), Config{})
	for i := range 300 {
		// Answers spread over a few distinct minutes, so many tie.
		at := t0.Add(time.Duration(r.IntN(5)) * time.Minute)
		tb.Responded(ni(randID(r), i), at, time.Millisecond)
	}
	now := t0.Add(30 * time.Minute)
	all := tb.Questionable(now, 0)
	if len(all) < 20 {
		t.Fatalf("only %d questionable nodes", len(all))
	}
	for _, limit := range []int{1, 2, 3, 8, 9} {
		if got := tb.Questionable(now, limit); !slices.Equal(got, all[:limit]) {
			t.Errorf("limit %d: %v, want %v", limit, got, all[:limit])
		}
	}
}

// WantsNamed: a node that an answer named is wanted only if it falls in
// one of the deepest buckets, only if that bucket would take it, and only
// if the table does not know it; asking records nothing.
func TestWantsNamed(t *testing.T) {
	r := rand.New(rand.NewPCG(50, 51))
	tb := NewTable(randID(r), Config{})
	// Buckets 1 to 11 full of good nodes, 5 nodes in bucket 0 (it holds
	// 128), nothing deeper than bucket 11: the last bucket, 12, is empty.
	for cpl := range 12 {
		count := 300
		if cpl == 0 {
			count = 5
		}
		for i := range count {
			tb.Responded(ni(idWithPrefix(r, tb.Self(), cpl), cpl*1000+i), t0, 0)
		}
	}
	nb := tb.NumBuckets()
	if nb != 13 {
		t.Fatalf("%d buckets, want 13", nb)
	}
	live, repl := tb.Len(), tb.Replacements()
	known := tb.Nodes()[0]
	for _, tc := range []struct {
		name string
		n    krpc.NodeInfo
		deep int
		want bool
	}{
		{"deepest bucket, room", ni(idWithPrefix(r, tb.Self(), 40), 90001), 1, true},
		{"deepest bucket, none wanted", ni(idWithPrefix(r, tb.Self(), 40), 90002), 0, false},
		{"full bucket of good nodes", ni(idWithPrefix(r, tb.Self(), 11), 90003), nb, false},
		{"room, but too far", ni(idWithPrefix(r, tb.Self(), 0), 90004), 6, false},
		{"room, all buckets deep", ni(idWithPrefix(r, tb.Self(), 0), 90005), nb, true},
		{"known id", krpc.NodeInfo{ID: known.ID, Addr: testAddr(90006)}, nb, false},
		{"known address", krpc.NodeInfo{ID: idWithPrefix(r, tb.Self(), 0), Addr: known.Addr}, nb, false},
		{"our own id", ni(tb.Self(), 90007), nb, false},
	} {
		if got := tb.WantsNamed(tc.n, tc.deep, t0); got != tc.want {
			t.Errorf("%s: WantsNamed = %v, want %v", tc.name, got, tc.want)
		}
	}
	if tb.Len() != live || tb.Replacements() != repl {
		t.Errorf("WantsNamed changed the table: %d live and %d cached, was %d and %d", tb.Len(), tb.Replacements(), live, repl)
	}
	checkInvariants(t, tb)
}
