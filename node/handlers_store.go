package node

import (
	"errors"
	"net/netip"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/storage"
)

// replyBudget is the size every reply but a BEP 44 get with a large value
// stays under (BEP 32: 1024 bytes), minus room for t, y, v, ip, id and the
// token.
const replyBudget = 1024 - 160

// isV6 reports whether addr is a real IPv6 address (not IPv4-mapped).
func isV6(addr netip.AddrPort) bool { return addr.Addr().Is6() && !addr.Addr().Is4In6() }

// handleGetPeers answers get_peers (BEP 5): a token always, "values" when
// peers are stored (a random sample that fits the packet), and the closest
// nodes.
func (n *Node) handleGetPeers(from netip.AddrPort, a *krpc.Args) *krpc.Msg {
	if a.InfoHash == nil {
		return errMsg(krpc.ErrCodeProtocol, "get_peers: info_hash missing")
	}
	ih := *a.InfoHash
	now := n.clock.Now()
	m := n.nodesReply(ih, a, from)
	r := m.R
	r.Token = n.tokens.Issue(from.Addr(), ih, now)
	n.metrics.TokensIssued.Inc()
	limit, capped := replyBudget, false
	if c, ok := n.replyCap(from); ok && c-160 < limit {
		limit, capped = c-160, true // amplify.go
	}
	budget := limit - len(r.Nodes)*krpc.CompactNodeLen4 - len(r.Nodes6)*krpc.CompactNodeLen6
	per := 2 + krpc.CompactPeerLen4
	if isV6(from) {
		per = 3 + krpc.CompactPeerLen6
	}
	if a.Scrape == 1 {
		// BEP 33: the bloom filters take 2 x 256 bytes of the budget. To a
		// querier held to the amplification cap they go instead of the
		// nodes ("only the mandatory node list", BEP 33): a scraper never
		// announces, so it never proves its address with a token.
		if filters := 2 * (krpc.BloomLen + 10); capped && budget < filters && len(r.Nodes)+len(r.Nodes6) > 0 {
			r.Nodes, r.Nodes6 = nil, nil
			budget = limit
			n.metrics.RepliesTrimmed.Inc()
		}
		if filters := 2 * (krpc.BloomLen + 10); budget >= filters {
			r.BFsd, r.BFpe = n.scrapeFilters(ih, isV6(from), now)
			budget -= filters
		} else {
			n.metrics.RepliesTrimmed.Inc()
		}
	}
	max := max(0, budget/per)
	var peers []netip.AddrPort
	if a.NoSeed == 1 {
		peers = n.peers.NonSeedsFrom(from.Addr(), ih, isV6(from), max, now, nil) // BEP 33
	} else {
		peers = n.peers.PeersFrom(from.Addr(), ih, isV6(from), max, now, nil)
	}
	if capped && len(peers) == max && max > 0 {
		n.metrics.RepliesTrimmed.Inc() // perhaps more were stored
	}
	if len(peers) > 0 {
		r.Values = peers
	}
	return m
}

