package storage

// The BEP 44 item store: immutable and mutable items in one table keyed by
// target, with the storing-node rules of bep44.md §4 (cas, seq), expiry 2 h
// after the last accepted put (bep44.md §6, BEP 44 "items MAY expire after 2
// hours") and count and byte bounds that evict the items farthest from our
// own id first.

import (
	"bytes"
	"container/heap"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// Item is one BEP 44 item as stored.
type Item struct {
	V       []byte // raw bencoded value, kept byte for byte, never re-encoded
	K       []byte // Ed25519 public key, 32 bytes (mutable only)
	Salt    []byte // salt, at most MaxSaltLen bytes, nil if none (mutable only)
	Seq     int64  // sequence number (mutable only)
	Sig     []byte // Ed25519 signature over SignBuffer(Salt, Seq, V) (mutable only)
	Mutable bool   // mutable (signed) or immutable item
}

// Target returns the item's target: MutableTarget(K, Salt) for a mutable
// item, ImmutableTarget(V) for an immutable one (BEP 44).
func (it Item) Target() krpc.ID {
	if it.Mutable {
		return MutableTarget(it.K, it.Salt)
	}
	return ImmutableTarget(it.V)
}

// size is the number of payload bytes the item holds, the unit of
// ItemConfig.MaxBytes.
func (it Item) size() int64 {
	return int64(len(it.V) + len(it.K) + len(it.Salt) + len(it.Sig))
}

// clone returns a deep copy of it in a single allocation.
func (it Item) clone() Item {
	buf := make([]byte, 0, it.size())
	sub := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	return Item{
		V:       sub(it.V),
		K:       sub(it.K),
		Salt:    sub(it.Salt),
		Seq:     it.Seq,
		Sig:     sub(it.Sig),
		Mutable: it.Mutable,
	}
}

// Defaults of ItemConfig.
const (
	// DefaultItemTTL: an item expires this long after its last accepted put
	// or refresh (BEP 44: items MAY expire after 2 hours without
	// re-announcement; practice, anacrolix: 2 h after the last put).
	DefaultItemTTL = 2 * time.Hour
	// DefaultMaxItems bounds the number of stored items (immutable and
	// mutable together).
	DefaultMaxItems = 10000
	// DefaultMaxBytes bounds the payload bytes stored (see ItemConfig).
	DefaultMaxBytes = 32 << 20
)

// ItemConfig configures an ItemStore. A zero or negative field takes its
// default.
type ItemConfig struct {
	// TTL is how long an item lives after its last accepted put or refresh.
	// Default DefaultItemTTL (2 h).
	TTL time.Duration
	// MaxItems is the largest number of items held. Default DefaultMaxItems
	// (10000).
	MaxItems int
	// MaxBytes bounds the sum over items of len(V)+len(K)+len(Salt)+len(Sig)
	// (payload only; per-item overhead is bounded by MaxItems). Default
	// DefaultMaxBytes (32 MiB).
	MaxBytes int64
}

// withDefaults returns c with every unset field defaulted.
func (c ItemConfig) withDefaults() ItemConfig {
	if c.TTL <= 0 {
		c.TTL = DefaultItemTTL
	}
	if c.MaxItems <= 0 {
		c.MaxItems = DefaultMaxItems
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	return c
}

// ErrStoreFull is returned (wrapped) by ItemStore.Put when the store is at
// its count or byte bound and every stored item is at least as close to our
// id as the new one, so nothing may be evicted for it. Refusing storage is
// not a protocol error: the put handler answers it with 202 (server error)
// "storage full". Test with errors.Is.
var ErrStoreFull = errors.New("storage: BEP 44 item store full")

// ItemStats are the counters of an ItemStore. Gauges (Immutable, Mutable,
// Bytes) describe the current content; the others count events since
// NewItemStore.
type ItemStats struct {
	Immutable int   // immutable items stored
	Mutable   int   // mutable items stored
	Bytes     int64 // payload bytes stored (unit of ItemConfig.MaxBytes)

	Stored    uint64 // puts that added a new item
	Updated   uint64 // mutable puts that replaced an item with a higher seq
	Refreshed uint64 // puts that only reset an item's expiry (identical re-put)
	Evicted   uint64 // items evicted to make room for closer ones
	Expired   uint64 // items removed because their TTL ran out

	RejectedInvalid  uint64 // 203: item malformed (caller skipped validation)
	RejectedCAS      uint64 // 301: cas present and != stored seq
	RejectedSeqLess  uint64 // 302: seq lower than the stored seq
	RejectedSeqEqual uint64 // 302: same seq as stored, different v
	RejectedFull     uint64 // ErrStoreFull: no room and nothing farther to evict
}

// itemEntry is one stored item with its bookkeeping.
type itemEntry struct {
	item    Item
	target  krpc.ID
	dist    krpc.ID   // target XOR our id
	expires time.Time // the item is gone at and after this instant
	size    int64
	expIdx  int // index in ItemStore.byExpiry
	distIdx int // index in ItemStore.byDist
}

// itemExpiryHeap is a min-heap of entries by expiry time.
type itemExpiryHeap []*itemEntry

func (h itemExpiryHeap) Len() int           { return len(h) }
func (h itemExpiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h itemExpiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].expIdx, h[j].expIdx = i, j
}
func (h *itemExpiryHeap) Push(x any) {
	e := x.(*itemEntry)
	e.expIdx = len(*h)
	*h = append(*h, e)
}
func (h *itemExpiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.expIdx = -1
	return e
}

// itemDistHeap is a max-heap of entries by XOR distance to our id: the root
// is the farthest item, the first to evict.
type itemDistHeap []*itemEntry

func (h itemDistHeap) Len() int           { return len(h) }
func (h itemDistHeap) Less(i, j int) bool { return h[j].dist.Less(h[i].dist) }
func (h itemDistHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].distIdx, h[j].distIdx = i, j
}
func (h *itemDistHeap) Push(x any) {
	e := x.(*itemEntry)
	e.distIdx = len(*h)
	*h = append(*h, e)
}
func (h *itemDistHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.distIdx = -1
	return e
}

