package storage

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// quotaNet returns an address in network n (10.n.0.0/24), host h.
func quotaNet(n, h int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(n), 0, byte(h)}) }

// checkGroups verifies that every group heap is ordered, its indices are
// right, and its count matches what it is charged with.
func checkGroups[T member](t testing.TB, gs *groups[T], total int) {
	t.Helper()
	n := 0
	for k, g := range gs.byKey {
		if g.key != k || gs.order[g.idx] != g || len(g.members) == 0 {
			t.Fatalf("group %x: bad key, index or empty", uint64(k))
		}
		for i, m := range g.members {
			if int(m.use().gidx) != i {
				t.Fatalf("group %x: member %d has index %d", uint64(k), i, m.use().gidx)
			}
			if i > 0 && m.use().evictsBefore(g.members[(i-1)/2].use()) {
				t.Fatalf("group %x: heap order broken at %d", uint64(k), i)
			}
		}
		n += len(g.members)
	}
	if n != total || len(gs.order) != len(gs.byKey) {
		t.Fatalf("groups hold %d entries in %d groups (%d ordered), want %d entries", n, len(gs.byKey), len(gs.order), total)
	}
}

// checkItemInvariants verifies the item store's bookkeeping.
func checkItemInvariants(t testing.TB, s *ItemStore) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	checkGroups(t, &s.bySource, len(s.items))
	for _, e := range s.items {
		if s.bySource.byKey[e.src] == nil || s.bySource.byKey[e.src].members[e.u.gidx] != e {
			t.Fatalf("item %s not in its group", e.target)
		}
	}
	if len(s.items) > s.cfg.MaxItems || s.stats.Bytes > s.cfg.MaxBytes {
		t.Fatalf("store over its bounds: %d items, %d bytes", len(s.items), s.stats.Bytes)
	}
}

func TestSourceOf(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"10.1.2.3", "10.1.2.250", true},
		{"10.1.2.3", "10.1.3.3", false},
		{"10.1.2.3", "::ffff:10.1.2.9", true},
		{"2001:db8:1::1", "2001:db8:1:ffff::2", true},
		{"2001:db8:1::1", "2001:db8:2::1", false},
		{"0.0.0.1", "::1", false},
	}
	for _, tt := range tests {
		a, b := netip.MustParseAddr(tt.a), netip.MustParseAddr(tt.b)
		if got := sourceOf(a) == sourceOf(b); got != tt.same {
			t.Errorf("same network(%s, %s) = %v, want %v", a, b, got, tt.same)
		}
	}
	if sourceOf(netip.Addr{}) != 0 || sourceOf(netip.MustParseAddr("10.0.0.0")) == 0 {
		t.Error("only an invalid address has the unknown key")
	}
}

// quotaStep is one event of an eviction-order scenario, a second after the
// previous one.
type quotaStep struct {
	op   byte // 'p' put from net, 'u' put of unknown origin, 'r' read from net
	net  int
	item int
}

