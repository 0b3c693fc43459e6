package node

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/dhtd/dhtd/krpc"
)

// errMsg builds an error reply.
func errMsg(code int64, msg string) *krpc.Msg {
	return &krpc.Msg{E: &krpc.Error{Code: code, Msg: msg}}
}

// handleQuery answers one query (docs/protocol.md, Handling a query)
// through w: at once, or, for a put or announce_peer that waits for a
// durable write, later (persist.go). It is the node's krpc.Handler and
// runs on the read loop.
func (n *Node) handleQuery(w krpc.ResponseWriter, q *krpc.Msg) {
	from := w.RemoteAddr()
	n.queryReceived(q.Q)
	if n.debugging() {
		// Guarded here: the arguments of a variadic call escape, and
		// boxing them cost two allocations per query with debug off.
		n.debugPacket("query received", "method", q.Q, "from", from)
	}
	if f := n.onQuery.Load(); f != nil {
		(*f)(from, q.Q)
	}
	if n.cfg.ReadOnly {
		return // BEP 43: a read-only node answers no queries
	}
	a := q.A
	now := n.clock.Now()
	// BEP 42, enforce mode: a node whose id does not match its address is
	// refused, as libtorrent's enforce_node_id does.
	if !n.idAcceptable(a.ID, from.Addr()) {
		n.answer(w, errMsg(krpc.ErrCodeProtocol, "invalid node ID (BEP 42)"))
		return
	}
	// BEP 43: a node that says it is read-only never enters the table.
	// One the table would take is scheduled for a confirmation ping once
	// the query is handled, so that a valid token in it counts
	// (admission.go).
	if q.RO != 1 && a.ID != n.id {
		if ni := (krpc.NodeInfo{ID: a.ID, Addr: from}); n.table.Heard(ni, now) && !n.isSelf(from) {
			defer n.admit(ni, now)
		}
	}
	var reply *krpc.Msg
	switch q.Q {
	case krpc.MethodPing:
		reply = n.newReply()
	case krpc.MethodFindNode:
		if a.Target == nil {
			reply = errMsg(krpc.ErrCodeProtocol, "find_node: target missing")
			break
		}
		reply = n.nodesReply(*a.Target, a, from)
	case krpc.MethodGetPeers:
		reply = n.handleGetPeers(from, a)
	case krpc.MethodAnnouncePeer:
		reply = n.handleAnnounce(w, from, a)
	case krpc.MethodGet:
		reply = n.handleGet(from, a)
	case krpc.MethodPut:
		reply = n.handlePut(w, from, a)
	case krpc.MethodSampleInfohashes:
		reply = n.handleSampleInfohashes(from, a)
	default:
		// Forward compatibility (practice, libtorrent): a query of an unknown
		// method that names a target or an infohash is answered as
		// find_node; anything else gets 204 (BEP 5).
		switch {
		case a.Target != nil:
			reply = n.nodesReply(*a.Target, a, from)
		case a.InfoHash != nil:
			reply = n.nodesReply(*a.InfoHash, a, from)
		default:
			reply = errMsg(krpc.ErrCodeMethodUnknown, "Method Unknown")
		}
	}
	if reply != nil { // nil: w is kept to answer later
		n.answer(w, reply)
	}
}

// answer sends reply, a response (R set; our id is filled in) or an error
// (E set, counted), through w.
func (n *Node) answer(w krpc.ResponseWriter, reply *krpc.Msg) {
	if reply.E != nil {
		n.sentError(reply)
		w.Error(reply.E.Code, reply.E.Msg)
		return
	}
	reply.R.ID = n.id
	w.Reply(reply.R)
}

// debugging reports whether per-packet debug lines are logged.
func (n *Node) debugging() bool { return n.log.Enabled(context.Background(), slog.LevelDebug) }

func (n *Node) sentError(m *krpc.Msg) *krpc.Msg {
	n.metrics.ErrorsSent.WithLabelValues(metricsCode(m.E.Code)).Inc()
	return m
}

// replyScratch is the response the read loop answers a query with and
// the room for its nodes, reused for every query so that answering one
// allocates nothing (see BenchmarkHandleQuery). A krpc.ResponseWriter
// encodes an answer before it returns; an answer sent after the handler
// returns (a durable write's) is built elsewhere (persist.go).
type replyScratch struct {
	m     krpc.Msg
	r     krpc.Return
	nodes []krpc.NodeInfo
}

// newReply returns an empty response: the node's scratch, reset. The
// response handleQuery returned before is gone then.
func (n *Node) newReply() *krpc.Msg {
	s := &n.scratch
	s.m, s.r = krpc.Msg{}, krpc.Return{}
	s.m.R = &s.r
	return &s.m
}

// nodesFor fills "nodes" (and, when asked, "nodes6") with the K closest
// nodes the table knows to target (BEP 5; BEP 32 "want"), leaving out the
// querier (see notQuerier).
func (n *Node) nodesFor(target krpc.ID, a *krpc.Args, from netip.AddrPort) *krpc.Return {
	return n.nodesReply(target, a, from).R
}

// nodesReply is a response holding nodesFor's nodes. The common case, an
// IPv4 table asked for IPv4 nodes, hands Closest's slice over as "nodes"
// without copying it.
func (n *Node) nodesReply(target krpc.ID, a *krpc.Args, from netip.AddrPort) *krpc.Msg {
	m := n.newReply()
	r := m.R
	want4, want6 := a.WantsNodes(from.Addr().Is6() && !from.Addr().Is4In6())
	if n.sibling.Load() != nil {
		n.linkedNodes(m.R, target, want4, want6, a.ID, from) // dual stack: family.go
		return m
	}
	n.scratch.nodes = n.table.AppendClosest(n.scratch.nodes[:0], target, n.cfg.K+2)
	closest := notQuerier(n.scratch.nodes, a.ID, from, n.cfg.K)
	if len(closest) == 0 {
		return m
	}
	v6 := 0
	for _, c := range closest {
		if !c.Addr.Addr().Is4() {
			v6++
		}
	}
	if v6 == 0 {
		if want4 {
			r.Nodes = closest
		}
		return m
	}
	for _, c := range closest {
		if c.Addr.Addr().Is4() {
			if want4 {
				r.Nodes = append(r.Nodes, c)
			}
		} else if want6 {
			r.Nodes6 = append(r.Nodes6, c)
		}
	}
	return m
}

// notQuerier removes the querier from closest, in place, and keeps at most k
// nodes. A node that lists the asker to itself wastes a slot of its answer
// and sends the asker's lookup back to the asker (BEP 5: the K nodes closest
// to the target are for the querier to ask next). The querier is any entry
// with its id or its address; both can be in the table (it is added when it
// queries), so callers ask the table for k+2 nodes.
func notQuerier(closest []krpc.NodeInfo, id krpc.ID, from netip.AddrPort, k int) []krpc.NodeInfo {
	fromIP := from.Addr().Unmap()
	out := closest[:0]
	for _, c := range closest {
		if c.ID == id || (c.Addr.Port() == from.Port() && c.Addr.Addr().Unmap() == fromIP) {
			continue
		}
		out = append(out, c)
	}
	return out[:min(k, len(out))]
}
