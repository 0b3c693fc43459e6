package core

import (
	"errors"
	"net/netip"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// Query is one incoming query as a handler sees it.
type Query struct {
	Now  time.Time
	From netip.AddrPort
	Msg  *krpc.Msg
}

// Writer answers one query: it is krpc.ResponseWriter, the daemon's
// contract (miekg/dns's shape). Reply encodes r before it returns and
// does not keep it. A handler answers with Reply or Error at most once,
// before it returns or, having called Detach, later (for example once a
// write it made is durable), so there is no sentinel for "I will answer
// later" and no side channel; a handler that does neither sends no
// answer. The writer a handler is given may be the node's scratch one,
// reused for the next query once the handler returns: a late answer goes
// through the writer Detach returns. The core is not safe for concurrent
// use, so a detached writer too is called by the node's driver, between
// or inside its Handle calls.
type Writer = krpc.ResponseWriter

// writer is the Node's Writer: it queues the answer on the node's outbox.
type writer struct {
	n    *Node
	to   netip.AddrPort
	tid  string
	done bool
}

func (w *writer) RemoteAddr() netip.AddrPort { return w.to }

// Detach returns a copy of w that stays valid after the handler returns,
// and leaves w answering nothing more.
func (w *writer) Detach() krpc.ResponseWriter {
	d := *w
	w.done = true
	return &d
}

func (w *writer) Reply(r *krpc.Return) {
	if w.done {
		return
	}
	w.done = true
	r.ID = w.n.id
	w.send(&krpc.Msg{T: w.tid, Y: krpc.KindResponse, R: r})
}

func (w *writer) Error(code int64, msg string) {
	if w.done {
		return
	}
	w.done = true
	w.send(&krpc.Msg{T: w.tid, Y: krpc.KindError, E: &krpc.Error{Code: code, Msg: msg}})
}

func (w *writer) send(m *krpc.Msg) {
	ip := &w.n.scratch.ip
	*ip = krpc.CompactAddr(w.to) // BEP 42: the requester's address as we see it
	m.IP = ip
	data, err := w.n.encode(m)
	if err != nil {
		w.n.stats.Dropped++
		return
	}
	w.n.push(Transmit{To: w.to, Data: data})
}

// query records the querier in the routing table (BEP 5: unproven, so it is
// pinged before it is trusted) and passes the query to the handler.
func (n *Node) query(now time.Time, from netip.AddrPort, m *krpc.Msg) {
	if m.RO != 1 && m.A.ID != n.id { // BEP 43: read-only nodes stay out
		if n.table.Heard(krpc.NodeInfo{ID: m.A.ID, Addr: from}, now) {
			n.ping(now, from)
		}
	}
	if n.cfg.Handler == nil {
		// Serve answers before it returns: the scratch's writer will do.
		w := &n.scratch.w
		*w = writer{n: n, to: from, tid: m.T}
		n.Serve(Query{Now: now, From: from, Msg: m}, w)
		return
	}
	n.handle(Query{Now: now, From: from, Msg: m}, &writer{n: n, to: from, tid: m.T})
}

// Serve is the node's own query handler: ping, find_node, get_peers and
// announce_peer (BEP 5), get and put (BEP 44). Unknown methods get 204.
func (n *Node) Serve(q Query, w Writer) {
	a := q.Msg.A
	switch q.Msg.Q {
	case krpc.MethodPing:
		w.Reply(n.reply())
	case krpc.MethodFindNode:
		if a.Target == nil {
			w.Error(krpc.ErrCodeProtocol, "find_node: target missing")
			return
		}
		r := n.reply()
		r.Nodes = n.closest(*a.Target, q)
		w.Reply(r)
	case krpc.MethodGetPeers:
		if a.InfoHash == nil {
			w.Error(krpc.ErrCodeProtocol, "get_peers: info_hash missing")
			return
		}
		r := n.reply()
		r.Token = n.tokensAt(q.Now).Issue(q.From.Addr(), *a.InfoHash, q.Now)
		if n.peers != nil {
			r.Values = n.peers.Peers(*a.InfoHash, false, 50, q.Now, n.rnd)
		}
		if len(r.Values) == 0 {
			r.Values = nil
			r.Nodes = n.closest(*a.InfoHash, q)
		}
		w.Reply(r)
	case krpc.MethodAnnouncePeer:
		n.serveAnnounce(q, w)
	case krpc.MethodGet:
		if a.Target == nil {
			w.Error(krpc.ErrCodeProtocol, "get: target missing")
			return
		}
		r := n.reply()
		r.Nodes = n.closest(*a.Target, q)
		r.Token = n.tokensAt(q.Now).Issue(q.From.Addr(), *a.Target, q.Now)
		if n.items != nil {
			if it, ok := n.items.Get(*a.Target, q.Now); ok {
				r.V = it.V
				if it.Mutable {
					seq := it.Seq
					r.Seq, r.K, r.Sig = &seq, string(it.K), string(it.Sig)
				}
			}
		}
		w.Reply(r)
	case krpc.MethodPut:
		n.servePut(q, w)
	default:
		w.Error(krpc.ErrCodeMethodUnknown, "method unknown")
	}
}

// serveAnnounce stores the sender as a peer of the infohash if its token
// is one we gave its IP for that infohash (BEP 5).
func (n *Node) serveAnnounce(q Query, w Writer) {
	a := q.Msg.A
	if a.InfoHash == nil || a.Token == "" {
		w.Error(krpc.ErrCodeProtocol, "announce_peer: info_hash or token missing")
		return
	}
	port := q.From.Port()
	if a.ImpliedPort == 0 {
		if a.Port == nil || *a.Port <= 0 || *a.Port > 65535 {
			w.Error(krpc.ErrCodeProtocol, "announce_peer: port missing or out of range")
			return
		}
		port = uint16(*a.Port)
	}
	if !n.tokensAt(q.Now).Check(a.Token, q.From.Addr(), *a.InfoHash, q.Now) {
		w.Error(krpc.ErrCodeProtocol, "invalid token")
		return
	}
	if n.peers == nil {
		n.peers = storage.NewPeerStore(n.id, storage.PeerConfig{TTL: peerTTL})
	}
	seed := a.Seed != nil && *a.Seed == 1 // BEP 33
	if err := n.peers.Announce(*a.InfoHash, netip.AddrPortFrom(q.From.Addr(), port), seed, q.Now); err != nil {
		w.Error(krpc.ErrCodeServer, "storage full")
		return
	}
	w.Reply(&krpc.Return{})
}

// servePut validates and stores a BEP 44 put with the storage package's
// rules (shape, token, signature, then cas and seq).
func (n *Node) servePut(q Query, w Writer) {
	pa := storage.NewPutArgs(q.Msg.A)
	tokenOK := func(target krpc.ID) bool {
		return n.tokensAt(q.Now).Check(q.Msg.A.Token, q.From.Addr(), target, q.Now)
	}
	if err := storage.ValidatePut(&pa, tokenOK); err != nil {
		var pe *storage.PutError
		if errors.As(err, &pe) {
			w.Error(pe.Code(), pe.Msg)
		} else {
			w.Error(krpc.ErrCodeProtocol, "invalid put")
		}
		return
	}
	if n.items == nil {
		n.items = storage.NewItemStore(n.id, storage.ItemConfig{})
	}
	if err := n.items.PutFrom(pa.Item(), pa.Cas, q.From.Addr(), q.Now); err != nil {
		var pe *storage.PutError
		if errors.As(err, &pe) {
			w.Error(pe.Code(), pe.Msg)
		} else {
			w.Error(krpc.ErrCodeServer, "storage full")
		}
		return
	}
	w.Reply(&krpc.Return{})
}

// closest returns the K closest IPv4 nodes of the table to target, not
// counting the querier, which knows itself.
func (n *Node) closest(target krpc.ID, q Query) krpc.CompactNodes {
	all := n.table.AppendClosest(n.scratch.nodes[:0], target, n.cfg.K+1)
	n.scratch.nodes = all[:0] // reused by the next reply: Reply encodes at once
	out := all[:0]            // filtered in place
	for _, ni := range all {
		if ni.Addr.Addr().Is4() && ni.ID != q.Msg.A.ID && ni.Addr != q.From && len(out) < n.cfg.K {
			out = append(out, ni)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// reply returns the scratch's Return, cleared: a reply that the writer
// encodes at once needs no allocation of its own.
func (n *Node) reply() *krpc.Return {
	r := &n.scratch.ret
	*r = krpc.Return{}
	return r
}

// tokensAt returns the node's token secrets, made at the first use.
func (n *Node) tokensAt(now time.Time) *storage.Tokens {
	if n.tokens == nil {
		n.tokens = storage.NewTokens(randReader{n.rnd}, now)
	}
	return n.tokens
}

// randReader reads from a seeded source, so token secrets are reproducible.
type randReader struct{ r interface{ Uint64() uint64 } }

func (r randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.r.Uint64())
	}
	return len(p), nil
}
