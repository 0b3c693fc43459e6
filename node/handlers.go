package node

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

// handleQuery answers one query (docs/protocol.md, Handling a query)
// through w: at once, or, for a put or announce_peer that waits for a
// durable write, later (persist.go). It is the node's krpc.Handler and
// runs on the read loop. The handlers are core.Service's, the ones the
// simulator's nodes run; newService connects them to the node.
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
	n.svc.Serve(core.Query{Now: n.clock.Now(), From: from, Msg: q}, w)
}

// serve is handleQuery on the core node cn, under the driver's lock (the
// core's handler, or CoreNode.Do): the hooks the handlers call reach the
// core through n.core, set for the call (admit).
func (n *Node) serve(cn *core.Node, w krpc.ResponseWriter, q *krpc.Msg) {
	n.core = cn
	n.handleQuery(w, q)
	n.core = nil
}

// newService returns the node's query handlers over its table, tokens and
// stores, with the hooks to what the node keeps: BEP 42 enforcement, the
// admission of queriers, the dual-stack sibling, the amplification guard,
// the metrics and, with a database, durable writes.
func (n *Node) newService() *core.Service {
	s := &core.Service{
		ID: n.id, K: n.cfg.K, Table: n.table,
		Tokens: n.tokens, Peers: n.peers, Items: n.items,
		ReadOnly:       n.cfg.ReadOnly,
		SampleInterval: n.cfg.SampleInterval,
		Scratch:        new(core.Scratch),
	}
	h := &s.Hooks
	if n.cfg.BEP42 == routing.BEP42Enforce {
		h.Accept = n.idAcceptable
	}
	// Queriers the table would take are confirmed by a ping, on the
	// admission schedule (admission.go); our own address never is.
	h.Admit = func(ni krpc.NodeInfo, now time.Time) {
		if !n.isSelf(ni.Addr) {
			n.admit(ni, now)
		}
	}
	h.Nodes = func(r *krpc.Return, target krpc.ID, want4, want6 bool, id krpc.ID, from netip.AddrPort) bool {
		if n.sibling.Load() == nil {
			return false
		}
		n.linkedNodes(r, target, want4, want6, id, from) // dual stack: family.go
		return true
	}
	h.Cap = n.replyCap
	h.Proved = n.owners.add
	h.ExternalIP = n.noteExternalIP
	h.Count = n.countEvent
	if n.db != nil {
		h.StorePeer = n.storePeer
		h.StoreItem = n.storeItem
	}
	return s
}

// countEvent counts an event of the handlers in the metrics.
func (n *Node) countEvent(e core.Event) {
	m := n.metrics
	switch e.Kind {
	case core.EventErrorSent:
		m.ErrorsSent.WithLabelValues(metricsCode(e.Code)).Inc()
	case core.EventTokenIssued:
		m.TokensIssued.Inc()
	case core.EventTokenRejected:
		m.TokensRejected.Inc()
	case core.EventReplyTrimmed:
		m.RepliesTrimmed.Inc()
	case core.EventStoreRefused:
		m.StorageRejections.WithLabelValues(e.Store, e.Reason).Inc()
	case core.EventStoreError:
		n.log.Error("put", "kind", e.Store, "err", e.Err)
	}
}

// debugging reports whether per-packet debug lines are logged.
func (n *Node) debugging() bool { return n.log.Enabled(context.Background(), slog.LevelDebug) }

// storePeer stores an announce_peer that passed the service's checks
// durably (persist.go): the peer is kept in memory, and served, only once
// its record is durable.
func (n *Node) storePeer(w core.Writer, ih krpc.ID, peer netip.AddrPort, seed bool, now time.Time) {
	if n.peers.QuotaRefuses(ih, peer, now) {
		// Over the source's quota: answered as before (libtorrent does
		// not tell either) but neither stored nor written.
		n.metrics.StorageRejections.WithLabelValues(metrics.StorePeer, metrics.RejectQuota).Inc()
		n.svc.Answer(w, nil)
		return
	}
	expires := now.Add(n.peers.Config().TTL)
	n.durable(w, &durableWrite{
		kind:  metrics.StorePeer,
		write: func() error { return n.db.PutPeer(ih, peer, seed, expires) },
		apply: func() *krpc.Error {
			if !n.svc.Announced(n.peers.Announce(ih, peer, seed, now)) {
				// The store refused it (full, or over quota): the
				// announce is answered as before, and the database
				// follows the store's bounds.
				n.queueDelete(dbDelete{peer: storage.PeerKey{IH: ih, Addr: peer}, isPeer: true})
			}
			return nil
		},
	})
}

// storeItem stores a BEP 44 put that passed the service's checks durably
// (persist.go): checked against the store, written, and only then kept in
// memory and served, so that a write the disk refused is never served nor
// evicts anything.
func (n *Node) storeItem(w core.Writer, kind string, p *storage.PutArgs, from netip.Addr, now time.Time) {
	if err := n.items.CheckFrom(p.Item(), p.Cas, from, now); err != nil {
		n.svc.Answer(w, n.svc.PutResult(kind, err))
		return
	}
	// The put's slices alias the packet buffer, which the read loop
	// reuses.
	it, expires := p.Item().Clone(), now.Add(n.items.Config().TTL)
	n.durable(w, &durableWrite{
		kind:  kind,
		write: func() error { return n.db.PutItem(it, n.items.Source(it.Target(), from), expires) },
		apply: func() *krpc.Error {
			// cas was checked above; a put that raced past this one
			// with a higher seq wins here as it did on disk (302).
			err := n.items.PutFrom(it, nil, from, now)
			if errors.Is(err, storage.ErrStoreFull) || errors.Is(err, storage.ErrQuota) {
				if _, ok := n.items.Get(it.Target(), now); !ok {
					t := it.Target()
					n.queueDelete(dbDelete{item: &t})
				}
			}
			return n.svc.PutResult(kind, err)
		},
	})
}
