package krpc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Errors a query can end with (besides a *Error from the remote node).
var (
	ErrTimeout = errors.New("krpc: query timed out")
	ErrClosed  = errors.New("krpc: server closed")
	// ErrOverloaded: Go found MaxInFlight queries awaiting an answer.
	ErrOverloaded = errors.New("krpc: too many queries in flight")
)

// TIDLen is the length of the transaction ids this node generates: 2 bytes,
// the size BEP 5 suggests and libtorrent uses.
const TIDLen = 2

// result is an answer or an error, as Query hands it over from its
// callback.
type result struct {
	msg *Msg
	err error
}

// call is one query in flight.
type call struct {
	method string
	to     netip.AddrPort
	sent   time.Time // when the query was made, for the round trip
	done   Callback
}

// Callback receives the outcome of a query started with Go: the answer
// with a nil error, or an error that wraps ErrTimeout, ErrClosed or the
// remote node's *Error (with its message, for an error reply). It runs on
// the server's read loop, its timer or Close, once per query: it must not
// block, and must not call Close. It may start other queries. The message
// is the callback's to keep.
type Callback func(m *Msg, err error)

// Call is a query started with Go, for Cancel.
type Call struct {
	s      *Server
	h      TxnHandle
	c      *call
	cancel func() bool // NewCall's
}

// NewCall returns a Call whose Cancel calls cancel: for a driver of
// queries other than Server (node.CoreNode) that hands out Calls.
func NewCall(cancel func() bool) Call { return Call{cancel: cancel} }

// Cancel ends the query without waiting for its answer, and reports
// whether it did: false if the query had ended already, in which case its
// callback has run or is running. After a true Cancel the callback never
// runs, and an answer that comes later is dropped as late.
func (c Call) Cancel() bool {
	if c.cancel != nil {
		return c.cancel()
	}
	if c.s == nil {
		return false
	}
	if !c.s.removeCall(c.h, true) {
		return false
	}
	c.s.release()
	c.s.cfg.Events.QueryDone(c.c.method, OutcomeCancelled, 0)
	return true
}

// The Server's transaction manager: a Transactions table under txMu, and
// one timer armed for its earliest deadline while queries are in flight
// (docs/protocol.md, Transaction ids).

// lateIDs is how many timed-out ids a Server remembers per generation.
const lateIDs = 1024

// addCall registers c, a query to addr, and arms the timer if it was idle.
func (s *Server) addCall(addr netip.AddrPort, c *call) (TxnHandle, error) {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if s.closing.Load() {
		return TxnHandle{}, ErrClosed
	}
	h, ok := s.txns.Add(c.sent, addr, c)
	if !ok {
		return TxnHandle{}, errNoTID
	}
	if s.txTimer == nil {
		s.armLocked(c.sent)
	}
	return h, nil
}

// errNoTID: all 65,536 transaction ids are in flight.
var errNoTID = errors.New("krpc: no free transaction id")

// armLocked arms the timer for the earliest deadline in flight, if any.
func (s *Server) armLocked(now time.Time) {
	d, ok := s.txns.NextDeadline()
	if !ok {
		return
	}
	s.txTimer = s.cfg.Clock.AfterFunc(max(d.Sub(now), 0), s.expire)
}

// expire fails the queries whose deadline passed with ErrTimeout and arms
// the timer for the next.
func (s *Server) expire() {
	s.txMu.Lock()
	if s.txTimer != nil {
		s.txTimer.Stop() // a timer armed since this one fired
		s.txTimer = nil
	}
	now := s.cfg.Clock.Now()
	expired := s.txns.Expire(now, nil)
	if !s.closing.Load() {
		s.armLocked(now)
	}
	s.txMu.Unlock()
	for _, e := range expired {
		s.finish(e.Value, nil, ErrTimeout)
	}
}

// removeCall ends query h without an answer, and reports whether it was
// still in flight; late records its id as timed out (the caller gave up
// on it).
func (s *Server) removeCall(h TxnHandle, late bool) bool {
	s.txMu.Lock()
	_, ok := s.txns.Remove(h, late)
	s.txMu.Unlock()
	return ok
}

// release frees the MaxInFlight slot of a query that ended.
func (s *Server) release() {
	<-s.slots
	s.cfg.Events.InFlight(s.InFlight())
}

// finish ends call c, taken out of the table, with an answer or an error:
// it counts its outcome, frees its slot and runs its callback. The count
// comes first, so that whoever sees a query sent in the freed slot sees
// the outcome that freed it.
func (s *Server) finish(c *call, m *Msg, err error) {
	rtt := s.cfg.Clock.Now().Sub(c.sent)
	switch {
	case err == nil:
		s.cfg.Events.QueryDone(c.method, OutcomeAnswered, rtt)
	case errors.Is(err, ErrClosed):
		err = ErrClosed
	case errors.Is(err, ErrTimeout):
		s.cfg.Events.QueryDone(c.method, OutcomeTimeout, rtt)
		err = fmt.Errorf("query %s %s: %w", c.method, c.to, err)
	default:
		s.cfg.Events.QueryDone(c.method, OutcomeError, rtt)
		err = fmt.Errorf("query %s %s: %w", c.method, c.to, err)
	}
	s.release()
	c.done(m, err)
}

// matchCall finds and removes the call a response belongs to, or returns
// the reason to drop it.
func (s *Server) matchCall(tid string, from netip.AddrPort) (*call, string) {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	return s.txns.Match(tid, from)
}

// closeCalls fails every query in flight with ErrClosed.
func (s *Server) closeCalls() {
	s.txMu.Lock()
	if s.txTimer != nil {
		s.txTimer.Stop()
		s.txTimer = nil
	}
	all := s.txns.All(nil)
	s.txMu.Unlock()
	for _, e := range all {
		s.finish(e.Value, nil, ErrClosed)
	}
}

// newServerTransactions returns a Server's table: ids drawn from a source
// seeded by the clock, queries expiring after cfg.QueryTimeout.
func newServerTransactions(cfg ServerConfig) *Transactions[*call] {
	seed := uint64(cfg.Clock.Now().UnixNano())
	return NewTransactions[*call](cfg.QueryTimeout, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), lateIDs)
}
