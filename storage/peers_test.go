package storage

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/dhtd/dhtd/krpc"
)

// peer4 returns a distinct IPv4 peer address for each i < 2^24.
func peerAddr4(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1000+i%60000))
}

// peer6 returns a distinct IPv6 peer address for each i.
func peerAddr6(i int) netip.AddrPort {
	b := [16]byte{0x20, 0x01, 0x0d, 0xb8}
	b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return netip.AddrPortFrom(netip.AddrFrom16(b), uint16(1000+i%60000))
}

func peerRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// peerCheckInvariants verifies the store's internal consistency and bounds.
func peerCheckInvariants(t testing.TB, s *PeerStore) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var peers int
	var bytes int64
	if len(s.swarms) != len(s.order.s) {
		t.Fatalf("%d swarms in the map, %d in the heap", len(s.swarms), len(s.order.s))
	}
	for i, sw := range s.order.s {
		if int(sw.pos) != i {
			t.Fatalf("swarm %x at heap index %d records pos %d", sw.ih[:2], i, sw.pos)
		}
		if s.swarms[sw.ih] != sw {
			t.Fatalf("swarm %x in the heap but not the map", sw.ih[:2])
		}
		if i > 0 && s.order.farther(sw.ih, s.order.s[(i-1)/2].ih) {
			t.Fatalf("heap order broken at index %d", i)
		}
		if len(sw.v4)+len(sw.v6) == 0 {
			t.Fatalf("empty swarm %x kept", sw.ih[:2])
		}
		if len(sw.v4) > s.cfg.MaxPeersPerInfohash || len(sw.v6) > s.cfg.MaxPeersPerInfohash {
			t.Fatalf("swarm %x holds %d+%d peers, bound %d", sw.ih[:2], len(sw.v4), len(sw.v6), s.cfg.MaxPeersPerInfohash)
		}
		peerCheckList(t, sw, sw.v4)
		peerCheckList(t, sw, sw.v6)
		peers += len(sw.v4) + len(sw.v6)
		bytes += InfohashCost + PeerCost4*int64(len(sw.v4)) + PeerCost6*int64(len(sw.v6))
	}
	if peers != s.peers || bytes != s.bytes {
		t.Fatalf("accounted %d peers, %d bytes; counted %d, %d", s.peers, s.bytes, peers, bytes)
	}
	checkGroups(t, &s.bySource, len(s.swarms))
	entries := map[sourceKey]int32{}
	for _, sw := range s.swarms {
		if g := s.bySource.byKey[sw.src]; g == nil || g.members[sw.u.gidx] != sw {
			t.Fatalf("swarm %x not in its group", sw.ih[:2])
		}
		for _, p := range sw.v4 {
			entries[p.ip.src()]++
		}
		for _, p := range sw.v6 {
			entries[p.ip.src()]++
		}
	}
	if !maps.Equal(entries, s.entries) {
		t.Fatalf("entries per network %v, counted %v", s.entries, entries)
	}
	if s.bytes > s.cfg.MaxBytes || len(s.swarms) > s.cfg.MaxInfohashes {
		t.Fatalf("bounds exceeded: %d bytes (max %d), %d infohashes (max %d)", s.bytes, s.cfg.MaxBytes, len(s.swarms), s.cfg.MaxInfohashes)
	}
}

func peerCheckList[K ipKey[K]](t testing.TB, sw *swarm, l peerList[K]) {
	t.Helper()
	for i, p := range l {
		if i > 0 && l[i-1].ip.compare(p.ip) >= 0 {
			t.Fatalf("swarm %x: peers not sorted and unique at %d", sw.ih[:2], i)
		}
		if p.last < sw.oldest || p.last > sw.newest {
			t.Fatalf("swarm %x: peer time %d outside [%d, %d]", sw.ih[:2], p.last, sw.oldest, sw.newest)
		}
	}
}

// peerByDistance orders ids by XOR distance from self, nearest first.
func peerByDistance(self krpc.ID) func(a, b krpc.ID) int {
	return func(a, b krpc.ID) int {
		da, db := a.Xor(self), b.Xor(self)
		return bytes.Compare(da[:], db[:])
	}
}

func peerSortedAddrs(a []netip.AddrPort) []netip.AddrPort {
	a = slices.Clone(a)
	slices.SortFunc(a, netip.AddrPort.Compare)
	return a
}

func TestPeerConfigDefaults(t *testing.T) {
	got := NewPeerStore(krpc.ID{}, PeerConfig{MaxInfohashes: -1, MaxPeersPerInfohash: 7}).Config()
	want := PeerConfig{TTL: 30 * time.Minute, MaxInfohashes: 10000, MaxPeersPerInfohash: 7, MaxBytes: 64 << 20, MaxPerSource: 200}
	if got != want {
		t.Errorf("Config = %+v, want %+v", got, want)
	}
}

func TestPeerEntrySize(t *testing.T) {
	if got := unsafe.Sizeof(peerEntry[key4]{}); got != 16 {
		t.Errorf("IPv4 entry is %d bytes, want 16", got)
	}
	if got := unsafe.Sizeof(peerEntry[key6]{}); got != 32 {
		t.Errorf("IPv6 entry is %d bytes, want 32", got)
	}
	// InfohashCost covers the header, a map entry and two heap slots.
	if got := unsafe.Sizeof(swarm{}); got > 152 {
		t.Errorf("swarm header is %d bytes, want at most 152", got)
	}
}

