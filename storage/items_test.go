package storage

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// itemT0 is the reference time of the item tests.
var itemT0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// itemTestKey returns a deterministic Go ed25519 key.
func itemTestKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// itemMutable returns a validly signed mutable item.
func itemMutable(priv ed25519.PrivateKey, salt string, seq int64, v string) Item {
	var s []byte
	if salt != "" {
		s = []byte(salt)
	}
	return Item{
		V:       []byte(v),
		K:       bytes.Clone(priv.Public().(ed25519.PublicKey)),
		Salt:    s,
		Seq:     seq,
		Sig:     SignMutable(priv, s, seq, []byte(v)),
		Mutable: true,
	}
}

// itemImmutable returns an immutable item holding the bencoded string s.
func itemImmutable(s string) Item {
	return Item{V: krpc.AppendString(nil, s)}
}

// itemErrCode returns the KRPC code a storing node answers err with, 0
// for nil and -1 for an error that is not a *PutError.
func itemErrCode(err error) int64 {
	if err == nil {
		return 0
	}
	if e := wireError(err); e != nil {
		return e.Code
	}
	return -1
}

// itemMustPut fails the test if the put is refused.
func itemMustPut(t *testing.T, s *ItemStore, it Item, cas *int64, now time.Time) {
	t.Helper()
	if err := s.Put(it, cas, now); err != nil {
		t.Fatalf("Put(%s) = %v", it.Target(), err)
	}
}

// itemEqual reports whether two items hold the same fields.
func itemEqual(a, b Item) bool {
	return bytes.Equal(a.V, b.V) && bytes.Equal(a.K, b.K) && bytes.Equal(a.Salt, b.Salt) &&
		a.Seq == b.Seq && bytes.Equal(a.Sig, b.Sig) && a.Mutable == b.Mutable
}

func TestItemConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   ItemConfig
		want ItemConfig
	}{
		{"zero", ItemConfig{}, ItemConfig{TTL: 2 * time.Hour, MaxItems: 10000, MaxBytes: 32 << 20, MaxPerSource: 200}},
		{"negative", ItemConfig{TTL: -1, MaxItems: -1, MaxBytes: -1, MaxPerSource: -5}, ItemConfig{TTL: 2 * time.Hour, MaxItems: 10000, MaxBytes: 32 << 20, MaxPerSource: -1}},
		{"set", ItemConfig{TTL: time.Minute, MaxItems: 3, MaxBytes: 99, MaxPerSource: 2}, ItemConfig{TTL: time.Minute, MaxItems: 3, MaxBytes: 99, MaxPerSource: 2}},
		{"small store", ItemConfig{MaxItems: 30}, ItemConfig{TTL: 2 * time.Hour, MaxItems: 30, MaxBytes: 32 << 20, MaxPerSource: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewItemStore(krpc.ID{}, tt.in).Config(); got != tt.want {
				t.Errorf("Config = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestItemImmutablePutGet(t *testing.T) {
	s := NewItemStore(krpc.ID{}, ItemConfig{})
	it := Item{V: []byte("12:Hello World!")}
	itemMustPut(t, s, it, nil, itemT0)
	target, _ := krpc.ParseID("e5f96f6f38320f0f33959cb4d3d656452117aadb")
	got, ok := s.Get(target, itemT0)
	if !ok || !itemEqual(got, it) {
		t.Fatalf("Get = %+v, %v; want %+v", got, ok, it)
	}
	if _, ok := s.Get(ImmutableTarget([]byte("i1e")), itemT0); ok {
		t.Error("Get of an unknown target succeeded")
	}
	// Re-put an hour later: refresh, not a second item.
	itemMustPut(t, s, it, nil, itemT0.Add(time.Hour))
	st := s.Stats()
	want := ItemStats{Immutable: 1, Bytes: int64(len(it.V)), Sources: 1, TopSource: 1, Stored: 1, Refreshed: 1}
	if st != want {
		t.Errorf("Stats = %+v, want %+v", st, want)
	}
	if _, ok := s.Get(target, itemT0.Add(2*time.Hour+30*time.Minute)); !ok {
		t.Error("refreshed immutable item expired at its original expiry")
	}
	if _, ok := s.Get(target, itemT0.Add(3*time.Hour)); ok {
		t.Error("immutable item alive 2 h after its last put")
	}
}

func TestItemUnsortedDictStoredVerbatim(t *testing.T) {
	// Put does not re-encode: an unsorted dict (were the caller to skip
	// ValidatePutShape) is kept byte for byte under SHA-1 of those bytes.
	s := NewItemStore(krpc.ID{}, ItemConfig{})
	v := []byte("d1:b0:1:a0:e")
	itemMustPut(t, s, Item{V: v}, nil, itemT0)
	got, ok := s.Get(ImmutableTarget(v), itemT0)
	if !ok || !bytes.Equal(got.V, v) {
		t.Fatalf("Get = %q, %v; want %q", got.V, ok, v)
	}
}

func TestItemExpiryExactlyTTL(t *testing.T) {
	tests := []struct {
		name string
		it   Item
	}{
		{"immutable", itemImmutable("expiring")},
		{"mutable", itemMutable(itemTestKey(1), "", 1, "i1e")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewItemStore(krpc.ID{}, ItemConfig{})
			itemMustPut(t, s, tt.it, nil, itemT0)
			target := tt.it.Target()
			if _, ok := s.Get(target, itemT0.Add(2*time.Hour-time.Nanosecond)); !ok {
				t.Fatal("item gone before 2 h")
			}
			if _, ok := s.Get(target, itemT0.Add(2*time.Hour)); ok {
				t.Fatal("item still returned exactly 2 h after its put")
			}
			if n := s.Expire(itemT0.Add(2*time.Hour - time.Nanosecond)); n != 0 {
				t.Fatalf("Expire before 2 h removed %d", n)
			}
			if n := s.Expire(itemT0.Add(2 * time.Hour)); n != 1 {
				t.Fatalf("Expire at 2 h removed %d, want 1", n)
			}
			st := s.Stats()
			if st.Expired != 1 || st.Immutable != 0 || st.Mutable != 0 || st.Bytes != 0 {
				t.Errorf("Stats after expiry = %+v", st)
			}
			// Gone for good, even when asked about an earlier time.
			if _, ok := s.Get(target, itemT0); ok {
				t.Error("expired item still stored")
			}
		})
	}
}

func TestItemCustomTTL(t *testing.T) {
	s := NewItemStore(krpc.ID{}, ItemConfig{TTL: 10 * time.Minute})
	it := itemImmutable("short")
	itemMustPut(t, s, it, nil, itemT0)
	if _, ok := s.Get(it.Target(), itemT0.Add(10*time.Minute-1)); !ok {
		t.Error("gone before TTL")
	}
	if _, ok := s.Get(it.Target(), itemT0.Add(10*time.Minute)); ok {
		t.Error("alive at TTL")
	}
}

func TestItemRefreshExtendsExpiry(t *testing.T) {
	priv := itemTestKey(2)
	tests := []struct {
		name string
		it   Item
	}{
		{"immutable", itemImmutable("refresh me")},
		{"mutable equal seq and v", itemMutable(priv, "salt", 7, "l1:xe")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewItemStore(krpc.ID{}, ItemConfig{})
			itemMustPut(t, s, tt.it, nil, itemT0)
			itemMustPut(t, s, tt.it, nil, itemT0.Add(90*time.Minute))
			target := tt.it.Target()
			if _, ok := s.Get(target, itemT0.Add(3*time.Hour)); !ok {
				t.Error("refreshed item expired at its first expiry")
			}
			if _, ok := s.Get(target, itemT0.Add(3*time.Hour+30*time.Minute-time.Nanosecond)); !ok {
				t.Error("refreshed item gone before 2 h after the refresh")
			}
			if _, ok := s.Get(target, itemT0.Add(3*time.Hour+30*time.Minute)); ok {
				t.Error("refreshed item alive 2 h after the refresh")
			}
			if st := s.Stats(); st.Refreshed != 1 || st.Stored != 1 {
				t.Errorf("Stats = %+v, want Stored 1, Refreshed 1", st)
			}
			// A re-put with an earlier clock never shortens the expiry.
			itemMustPut(t, s, tt.it, nil, itemT0)
			if _, ok := s.Get(target, itemT0.Add(3*time.Hour)); !ok {
				t.Error("re-put with an earlier time shortened the expiry")
			}
		})
	}
}

func TestItemMutableRules(t *testing.T) {
	priv := itemTestKey(3)
	const storedSeq = 5
	stored := itemMutable(priv, "s", storedSeq, "4:five")
	t1 := itemT0.Add(time.Hour) // time of the second put

	tests := []struct {
		name     string
		put      Item
		cas      *int64
		wantCode int64 // 0: accepted
		wantSeq  int64 // seq stored afterwards
		wantV    string
		refresh  bool // accepted put extends expiry to t1 + 2 h
		counter  func(ItemStats) uint64
	}{
		{"higher seq replaces", itemMutable(priv, "s", 6, "3:six"), nil, 0, 6, "3:six", true,
			func(s ItemStats) uint64 { return s.Updated }},
		{"much higher seq replaces", itemMutable(priv, "s", 1<<62, "3:big"), nil, 0, 1 << 62, "3:big", true,
			func(s ItemStats) uint64 { return s.Updated }},
		{"higher seq with matching cas", itemMutable(priv, "s", 6, "3:six"), bep44Int(storedSeq), 0, 6, "3:six", true,
			func(s ItemStats) uint64 { return s.Updated }},
		{"cas mismatch", itemMutable(priv, "s", 6, "3:six"), bep44Int(4), 301, storedSeq, "4:five", false,
			func(s ItemStats) uint64 { return s.RejectedCAS }},
		{"cas ahead of stored", itemMutable(priv, "s", 7, "3:six"), bep44Int(6), 301, storedSeq, "4:five", false,
			func(s ItemStats) uint64 { return s.RejectedCAS }},
		{"cas mismatch checked before seq", itemMutable(priv, "s", 1, "3:one"), bep44Int(4), 301, storedSeq, "4:five", false,
			func(s ItemStats) uint64 { return s.RejectedCAS }},
		{"cas mismatch on identical re-put", stored, bep44Int(0), 301, storedSeq, "4:five", false,
			func(s ItemStats) uint64 { return s.RejectedCAS }},
		{"lower seq", itemMutable(priv, "s", 4, "4:four"), nil, 302, storedSeq, "4:five", false,
			func(s ItemStats) uint64 { return s.RejectedSeqLess }},
		{"lower seq with matching cas", itemMutable(priv, "s", 4, "4:four"), bep44Int(storedSeq), 302, storedSeq, "4:five", false,
			func(s ItemStats) uint64 { return s.RejectedSeqLess }},
		{"seq 0 below stored", itemMutable(priv, "s", 0, "4:zero"), nil, 302, storedSeq, "4:five", false,
			func(s ItemStats) uint64 { return s.RejectedSeqLess }},
		{"equal seq different v", itemMutable(priv, "s", storedSeq, "4:FIVE"), nil, 302, storedSeq, "4:five", false,
			func(s ItemStats) uint64 { return s.RejectedSeqEqual }},
		{"equal seq same v refreshes", stored, nil, 0, storedSeq, "4:five", true,
			func(s ItemStats) uint64 { return s.Refreshed }},
		{"equal seq same v matching cas", stored, bep44Int(storedSeq), 0, storedSeq, "4:five", true,
			func(s ItemStats) uint64 { return s.Refreshed }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewItemStore(krpc.ID{}, ItemConfig{})
			itemMustPut(t, s, stored, nil, itemT0)
			target := stored.Target()
			if tt.put.Target() != target {
				t.Fatal("test item has another target")
			}
			before, _ := s.Get(target, itemT0)
			beforeStats := s.Stats()

			err := s.Put(tt.put, tt.cas, t1)
			if got := itemErrCode(err); got != tt.wantCode {
				t.Fatalf("Put = %v (code %d), want code %d", err, got, tt.wantCode)
			}
			got, ok := s.Get(target, t1)
			if !ok {
				t.Fatal("item gone after put")
			}
			if got.Seq != tt.wantSeq || string(got.V) != tt.wantV {
				t.Errorf("stored seq %d v %q, want seq %d v %q", got.Seq, got.V, tt.wantSeq, tt.wantV)
			}
			if tt.wantCode != 0 {
				if !itemEqual(got, before) {
					t.Errorf("refused put changed the item: %+v -> %+v", before, got)
				}
			} else if !itemEqual(got, tt.put) && tt.wantSeq != storedSeq {
				t.Errorf("stored %+v, want the put item %+v", got, tt.put)
			}
			if !bytes.Equal(got.K, stored.K) || !bytes.Equal(got.Salt, stored.Salt) {
				t.Error("k or salt changed")
			}
			if !VerifyMutable(got.K, got.Salt, got.Seq, got.V, got.Sig) {
				t.Error("stored item's signature does not verify: v/seq/sig out of step")
			}
			// Expiry: refreshed to t1+2h, or unchanged at t0+2h.
			_, aliveAfterOld := s.Get(target, itemT0.Add(2*time.Hour))
			if aliveAfterOld != tt.refresh {
				t.Errorf("alive at t0+2h = %v, want %v (refresh)", aliveAfterOld, tt.refresh)
			}
			if _, ok := s.Get(target, t1.Add(2*time.Hour)); ok {
				t.Error("alive at t1+2h")
			}
			after := s.Stats()
			if d := tt.counter(after) - tt.counter(beforeStats); d != 1 {
				t.Errorf("counter moved by %d, want 1 (stats %+v)", d, after)
			}
			if after.Mutable != 1 || after.Immutable != 0 {
				t.Errorf("item counts %+v", after)
			}
			if after.Bytes != int64(len(got.V)+len(got.K)+len(got.Salt)+len(got.Sig)) {
				t.Errorf("Bytes = %d, does not match the stored item", after.Bytes)
			}
		})
	}
}

func TestItemMutableCASNothingStored(t *testing.T) {
	tests := []struct {
		name string
		cas  *int64
	}{
		{"no cas", nil},
		{"cas 0", bep44Int(0)},
		{"cas 9", bep44Int(9)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewItemStore(krpc.ID{}, ItemConfig{})
			it := itemMutable(itemTestKey(4), "", 3, "i3e")
			// BEP 44: cas with nothing stored SHOULD be ignored.
			itemMustPut(t, s, it, tt.cas, itemT0)
			if got, ok := s.Get(it.Target(), itemT0); !ok || !itemEqual(got, it) {
				t.Errorf("Get = %+v, %v", got, ok)
			}
		})
	}
}