// ItemStore holds BEP 44 items for the node whose id is self. It is safe for
// concurrent use. Time is passed in explicitly; the store never reads the
// clock.
type ItemStore struct {
	self krpc.ID
	cfg  ItemConfig

	mu       sync.RWMutex
	items    map[krpc.ID]*itemEntry
	byExpiry itemExpiryHeap
	byDist   itemDistHeap
	stats    ItemStats

	onRemove func(target krpc.ID) // SetOnRemove hook, nil if none
	removed  []krpc.ID            // evictions not yet reported to onRemove
}

// NewItemStore returns an empty store for the node with id self; cfg's unset
// fields take their defaults.
func NewItemStore(self krpc.ID, cfg ItemConfig) *ItemStore {
	return &ItemStore{
		self:  self,
		cfg:   cfg.withDefaults(),
		items: make(map[krpc.ID]*itemEntry),
	}
}

// Config returns the effective configuration (defaults applied).
func (s *ItemStore) Config() ItemConfig { return s.cfg }

// itemShapeError reports what is structurally wrong with it, or "" if
// nothing. It repeats the cheap length checks of ValidatePutShape so that a
// caller that skipped them cannot make the store hold malformed or oversized
// items.
func itemShapeError(it *Item, cas *int64) string {
	switch {
	case len(it.V) == 0:
		return "missing v"
	case len(it.V) > MaxValueLen:
		return "v too big"
	}
	if !it.Mutable {
		if len(it.K) > 0 || len(it.Sig) > 0 || len(it.Salt) > 0 || it.Seq != 0 || cas != nil {
			return "immutable item with mutable fields"
		}
		return ""
	}
	switch {
	case len(it.K) != ed25519.PublicKeySize:
		return "invalid k"
	case len(it.Sig) != ed25519.SignatureSize:
		return "invalid sig"
	case len(it.Salt) > MaxSaltLen:
		return "salt too big"
	case it.Seq < 0:
		return "negative seq"
	}
	return ""
}

