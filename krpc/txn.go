package krpc

import (
	"errors"
	"math/rand/v2"
	"net/netip"
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
	method string
	sent   time.Time   // when the query was made, for the round trip
	done   chan result // buffered, capacity 1: delivery never blocks
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
		e.Value.done <- result{err: ErrTimeout}
	}
}

// removeCall ends query h without an answer; late records its id as timed
// out (the caller gave up on it).
func (s *Server) removeCall(h TxnHandle, late bool) {
	s.txMu.Lock()
	s.txns.Remove(h, late)
	s.txMu.Unlock()
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
		e.Value.done <- result{err: ErrClosed}
	}
}

// newServerTransactions returns a Server's table: ids drawn from a source
// seeded by the clock, queries expiring after cfg.QueryTimeout.
func newServerTransactions(cfg ServerConfig) *Transactions[*call] {
	seed := uint64(cfg.Clock.Now().UnixNano())
	return NewTransactions[*call](cfg.QueryTimeout, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), lateIDs)
}