// handleAnnounce answers announce_peer (BEP 5): the token must be one we
// gave this IP for this infohash; the peer is stored at the sender's IP and
// the given port, or its UDP source port with implied_port. With a
// database it returns nil once it has kept w to answer after the durable
// write (persist.go).
func (n *Node) handleAnnounce(w krpc.ResponseWriter, from netip.AddrPort, a *krpc.Args) *krpc.Msg {
	reject := func(reason, msg string) *krpc.Msg {
		n.metrics.StorageRejections.WithLabelValues(metrics.StorePeer, reason).Inc()
		return errMsg(krpc.ErrCodeProtocol, msg)
	}
	if a.InfoHash == nil {
		return reject(metrics.RejectMalformed, "announce_peer: info_hash missing")
	}
	if a.Token == "" {
		return reject(metrics.RejectMalformed, "announce_peer: token missing")
	}
	port := from.Port()
	if a.ImpliedPort == 0 {
		if a.Port == nil || *a.Port <= 0 || *a.Port > 65535 {
			return reject(metrics.RejectMalformed, "announce_peer: port missing or out of range")
		}
		port = uint16(*a.Port)
	}
	now := n.clock.Now()
	if !n.tokens.Check(a.Token, from.Addr(), *a.InfoHash, now) {
		n.metrics.TokensRejected.Inc()
		return reject(metrics.RejectBadToken, "invalid token")
	}
	n.owners.add(from.Addr(), now)        // the token came back from this address
	seed := a.Seed != nil && *a.Seed == 1 // BEP 33: absent or != 1 means peer
	ih, peer := *a.InfoHash, netip.AddrPortFrom(from.Addr(), port)
	if n.db == nil {
		n.announced(n.peers.Announce(ih, peer, seed, now))
		return &krpc.Msg{R: &krpc.Return{}}
	}
	if n.peers.QuotaRefuses(ih, peer, now) {
		// Over the source's quota: answered as before (libtorrent does
		// not tell either) but neither stored nor written.
		n.metrics.StorageRejections.WithLabelValues(metrics.StorePeer, metrics.RejectQuota).Inc()
		return &krpc.Msg{R: &krpc.Return{}}
	}
	// Disk first (persist.go): the peer is kept in memory, and served,
	// only once its record is durable.
	expires := now.Add(n.peers.Config().TTL)
	return n.durable(w, &durableWrite{
		kind:  metrics.StorePeer,
		write: func() error { return n.db.PutPeer(ih, peer, seed, expires) },
		apply: func() *krpc.Msg {
			if !n.announced(n.peers.Announce(ih, peer, seed, now)) {
				// The store refused it (full, or over quota): the
				// announce is answered as before, and the database
				// follows the store's bounds.
				n.queueDelete(dbDelete{peer: storage.PeerKey{IH: ih, Addr: peer}, isPeer: true})
			}
			return nil
		},
	})
}

// announced counts the refusal err of PeerStore.Announce, if any, and
// reports whether the peer was stored (Announce's error is nil exactly
// then).
func (n *Node) announced(err error) bool {
	if err == nil {
		return true
	}
	if _, reason := storeError(err); reason != "" {
		n.metrics.StorageRejections.WithLabelValues(metrics.StorePeer, reason).Inc()
	}
	return false
}

// handleGet answers a BEP 44 get: a token, the closest nodes, and the item
// if stored. With "seq" in the query, a mutable item's k, v and sig are left
// out unless the stored seq is greater (the seq is still given). The salt is
// never echoed (BEP 44).
func (n *Node) handleGet(from netip.AddrPort, a *krpc.Args) *krpc.Msg {
	if a.Target == nil {
		return errMsg(krpc.ErrCodeProtocol, "get: target missing")
	}
	now := n.clock.Now()
	m := n.nodesReply(*a.Target, a, from)
	r := m.R
	r.Token = n.tokens.Issue(from.Addr(), *a.Target, now)
	n.metrics.TokensIssued.Inc()
	it, ok := n.items.GetFrom(*a.Target, from.Addr(), now)
	if !ok {
		return m
	}
	if !it.Mutable {
		r.V = it.V
	} else {
		seq := it.Seq
		r.Seq = &seq
		if a.Seq == nil || it.Seq > *a.Seq {
			r.V, r.K, r.Sig = it.V, string(it.K), string(it.Sig)
		}
	}
	// A value for a querier that has not shown it owns its address: the
	// value, never withheld, without the nodes (amplify.go).
	if _, capped := n.replyCap(from); capped && len(r.V) > 0 && len(r.Nodes)+len(r.Nodes6) > 0 {
		r.Nodes, r.Nodes6 = nil, nil
		n.metrics.RepliesTrimmed.Inc()
	}
	return m
}

