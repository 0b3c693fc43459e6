package storage

// The BEP 44 item store: immutable and mutable items in one table keyed by
// target, with the storing-node rules of docs/protocol.md, BEP 44 items (cas, seq), expiry 2 h
// after the last accepted put (BEP 44, Expiration: "items MAY expire after 2
// hours"), count and byte bounds, and a per-source quota (quota.go): when
// full, room is taken from the source network holding the most items.

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/dhtd/dhtd/internal/slotheap"
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

// Clone returns a deep copy of it, its byte fields in a single allocation
// (empty ones nil). The copy shares nothing with it, so it outlives a
// packet buffer or a caller's slices.
func (it Item) Clone() Item {
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
	// MaxPerSource is the most items one source network (the /24 of an
	// IPv4 sender, the /48 of an IPv6 one) may have stored; a put of a new
	// item beyond it fails with ErrQuota. Re-puts and updates of stored
	// items are always allowed. Default MaxItems/DefaultSourceShare (2%,
	// 200 items), at least 1; negative disables the quota.
	MaxPerSource int
	// LimitLoopback applies MaxPerSource to loopback senders too, which
	// are exempt by default so local test networks work.
	LimitLoopback bool
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
	c.MaxPerSource = sourceQuota(c.MaxPerSource, c.MaxItems)
	return c
}

// ErrStoreFull is returned (wrapped) by ItemStore.Put and PeerStore.Announce
// when the store is at its count or byte bound and no source network holds
// more than the writer's, so nothing may be evicted for it (see
// ItemStore.PutFrom and PeerStore). Refusing storage is not a protocol
// error: the put handler answers it with 202 (server error) "storage full".
// Test with errors.Is.
var ErrStoreFull = errors.New("storage: store full")

// ItemStats are the counters of an ItemStore. Gauges (Immutable, Mutable,
// Bytes) describe the current content; the others count events since
// NewItemStore.
type ItemStats struct {
	Immutable int   // immutable items stored
	Mutable   int   // mutable items stored
	Bytes     int64 // payload bytes stored (unit of ItemConfig.MaxBytes)
	Sources   int   // source networks (/24, /48) that items are charged to
	TopSource int   // items charged to the network holding the most

	Stored    uint64 // puts that added a new item
	Updated   uint64 // mutable puts that replaced an item with a higher seq
	Refreshed uint64 // puts that only reset an item's expiry (identical re-put)
	Evicted   uint64 // items evicted from the network holding the most to make room
	Expired   uint64 // items removed because their TTL ran out

	RejectedInvalid  uint64 // 203: item malformed (caller skipped validation)
	RejectedCAS      uint64 // 301: cas present and != stored seq
	RejectedSeqLess  uint64 // 302: seq lower than the stored seq
	RejectedSeqEqual uint64 // 302: same seq as stored, different v
	RejectedFull     uint64 // ErrStoreFull: no room and no network over the putter's share
	RejectedQuota    uint64 // ErrQuota: the source network holds its quota
}

// itemEntry is one stored item with its bookkeeping.
type itemEntry struct {
	item    Item
	target  krpc.ID
	src     sourceKey // the network that first stored it
	u       usage     // eviction order (quota.go)
	expires time.Time // the item is gone at and after this instant
	size    int64
	expIdx  int // index in ItemStore.byExpiry
}

func (e *itemEntry) use() *usage { return &e.u }

// Before orders ItemStore.byExpiry: the first to expire first.
func (e *itemEntry) Before(o *itemEntry) bool { return e.expires.Before(o.expires) }

// Slot is where ItemStore.byExpiry keeps e's index.
func (e *itemEntry) Slot() *int { return &e.expIdx }

// ItemStore holds BEP 44 items for the node whose id is self. It is safe for
// concurrent use. Time is passed in explicitly; the store never reads the
// clock.
type ItemStore struct {
	self krpc.ID
	cfg  ItemConfig

	mu       sync.RWMutex
	items    map[krpc.ID]*itemEntry
	byExpiry slotheap.Heap[*itemEntry]
	bySource groups[*itemEntry] // eviction order, per source network
	stats    ItemStats

	onRemove func(target krpc.ID) // SetOnRemove hook, nil if none
	removed  []krpc.ID            // evictions not yet reported to onRemove
}