func TestPeerExpiry(t *testing.T) {
	ih := storeID(1)
	tests := []struct {
		name  string
		ttl   time.Duration
		at    time.Duration
		alive bool
	}{
		{"fresh", 0, 0, true},
		{"just before default TTL", 0, 30*time.Minute - time.Nanosecond, true},
		{"at default TTL", 0, 30 * time.Minute, false},
		{"long after", 0, 48 * time.Hour, false},
		{"custom TTL, before", 45 * time.Minute, 44 * time.Minute, true},
		{"custom TTL, at", 45 * time.Minute, 45 * time.Minute, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewPeerStore(krpc.ID{}, PeerConfig{TTL: tc.ttl})
			s.Announce(ih, peerAddr4(1), false, storeT0)
			s.Announce(ih, peerAddr6(1), true, storeT0)
			now := storeT0.Add(tc.at)
			got4 := s.Peers(ih, false, 10, now, nil)
			got6 := s.Peers(ih, true, 10, now, nil)
			seeds, leechers := s.Counts(ih, now)
			var each int
			s.Each(ih, now, func(netip.AddrPort, bool) { each++ })
			alive := len(got4) == 1 && len(got6) == 1 && seeds == 1 && leechers == 1 && each == 2
			dead := len(got4) == 0 && len(got6) == 0 && seeds == 0 && leechers == 0 && each == 0
			if tc.alive && !alive || !tc.alive && !dead {
				t.Fatalf("alive=%v: Peers %v %v, Counts %d/%d, Each %d", tc.alive, got4, got6, seeds, leechers, each)
			}
			st := s.Stats()
			if !tc.alive && (st.Expired != 2 || st.Peers != 0 || st.Infohashes != 0 || st.Bytes != 0) {
				t.Errorf("after expiry Stats = %+v, want 2 expired and an empty store", st)
			}
			peerCheckInvariants(t, s)
		})
	}
}

func TestPeerExpireRemovesOnlyExpired(t *testing.T) {
	s := NewPeerStore(krpc.ID{}, PeerConfig{})
	for i := range 10 {
		s.Announce(storeID(byte(i)), peerAddr4(i), false, storeT0)
		s.Announce(storeID(byte(i)), peerAddr4(100+i), false, storeT0.Add(time.Duration(i)*time.Minute))
	}
	s.Expire(storeT0.Add(DefaultPeerTTL + 4*time.Minute + time.Second)) // keeps the second peer of i >= 5
	peerCheckInvariants(t, s)
	st := s.Stats()
	if st.Peers != 5 || st.Infohashes != 5 || st.Expired != 15 {
		t.Errorf("Stats = %+v, want 5 peers in 5 infohashes, 15 expired", st)
	}
	for i := range 10 {
		got := s.Peers(storeID(byte(i)), false, 10, storeT0.Add(DefaultPeerTTL+4*time.Minute+time.Second), nil)
		if want := i >= 5; (len(got) == 1 && got[0] == peerAddr4(100+i)) != want {
			t.Errorf("infohash %d: Peers = %v, want kept=%v", i, got, want)
		}
	}
}

func TestPeerReannounce(t *testing.T) {
	ih := storeID(2)
	s := NewPeerStore(krpc.ID{}, PeerConfig{})
	first := netip.MustParseAddrPort("192.0.2.1:1000")
	moved := netip.MustParseAddrPort("192.0.2.1:2000")
	s.Announce(ih, first, false, storeT0)
	s.Announce(ih, moved, true, storeT0.Add(20*time.Minute)) // same IP: update in place (BEP 33)
	s.Announce(ih, netip.MustParseAddrPort("[::ffff:192.0.2.1]:3000"), true, storeT0.Add(21*time.Minute))
	now := storeT0.Add(40 * time.Minute) // past the first announce's TTL
	if got, want := s.Peers(ih, false, 10, now, nil), []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:3000")}; !slices.Equal(got, want) {
		t.Errorf("Peers = %v, want %v", got, want)
	}
	if seeds, leechers := s.Counts(ih, now); seeds != 1 || leechers != 0 {
		t.Errorf("Counts = %d seeds, %d leechers; want 1, 0", seeds, leechers)
	}
	st := s.Stats()
	if st.Peers != 1 || st.Announces != 1 || st.Refreshes != 2 || st.Expired != 0 {
		t.Errorf("Stats = %+v, want 1 peer, 1 announce, 2 refreshes", st)
	}
	if got := s.Peers(ih, false, 10, storeT0.Add(51*time.Minute), nil); len(got) != 0 {
		t.Errorf("Peers 30 min after the last announce = %v, want none", got)
	}
	peerCheckInvariants(t, s)
}