// handlePut answers a BEP 44 put, checking in the order of docs/protocol.md, BEP 44 items:
// shape (203/205/207), token (203), signature (206), then the store rules
// (301/302). With a database it returns nil once it has kept w to answer
// after the durable write (persist.go).
func (n *Node) handlePut(w krpc.ResponseWriter, from netip.AddrPort, a *krpc.Args) *krpc.Msg {
	p := storage.NewPutArgs(a)
	kind := metrics.StoreImmutable
	if p.Mutable() {
		kind = metrics.StoreMutable
	}
	now := n.clock.Now()
	tokenOK := func(target krpc.ID) bool {
		ok := n.tokens.Check(a.Token, from.Addr(), target, now)
		if !ok {
			n.metrics.TokensRejected.Inc()
		} else {
			n.owners.add(from.Addr(), now) // the token came back from this address
		}
		return ok
	}
	if err := storage.ValidatePut(&p, tokenOK); err != nil {
		return n.refusePut(kind, err)
	}
	if n.db == nil {
		return n.putResult(kind, n.items.PutFrom(p.Item(), p.Cas, from.Addr(), now))
	}
	// Disk first (persist.go): checked against the store, written, and
	// only then kept in memory and served, so that a write the disk
	// refused is never served nor evicts anything.
	if err := n.items.CheckFrom(p.Item(), p.Cas, from.Addr(), now); err != nil {
		return n.putResult(kind, err)
	}
	// The put's slices alias the packet buffer, which the read loop
	// reuses.
	it, expires := p.Item().Clone(), now.Add(n.items.Config().TTL)
	return n.durable(w, &durableWrite{
		kind:  kind,
		write: func() error { return n.db.PutItem(it, expires) },
		apply: func() *krpc.Msg {
			// cas was checked above; a put that raced past this one
			// with a higher seq wins here as it did on disk (302).
			err := n.items.PutFrom(it, nil, from.Addr(), now)
			if errors.Is(err, storage.ErrStoreFull) || errors.Is(err, storage.ErrQuota) {
				if _, ok := n.items.Get(it.Target(), now); !ok {
					t := it.Target()
					n.queueDelete(dbDelete{item: &t})
				}
			}
			if err != nil {
				return n.putResult(kind, err)
			}
			return nil
		},
	})
}

// putResult is the answer to a put that the item store took (err nil) or
// refused with err: not stored, so not acknowledged, and the publisher can
// try another node.
func (n *Node) putResult(kind string, err error) *krpc.Msg {
	if err == nil {
		return &krpc.Msg{R: &krpc.Return{}}
	}
	return n.refusePut(kind, err)
}

// refusePut answers a put that a check or the store refused, and counts
// the refusal by kind (a metrics.StorageKinds value) and reason.
func (n *Node) refusePut(kind string, err error) *krpc.Msg {
	e, reason := storeError(err)
	if reason != "" {
		n.metrics.StorageRejections.WithLabelValues(kind, reason).Inc()
	} else {
		n.log.Error("put", "err", err)
	}
	return &krpc.Msg{E: e}
}

// putRules maps each refusal of storage's put checks and item store to its
// KRPC error code (BEP 44, Errors) and metric label.
var putRules = []struct {
	rule   error
	reason string
}{
	{storage.ErrMalformed, metrics.RejectMalformed},
	{storage.ErrBadToken, metrics.RejectBadToken},
	{storage.ErrValueTooBig, metrics.RejectTooBig},
	{storage.ErrBadSignature, metrics.RejectBadSignature},
	{storage.ErrSaltTooBig, metrics.RejectSaltTooBig},
	{storage.ErrCASMismatch, metrics.RejectCASMismatch},
	{storage.ErrSeqTooLow, metrics.RejectSeqTooLow},
}

// storeError is the one place where storage's errors become KRPC errors:
// it returns the error a storing node answers with and the metric label of
// the refusal. A *storage.PutError keeps its message (BEP 44's own text for
// 205 to 302); a full store or a source over its quota is 202 "storage
// full" (the write was not stored, so it is not acknowledged); an invalid
// peer is 203. Anything else is 202 "server error" with no label.
func storeError(err error) (*krpc.Error, string) {
	var pe *storage.PutError
	if errors.As(err, &pe) {
		for _, r := range putRules {
			if errors.Is(pe.Rule, r.rule) {
				return &krpc.Error{Code: pe.Code(), Msg: pe.Msg}, r.reason
			}
		}
	}
	switch {
	case errors.Is(err, storage.ErrQuota):
		return &krpc.Error{Code: krpc.ErrCodeServer, Msg: "storage full"}, metrics.RejectQuota
	case errors.Is(err, storage.ErrStoreFull):
		return &krpc.Error{Code: krpc.ErrCodeServer, Msg: "storage full"}, metrics.RejectFull
	case errors.Is(err, storage.ErrInvalidPeer):
		return &krpc.Error{Code: krpc.ErrCodeProtocol, Msg: "invalid peer address"}, metrics.RejectMalformed
	}
	return &krpc.Error{Code: krpc.ErrCodeServer, Msg: "server error"}, ""
}