// Put stores it at it.Target() following the storing-node rules of
// bep44.md §4 steps 6 and 7. The caller must already have applied
// ValidatePutShape, the token check and VerifyPutSignature (BEP 44: a storing
// node MUST verify the signature before storing); Put only repeats the cheap
// length checks (203 if they fail). cas is the put's "cas" argument, nil if
// absent.
//
// Immutable items are stored, or if already present their expiry is reset.
// For a mutable item already stored at the target:
//   - cas present and != stored seq: 301 (BEP 44 MUST);
//   - seq < stored seq: 302;
//   - seq == stored seq: identical v resets the expiry (success); a
//     different v is refused with 302 (BEP 44: equal seq MUST be rejected
//     unless v is identical; see the errata in README.md);
//   - seq > stored seq: v, seq and sig are replaced (k and salt are the same
//     bytes, since they determine the target).
//
// With nothing stored, cas is ignored (BEP 44: SHOULD). Every accepted put
// sets the expiry to now + TTL (never earlier than it was).
//
// When the store is at its bounds, items strictly farther from our id (XOR
// distance) than the new item's target are evicted, farthest first; if that
// cannot make room, Put returns an error wrapping ErrStoreFull.
//
// Coded failures are returned as *krpc.Error (203, 301, 302). A failed Put
// never changes the stored item. Put copies it; the caller may reuse its
// buffers.
//
// Items evicted by Put are reported to the SetOnRemove hook, if any, after
// the store's lock is released and before Put returns.
func (s *ItemStore) Put(it Item, cas *int64, now time.Time) error {
	s.mu.Lock()
	err := s.putLocked(it, cas, now)
	s.unlockAndReport()
	return err
}

// putLocked is Put; s.mu is held.
func (s *ItemStore) putLocked(it Item, cas *int64, now time.Time) error {
	target := it.Target()
	s.expireLocked(now)

	if msg := itemShapeError(&it, cas); msg != "" {
		s.stats.RejectedInvalid++
		return bep44Protocol(msg)
	}
	expires := now.Add(s.cfg.TTL)
	e, ok := s.items[target]
	if !ok {
		return s.insertLocked(target, &it, expires)
	}
	if e.item.Mutable != it.Mutable {
		// Needs a SHA-1 collision between v and k ‖ salt; refuse rather
		// than let one kind shadow the other.
		s.stats.RejectedInvalid++
		return bep44Protocol("target holds an item of the other kind")
	}
	if !it.Mutable {
		s.refreshLocked(e, expires)
		return nil
	}
	switch old := &e.item; {
	case cas != nil && *cas != old.Seq:
		s.stats.RejectedCAS++
		return &krpc.Error{Code: krpc.ErrCodeCASMismatch, Msg: bep44MsgCASMismatch}
	case it.Seq < old.Seq:
		s.stats.RejectedSeqLess++
		return &krpc.Error{Code: krpc.ErrCodeSeqLessCurrent, Msg: bep44MsgSeqLess}
	case it.Seq == old.Seq && !bytes.Equal(it.V, old.V):
		s.stats.RejectedSeqEqual++
		return &krpc.Error{Code: krpc.ErrCodeSeqLessCurrent, Msg: bep44MsgSeqLess}
	case it.Seq == old.Seq:
		s.refreshLocked(e, expires)
		return nil
	}
	return s.replaceLocked(e, &it, expires)
}

// replaceLocked replaces the mutable item of e by it, whose seq is higher,
// making room first if the new value is larger.
func (s *ItemStore) replaceLocked(e *itemEntry, it *Item, expires time.Time) error {
	size := it.size()
	if !s.makeRoomLocked(e.dist, 0, size-e.size) {
		s.stats.RejectedFull++
		return fmt.Errorf("put mutable item %s seq %d (%d bytes): %w", e.target, it.Seq, size, ErrStoreFull)
	}
	s.stats.Bytes += size - e.size
	e.item, e.size = it.clone(), size
	e.expires = laterTime(e.expires, expires)
	heap.Fix(&s.byExpiry, e.expIdx)
	s.stats.Updated++
	return nil
}

// insertLocked adds a new item at target, evicting farther items if needed.
func (s *ItemStore) insertLocked(target krpc.ID, it *Item, expires time.Time) error {
	dist := target.Xor(s.self)
	size := it.size()
	if !s.makeRoomLocked(dist, 1, size) {
		s.stats.RejectedFull++
		kind := "immutable"
		if it.Mutable {
			kind = "mutable"
		}
		return fmt.Errorf("put %s item %s (%d bytes): %w", kind, target, size, ErrStoreFull)
	}
	e := &itemEntry{item: it.clone(), target: target, dist: dist, expires: expires, size: size}
	s.items[target] = e
	heap.Push(&s.byExpiry, e)
	heap.Push(&s.byDist, e)
	s.stats.Bytes += size
	if it.Mutable {
		s.stats.Mutable++
	} else {
		s.stats.Immutable++
	}
	s.stats.Stored++
	return nil
}

