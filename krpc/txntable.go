package krpc

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Transactions is a table of queries awaiting their answers, with no lock,
// clock or goroutine of its own: the caller hands it the time, serialises
// the calls, and wakes it when NextDeadline says. Server keeps one under
// its lock, woken by a single timer; node/core keeps one per simulated
// node, driven by the simulator's clock. V is what the caller keeps per
// query (Server's call, the core's callback).
//
// Ids are random 2-byte transaction ids (BEP 5 suggests 2 bytes; random so
// that an off-path sender cannot guess one and forge an answer), unique
// among the queries in flight. A response matches only by id and the
// address the query went to. Queries expire in the order they were added:
// each deadline is the time of Add plus one fixed timeout, so with
// non-decreasing times that is the order of the deadlines.
type Transactions[V any] struct {
	timeout time.Duration
	rnd     *rand.Rand
	// slots holds the queries in flight, found by id: open addressing with
	// linear probing from id&mask (the ids are random, so they spread), at
	// most half full. It takes the place of a map, whose hashing and
	// groups cost a simulator of 100,000 nodes, each with its own table,
	// 5% of its time.
	slots []txnSlot[V]
	n     int // queries in flight
	peak  int // the most in flight since slots was made
	// order lists the queries by deadline from order[head] on, including
	// ones that ended (live false), dropped lazily; order[i] is the query
	// of seq base+i, so ending a query marks its place without a search.
	order []txnRef
	head  int
	base  uint64
	seq   uint64
	// late remembers ids that timed out recently, in two generations of
	// lateMax, so a late answer is told apart from one to nothing we
	// asked. lateMax 0 remembers none.
	late, lateOld map[uint16]netip.AddrPort
	lateMax       int
}

// txnSlot is a slot of Transactions.slots: key is seq<<16 | id of the
// query in flight it holds, or 0 when empty.
type txnSlot[V any] struct {
	key uint64
	to  netip.AddrPort
	v   V
}

type txnRef struct {
	deadline time.Time
	id       uint16
	live     bool
}

// TxnHandle names one query of a Transactions: its id and which use of
// that id it is, so that removing a query that already ended touches
// nothing.
type TxnHandle struct {
	ID  uint16
	seq uint64
}

// TID is the transaction id on the wire: 2 bytes, big-endian.
func (h TxnHandle) TID() string {
	var b [TIDLen]byte
	binary.BigEndian.PutUint16(b[:], h.ID)
	return string(b[:])
}

// Expired is a query whose deadline passed, as Transactions.Expire
// reports it.
type Expired[V any] struct {
	ID    uint16
	To    netip.AddrPort
	Value V
}

// NewTransactions returns an empty table whose queries expire timeout
// after they are added, drawing ids from rnd, and remembering up to
// 2 × lateMax timed-out ids to classify late answers.
func NewTransactions[V any](timeout time.Duration, rnd *rand.Rand, lateMax int) *Transactions[V] {
	return &Transactions[V]{timeout: timeout, rnd: rnd, lateMax: lateMax}
}

// Len returns the number of queries in flight.
func (t *Transactions[V]) Len() int { return t.n }

// Add registers a query to addr sent at now under a fresh random id. It
// fails only when all 65,536 ids are in flight; the caller bounds the
// number in flight well below that.
func (t *Transactions[V]) Add(now time.Time, to netip.AddrPort, v V) (TxnHandle, bool) {
	if t.n >= 1<<16 {
		return TxnHandle{}, false
	}
	t.trim()
	if (t.n+1)*2 > len(t.slots) {
		t.grow()
	}
	for {
		id := uint16(t.rnd.Uint32())
		if t.find(id) >= 0 {
			continue
		}
		t.seq++
		t.n++
		t.peak = max(t.peak, t.n)
		if len(t.order) == 0 {
			t.base = t.seq
		}
		t.order = append(t.order, txnRef{deadline: now.Add(t.timeout), id: id, live: true})
		t.put(txnSlot[V]{key: t.seq<<16 | uint64(id), to: to, v: v})
		return TxnHandle{ID: id, seq: t.seq}, true
	}
}

// find returns the slot of the query in flight under id, or -1.
func (t *Transactions[V]) find(id uint16) int {
	if t.n == 0 {
		return -1
	}
	mask := len(t.slots) - 1
	for i := int(id) & mask; ; i = (i + 1) & mask {
		switch k := t.slots[i].key; {
		case k == 0:
			return -1
		case uint16(k) == id:
			return i
		}
	}
}

// put stores q in the first free slot from its id's.
func (t *Transactions[V]) put(q txnSlot[V]) {
	mask := len(t.slots) - 1
	i := int(uint16(q.key)) & mask
	for t.slots[i].key != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = q
}

// grow doubles the slots (16 at first) and puts the queries in flight
// back.
func (t *Transactions[V]) grow() {
	old := t.slots
	t.slots = make([]txnSlot[V], max(16, 2*len(old)))
	for _, q := range old {
		if q.key != 0 {
			t.put(q)
		}
	}
}