func TestItemMutableAfterExpiryAcceptsLowerSeq(t *testing.T) {
	// Once an item has expired nothing is stored, so any seq is accepted.
	priv := itemTestKey(5)
	s := NewItemStore(krpc.ID{}, ItemConfig{})
	itemMustPut(t, s, itemMutable(priv, "", 9, "i9e"), nil, itemT0)
	low := itemMutable(priv, "", 1, "i1e")
	if err := s.Put(low, nil, itemT0.Add(time.Hour)); itemErrCode(err) != 302 {
		t.Fatalf("Put before expiry = %v, want 302", err)
	}
	itemMustPut(t, s, low, nil, itemT0.Add(2*time.Hour))
	if got, _ := s.Get(low.Target(), itemT0.Add(2*time.Hour)); got.Seq != 1 {
		t.Errorf("seq = %d, want 1", got.Seq)
	}
}

func TestItemInvalidRejected(t *testing.T) {
	good := itemMutable(itemTestKey(6), "", 1, "i1e")
	mod := func(f func(*Item)) Item {
		it := good.Clone()
		f(&it)
		return it
	}
	tests := []struct {
		name string
		it   Item
		cas  *int64
	}{
		{"empty v", Item{}, nil},
		{"immutable v too big", Item{V: []byte("1000:" + string(make([]byte, 1000)))}, nil},
		{"immutable with k", Item{V: []byte("i1e"), K: good.K}, nil},
		{"immutable with sig", Item{V: []byte("i1e"), Sig: good.Sig}, nil},
		{"immutable with salt", Item{V: []byte("i1e"), Salt: []byte("x")}, nil},
		{"immutable with seq", Item{V: []byte("i1e"), Seq: 1}, nil},
		{"immutable with cas", Item{V: []byte("i1e")}, bep44Int(0)},
		{"mutable short k", mod(func(it *Item) { it.K = it.K[:31] }), nil},
		{"mutable no sig", mod(func(it *Item) { it.Sig = nil }), nil},
		{"mutable long salt", mod(func(it *Item) { it.Salt = make([]byte, 65) }), nil},
		{"mutable negative seq", mod(func(it *Item) { it.Seq = -1 }), nil},
		{"mutable v too big", mod(func(it *Item) { it.V = []byte("1000:" + string(make([]byte, 1000))) }), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewItemStore(krpc.ID{}, ItemConfig{})
			if err := s.Put(tt.it, tt.cas, itemT0); itemErrCode(err) != krpc.ErrCodeProtocol {
				t.Fatalf("Put = %v, want 203", err)
			}
			st := s.Stats()
			if st.RejectedInvalid != 1 || st.Stored != 0 || st.Bytes != 0 {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

func TestItemPutAndGetCopy(t *testing.T) {
	s := NewItemStore(krpc.ID{}, ItemConfig{})
	it := itemMutable(itemTestKey(7), "salty", 2, "5:hello")
	orig := it.Clone()
	itemMustPut(t, s, it, nil, itemT0)
	// The caller reuses its buffers: the store must not see it.
	it.V[3], it.K[0], it.Salt[0], it.Sig[0] = 'X', 0, 'X', 0
	got, _ := s.Get(orig.Target(), itemT0)
	if !itemEqual(got, orig) {
		t.Fatalf("store aliased the caller's buffers: %+v", got)
	}
	// Mutating a Get result must not reach the store either.
	got.V[3], got.K[0], got.Sig[0] = 'Y', 1, 1
	again, _ := s.Get(orig.Target(), itemT0)
	if !itemEqual(again, orig) {
		t.Fatalf("Get returned the stored buffers: %+v", again)
	}
}

// itemsByDistance returns n immutable items sorted by XOR distance from
// self, closest first.
func itemsByDistance(self krpc.ID, n int) []Item {
	items := make([]Item, n)
	for i := range items {
		items[i] = itemImmutable(fmt.Sprintf("item-%03d", i))
	}
	slices.SortFunc(items, func(a, b Item) int {
		da, db := a.Target().Xor(self), b.Target().Xor(self)
		switch {
		case da.Less(db):
			return -1
		case db.Less(da):
			return 1
		}
		return 0
	})
	return items
}

func TestItemByteBound(t *testing.T) {
	self := krpc.ID{0x42, 0x42}
	big := itemImmutable("twenty-one bytes long") // 24 bytes
	var small []Item                              // 9 bytes each
	for i := range 3 {
		small = append(small, itemImmutable(fmt.Sprintf("item-%02d", i)))
	}
	netA, netB := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	tests := []struct {
		name      string
		from      netip.Addr // the big item's sender; the small ones are from netA
		maxBytes  int64      // 3 small items are 27 bytes
		wantErr   bool
		wantSmall []int // small items stored afterwards
		wantBig   bool
		evicted   uint64
	}{
		// 27 + 24 = 51 > 40: evict the newest small items until it fits.
		{"other network evicts two newest", netB, 40, false, []int{0}, true, 2},
		// The sender's network is the largest: nothing to take from.
		{"same network refused", netA, 40, true, []int{0, 1, 2}, false, 0},
		// Exactly at the bound: no eviction.
		{"fits exactly", netA, 51, false, []int{0, 1, 2}, true, 0},
		// Larger than the whole store: refused, and nothing evicted.
		{"larger than MaxBytes", netB, 23, true, []int{0, 1}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewItemStore(self, ItemConfig{MaxBytes: tt.maxBytes})
			for i, it := range small {
				// With MaxBytes 23 the third small item does not fit and,
				// netA being the only network, is refused.
				if err := s.PutFrom(it, nil, netA, itemT0.Add(time.Duration(i)*time.Second)); err != nil && !(tt.maxBytes == 23 && i == 2) {
					t.Fatalf("Put(small %d) = %v", i, err)
				}
			}
			before := s.Stats()
			err := s.PutFrom(big, nil, tt.from, itemT0.Add(time.Minute))
			if gotErr := errors.Is(err, ErrStoreFull); gotErr != tt.wantErr || (err != nil && !gotErr) {
				t.Fatalf("Put(big) = %v, want ErrStoreFull %v", err, tt.wantErr)
			}
			var bytesWant int64
			for i, it := range small {
				_, ok := s.Get(it.Target(), itemT0)
				want := slices.Contains(tt.wantSmall, i)
				if ok != want {
					t.Errorf("small item %d present = %v, want %v", i, ok, want)
				}
				if want {
					bytesWant += int64(len(it.V))
				}
			}
			if _, ok := s.Get(big.Target(), itemT0); ok != tt.wantBig {
				t.Errorf("big item present = %v, want %v", ok, tt.wantBig)
			}
			if tt.wantBig {
				bytesWant += int64(len(big.V))
			}
			st := s.Stats()
			if st.Bytes != bytesWant || st.Bytes > tt.maxBytes {
				t.Errorf("Bytes = %d, want %d (bound %d)", st.Bytes, bytesWant, tt.maxBytes)
			}
			if d := st.Evicted - before.Evicted; d != tt.evicted {
				t.Errorf("evicted %d, want %d", d, tt.evicted)
			}
			if tt.wantErr && st.RejectedFull != before.RejectedFull+1 {
				t.Errorf("RejectedFull not counted: %+v", st)
			}
			checkItemInvariants(t, s)
		})
	}
}

func TestItemByteBoundMutableUpdate(t *testing.T) {
	priv := itemTestKey(8)
	m1 := itemMutable(priv, "", 1, "1:a")
	m2 := itemMutable(priv, "", 2, "11:bbbbbbbbbbb") // 11 bytes more than m1, fits once other is gone
	other := itemImmutable("other item")             // 13 bytes
	limit := m1.size() + other.size()
	netA, netB := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	tests := []struct {
		name      string
		otherFrom netip.Addr // m1 is from netA
		wantErr   bool
		wantSeq   int64
		wantOther bool
	}{
		{"update evicts another network's item", netB, false, 2, false},
		{"update refused when only its own network holds more", netA, true, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewItemStore(krpc.ID{}, ItemConfig{MaxBytes: limit})
			if err := s.PutFrom(m1, nil, netA, itemT0); err != nil {
				t.Fatal(err)
			}
			if err := s.PutFrom(other, nil, tt.otherFrom, itemT0); err != nil {
				t.Fatal(err)
			}
			err := s.PutFrom(m2, nil, netA, itemT0.Add(time.Minute))
			if errors.Is(err, ErrStoreFull) != tt.wantErr || (err != nil && !tt.wantErr) {
				t.Fatalf("Put(update) = %v, want ErrStoreFull %v", err, tt.wantErr)
			}
			got, ok := s.Get(m1.Target(), itemT0)
			if !ok || got.Seq != tt.wantSeq {
				t.Fatalf("stored = %+v, %v; want seq %d", got, ok, tt.wantSeq)
			}
			if tt.wantErr && !itemEqual(got, m1) {
				t.Errorf("refused update changed the item: %+v", got)
			}
			if _, ok := s.Get(other.Target(), itemT0); ok != tt.wantOther {
				t.Errorf("other present = %v, want %v", ok, tt.wantOther)
			}
			want := got.size()
			if tt.wantOther {
				want += other.size()
			}
			if st := s.Stats(); st.Bytes > limit || st.Bytes != want {
				t.Errorf("Bytes = %d, want %d (limit %d)", st.Bytes, want, limit)
			}
			checkItemInvariants(t, s)
		})
	}
}

func TestItemExpiredDoNotCountAgainstBounds(t *testing.T) {
	// Put expires lazily, so a full store of expired items takes a new, far
	// item without evicting anything and without an Expire call.
	self := krpc.ID{0x11}
	c := itemsByDistance(self, 3)
	s := NewItemStore(self, ItemConfig{MaxItems: 2})
	itemMustPut(t, s, c[0], nil, itemT0)
	itemMustPut(t, s, c[1], nil, itemT0.Add(time.Hour))
	// At t0+2h only c[0] has expired; c[1] is of the same (unknown)
	// network as c[2]: no room.
	if err := s.Put(c[2], nil, itemT0.Add(2*time.Hour-1)); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("Put before expiry = %v, want ErrStoreFull", err)
	}
	itemMustPut(t, s, c[2], nil, itemT0.Add(2*time.Hour))
	st := s.Stats()
	if st.Expired != 1 || st.Evicted != 0 || st.Immutable != 2 {
		t.Errorf("Stats = %+v, want Expired 1, Evicted 0, Immutable 2", st)
	}
	if _, ok := s.Get(c[0].Target(), itemT0); ok {
		t.Error("expired item still stored")
	}
}

func TestItemExpireMany(t *testing.T) {
	s := NewItemStore(krpc.ID{}, ItemConfig{})
	const n = 100
	for i := range n {
		itemMustPut(t, s, itemImmutable(fmt.Sprint("x", i)), nil, itemT0.Add(time.Duration(i)*time.Minute))
	}
	// Items put at minutes 0..29 expire by t0+2h29m.
	if got := s.Expire(itemT0.Add(2*time.Hour + 29*time.Minute)); got != 30 {
		t.Errorf("Expire removed %d, want 30", got)
	}
	if got := s.Expire(itemT0.Add(2*time.Hour + 29*time.Minute)); got != 0 {
		t.Errorf("second Expire removed %d, want 0", got)
	}
	if st := s.Stats(); st.Immutable != n-30 || st.Expired != 30 {
		t.Errorf("Stats = %+v", st)
	}
	if got := s.Expire(itemT0.Add(24 * time.Hour)); got != n-30 {
		t.Errorf("final Expire removed %d, want %d", got, n-30)
	}
	if st := s.Stats(); st.Immutable != 0 || st.Bytes != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestItemConcurrent(t *testing.T) {
	priv := itemTestKey(9)
	s := NewItemStore(krpc.RandomID(), ItemConfig{MaxItems: 50})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				now := itemT0.Add(time.Duration(i) * time.Minute)
				imm := itemImmutable(fmt.Sprint(g, "-", i))
				_ = s.Put(imm, nil, now)
				_ = s.Put(itemMutable(priv, "", int64(i), "i1e"), nil, now)
				s.Get(imm.Target(), now)
				s.Stats()
				if i%50 == 0 {
					s.Expire(now)
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.Immutable+st.Mutable > 50 {
		t.Errorf("store over its bound: %+v", st)
	}
}

func BenchmarkItemPut(b *testing.B) {
	b.Run("immutable", func(b *testing.B) {
		items := make([]Item, 1<<14) // more than MaxItems: eviction and refusal paths too
		for i := range items {
			items[i] = itemImmutable(fmt.Sprintf("benchmark value %d", i))
		}
		s := NewItemStore(krpc.RandomID(), ItemConfig{})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			_ = s.Put(items[i%len(items)], nil, itemT0.Add(time.Duration(i)*time.Millisecond))
			i++
		}
	})
	b.Run("mutable-update", func(b *testing.B) {
		// Put does not verify signatures, so one signature serves every seq.
		it := itemMutable(itemTestKey(10), "salt", 0, "12:Hello World!")
		s := NewItemStore(krpc.RandomID(), ItemConfig{})
		b.ReportAllocs()
		for b.Loop() {
			it.Seq++
			if err := s.Put(it, nil, itemT0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkItemGet(b *testing.B) {
	s := NewItemStore(krpc.RandomID(), ItemConfig{})
	targets := make([]krpc.ID, 4096)
	for i := range targets {
		it := itemImmutable(fmt.Sprintf("benchmark value %d", i))
		if err := s.Put(it, nil, itemT0); err != nil {
			b.Fatal(err)
		}
		targets[i] = it.Target()
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := s.Get(targets[i%len(targets)], itemT0); !ok {
			b.Fatal("missing item")
		}
		i++
	}
}