// refreshLocked resets e's expiry after an identical re-put.
func (s *ItemStore) refreshLocked(e *itemEntry, expires time.Time) {
	e.expires = laterTime(e.expires, expires)
	heap.Fix(&s.byExpiry, e.expIdx)
	s.stats.Refreshed++
}

// makeRoomLocked makes the store able to take addItems more items and
// addBytes more bytes by evicting items strictly farther than dist from our
// id, farthest first. It evicts nothing and reports false if that is not
// enough.
func (s *ItemStore) makeRoomLocked(dist krpc.ID, addItems int, addBytes int64) bool {
	count, size := len(s.items), s.stats.Bytes
	fits := func() bool {
		return count+addItems <= s.cfg.MaxItems && size+addBytes <= s.cfg.MaxBytes
	}
	if fits() {
		return true
	}
	var victims []*itemEntry
	for !fits() {
		if len(s.byDist) == 0 || !dist.Less(s.byDist[0].dist) {
			// Nothing farther left: undo the tentative pops.
			for _, v := range victims {
				heap.Push(&s.byDist, v)
			}
			return false
		}
		v := heap.Pop(&s.byDist).(*itemEntry)
		victims = append(victims, v)
		count--
		size -= v.size
	}
	for _, v := range victims {
		heap.Remove(&s.byExpiry, v.expIdx)
		s.forgetLocked(v)
		s.stats.Evicted++
		if s.onRemove != nil {
			s.removed = append(s.removed, v.target)
		}
	}
	return true
}

// forgetLocked drops e from the map and the gauges; the caller has already
// removed it from both heaps.
func (s *ItemStore) forgetLocked(e *itemEntry) {
	delete(s.items, e.target)
	s.stats.Bytes -= e.size
	if e.item.Mutable {
		s.stats.Mutable--
	} else {
		s.stats.Immutable--
	}
}

// Get returns a copy of the item stored at target, if any. An item whose
// expiry is at or before now is reported absent even if Expire has not run
// yet.
func (s *ItemStore) Get(target krpc.ID, now time.Time) (Item, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.items[target]
	if !ok || !now.Before(e.expires) {
		return Item{}, false
	}
	return e.item.clone(), true
}

// Expire removes every item whose expiry is at or before now and returns how
// many it removed. Put also expires items, so memory stays bounded without
// calling Expire; a periodic call just frees memory sooner. The cost is
// O(log n) per removed item.
func (s *ItemStore) Expire(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expireLocked(now)
}

// expireLocked pops expired items off the expiry heap. Each item is popped
// at most once, so the cost is amortised over the puts that stored them.
func (s *ItemStore) expireLocked(now time.Time) int {
	n := 0
	for len(s.byExpiry) > 0 && !now.Before(s.byExpiry[0].expires) {
		e := heap.Pop(&s.byExpiry).(*itemEntry)
		heap.Remove(&s.byDist, e.distIdx)
		s.forgetLocked(e)
		s.stats.Expired++
		n++
	}
	return n
}

// Stats returns a snapshot of the store's counters.
func (s *ItemStore) Stats() ItemStats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.stats
}

// laterTime returns the later of a and b.
func laterTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// SetOnRemove sets fn, nil for none, as the hook called with the target of
// every item evicted to make room for a closer one (by Put or Restore), so
// that a persistent copy (DB.DeleteItems) can follow the store's bounds.
// Items that expire are not reported: DB.DeleteExpired removes those.
//
// fn is called outside the store's lock, on the goroutine of the Put or
// Restore that evicted, before that call returns; a slow fn delays it. fn
// must not call back into the ItemStore: by the time it runs, another
// goroutine may already have stored the target again, so it should only
// forward the target (for example to the DB or to a queue that feeds it).
func (s *ItemStore) SetOnRemove(fn func(target krpc.ID)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRemove = fn
	if fn == nil {
		s.removed = nil
	}
}

// unlockAndReport releases s.mu, then reports the evictions collected while
// it was held to the SetOnRemove hook.
func (s *ItemStore) unlockAndReport() {
	fn, removed := s.onRemove, s.removed
	s.removed = nil
	s.mu.Unlock()
	for _, t := range removed {
		fn(t)
	}
}

