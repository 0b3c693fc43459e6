package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// TestItemStoreCheckAgreesWithPut: on a small store driven by random puts
// (immutable and mutable, with and without cas, values of varied sizes,
// with time passing so that items expire, from a few source networks so that
// the quota and fair-share eviction both act), CheckFrom predicts PutFrom
// exactly (same KRPC code, or both ErrStoreFull, or both ErrQuota, or both
// nil), and changes nothing that PutFrom would not.
func TestItemStoreCheckAgreesWithPut(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0))
			s := NewItemStore(krpc.ID{0x5a, 0xa5}, ItemConfig{MaxItems: 8, MaxBytes: 2000, TTL: time.Minute, MaxPerSource: 5})
			sources := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.1")}
			keys := []int{1, 2, 3}
			now := time.Unix(1_700_000_000, 0)
			for i := range 3000 {
				now = now.Add(time.Duration(r.IntN(2000)) * time.Millisecond)
				var (
					it  Item
					cas *int64
				)
				v := fmt.Sprintf("%d-%s", r.IntN(4), string(make([]byte, r.IntN(400))))
				if r.IntN(2) == 0 {
					it = itemImmutable(fmt.Sprintf("%d%s", r.IntN(30), v))
				} else {
					k := keys[r.IntN(len(keys))]
					it = itemMutable(itemTestKey(byte(k)), fmt.Sprint(r.IntN(3)), int64(r.IntN(6)), v)
					if r.IntN(3) == 0 {
						c := int64(r.IntN(6))
						cas = &c
					}
				}
				from := sources[r.IntN(len(sources))]
				if r.IntN(4) == 0 {
					from = sources[0] // one network puts more than the others
				}
				checked := s.CheckFrom(it, cas, from, now)
				put := s.PutFrom(it, cas, from, now)
				same := itemErrCode(checked) == itemErrCode(put) &&
					errors.Is(checked, ErrStoreFull) == errors.Is(put, ErrStoreFull) &&
					errors.Is(checked, ErrQuota) == errors.Is(put, ErrQuota)
				if !same {
					t.Fatalf("put %d (%s): Check = %v, Put = %v", i, it.Target(), checked, put)
				}
			}
			st := s.Stats()
			if st.Stored == 0 || st.RejectedFull == 0 || st.Evicted == 0 || st.RejectedSeqLess == 0 || st.RejectedQuota == 0 {
				t.Fatalf("the random puts did not exercise every rule: %+v", st)
			}
		})
	}
}