func TestPeerPerInfohashBound(t *testing.T) {
	ih := storeID(3)
	tests := []struct {
		name    string
		ops     []int // announce peerAddr4(i) at storeT0+k seconds for the k-th op
		ops6    int   // then this many IPv6 peers
		want    []int // peer4 indices kept
		evicted uint64
	}{
		{"under the bound", []int{1, 2, 3}, 0, []int{1, 2, 3}, 0},
		{"oldest evicted", []int{1, 2, 3, 4}, 0, []int{2, 3, 4}, 1},
		{"refresh saves the oldest", []int{1, 2, 3, 1, 4}, 0, []int{1, 3, 4}, 1},
		{"rolling", []int{1, 2, 3, 4, 5, 6, 7}, 0, []int{5, 6, 7}, 4},
		{"IPv6 has its own bound", []int{1, 2, 3}, 3, []int{1, 2, 3}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewPeerStore(krpc.ID{}, PeerConfig{MaxPeersPerInfohash: 3})
			now := storeT0
			for _, i := range tc.ops {
				now = now.Add(time.Second)
				s.Announce(ih, peerAddr4(i), false, now)
			}
			for i := range tc.ops6 {
				now = now.Add(time.Second)
				s.Announce(ih, peerAddr6(i), false, now)
			}
			var want []netip.AddrPort
			for _, i := range tc.want {
				want = append(want, peerAddr4(i))
			}
			if got := peerSortedAddrs(s.Peers(ih, false, 100, now, nil)); !slices.Equal(got, want) {
				t.Errorf("IPv4 peers = %v, want %v", got, want)
			}
			if got := len(s.Peers(ih, true, 100, now, nil)); got != tc.ops6 {
				t.Errorf("%d IPv6 peers, want %d", got, tc.ops6)
			}
			if got := s.Stats().EvictedPeers; got != tc.evicted {
				t.Errorf("EvictedPeers = %d, want %d", got, tc.evicted)
			}
			peerCheckInvariants(t, s)
		})
	}
}

func TestPeerInfohashBound(t *testing.T) {
	ih := func(i int) krpc.ID { return storeID(0x10 + byte(i)) }
	// Announces (and get_peers reads) from network n, one a second.
	type step struct {
		read    bool
		net, ih int
	}
	a := func(net, i int) step { return step{false, net, i} }
	r := func(net, i int) step { return step{true, net, i} }
	tests := []struct {
		name    string
		steps   []step
		want    []int // infohashes kept
		evicted uint64
		refused uint64
	}{
		{"under the bound", []step{a(1, 0), a(1, 1)}, []int{0, 1}, 0, 0},
		{"one network full: refused", []step{a(1, 0), a(1, 1), a(1, 2), a(1, 3), a(1, 4)}, []int{0, 1, 2, 3}, 0, 1},
		{"newcomer evicts the newest of the largest network",
			[]step{a(1, 0), a(1, 1), a(1, 2), a(2, 3), a(3, 4)}, []int{0, 1, 3, 4}, 1, 0},
		{"a get_peers from another network protects",
			[]step{a(1, 0), a(1, 1), a(1, 2), a(2, 3), r(2, 2), a(3, 4)}, []int{0, 2, 3, 4}, 1, 0},
		{"a get_peers from the same network does not protect",
			[]step{a(1, 0), a(1, 1), a(1, 2), a(2, 3), r(1, 2), a(3, 4)}, []int{0, 1, 3, 4}, 1, 0},
		{"a re-announce protects",
			[]step{a(1, 0), a(1, 1), a(1, 2), a(2, 3), a(1, 2), a(3, 4)}, []int{0, 2, 3, 4}, 1, 0},
		{"a peer of another network joining protects",
			[]step{a(1, 0), a(1, 1), a(1, 2), a(2, 3), a(3, 2), a(4, 4)}, []int{0, 2, 3, 4}, 1, 0},
		{"flood cannot displace smaller networks",
			[]step{a(1, 0), a(2, 1), a(3, 2), a(3, 3), a(3, 4), a(3, 5), a(4, 6)}, []int{0, 1, 2, 6}, 1, 2},
		{"re-announce when full", []step{a(1, 0), a(2, 1), a(3, 2), a(4, 3), a(1, 0)}, []int{0, 1, 2, 3}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewPeerStore(krpc.ID{}, PeerConfig{MaxInfohashes: 4, MaxPerSource: -1})
			for i, st := range tc.steps {
				now := storeT0.Add(time.Duration(i) * time.Second)
				if st.read {
					if len(s.PeersFrom(quotaNet(st.net, 200), ih(st.ih), false, 10, now, nil)) == 0 {
						t.Fatalf("step %d: infohash %d not stored", i, st.ih)
					}
					continue
				}
				s.Announce(ih(st.ih), netip.AddrPortFrom(quotaNet(st.net, 1), 1000), false, now)
			}
			got := s.Infohashes(10, storeT0, peerRand(1))
			slices.SortFunc(got, func(a, b krpc.ID) int { return bytes.Compare(a[:], b[:]) })
			var want []krpc.ID
			for _, i := range tc.want {
				want = append(want, ih(i))
			}
			if !slices.Equal(got, want) {
				t.Errorf("Infohashes = %v, want %v", got, want)
			}
			st := s.Stats()
			if st.EvictedInfohashes != tc.evicted || st.RefusedInfohashes != tc.refused {
				t.Errorf("Stats = %+v, want %d evicted, %d refused infohashes", st, tc.evicted, tc.refused)
			}
			peerCheckInvariants(t, s)
		})
	}
}