// Restore inserts it as loaded from persistent storage (DB.LoadItems) at
// now: as if it had been put at expires - TTL, so it expires at expires, or
// at now + TTL if expires is later than that (a stored expiry from the
// future, after a clock step back). An item already expired at now is
// skipped with a nil error.
//
// The count and byte bounds apply as for Put: items strictly farther from
// our id are evicted (and reported to the SetOnRemove hook), or Restore
// fails with an error wrapping ErrStoreFull. The cheap shape checks of Put
// are repeated (a *krpc.Error 203 if they fail); the signature is not
// verified again, that was done when the item was first put.
//
// If the target already holds an item, the newer one is kept: a mutable
// item with a higher seq replaces the stored one, the same item only extends
// the stored expiry, and anything else leaves the store unchanged (nil
// error). In Stats, restored items count as Stored or Updated, like the
// put that first stored them.
func (s *ItemStore) Restore(it Item, expires, now time.Time) error {
	if !now.Before(expires) {
		return nil
	}
	if limit := now.Add(s.cfg.TTL); expires.After(limit) {
		expires = limit
	}
	s.mu.Lock()
	err := s.restoreLocked(&it, expires, now)
	s.unlockAndReport()
	return err
}

// restoreLocked is Restore; s.mu is held.
func (s *ItemStore) restoreLocked(it *Item, expires, now time.Time) error {
	s.expireLocked(now)
	if msg := itemShapeError(it, nil); msg != "" {
		s.stats.RejectedInvalid++
		return bep44Protocol(msg)
	}
	target := it.Target()
	e, ok := s.items[target]
	switch {
	case !ok:
		return s.insertLocked(target, it, expires)
	case e.item.Mutable != it.Mutable:
		return nil
	case it.Mutable && it.Seq > e.item.Seq:
		return s.replaceLocked(e, it, expires)
	case !it.Mutable || (it.Seq == e.item.Seq && bytes.Equal(it.V, e.item.V)):
		e.expires = laterTime(e.expires, expires)
		heap.Fix(&s.byExpiry, e.expIdx)
	}
	return nil
}

// Check reports the error Put(it, cas, now) would return, without storing
// anything: a *krpc.Error (203, 301, 302) or an error wrapping
// ErrStoreFull. A node that must write an item to disk before it keeps it
// in memory checks first, writes, then Puts. Check drops expired items, as
// Put does.
func (s *ItemStore) Check(it Item, cas *int64, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	if msg := itemShapeError(&it, cas); msg != "" {
		return bep44Protocol(msg)
	}
	target := it.Target()
	e, ok := s.items[target]
	if !ok {
		if !s.roomLocked(target.Xor(s.self), 1, it.size()) {
			return fmt.Errorf("put item %s: %w", target, ErrStoreFull)
		}
		return nil
	}
	if e.item.Mutable != it.Mutable {
		return bep44Protocol("target holds an item of the other kind")
	}
	if !it.Mutable {
		return nil
	}
	switch old := &e.item; {
	case cas != nil && *cas != old.Seq:
		return &krpc.Error{Code: krpc.ErrCodeCASMismatch, Msg: bep44MsgCASMismatch}
	case it.Seq < old.Seq, it.Seq == old.Seq && !bytes.Equal(it.V, old.V):
		return &krpc.Error{Code: krpc.ErrCodeSeqLessCurrent, Msg: bep44MsgSeqLess}
	case it.Seq > old.Seq && !s.roomLocked(e.dist, 0, it.size()-e.size):
		return fmt.Errorf("put mutable item %s seq %d: %w", target, it.Seq, ErrStoreFull)
	}
	return nil
}

// roomLocked reports whether makeRoomLocked(dist, addItems, addBytes)
// would succeed, changing nothing: whether evicting the items strictly
// farther than dist from our id would make the new one fit. It visits only
// those items (byDist is a max-heap: below an item that is not farther,
// none is), and stops once enough are found.
func (s *ItemStore) roomLocked(dist krpc.ID, addItems int, addBytes int64) bool {
	count, size := len(s.items)+addItems, s.stats.Bytes+addBytes
	fits := func() bool { return count <= s.cfg.MaxItems && size <= s.cfg.MaxBytes }
	stack := []int{0}
	for !fits() && len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if i >= len(s.byDist) || !dist.Less(s.byDist[i].dist) {
			continue
		}
		count--
		size -= s.byDist[i].size
		stack = append(stack, 2*i+1, 2*i+2)
	}
	return fits()
}