// NewItemStore returns an empty store for the node with id self; cfg's unset
// fields take their defaults.
func NewItemStore(self krpc.ID, cfg ItemConfig) *ItemStore {
	return &ItemStore{
		self:     self,
		cfg:      cfg.withDefaults(),
		items:    make(map[krpc.ID]*itemEntry),
		bySource: newGroups[*itemEntry](),
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
// docs/protocol.md, BEP 44 items steps 6 and 7. The caller must already have applied
// ValidatePutShape, the token check and VerifyPutSignature (BEP 44: a storing
// node MUST verify the signature before storing); Put only repeats the cheap
// length checks (ErrMalformed if they fail). cas is the put's "cas" argument, nil if
// absent.
//
// Immutable items are stored, or if already present their expiry is reset.
// For a mutable item already stored at the target:
//   - cas present and != stored seq: 301 (BEP 44 MUST);
//   - seq < stored seq: 302;
//   - seq == stored seq: identical v resets the expiry (success); a
//     different v is refused with 302 (BEP 44: equal seq MUST be rejected
//     unless v is identical; docs/protocol.md, BEP 44 items);
//   - seq > stored seq: v, seq and sig are replaced (k and salt are the same
//     bytes, since they determine the target).
//
// With nothing stored, cas is ignored (BEP 44: SHOULD). Every accepted put
// sets the expiry to now + TTL (never earlier than it was).
//
// Put stores it as of unknown origin: the quota does not apply, and the
// item counts in the share of the unknown network (see PutFrom).
//
// Refusals are returned as *PutError (ErrMalformed, ErrCASMismatch,
// ErrSeqTooLow); a full store or source over quota as errors wrapping
// ErrStoreFull or ErrQuota. A failed Put
// never changes the stored item. Put copies it; the caller may reuse its
// buffers.
//
// Items evicted by Put are reported to the SetOnRemove hook, if any, after
// the store's lock is released and before Put returns.
func (s *ItemStore) Put(it Item, cas *int64, now time.Time) error {
	return s.PutFrom(it, cas, netip.Addr{}, now)
}

// PutFrom is Put of an item sent by from, whose network (/24 for IPv4, /48
// for IPv6) the item is charged to if it is new. An item stays charged to
// the network that first stored it, whoever re-puts or updates it.
//
// A new item from a network that already holds MaxPerSource items is
// refused with an error wrapping ErrQuota (loopback senders are exempt
// unless ItemConfig.LimitLoopback is set; an invalid from is exempt).
//
// When the store is at its count or byte bound, items are evicted from the
// network holding the most items, as long as it holds strictly more than
// from's network (so a network can only displace networks holding more
// than it does); within a network, unreferenced items go first, newest
// first, then the least recently referenced. A re-put, an update, or a read
// by another network (GetFrom) references an item. If no network holds
// more than from's, PutFrom fails with an error wrapping ErrStoreFull.
func (s *ItemStore) PutFrom(it Item, cas *int64, from netip.Addr, now time.Time) error {
	s.mu.Lock()
	err := s.putLocked(it, cas, from, now)
	s.unlockAndReport()
	return err
}

// putLocked is PutFrom; s.mu is held.
func (s *ItemStore) putLocked(it Item, cas *int64, from netip.Addr, now time.Time) error {
	target := it.Target()
	s.expireLocked(now)

	if msg := itemShapeError(&it, cas); msg != "" {
		s.stats.RejectedInvalid++
		return refuse(ErrMalformed, msg)
	}
	expires := now.Add(s.cfg.TTL)
	e, ok := s.items[target]
	if !ok {
		src := sourceOf(from)
		if q := s.cfg.MaxPerSource; q >= 0 && !quotaExempt(from, s.cfg.LimitLoopback) && s.bySource.count(src) >= q {
			s.stats.RejectedQuota++
			return fmt.Errorf("put item %s: %d items stored from %s: %w", target, q, sourceString(from), ErrQuota)
		}
		return s.insertLocked(target, &it, src, now, expires)
	}
	if e.item.Mutable != it.Mutable {
		// Needs a SHA-1 collision between v and k ‖ salt; refuse rather
		// than let one kind shadow the other.
		s.stats.RejectedInvalid++
		return refuse(ErrMalformed, "target holds an item of the other kind")
	}
	if !it.Mutable {
		s.refreshLocked(e, now, expires)
		return nil
	}
	switch old := &e.item; {
	case cas != nil && *cas != old.Seq:
		s.stats.RejectedCAS++
		return refuse(ErrCASMismatch, bep44MsgCASMismatch)
	case it.Seq < old.Seq:
		s.stats.RejectedSeqLess++
		return refuse(ErrSeqTooLow, bep44MsgSeqLess)
	case it.Seq == old.Seq && !bytes.Equal(it.V, old.V):
		s.stats.RejectedSeqEqual++
		return refuse(ErrSeqTooLow, bep44MsgSeqLess)
	case it.Seq == old.Seq:
		s.refreshLocked(e, now, expires)
		return nil
	}
	return s.replaceLocked(e, &it, now, expires)
}

// replaceLocked replaces the mutable item of e by it, whose seq is higher,
// making room first if the new value is larger.
func (s *ItemStore) replaceLocked(e *itemEntry, it *Item, now, expires time.Time) error {
	size := it.size()
	ok := true
	if s.stats.Bytes+size-e.size > s.cfg.MaxBytes {
		// e itself is not a candidate for the room its update needs.
		s.bySource.remove(e.src, e)
		ok = s.makeRoomLocked(e.src, 0, size-e.size)
		s.bySource.add(e.src, e, e.u.stored)
	}
	e.u.touch(now.UnixNano())
	s.bySource.fix(e.src, e)
	if !ok {
		s.stats.RejectedFull++
		return fmt.Errorf("put mutable item %s seq %d (%d bytes): %w", e.target, it.Seq, size, ErrStoreFull)
	}
	s.stats.Bytes += size - e.size
	e.item, e.size = it.Clone(), size
	e.expires = laterTime(e.expires, expires)
	s.byExpiry.Fix(e)
	s.stats.Updated++
	return nil
}

// insertLocked adds a new item at target charged to src, first stored at
// stored, evicting from the network holding the most if needed.
func (s *ItemStore) insertLocked(target krpc.ID, it *Item, src sourceKey, stored, expires time.Time) error {
	size := it.size()
	if !s.makeRoomLocked(src, 1, size) {
		s.stats.RejectedFull++
		kind := "immutable"
		if it.Mutable {
			kind = "mutable"
		}
		return fmt.Errorf("put %s item %s (%d bytes): %w", kind, target, size, ErrStoreFull)
	}
	t := stored.UnixNano()
	e := &itemEntry{
		item: it.Clone(), target: target, src: src, expires: expires, size: size, expIdx: -1,
		u: usage{stored: t, lastRef: t, dist: target.Xor(s.self)},
	}
	s.items[target] = e
	s.byExpiry.Push(e)
	s.bySource.add(src, e, t)
	s.stats.Bytes += size
	if it.Mutable {
		s.stats.Mutable++
	} else {
		s.stats.Immutable++
	}
	s.stats.Stored++
	return nil
}

// refreshLocked resets e's expiry after an identical re-put, which also
// references it.
func (s *ItemStore) refreshLocked(e *itemEntry, now, expires time.Time) {
	e.expires = laterTime(e.expires, expires)
	s.byExpiry.Fix(e)
	e.u.touch(now.UnixNano())
	s.bySource.fix(e.src, e)
	s.stats.Refreshed++
}

// makeRoomLocked makes the store able to take addItems more items and
// addBytes more bytes, charged to putter, by evicting from the network
// holding the most items while it holds more than putter (quota.go). It
// evicts nothing and reports false if that is not enough.
func (s *ItemStore) makeRoomLocked(putter sourceKey, addItems int, addBytes int64) bool {
	count, size := len(s.items), s.stats.Bytes
	fits := func() bool {
		return count+addItems <= s.cfg.MaxItems && size+addBytes <= s.cfg.MaxBytes
	}
	if fits() {
		return true
	}
	var victims []*itemEntry
	for !fits() {
		v, _, ok := s.bySource.victim(putter)
		if !ok {
			// No network over putter's share: undo the tentative removals.
			for _, v := range victims {
				s.bySource.add(v.src, v, v.u.stored)
			}
			return false
		}
		s.bySource.remove(v.src, v)
		victims = append(victims, v)
		count--
		size -= v.size
	}
	for _, v := range victims {
		s.byExpiry.Remove(v)
		s.forgetLocked(v)
		s.stats.Evicted++
		if s.onRemove != nil {
			s.removed = append(s.removed, v.target)
		}
	}
	return true
}

// forgetLocked drops e from the map and the gauges; the caller has already
// removed it from the expiry heap and its source group.
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
	return e.item.Clone(), true
}

// Source returns the first address of the network the item stored at
// target is charged to: the network that first stored it, or from's if
// nothing is stored there (the network a put from from would be charged
// to). It is invalid for an item of unknown origin.
func (s *ItemStore) Source(target krpc.ID, from netip.Addr) netip.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e, ok := s.items[target]; ok {
		return e.src.addr()
	}
	return sourceOf(from).addr()
}