func TestPeerByteBudget(t *testing.T) {
	far, near, other := storeID(0x80), storeID(0x01), storeID(0x02)
	mine := func(i int) netip.AddrPort { return peerAddr4(i) }               // 10.0.0.0/24
	theirs := netip.AddrPortFrom(netip.MustParseAddr("10.9.0.1"), 999)       // another /24
	theirs6 := netip.AddrPortFrom(netip.MustParseAddr("2001:db8:9::1"), 999) // another /48
	tests := []struct {
		name  string
		ih    krpc.ID
		peer  netip.AddrPort
		want  map[krpc.ID][]netip.AddrPort // IPv4 peers kept
		want6 int                          // IPv6 peers kept
		stats PeerStats
	}{
		{
			name: "another network's peer evicts the other infohash",
			ih:   near, peer: theirs,
			want:  map[krpc.ID][]netip.AddrPort{near: {mine(2), mine(3), theirs}},
			stats: PeerStats{EvictedInfohashes: 1},
		},
		{
			name: "another network's infohash evicts the newest",
			ih:   other, peer: theirs,
			want:  map[krpc.ID][]netip.AddrPort{far: {mine(0), mine(1)}, other: {theirs}},
			stats: PeerStats{EvictedInfohashes: 1},
		},
		{
			name: "same network replaces its own oldest peer",
			ih:   far, peer: mine(4),
			want:  map[krpc.ID][]netip.AddrPort{far: {mine(1), mine(4)}, near: {mine(2), mine(3)}},
			stats: PeerStats{EvictedPeersBytes: 1},
		},
		{
			name: "same network's new infohash refused",
			ih:   other, peer: mine(4),
			want:  map[krpc.ID][]netip.AddrPort{far: {mine(0), mine(1)}, near: {mine(2), mine(3)}},
			stats: PeerStats{RefusedBytes: 1},
		},
		{
			name: "IPv6 peer of another network evicts the other infohash",
			ih:   far, peer: theirs6,
			want:  map[krpc.ID][]netip.AddrPort{far: {mine(0), mine(1)}},
			want6: 1,
			stats: PeerStats{EvictedInfohashes: 1},
		},
		{
			name: "refresh needs no room",
			ih:   far, peer: mine(0),
			want:  map[krpc.ID][]netip.AddrPort{far: {mine(0), mine(1)}, near: {mine(2), mine(3)}},
			stats: PeerStats{Refreshes: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewPeerStore(krpc.ID{}, PeerConfig{MaxBytes: 2*InfohashCost + 4*PeerCost4, MaxPerSource: -1})
			for i, ih := range []krpc.ID{far, far, near, near} {
				s.Announce(ih, mine(i), false, storeT0.Add(time.Duration(i)*time.Second))
			}
			before := s.Stats()
			if before.Bytes != s.Config().MaxBytes {
				t.Fatalf("setup: Bytes = %d, want the budget %d", before.Bytes, s.Config().MaxBytes)
			}
			now := storeT0.Add(time.Minute)
			s.Announce(tc.ih, tc.peer, false, now)
			peerCheckInvariants(t, s)
			for _, ih := range []krpc.ID{far, near, other} {
				want := peerSortedAddrs(tc.want[ih])
				if got := peerSortedAddrs(s.Peers(ih, false, 100, now, nil)); !slices.Equal(got, want) {
					t.Errorf("infohash %x: peers %v, want %v", ih[:1], got, want)
				}
			}
			if got := len(s.Peers(far, true, 100, now, nil)); got != tc.want6 {
				t.Errorf("IPv6 peers of far = %d, want %d", got, tc.want6)
			}
			st := s.Stats()
			got := PeerStats{
				Refreshes:         st.Refreshes - before.Refreshes,
				EvictedPeers:      st.EvictedPeers,
				EvictedPeersBytes: st.EvictedPeersBytes,
				EvictedInfohashes: st.EvictedInfohashes,
				RefusedBytes:      st.RefusedBytes,
			}
			if got != tc.stats {
				t.Errorf("counters %+v, want %+v", got, tc.stats)
			}
		})
	}
	t.Run("budget below one peer", func(t *testing.T) {
		s := NewPeerStore(krpc.ID{}, PeerConfig{MaxBytes: InfohashCost})
		s.Announce(near, peerAddr4(1), false, storeT0)
		if st := s.Stats(); st.RefusedBytes != 1 || st.Peers != 0 || st.Bytes != 0 {
			t.Errorf("Stats = %+v, want one refusal and nothing stored", st)
		}
	})
}

func TestPeerQuota(t *testing.T) {
	ih := func(i int) krpc.ID { return storeID(0x20 + byte(i)) }
	type ann struct {
		peer    string
		ih      int
		wantErr error
	}
	tests := []struct {
		name string
		cfg  PeerConfig
		anns []ann
	}{
		{"per /24 over infohashes", PeerConfig{MaxPerSource: 2}, []ann{
			{"10.1.0.1:1", 0, nil}, {"10.1.0.2:1", 1, nil}, {"10.1.0.3:1", 2, ErrQuota},
			{"10.1.0.3:1", 0, ErrQuota}, // a new entry in a stored infohash counts too
			{"10.1.0.1:2", 0, nil},      // a re-announce adds nothing
			{"10.2.0.1:1", 2, nil},
		}},
		{"per /48", PeerConfig{MaxPerSource: 1}, []ann{{"[2001:db8:1::1]:1", 0, nil}, {"[2001:db8:1:ffff::2]:1", 1, ErrQuota}}},
		{"default share", PeerConfig{MaxInfohashes: 100}, []ann{{"10.1.0.1:1", 0, nil}, {"10.1.0.1:1", 1, nil}, {"10.1.0.1:1", 2, ErrQuota}}},
		{"disabled", PeerConfig{MaxInfohashes: 100, MaxPerSource: -1}, []ann{{"10.1.0.1:1", 0, nil}, {"10.1.0.1:1", 1, nil}, {"10.1.0.1:1", 2, nil}}},
		{"loopback exempt", PeerConfig{MaxPerSource: 1}, []ann{{"127.0.0.1:1", 0, nil}, {"127.0.0.1:1", 1, nil}}},
		{"loopback limited", PeerConfig{MaxPerSource: 1, LimitLoopback: true}, []ann{{"127.0.0.1:1", 0, nil}, {"127.0.0.2:1", 1, ErrQuota}}},
		{"invalid", PeerConfig{}, []ann{{"10.1.0.1:0", 0, ErrInvalidPeer}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewPeerStore(krpc.ID{}, tt.cfg)
			var refused uint64
			for i, a := range tt.anns {
				err := s.Announce(ih(a.ih), netip.MustParseAddrPort(a.peer), false, storeT0)
				if !errors.Is(err, a.wantErr) || (err != nil && a.wantErr == nil) {
					t.Fatalf("announce %d %s = %v, want %v", i, a.peer, err, a.wantErr)
				}
				if errors.Is(err, ErrQuota) {
					refused++
				}
			}
			if st := s.Stats(); st.RefusedQuota != refused {
				t.Errorf("RefusedQuota = %d, want %d", st.RefusedQuota, refused)
			}
			peerCheckInvariants(t, s)
		})
	}
}

