package core

import (
	"net/netip"
	"time"

	"github.com/dhtd/dhtd/krpc"
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
	m.V = w.n.cfg.ClientVersion
	data, err := w.n.encode(m)
	if err != nil {
		w.n.stats.Dropped++
		return
	}
	w.n.push(Transmit{To: w.to, Data: data, Error: m.E != nil})
}

// query passes a query to the handler: Config.Handler, or the node's
// Service.
func (n *Node) query(now time.Time, from netip.AddrPort, m *krpc.Msg) {
	q := Query{Now: now, From: from, Msg: m}
	// The scratch's writer: a handler answers before it returns or
	// detaches, which copies the writer.
	w := &n.scratch.w
	*w = writer{n: n, to: from, tid: m.T}
	if n.handle == nil {
		n.svc.Serve(q, w)
		return
	}
	n.handle(q, w)
	if ev := n.cfg.Events; ev != nil && !w.done {
		ev.Dropped(krpc.DropReadOnly) // not answered, nor kept to answer later
	}
}

// Serve is the node's own query handler, its Service: ping, find_node,
// get_peers and announce_peer (BEP 5), get and put (BEP 44),
// sample_infohashes (BEP 51), the daemon's handlers.
func (n *Node) Serve(q Query, w Writer) { n.svc.Serve(q, w) }