// end removes the query in slot i and returns it. Its slot is freed by
// moving back the ones after it that probed past it (deletion without
// tombstones), so nothing keeps its value alive.
func (t *Transactions[V]) end(i int) txnSlot[V] {
	q := t.slots[i]
	t.order[q.key>>16-t.base].live = false
	t.n--
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j].key != 0; j = (j + 1) & mask {
		// The query in j may move to i unless its home slot k lies
		// cyclically in (i, j].
		k := int(uint16(t.slots[j].key)) & mask
		if (i < j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = txnSlot[V]{}
	return q
}

// trim drops the answered queries at the head of the order, and the whole
// list when nothing is in flight.
func (t *Transactions[V]) trim() {
	if t.n == 0 {
		if t.head == 0 && len(t.order) == 0 {
			return
		}
		// Give a burst's memory back; keep a small table for the next.
		if t.peak > 16 {
			t.slots, t.peak = nil, 0
		}
		if cap(t.order) > 64 {
			t.order = nil
		}
		t.order, t.head = t.order[:0], 0
		return
	}
	for t.head < len(t.order) && !t.order[t.head].live {
		t.head++
	}
	if t.head > 32 && t.head*2 >= len(t.order) {
		n := copy(t.order, t.order[t.head:])
		t.order, t.base, t.head = t.order[:n], t.base+uint64(t.head), 0
	}
}

// Remove ends query h without an answer. late records its id as timed out
// (a query given up on, whose answer may still come). It reports whether
// h was in flight, and its value.
func (t *Transactions[V]) Remove(h TxnHandle, late bool) (V, bool) {
	i := t.find(h.ID)
	if i < 0 || t.slots[i].key>>16 != h.seq {
		var zero V
		return zero, false
	}
	q := t.end(i)
	if late {
		t.remember(h.ID, q.to)
	}
	return q.v, true
}

// remember records id, sent to to, as timed out.
func (t *Transactions[V]) remember(id uint16, to netip.AddrPort) {
	if t.lateMax <= 0 {
		return
	}
	if t.late == nil || len(t.late) >= t.lateMax {
		t.lateOld, t.late = t.late, make(map[uint16]netip.AddrPort)
	}
	t.late[id] = to
}

// Match finds and removes the query a response or error with transaction
// id tid from from answers. When there is none it returns the reason to
// drop the packet: DropUnknownTransaction, DropWrongAddress (the id is in
// flight to another address, and stays so) or DropLateResponse.
func (t *Transactions[V]) Match(tid string, from netip.AddrPort) (V, string) {
	var zero V
	if len(tid) != TIDLen || (t.n == 0 && t.late == nil) {
		return zero, DropUnknownTransaction
	}
	id := binary.BigEndian.Uint16([]byte(tid))
	i := t.find(id)
	if i < 0 {
		if a, ok := t.late[id]; ok && a == from {
			return zero, DropLateResponse
		}
		if a, ok := t.lateOld[id]; ok && a == from {
			return zero, DropLateResponse
		}
		return zero, DropUnknownTransaction
	}
	if t.slots[i].to != from {
		return zero, DropWrongAddress
	}
	return t.end(i).v, ""
}

// Busy reports whether a query to addr is in flight.
func (t *Transactions[V]) Busy(addr netip.AddrPort) bool {
	if t.n == 0 {
		return false
	}
	for i := range t.slots {
		if q := &t.slots[i]; q.key != 0 && q.to == addr {
			return true
		}
	}
	return false
}

// NextDeadline returns the earliest deadline of the queries in flight.
func (t *Transactions[V]) NextDeadline() (time.Time, bool) {
	t.trim()
	if t.head == len(t.order) {
		return time.Time{}, false
	}
	return t.order[t.head].deadline, true
}

// Expire removes the queries whose deadline is not after now, records them
// as timed out, and appends them to dst in the order they were added. The
// caller acts on them after Expire returns, so what it does (send more
// queries, say) does not change which ones expired.
func (t *Transactions[V]) Expire(now time.Time, dst []Expired[V]) []Expired[V] {
	for {
		t.trim()
		if t.head == len(t.order) {
			return dst
		}
		r := t.order[t.head]
		if now.Before(r.deadline) {
			return dst
		}
		q := t.end(t.find(r.id))
		t.remember(r.id, q.to)
		dst = append(dst, Expired[V]{ID: r.id, To: q.to, Value: q.v})
	}
}

// All appends every query in flight to dst, in the order they were added,
// and empties the table (a closing Server fails them all).
func (t *Transactions[V]) All(dst []Expired[V]) []Expired[V] {
	for _, r := range t.order[t.head:] {
		if r.live {
			q := t.slots[t.find(r.id)]
			dst = append(dst, Expired[V]{ID: r.id, To: q.to, Value: q.v})
		}
	}
	clear(t.slots)
	t.n = 0
	t.trim()
	return dst
}