func TestPeerFamilies(t *testing.T) {
	ih := storeID(4)
	s := NewPeerStore(krpc.ID{}, PeerConfig{MaxPeersPerInfohash: 2})
	v4a := netip.MustParseAddrPort("192.0.2.1:1")
	v4b := netip.MustParseAddrPort("[::ffff:192.0.2.3]:3") // IPv4-mapped: stored as IPv4
	v6a := netip.MustParseAddrPort("[2001:db8::1]:1")
	v6b := netip.MustParseAddrPort("[2001:db8::2]:2")
	v6c := netip.MustParseAddrPort("[2001:db8::3]:3")
	for i, a := range []netip.AddrPort{v4a, v6a, v4b, v6b, v6c} { // v6c evicts v6a
		s.Announce(ih, a, i%2 == 0, storeT0.Add(time.Duration(i)*time.Second))
	}
	now := storeT0.Add(time.Minute)
	want4 := []netip.AddrPort{v4a, netip.MustParseAddrPort("192.0.2.3:3")}
	if got := peerSortedAddrs(s.Peers(ih, false, 10, now, nil)); !slices.Equal(got, want4) {
		t.Errorf("IPv4 peers = %v, want %v", got, want4)
	}
	if got, want := peerSortedAddrs(s.Peers(ih, true, 10, now, nil)), []netip.AddrPort{v6b, v6c}; !slices.Equal(got, want) {
		t.Errorf("IPv6 peers = %v, want %v", got, want)
	}
	var order []bool // Is4 per visited peer
	s.Each(ih, now, func(a netip.AddrPort, _ bool) { order = append(order, a.Addr().Is4()) })
	if want := []bool{true, true, false, false}; !slices.Equal(order, want) {
		t.Errorf("Each visited families %v, want IPv4 first %v", order, want)
	}
	if st := s.Stats(); st.EvictedPeers != 1 || st.Peers != 4 || st.Bytes != InfohashCost+2*PeerCost4+2*PeerCost6 {
		t.Errorf("Stats = %+v, want 1 eviction, 4 peers", st)
	}
	peerCheckInvariants(t, s)
}

func TestPeerSeedCounts(t *testing.T) {
	ih := storeID(5)
	s := NewPeerStore(krpc.ID{}, PeerConfig{})
	seeds := map[netip.AddrPort]bool{}
	for i := range 10 {
		s.Announce(ih, peerAddr4(i), i%3 == 0, storeT0)
		s.Announce(ih, peerAddr6(i), i%2 == 0, storeT0)
		seeds[peerAddr4(i)], seeds[peerAddr6(i)] = i%3 == 0, i%2 == 0
	}
	s.Announce(ih, peerAddr4(1), true, storeT0) // leecher became a seed
	seeds[peerAddr4(1)] = true
	if gotS, gotL := s.Counts(ih, storeT0); gotS != 10 || gotL != 10 {
		t.Errorf("Counts = %d seeds, %d leechers; want 10, 10", gotS, gotL)
	}
	if gotS, gotL := s.Counts(storeID(6), storeT0); gotS != 0 || gotL != 0 {
		t.Errorf("Counts of unknown infohash = %d, %d; want 0, 0", gotS, gotL)
	}
	visited := map[netip.AddrPort]bool{}
	s.Each(ih, storeT0, func(a netip.AddrPort, seed bool) {
		if seed != seeds[a] {
			t.Errorf("Each: %v seed=%v, want %v", a, seed, seeds[a])
		}
		visited[a] = true
	})
	if len(visited) != len(seeds) {
		t.Errorf("Each visited %d peers, want %d", len(visited), len(seeds))
	}
}