func TestItemEvictionOrder(t *testing.T) {
	items := make([]Item, 6)
	for i := range items {
		items[i] = itemImmutable(fmt.Sprintf("order-%d", i))
	}
	p := func(net, item int) quotaStep { return quotaStep{'p', net, item} }
	r := func(net, item int) quotaStep { return quotaStep{'r', net, item} }
	u := func(item int) quotaStep { return quotaStep{'u', 0, item} }
	tests := []struct {
		name    string
		steps   []quotaStep
		last    quotaStep // the put whose outcome is checked
		wantErr error
		want    []int // items stored afterwards
	}{
		{"one network full: newcomer refused",
			[]quotaStep{p(1, 0), p(1, 1), p(1, 2), p(1, 3)}, p(1, 4), ErrStoreFull, []int{0, 1, 2, 3}},
		{"newcomer evicts the newest of the largest network",
			[]quotaStep{p(1, 0), p(1, 1), p(1, 2), p(2, 3)}, p(3, 4), nil, []int{0, 1, 3, 4}},
		{"a read by another network protects",
			[]quotaStep{p(1, 0), p(1, 1), p(1, 2), p(2, 3), r(2, 2)}, p(3, 4), nil, []int{0, 2, 3, 4}},
		{"a read by the same network does not protect",
			[]quotaStep{p(1, 0), p(1, 1), p(1, 2), p(2, 3), r(1, 2)}, p(3, 4), nil, []int{0, 1, 3, 4}},
		{"a re-put protects",
			[]quotaStep{p(1, 0), p(1, 1), p(1, 2), p(2, 3), p(1, 2)}, p(3, 4), nil, []int{0, 2, 3, 4}},
		{"a re-put from another network protects and keeps the charge",
			[]quotaStep{p(1, 0), p(1, 1), p(1, 2), p(2, 3), p(2, 2)}, p(3, 4), nil, []int{0, 2, 3, 4}},
		{"referenced: least recently referenced first",
			[]quotaStep{p(1, 0), p(1, 1), p(1, 2), p(2, 3), r(2, 1), r(2, 2), r(2, 0)}, p(3, 4), nil, []int{0, 2, 3, 4}},
		{"equal shares: refused",
			[]quotaStep{p(1, 0), p(1, 1), p(2, 2), p(2, 3)}, p(1, 4), ErrStoreFull, []int{0, 1, 2, 3}},
		{"the largest network cannot displace a smaller one",
			[]quotaStep{p(1, 0), p(2, 1), p(2, 2), p(2, 3)}, p(2, 4), ErrStoreFull, []int{0, 1, 2, 3}},
		{"unknown origin is one network",
			[]quotaStep{u(0), u(1), u(2), p(1, 3)}, p(2, 4), nil, []int{0, 1, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewItemStore(krpc.ID{}, ItemConfig{MaxItems: 4, MaxPerSource: -1})
			do := func(i int, st quotaStep) error {
				now := itemT0.Add(time.Duration(i) * time.Second)
				switch st.op {
				case 'p':
					return s.PutFrom(items[st.item], nil, quotaNet(st.net, i+1), now)
				case 'u':
					return s.Put(items[st.item], nil, now)
				}
				if _, ok := s.GetFrom(items[st.item].Target(), quotaNet(st.net, 200), now); !ok {
					t.Fatalf("step %d: item %d not stored", i, st.item)
				}
				return nil
			}
			for i, st := range tt.steps {
				if err := do(i, st); err != nil {
					t.Fatalf("step %d %+v: %v", i, st, err)
				}
			}
			if err := do(len(tt.steps), tt.last); !errors.Is(err, tt.wantErr) || (err != nil && tt.wantErr == nil) {
				t.Fatalf("last put = %v, want %v", err, tt.wantErr)
			}
			var got []int
			for i, it := range items {
				if _, ok := s.Get(it.Target(), itemT0); ok {
					got = append(got, i)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("stored %v, want %v", got, tt.want)
			}
			checkItemInvariants(t, s)
		})
	}
}

func TestItemQuota(t *testing.T) {
	loop1, loop2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	v6a, v6b := netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:1:ffff::2")
	type put struct {
		from    netip.Addr
		item    int
		wantErr error
	}
	tests := []struct {
		name string
		cfg  ItemConfig
		puts []put
	}{
		{"per /24", ItemConfig{MaxPerSource: 2}, []put{
			{quotaNet(1, 1), 0, nil}, {quotaNet(1, 2), 1, nil}, {quotaNet(1, 3), 2, ErrQuota},
			{quotaNet(1, 3), 0, nil}, // a re-put adds nothing
			{quotaNet(2, 1), 2, nil},
		}},
		{"per /48", ItemConfig{MaxPerSource: 1}, []put{{v6a, 0, nil}, {v6b, 1, ErrQuota}}},
		{"default share", ItemConfig{MaxItems: 100}, []put{{quotaNet(1, 1), 0, nil}, {quotaNet(1, 1), 1, nil}, {quotaNet(1, 1), 2, ErrQuota}}},
		{"disabled", ItemConfig{MaxItems: 100, MaxPerSource: -1}, []put{{quotaNet(1, 1), 0, nil}, {quotaNet(1, 1), 1, nil}, {quotaNet(1, 1), 2, nil}}},
		{"loopback exempt", ItemConfig{MaxPerSource: 1}, []put{{loop1, 0, nil}, {loop1, 1, nil}, {loop2, 2, nil}}},
		{"loopback limited", ItemConfig{MaxPerSource: 1, LimitLoopback: true}, []put{{loop1, 0, nil}, {loop2, 1, ErrQuota}}},
		{"unknown origin exempt", ItemConfig{MaxPerSource: 1}, []put{{netip.Addr{}, 0, nil}, {netip.Addr{}, 1, nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewItemStore(krpc.ID{}, tt.cfg)
			var refused uint64
			for i, p := range tt.puts {
				err := s.PutFrom(itemImmutable(fmt.Sprint("quota-", p.item)), nil, p.from, itemT0)
				if !errors.Is(err, p.wantErr) || (err != nil && p.wantErr == nil) {
					t.Fatalf("put %d from %s = %v, want %v", i, p.from, err, p.wantErr)
				}
				if p.wantErr != nil {
					refused++
				}
			}
			if st := s.Stats(); st.RejectedQuota != refused {
				t.Errorf("RejectedQuota = %d, want %d", st.RejectedQuota, refused)
			}
			checkItemInvariants(t, s)
		})
	}
}

// TestItemRandomOps runs a random mix of puts, updates, reads, restores
// and expiry from a few networks under tight bounds and checks the item
// store's bookkeeping after each, and that every eviction is reported.
func TestItemRandomOps(t *testing.T) {
	r := peerRand(11)
	s := NewItemStore(krpc.ID{0x33}, ItemConfig{TTL: 10 * time.Minute, MaxItems: 16, MaxBytes: 16 * 40, MaxPerSource: 3})
	var reported uint64
	s.SetOnRemove(func(krpc.ID) { reported++ })
	keys := []ed25519.PrivateKey{itemTestKey(1), itemTestKey(2), itemTestKey(3)}
	from := func() netip.Addr {
		switch n := r.IntN(8); n {
		case 6:
			return netip.MustParseAddr("127.0.0.1")
		case 7:
			return netip.MustParseAddr("2001:db8:5::1")
		default:
			return quotaNet(n, 1+r.IntN(3))
		}
	}
	now := itemT0
	seq := int64(0)
	for step := range 4000 {
		now = now.Add(time.Duration(r.IntN(3)) * time.Second)
		switch op := r.IntN(10); {
		case op < 5:
			_ = s.PutFrom(itemImmutable(fmt.Sprintf("v%07d", r.IntN(60))), nil, from(), now)
		case op < 7:
			seq++
			n := 1 + r.IntN(200) // sizes that make the byte bound bite
			v := fmt.Sprintf("%d:%s", n, strings.Repeat("m", n))
			_ = s.PutFrom(itemMutable(keys[r.IntN(len(keys))], "", seq, v), nil, from(), now)
		case op < 9:
			s.GetFrom(itemImmutable(fmt.Sprintf("v%07d", r.IntN(60))).Target(), from(), now)
		default:
			if r.IntN(4) == 0 {
				s.Expire(now)
			} else {
				_ = s.Restore(itemImmutable(fmt.Sprintf("v%07d", r.IntN(60))), netip.Addr{}, now.Add(time.Duration(r.IntN(600))*time.Second), now)
			}
		}
		checkItemInvariants(t, s)
		if t.Failed() {
			t.Fatalf("after step %d", step)
		}
	}
	st := s.Stats()
	if st.Evicted == 0 || st.RejectedFull == 0 || st.RejectedQuota == 0 || st.Expired == 0 || st.Updated == 0 {
		t.Errorf("Stats = %+v: some path was not exercised", st)
	}
	if reported != st.Evicted {
		t.Errorf("%d evictions reported, %d counted", reported, st.Evicted)
	}
}
