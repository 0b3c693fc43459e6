package krpc

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// Errors a query can end with (besides a *Error from the remote node).
var (
	ErrTimeout = errors.New("krpc: query timed out")
	ErrClosed  = errors.New("krpc: server closed")
)

// TIDLen is the length of the transaction ids this node generates: 2 bytes,
// the size BEP 5 suggests and libtorrent uses.
const TIDLen = 2

// result is what a pending call receives: a message or an error.
type result struct {
	msg *Msg
	err error
}

// call is one query in flight.
type call struct {
	addr   netip.AddrPort
	method string
	sent   time.Time   // when the query was made, for the round trip
	done   chan result // buffered, capacity 1: delivery never blocks
}

// transactions is the transaction manager: it hands out transaction ids
// that are unique among in-flight queries and matches every response by
// transaction id AND the address the query went to (docs/protocol.md, Transaction ids).
type transactions struct {
	mu      sync.Mutex
	pending map[uint16]*call
	// late remembers ids that timed out recently, in two generations, so a
	// late answer is told apart from one to nothing we asked. Bounded.
	late, lateOld map[uint16]netip.AddrPort
	lateMax       int
	rnd           *rand.Rand
}

func newTransactions(seed uint64) *transactions {
	return &transactions{
		pending: make(map[uint16]*call),
		late:    make(map[uint16]netip.AddrPort),
		lateMax: 1024,
		rnd:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

// add registers c under a fresh random id. The caller bounds the number in
// flight (65536 at most exist); add fails only when every id is taken.
func (t *transactions) add(c *call) (uint16, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) >= 1<<16 {
		return 0, false
	}
	for {
		id := uint16(t.rnd.Uint32())
		if _, busy := t.pending[id]; !busy {
			t.pending[id] = c
			return id, true
		}
	}
}

// remove forgets id if it still belongs to c; timedOut records it as late.
func (t *transactions) remove(id uint16, c *call, timedOut bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending[id] != c {
		return false
	}
	delete(t.pending, id)
	if timedOut {
		if len(t.late) >= t.lateMax {
			t.lateOld, t.late = t.late, make(map[uint16]netip.AddrPort)
		}
		t.late[id] = c.addr
	}
	return true
}

// match finds and removes the call a response belongs to. It returns a drop
// reason when there is none.
func (t *transactions) match(tid string, from netip.AddrPort) (*call, string) {
	if len(tid) != TIDLen {
		return nil, DropUnknownTransaction
	}
	id := binary.BigEndian.Uint16([]byte(tid))
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.pending[id]
	if c == nil {
		if a, ok := t.late[id]; ok && a == from {
			return nil, DropLateResponse
		}
		if a, ok := t.lateOld[id]; ok && a == from {
			return nil, DropLateResponse
		}
		return nil, DropUnknownTransaction
	}
	if c.addr != from {
		return nil, DropWrongAddress
	}
	delete(t.pending, id)
	return c, ""
}

// closeAll fails every pending call.
func (t *transactions) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, c := range t.pending {
		delete(t.pending, id)
		c.done <- result{err: ErrClosed}
	}
}

func (t *transactions) inFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}