// TestPeerNonSeeds checks the BEP 33 noseed sample: every leecher of the
// family and no seed.
func TestPeerNonSeeds(t *testing.T) {
	ih := storeID(7)
	s := NewPeerStore(krpc.ID{}, PeerConfig{})
	want := map[netip.AddrPort]bool{}
	for i := range 12 {
		s.Announce(ih, peerAddr4(i), i%3 == 0, storeT0)
		s.Announce(ih, peerAddr6(i), true, storeT0)
		if i%3 != 0 {
			want[peerAddr4(i)] = true
		}
	}
	got := s.NonSeeds(ih, false, 100, storeT0, nil)
	if len(got) != len(want) {
		t.Errorf("NonSeeds = %v, want the %d leechers", got, len(want))
	}
	for _, p := range got {
		if !want[p] {
			t.Errorf("NonSeeds lists %v, a seed or unknown", p)
		}
	}
	if got := s.NonSeeds(ih, false, 3, storeT0, nil); len(got) != 3 {
		t.Errorf("NonSeeds with limit 3 = %v", got)
	}
	if got := s.NonSeeds(ih, true, 100, storeT0, nil); len(got) != 0 {
		t.Errorf("NonSeeds of an all-seed family = %v, want none", got)
	}
}

func TestPeerSample(t *testing.T) {
	tests := []struct {
		n, limit, want int
		ipv6           bool
	}{
		{0, 10, 0, false},
		{5, 0, 0, false},
		{5, -1, 0, false},
		{5, 10, 5, false},
		{100, 100, 100, false},
		{100, 30, 30, false},
		{500, 100, 100, false},
		{500, 25, 25, true},
		{2000, 10, 10, false},    // Floyd's algorithm
		{2000, 1500, 1500, true}, // dense shuffle on the heap
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("n=%d,limit=%d,v6=%v", tc.n, tc.limit, tc.ipv6), func(t *testing.T) {
			ih := storeID(7)
			s := NewPeerStore(krpc.ID{}, PeerConfig{MaxPeersPerInfohash: 2000, MaxPerSource: -1})
			stored := map[netip.AddrPort]bool{}
			for i := range tc.n {
				a := peerAddr4(i)
				if tc.ipv6 {
					a = peerAddr6(i)
				}
				s.Announce(ih, a, false, storeT0)
				stored[a] = true
			}
			r := peerRand(2)
			var firsts []netip.AddrPort
			for range 5 {
				got := s.Peers(ih, tc.ipv6, tc.limit, storeT0, r)
				if len(got) != tc.want {
					t.Fatalf("got %d peers, want %d", len(got), tc.want)
				}
				seen := map[netip.AddrPort]bool{}
				for _, a := range got {
					if !stored[a] || seen[a] {
						t.Fatalf("peer %v not stored or repeated", a)
					}
					seen[a] = true
				}
				if len(got) > 0 {
					firsts = append(firsts, got[0])
				}
			}
			if tc.want > 1 && len(slices.Compact(peerSortedAddrs(firsts))) == 1 {
				t.Errorf("five samples all start with %v", firsts[0])
			}
			if got := s.Peers(ih, !tc.ipv6, 10, storeT0, r); len(got) != 0 {
				t.Errorf("other family: got %v, want none", got)
			}
		})
	}
}

// TestPeerSampleUniform checks that every peer is drawn about equally often
// and equally often in first position.
func TestPeerSampleUniform(t *testing.T) {
	const n, limit, trials = 40, 10, 4000
	ih := storeID(8)
	s := NewPeerStore(krpc.ID{}, PeerConfig{})
	for i := range n {
		s.Announce(ih, peerAddr4(i), false, storeT0)
	}
	r := peerRand(3)
	drawn, first := map[netip.AddrPort]int{}, map[netip.AddrPort]int{}
	for range trials {
		got := s.Peers(ih, false, limit, storeT0, r)
		first[got[0]]++
		for _, a := range got {
			drawn[a]++
		}
	}
	for i := range n {
		a := peerAddr4(i)
		// Expected 1000 (sd 27) and 100 (sd 10).
		if drawn[a] < 850 || drawn[a] > 1150 || first[a] < 50 || first[a] > 150 {
			t.Errorf("peer %d drawn %d times, %d times first; want about %d and %d",
				i, drawn[a], first[a], trials*limit/n, trials/n)
		}
	}
}

func TestRandomIndicesUniform(t *testing.T) {
	tests := []struct {
		name   string
		n, k   int
		bufLen int
	}{
		{"Floyd", 100, 5, floydMax},
		{"dense in buffer", 100, 5, 512},
		{"dense on the heap", 100, 40, floydMax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const trials = 20000
			r := peerRand(4)
			buf := make([]int32, tc.bufLen)
			anyPos, first := make([]int, tc.n), make([]int, tc.n)
			for range trials {
				idx := randomIndices(tc.n, tc.k, r, buf)
				if len(idx) != tc.k {
					t.Fatalf("got %d indices, want %d", len(idx), tc.k)
				}
				first[idx[0]]++
				seen := map[int32]bool{}
				for _, v := range idx {
					if v < 0 || int(v) >= tc.n || seen[v] {
						t.Fatalf("index %d out of range or repeated in %v", v, idx)
					}
					seen[v] = true
					anyPos[v]++
				}
			}
			wantAny, wantFirst := trials*tc.k/tc.n, trials/tc.n
			for v := range tc.n {
				if d := anyPos[v] - wantAny; d*d > 25*wantAny {
					t.Errorf("index %d drawn %d times, want about %d", v, anyPos[v], wantAny)
				}
				if d := first[v] - wantFirst; d*d > 25*wantFirst {
					t.Errorf("index %d first %d times, want about %d", v, first[v], wantFirst)
				}
			}
		})
	}
}

