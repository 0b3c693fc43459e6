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
	pending map[uint16]txnEntry[V]
	n       int // len(pending), kept here so that an idle table's checks read no map
	peak    int // the most in flight since pending was made
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

type txnEntry[V any] struct {
	to  netip.AddrPort
	seq uint64
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
	if t.pending == nil {
		t.pending = make(map[uint16]txnEntry[V])
	}
	for {
		id := uint16(t.rnd.Uint32())
		if _, busy := t.pending[id]; busy {
			continue
		}
		t.seq++
		t.pending[id] = txnEntry[V]{to: to, seq: t.seq, v: v}
		t.n++
		t.peak = max(t.peak, t.n)
		if len(t.order) == 0 {
			t.base = t.seq
		}
		t.order = append(t.order, txnRef{deadline: now.Add(t.timeout), id: id, live: true})
		return TxnHandle{ID: id, seq: t.seq}, true
	}
}

// end removes the query in flight under id, e.
func (t *Transactions[V]) end(id uint16, e txnEntry[V]) {
	delete(t.pending, id)
	t.n--
	t.order[e.seq-t.base].live = false
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
			t.pending, t.peak = nil, 0
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
	e, ok := t.pending[h.ID]
	if !ok || e.seq != h.seq {
		var zero V
		return zero, false
	}
	t.end(h.ID, e)
	if late {
		t.remember(h.ID, e.to)
	}
	return e.v, true
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
	e, ok := t.pending[id]
	if !ok {
		if a, ok := t.late[id]; ok && a == from {
			return zero, DropLateResponse
		}
		if a, ok := t.lateOld[id]; ok && a == from {
			return zero, DropLateResponse
		}
		return zero, DropUnknownTransaction
	}
	if e.to != from {
		return zero, DropWrongAddress
	}
	t.end(id, e)
	return e.v, ""
}

// Busy reports whether a query to addr is in flight.
func (t *Transactions[V]) Busy(addr netip.AddrPort) bool {
	if t.n == 0 {
		return false
	}
	for _, e := range t.pending {
		if e.to == addr {
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
		e := t.pending[r.id]
		t.end(r.id, e)
		t.remember(r.id, e.to)
		dst = append(dst, Expired[V]{ID: r.id, To: e.to, Value: e.v})
	}
}

// All appends every query in flight to dst and empties the table (a
// closing Server fails them all), in no particular order.
func (t *Transactions[V]) All(dst []Expired[V]) []Expired[V] {
	for id, e := range t.pending {
		dst = append(dst, Expired[V]{ID: id, To: e.to, Value: e.v})
	}
	clear(t.pending)
	t.n = 0
	t.trim()
	return dst
}
