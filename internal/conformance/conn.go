package conformance

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// errBudget is returned when a source address has sent its share of
// packets (Config.MaxPackets).
var errBudget = errors.New("packet budget spent")

// errNoReply is returned when no answer came within the query timeout.
var errNoReply = errors.New("no reply")

// source is one local address the suite sends from, with its packet budget
// shared by every socket bound to it.
type source struct {
	addr netip.Addr
	max  int64
	sent atomic.Int64
}

// take reserves one packet of the budget.
func (s *source) take() bool {
	if s.sent.Add(1) > s.max {
		s.sent.Add(-1)
		return false
	}
	return true
}

// reply is one packet received in answer to a query.
type reply struct {
	raw       []byte
	from      netip.AddrPort
	msg       value // the decoded dict; kind 0 if it did not decode
	canonical bool
	err       error // why it did not decode as a dict
}

// y returns the message kind.
func (r *reply) y() string { s, _ := r.msg.str("y"); return s }

// r returns the return-value dict of a response.
func (r *reply) r() (value, bool) {
	v, ok := r.msg.d["r"]
	return v, ok && v.kind == 'd'
}

// errCode returns the code of an error reply, -1 when it is not one.
func (r *reply) errCode() (int64, string) {
	e, ok := r.msg.d["e"]
	if r.y() != "e" || !ok || e.kind != 'l' || len(e.l) == 0 || e.l[0].kind != 'i' {
		return -1, ""
	}
	msg := ""
	if len(e.l) > 1 {
		msg = e.l[1].s
	}
	return e.l[0].i, msg
}

// describe summarises a reply for a check's reason.
func (r *reply) describe() string {
	if r == nil {
		return "no reply"
	}
	if r.err != nil {
		return fmt.Sprintf("undecodable reply (%v)", r.err)
	}
	switch r.y() {
	case "r":
		return "a response"
	case "e":
		code, msg := r.errCode()
		return fmt.Sprintf("error %d %q", code, msg)
	}
	return fmt.Sprintf("a message with y=%q", r.y())
}

// sock is one UDP socket talking to the target: a querier with a node id.
// Its read loop matches answers to queries by transaction id and answers the
// target's own queries (ping, find_node, ...) with our id, as a live node
// would, unless the socket is read-only (BEP 43).
type sock struct {
	env    *env
	src    *source
	conn   *net.UDPConn
	addr   netip.AddrPort
	id     krpc.ID
	ro     bool
	target netip.AddrPort

	mu      sync.Mutex
	pending map[string]chan *reply
	next    uint16

	unsolicited atomic.Int64 // answers matching no query
	last        *reply       // the last of them
	queried     atomic.Int64 // queries the target sent us
	done        chan struct{}
}

// newSock binds a socket on src.
func (e *env) newSock(src *source, id krpc.ID, ro bool) (*sock, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src.addr, 0)))
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", src.addr, err)
	}
	s := &sock{
		env: e, src: src, conn: conn, id: id, ro: ro, target: e.cfg.Target,
		pending: map[string]chan *reply{}, done: make(chan struct{}),
	}
	s.addr = conn.LocalAddr().(*net.UDPAddr).AddrPort()
	var b [2]byte
	_, _ = rand.Read(b[:])
	s.next = binary.BigEndian.Uint16(b[:])
	e.mu.Lock()
	e.socks = append(e.socks, s)
	e.mu.Unlock()
	go s.read()
	return s, nil
}

func (s *sock) close() {
	_ = s.conn.Close()
	<-s.done
}

func (s *sock) read() {
	defer close(s.done)
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		r := &reply{raw: append([]byte(nil), buf[:n]...), from: from}
		v, err := decode(r.raw)
		switch {
		case err != nil:
			r.err = err
		case v.kind != 'd':
			r.err = errors.New("not a dict")
		default:
			r.msg, r.canonical = v, krpc.CheckCanonical(r.raw, krpc.Limits{}) == nil
		}
		s.env.observe(s, r)
		if r.err == nil && r.y() == "q" {
			s.queried.Add(1)
			s.answer(from, r)
			continue
		}
		t, _ := r.msg.str("t")
		s.mu.Lock()
		ch, ok := s.pending[t]
		if ok && r.err == nil {
			delete(s.pending, t)
		}
		s.mu.Unlock()
		if !ok || r.err != nil {
			s.unsolicited.Add(1)
			s.mu.Lock()
			s.last = r
			s.mu.Unlock()
			if !ok {
				continue
			}
		}
		select {
		case ch <- r:
		default: // a second answer with the same transaction id
		}
	}
}

// answer replies to a query from the target as a minimal live node: our id,
// and an empty node list where the method has one.
func (s *sock) answer(from netip.AddrPort, q *reply) {
	if s.ro || from != s.target {
		return // BEP 43: a read-only node answers no queries
	}
	t, _ := q.msg.str("t")
	r := dict{"id": s.id[:]}
	switch m, _ := q.msg.str("q"); m {
	case "find_node", "get_peers", "get", "sample_infohashes":
		r[s.env.nodesKey()] = ""
	}
	if m, _ := q.msg.str("q"); m == "get_peers" || m == "get" {
		r["token"] = "tk"
	}
	_ = s.send(encode(dict{"t": t, "y": "r", "r": r}))
}

// send writes one packet to the target within the source's budget.
func (s *sock) send(b []byte) error {
	if !s.src.take() {
		return fmt.Errorf("%s: %w (%d packets)", s.src.addr, errBudget, s.src.max)
	}
	s.env.rate(s.src)
	_, err := s.conn.WriteToUDPAddrPort(b, s.target)
	return err
}

// tid returns a fresh 2-byte transaction id.
func (s *sock) tid() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], s.next)
	return string(b[:])
}

// query sends method with args (the id is added) and waits for the answer.
func (s *sock) query(ctx context.Context, method string, args dict) (*reply, error) {
	a := dict{"id": s.id[:]}
	for k, v := range args {
		a[k] = v
	}
	t := s.tid()
	m := dict{"t": t, "y": "q", "q": method, "a": a}
	if s.ro {
		m["ro"] = 1
	}
	return s.exchange(ctx, t, encode(m))
}

// exchange sends the packet b, whose transaction id is t, and waits for the
// answer carrying t. It returns errNoReply after the query timeout.
func (s *sock) exchange(ctx context.Context, t string, b []byte) (*reply, error) {
	ch := make(chan *reply, 1)
	s.mu.Lock()
	s.pending[t] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, t)
		s.mu.Unlock()
	}()
	if err := s.send(b); err != nil {
		return nil, err
	}
	timer := time.NewTimer(s.env.cfg.Timeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r, nil
	case <-timer.C:
		return nil, errNoReply
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// silence sends b and returns whatever came back to this socket within the
// query timeout (nil: nothing); the socket is used for nothing else.
func (s *sock) silence(ctx context.Context, b []byte) (*reply, error) {
	if err := s.send(b); err != nil {
		return nil, err
	}
	timer := time.NewTimer(s.env.cfg.Timeout)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}