func TestPeerInfohashes(t *testing.T) {
	s := NewPeerStore(krpc.ID{}, PeerConfig{})
	stored := map[krpc.ID]bool{}
	for i := range 50 {
		ih := storeID(byte(i), 1)
		s.Announce(ih, peerAddr4(i), false, storeT0.Add(30*time.Minute))
		stored[ih] = true
	}
	dead := storeID(0xee)
	s.Announce(dead, peerAddr4(99), false, storeT0.Add(10*time.Second))
	s.Announce(storeID(0, 1), peerAddr4(0), false, storeT0.Add(30*time.Minute)) // refresh; runs a sweep
	now := storeT0.Add(30*time.Minute + 20*time.Second)                         // dead has expired, no sweep due
	r := peerRand(5)
	tests := []struct{ limit, want int }{{0, 0}, {-3, 0}, {1, 1}, {10, 10}, {20, 20}, {50, 50}, {100, 50}}
	for _, tc := range tests {
		got := s.Infohashes(tc.limit, now, r)
		if len(got) != tc.want {
			t.Errorf("Infohashes(%d) returned %d, want %d", tc.limit, len(got), tc.want)
		}
		if len(slices.Compact(slices.SortedFunc(slices.Values(got), peerByDistance(krpc.ID{})))) != len(got) {
			t.Errorf("Infohashes(%d) repeats: %v", tc.limit, got)
		}
		for _, ih := range got {
			if !stored[ih] {
				t.Errorf("Infohashes(%d) returned %v, not a live infohash", tc.limit, ih)
			}
		}
	}
	if st := s.Stats(); st.Infohashes != 50 || st.Expired != 1 {
		t.Errorf("Stats = %+v, want the dead infohash swept", st)
	}
	if got := NewPeerStore(krpc.ID{}, PeerConfig{}).Infohashes(5, now, r); got != nil {
		t.Errorf("empty store: Infohashes = %v, want nil", got)
	}
}

// TestPeerAmortisedExpiry checks that Announce alone keeps expired data from
// piling up.
func TestPeerAmortisedExpiry(t *testing.T) {
	s := NewPeerStore(krpc.ID{}, PeerConfig{})
	for i := range 100 {
		s.Announce(storeID(byte(i), 2), peerAddr4(i), false, storeT0)
	}
	s.Announce(storeID(1), peerAddr4(1), false, storeT0.Add(DefaultPeerTTL))
	st := s.Stats()
	if st.Infohashes != 1 || st.Peers != 1 || st.Expired != 100 || st.Bytes != InfohashCost+PeerCost4 {
		t.Errorf("Stats = %+v, want the 100 old infohashes swept", st)
	}
	peerCheckInvariants(t, s)
}

func TestPeerInvalid(t *testing.T) {
	tests := []netip.AddrPort{
		{},
		netip.MustParseAddrPort("192.0.2.1:0"),
		netip.MustParseAddrPort("0.0.0.0:6881"),
		netip.MustParseAddrPort("[::]:6881"),
		netip.MustParseAddrPort("[::ffff:0.0.0.0]:6881"),
	}
	for _, a := range tests {
		t.Run(a.String(), func(t *testing.T) {
			s := NewPeerStore(krpc.ID{}, PeerConfig{})
			s.Announce(storeID(1), a, false, storeT0)
			if st := s.Stats(); st.RefusedInvalid != 1 || st.Peers != 0 {
				t.Errorf("Stats = %+v, want one invalid refusal", st)
			}
		})
	}
}

// TestPeerRandomOps runs a random mix of operations under tight bounds and
// checks the store's invariants after each.
func TestPeerRandomOps(t *testing.T) {
	r := peerRand(6)
	s := NewPeerStore(storeID(0x5a, 0xa5), PeerConfig{
		TTL: 10 * time.Minute, MaxInfohashes: 8, MaxPeersPerInfohash: 6,
		MaxBytes: 6*InfohashCost + 20*PeerCost4 + 5*PeerCost6, MaxPerSource: 8,
	})
	now := storeT0
	for step := range 5000 {
		now = now.Add(time.Duration(r.IntN(20)) * time.Second)
		ih := storeID(byte(r.IntN(20)) * 13)
		switch op := r.IntN(10); {
		case op < 5:
			s.Announce(ih, peerAddr4(r.IntN(30)), r.IntN(2) == 0, now)
		case op < 8:
			s.Announce(ih, peerAddr6(r.IntN(30)), r.IntN(2) == 0, now)
		case op < 9:
			s.Peers(ih, r.IntN(2) == 0, r.IntN(8), now, r)
		default:
			if r.IntN(10) == 0 {
				s.Expire(now)
			} else {
				s.Infohashes(r.IntN(10), now, r)
			}
		}
		peerCheckInvariants(t, s)
		if t.Failed() {
			t.Fatalf("after step %d", step)
		}
	}
	st := s.Stats()
	if st.EvictedPeers+st.EvictedPeersBytes == 0 || st.EvictedInfohashes == 0 || st.Expired == 0 || st.RefusedBytes+st.RefusedInfohashes == 0 || st.RefusedQuota == 0 {
		t.Errorf("Stats = %+v: some path was not exercised", st)
	}
}