// GetFrom is Get for a reader at from. A read from another network than
// the one the item is charged to references the item, which protects it
// from eviction (see PutFrom).
func (s *ItemStore) GetFrom(target krpc.ID, from netip.Addr, now time.Time) (Item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[target]
	if !ok || !now.Before(e.expires) {
		return Item{}, false
	}
	if from.IsValid() && sourceOf(from) != e.src {
		e.u.touch(now.UnixNano())
		s.bySource.fix(e.src, e)
	}
	return e.item.Clone(), true
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
	for e, ok := s.byExpiry.Min(); ok && !now.Before(e.expires); e, ok = s.byExpiry.Min() {
		s.byExpiry.Pop()
		s.bySource.remove(e.src, e)
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
	st := s.stats
	st.Sources, st.TopSource = s.bySource.top()
	return st
}

// laterTime returns the later of a and b.
func laterTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// SetOnRemove sets fn, nil for none, as the hook called with the target of
// every item evicted to make room for another (by Put or Restore), so
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
// The item is charged to the network of source, as DB.LoadItems reports it
// (of unknown origin if source is invalid, as for Put), and first stored at
// expires - TTL. The quota is not checked again: the item was admitted
// when it was put. The count and byte bounds
// apply as for Put: items are evicted from the network holding the most
// (and reported to the SetOnRemove hook), or Restore fails with an error
// wrapping ErrStoreFull. The cheap shape checks of Put
// are repeated (a *PutError, ErrMalformed, if they fail); the signature is not
// verified again, that was done when the item was first put.
//
// If the target already holds an item, the newer one is kept: a mutable
// item with a higher seq replaces the stored one, the same item only extends
// the stored expiry, and anything else leaves the store unchanged (nil
// error). In Stats, restored items count as Stored or Updated, like the
// put that first stored them.
func (s *ItemStore) Restore(it Item, source netip.Addr, expires, now time.Time) error {
	if !now.Before(expires) {
		return nil
	}
	if limit := now.Add(s.cfg.TTL); expires.After(limit) {
		expires = limit
	}
	s.mu.Lock()
	err := s.restoreLocked(&it, sourceOf(source), expires, now)
	s.unlockAndReport()
	return err
}

// restoreLocked is Restore; s.mu is held.
func (s *ItemStore) restoreLocked(it *Item, src sourceKey, expires, now time.Time) error {
	s.expireLocked(now)
	if msg := itemShapeError(it, nil); msg != "" {
		s.stats.RejectedInvalid++
		return refuse(ErrMalformed, msg)
	}
	target := it.Target()
	e, ok := s.items[target]
	switch {
	case !ok:
		return s.insertLocked(target, it, src, expires.Add(-s.cfg.TTL), expires)
	case e.item.Mutable != it.Mutable:
		return nil
	case it.Mutable && it.Seq > e.item.Seq:
		return s.replaceLocked(e, it, now, expires)
	case !it.Mutable || (it.Seq == e.item.Seq && bytes.Equal(it.V, e.item.V)):
		e.expires = laterTime(e.expires, expires)
		s.byExpiry.Fix(e)
	}
	return nil
}

// sourceString names the source network of ip for errors.
func sourceString(ip netip.Addr) string {
	ip = ip.Unmap()
	bits := 24
	if ip.Is6() {
		bits = 48
	}
	if p, err := ip.Prefix(bits); err == nil {
		return p.String()
	}
	return "unknown source"
}

// Check reports the error Put(it, cas, now) would return, without storing
// anything. It is CheckFrom with no source.
func (s *ItemStore) Check(it Item, cas *int64, now time.Time) error {
	return s.CheckFrom(it, cas, netip.Addr{}, now)
}

// CheckFrom reports the error PutFrom(it, cas, from, now) would return,
// without storing or evicting anything: a *PutError (ErrMalformed,
// ErrCASMismatch, ErrSeqTooLow), or an error wrapping ErrQuota or
// ErrStoreFull. A node that must write an
// item to disk before it keeps it in memory checks first, writes, then
// puts. CheckFrom drops expired items, as PutFrom does.
func (s *ItemStore) CheckFrom(it Item, cas *int64, from netip.Addr, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(now)
	if msg := itemShapeError(&it, cas); msg != "" {
		return refuse(ErrMalformed, msg)
	}
	target := it.Target()
	e, ok := s.items[target]
	if !ok {
		src := sourceOf(from)
		if q := s.cfg.MaxPerSource; q >= 0 && !quotaExempt(from, s.cfg.LimitLoopback) && s.bySource.count(src) >= q {
			return fmt.Errorf("put item %s: %d items stored from %s: %w", target, q, sourceString(from), ErrQuota)
		}
		if !s.roomLocked(src, 1, it.size()) {
			return fmt.Errorf("put item %s: %w", target, ErrStoreFull)
		}
		return nil
	}
	if e.item.Mutable != it.Mutable {
		return refuse(ErrMalformed, "target holds an item of the other kind")
	}
	if !it.Mutable {
		return nil
	}
	switch old := &e.item; {
	case cas != nil && *cas != old.Seq:
		return refuse(ErrCASMismatch, bep44MsgCASMismatch)
	case it.Seq < old.Seq, it.Seq == old.Seq && !bytes.Equal(it.V, old.V):
		return refuse(ErrSeqTooLow, bep44MsgSeqLess)
	case it.Seq > old.Seq && s.stats.Bytes+it.size()-e.size > s.cfg.MaxBytes:
		// e itself is not a candidate for the room its update needs.
		s.bySource.remove(e.src, e)
		ok := s.roomLocked(e.src, 0, it.size()-e.size)
		s.bySource.add(e.src, e, e.u.stored)
		if !ok {
			return fmt.Errorf("put mutable item %s seq %d: %w", target, it.Seq, ErrStoreFull)
		}
	}
	return nil
}

// roomLocked reports whether makeRoomLocked(putter, addItems, addBytes)
// would succeed, changing nothing: it takes the same victims tentatively
// and puts them back.
func (s *ItemStore) roomLocked(putter sourceKey, addItems int, addBytes int64) bool {
	count, size := len(s.items), s.stats.Bytes
	fits := func() bool {
		return count+addItems <= s.cfg.MaxItems && size+addBytes <= s.cfg.MaxBytes
	}
	var victims []*itemEntry
	for !fits() {
		v, _, ok := s.bySource.victim(putter)
		if !ok {
			break
		}
		s.bySource.remove(v.src, v)
		victims = append(victims, v)
		count--
		size -= v.size
	}
	ok := fits()
	for _, v := range victims {
		s.bySource.add(v.src, v, v.u.stored)
	}
	return ok
}