func TestPeerConcurrent(t *testing.T) {
	s := NewPeerStore(krpc.ID{}, PeerConfig{MaxInfohashes: 10, MaxPeersPerInfohash: 50, MaxPerSource: -1})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := peerRand(uint64(g))
			for i := range 2000 {
				now := storeT0.Add(time.Duration(i) * time.Second)
				ih := storeID(byte(r.IntN(20)))
				s.Announce(ih, peerAddr4(r.IntN(100)), i%2 == 0, now)
				s.Peers(ih, false, 10, now, r)
				s.Counts(ih, now)
				s.Each(ih, now, func(netip.AddrPort, bool) {})
				s.Infohashes(5, now, r)
				s.Stats()
			}
		})
	}
	wg.Wait()
	peerCheckInvariants(t, s)
}

func BenchmarkPeerStoreAnnounce(b *testing.B) {
	const infohashes = 1000
	r := peerRand(7)
	ihs := make([]krpc.ID, infohashes)
	for i := range ihs {
		for j := range ihs[i] {
			ihs[i][j] = byte(r.Uint32())
		}
	}
	s := NewPeerStore(krpc.ID{}, PeerConfig{})
	now := storeT0
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		s.Announce(ihs[i%infohashes], peerAddr4(int(r.Uint32()>>8)), false, now)
		i++
	}
}

func BenchmarkPeerStorePeers(b *testing.B) {
	for _, bc := range []struct {
		name  string
		ipv6  bool
		limit int
	}{{"ipv4-100", false, 100}, {"ipv6-25", true, 25}} {
		b.Run(bc.name, func(b *testing.B) {
			ih := storeID(9)
			s := NewPeerStore(krpc.ID{}, PeerConfig{})
			for i := range DefaultMaxPeersPerInfohash {
				s.Announce(ih, peerAddr4(i), false, storeT0)
				s.Announce(ih, peerAddr6(i), false, storeT0)
			}
			r := peerRand(8)
			b.ReportAllocs()
			for b.Loop() {
				if len(s.Peers(ih, bc.ipv6, bc.limit, storeT0, r)) != bc.limit {
					b.Fatal("short sample")
				}
			}
		})
	}
}

// BenchmarkPeerStoreMemory stores 1,000,000 peers (2,000 infohashes x 500
// peers, inserted in random order) and reports the heap they take per peer,
// and what the byte budget charges per peer.
func BenchmarkPeerStoreMemory(b *testing.B) {
	const infohashes, perInfohash = 2000, 500
	for _, ipv6 := range []bool{false, true} {
		name := "ipv4"
		if ipv6 {
			name = "ipv6"
		}
		b.Run(name, func(b *testing.B) {
			var perPeer, charged float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				s := NewPeerStore(krpc.ID{}, PeerConfig{
					MaxInfohashes: infohashes, MaxPeersPerInfohash: perInfohash, MaxBytes: 1 << 40, MaxPerSource: -1,
				})
				r := peerRand(9)
				perm := make([]int, perInfohash)
				for i := range perm {
					perm[i] = i
				}
				for i := range infohashes {
					var ih krpc.ID
					for j := range ih {
						ih[j] = byte(r.Uint32())
					}
					r.Shuffle(len(perm), func(x, y int) { perm[x], perm[y] = perm[y], perm[x] })
					for _, j := range perm {
						a := peerAddr4(i*perInfohash + j)
						if ipv6 {
							a = peerAddr6(i*perInfohash + j)
						}
						s.Announce(ih, a, j%3 == 0, storeT0)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				st := s.Stats()
				if st.Peers != infohashes*perInfohash {
					b.Fatalf("stored %d peers, want %d", st.Peers, infohashes*perInfohash)
				}
				perPeer = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(st.Peers)
				charged = float64(st.Bytes) / float64(st.Peers)
				runtime.KeepAlive(s)
			}
			b.ReportMetric(perPeer, "B/peer")
			b.ReportMetric(charged, "charged-B/peer")
		})
	}
	// Calibrates InfohashCost: 100,000 infohashes of one IPv4 peer each.
	b.Run("infohashes", func(b *testing.B) {
		const n = 100000
		var perInfohash float64
		for b.Loop() {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			s := NewPeerStore(krpc.ID{}, PeerConfig{MaxInfohashes: n, MaxBytes: 1 << 40, MaxPerSource: -1})
			r := peerRand(10)
			for i := range n {
				var ih krpc.ID
				for j := range ih {
					ih[j] = byte(r.Uint32())
				}
				s.Announce(ih, peerAddr4(i), false, storeT0)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			if st := s.Stats(); st.Infohashes != n {
				b.Fatalf("stored %d infohashes, want %d", st.Infohashes, n)
			}
			perInfohash = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n - float64(unsafe.Sizeof(peerEntry[key4]{}))
			runtime.KeepAlive(s)
		}
		b.ReportMetric(perInfohash, "B/infohash")
	})
}

// TestPeerClockBackwards checks that a backwards clock jump does not stall
// the amortised sweep.
func TestPeerClockBackwards(t *testing.T) {
	s := NewPeerStore(krpc.ID{}, PeerConfig{})
	s.Announce(storeID(0xff), peerAddr4(0), false, storeT0.Add(2*time.Hour))
	for i := range 10 {
		s.Announce(storeID(byte(i)), peerAddr4(i), false, storeT0) // two hours back
	}
	s.Announce(storeID(0xfe), peerAddr4(0), false, storeT0.Add(DefaultPeerTTL))
	if st := s.Stats(); st.Expired != 10 || st.Infohashes != 2 {
		t.Errorf("Stats = %+v, want the 10 peers announced after the jump swept", st)
	}
	peerCheckInvariants(t, s)
}
