package core

import (
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

// replyBudget is the size every reply but a BEP 44 get with a large value
// stays under (BEP 32: 1024 bytes), minus room for t, y, v, ip, id and the
// token.
const replyBudget = 1024 - 160

// MaxSamples is the most infohashes a sample_infohashes reply carries: 20 x
// 20 bytes plus 8 nodes keeps it well under 1024 bytes (BEP 51; libtorrent's
// dht_max_infohashes_sample_count).
const MaxSamples = 20

// Service answers queries: ping, find_node, get_peers and announce_peer
// (BEP 5, with the BEP 33 scrape), get and put (BEP 44) and
// sample_infohashes (BEP 51), enforcing BEP 42 ids and BEP 43 read-only
// mode. It holds the state the handlers read; what only a daemon keeps
// (metrics, durable writes, a node of the other address family, proof of
// address) it reaches through Hooks. The daemon's read loop and the
// simulator's nodes (Node.Serve) answer with it. A Service is not safe
// for concurrent use: its queries are handled one at a time (the stores
// and table it holds are safe for concurrent use, and may be shared).
type Service struct {
	ID    krpc.ID
	K     int            // nodes per reply (BEP 5: 8)
	Table *routing.Table // the nodes of replies
	// Tokens, Peers and Items are the write tokens and the stores. A nil
	// one is made at its first use (tokens from Rand, stores with the
	// defaults of a simulated node), so a node that is never written to
	// costs nothing for them.
	Tokens *storage.Tokens
	Peers  *storage.PeerStore
	Items  *storage.ItemStore
	// Rand draws token secrets and the peers and samples of replies; nil
	// uses the stores' own source.
	Rand *rand.Rand
	// ReadOnly: BEP 43, the node answers no queries.
	ReadOnly bool
	// SampleInterval is the BEP 51 "interval"; the sample is reused that
	// long (0: 6 hours).
	SampleInterval time.Duration
	// Scratch is the reply storage reused for every query; nil gives the
	// service its own.
	Scratch *Scratch
	Hooks   Hooks

	sample struct { // the BEP 51 sample, reused for SampleInterval
		at      time.Time
		samples krpc.Samples
	}
}

// Hooks connect a Service to what its driver keeps. Every one is optional.
type Hooks struct {
	// Accept says whether a querier's id may be used (BEP 42 enforce):
	// others are answered 203 "invalid node ID".
	Accept func(id krpc.ID, ip netip.Addr) bool
	// Admit takes a querier the table would take, unproven (BEP 5): the
	// driver confirms it with a ping. Nil: the querier is left as heard.
	Admit func(ni krpc.NodeInfo, now time.Time)
	// Nodes fills r's "nodes" and "nodes6" for a node that answers for
	// two address families (BEP 32 dual stack), never with the querier
	// (id, from), and reports whether it did; false leaves it to the
	// service's own table.
	Nodes func(r *krpc.Return, target krpc.ID, want4, want6 bool, id krpc.ID, from netip.AddrPort) bool
	// Cap returns the most bytes a reply to from may take, and whether a
	// cap applies at all (the amplification guard: a querier that has not
	// shown it owns its address). Nil: no cap.
	Cap func(from netip.AddrPort, now time.Time) (int, bool)
	// Proved is told that ip showed it owns its address (a write token
	// came back from it).
	Proved func(ip netip.Addr, now time.Time)
	// Count is told of each event of the handlers, for the metrics.
	Count func(e Event)
	// ExternalIP is told of the address a responder says it sees us at
	// (BEP 42: the "ip" of an answer), from an acceptable responder.
	ExternalIP func(from netip.AddrPort, ip krpc.CompactAddr)
	// StorePeer and StoreItem take over the storing of an announce_peer
	// or a put that passed every check (a daemon whose writes must be
	// durable first): they answer w, now or later through w.Detach().
	// Nil: the service stores in memory and answers.
	StorePeer func(w Writer, ih krpc.ID, peer netip.AddrPort, seed bool, now time.Time)
	StoreItem func(w Writer, kind string, p *storage.PutArgs, from netip.Addr, now time.Time)
}

// Event is one event of the handlers, for the metrics (Hooks.Count).
type Event struct {
	Kind EventKind
	// Code is the KRPC error code of EventErrorSent.
	Code int64
	// Store and Reason label EventStoreRefused: a metrics.StorageKinds
	// value and one of its metrics.RejectReasons. Store is set for
	// EventStoreError too.
	Store, Reason string
	// Err is the unexpected error of EventStoreError.
	Err error
}

// EventKind says what an Event counts.
type EventKind uint8

// The events of the handlers.
const (
	EventErrorSent     EventKind = iota // an error answer was sent
	EventTokenIssued                    // a write token was given
	EventTokenRejected                  // a write token did not check
	EventReplyTrimmed                   // a reply was cut to the amplification cap
	EventStoreRefused                   // an announce or put was refused
	EventStoreError                     // a put failed with an error no rule names
)

func (s *Service) count(e Event) {
	if s.Hooks.Count != nil {
		s.Hooks.Count(e)
	}
}

func (s *Service) scratch() *Scratch {
	if s.Scratch == nil {
		s.Scratch = new(Scratch)
	}
	return s.Scratch
}

// Answered learns from a matched answer to one of our queries, rtt after
// it was sent: the responder echoed our transaction id from its address,
// so that address is proven (Hooks.Proved), and the table hears that the
// node answered (routing.Table.Responded). It returns the nodes the
// table wants pinged (the questionable node a newcomer may replace). An
// error answer carries no id, and teaches nothing; a responder refused by
// Hooks.Accept (BEP 42 enforce) or saying it is read-only (BEP 43) stays
// out of the table. The daemon's read loop and the simulator's nodes
// (Node.HandlePacket) both learn through it.
func (s *Service) Answered(from netip.AddrPort, m *krpc.Msg, now time.Time, rtt time.Duration) []krpc.NodeInfo {
	if m.R == nil || m.RO == 1 || (s.Hooks.Accept != nil && !s.Hooks.Accept(m.R.ID, from.Addr())) {
		return nil
	}
	if s.Hooks.ExternalIP != nil && m.IP != nil {
		s.Hooks.ExternalIP(from, *m.IP)
	}
	if s.Hooks.Proved != nil {
		s.Hooks.Proved(from.Addr(), now)
	}
	if s.Table == nil {
		return nil
	}
	// A zero round trip (a clock that did not move) is one nanosecond:
	// the table reads zero as "not measured".
	return s.Table.Responded(krpc.NodeInfo{ID: m.R.ID, Addr: from}, now, max(rtt, 1))
}

// Serve answers q through w: at once, or (Hooks.StorePeer, StoreItem)
// later. Unknown methods that name a target or an infohash are answered as
// find_node (practice, libtorrent); others get 204 (BEP 5).
func (s *Service) Serve(q Query, w Writer) {
	if s.ReadOnly {
		return // BEP 43: a read-only node answers no queries
	}
	a, from, now := q.Msg.A, q.From, q.Now
	// BEP 42, enforce mode: a node whose id does not match its address is
	// refused, as libtorrent's enforce_node_id does.
	if s.Hooks.Accept != nil && !s.Hooks.Accept(a.ID, from.Addr()) {
		s.fail(w, krpc.ErrCodeProtocol, "invalid node ID (BEP 42)")
		return
	}
	// BEP 43: a node that says it is read-only never enters the table.
	// One the table would take is handed to Admit once the query is
	// handled, so that a valid token in it counts.
	if q.Msg.RO != 1 && a.ID != s.ID && s.Table != nil {
		if ni := (krpc.NodeInfo{ID: a.ID, Addr: from}); s.Table.Heard(ni, now) && s.Hooks.Admit != nil {
			defer s.Hooks.Admit(ni, now)
		}
	}
	switch q.Msg.Q {
	case krpc.MethodPing:
		s.reply(w, s.newReply())
	case krpc.MethodFindNode:
		if target, ok := s.target(q, w); ok {
			s.reply(w, s.nodes(target, a, from))
		}
	case krpc.MethodGetPeers:
		s.getPeers(q, w)
	case krpc.MethodAnnouncePeer:
		s.announce(q, w)
	case krpc.MethodGet:
		s.get(q, w)
	case krpc.MethodPut:
		s.put(q, w)
	case krpc.MethodSampleInfohashes:
		s.sampleInfohashes(q, w)
	default:
		switch {
		case a.Target != nil:
			s.reply(w, s.nodes(*a.Target, a, from))
		case a.InfoHash != nil:
			s.reply(w, s.nodes(*a.InfoHash, a, from))
		default:
			s.fail(w, krpc.ErrCodeMethodUnknown, "Method Unknown")
		}
	}
}

// target returns the query's "target", or answers 203 "<method>: target
// missing" (BEP 5) and returns false.
func (s *Service) target(q Query, w Writer) (krpc.ID, bool) {
	if t := q.Msg.A.Target; t != nil {
		return *t, true
	}
	s.fail(w, krpc.ErrCodeProtocol, q.Msg.Q+": target missing")
	return krpc.ID{}, false
}

// reply sends the response r, with our id, through w.
func (s *Service) reply(w Writer, r *krpc.Return) {
	r.ID = s.ID
	w.Reply(r)
}

// fail sends an error answer through w, and counts it.
func (s *Service) fail(w Writer, code int64, msg string) {
	s.count(Event{Kind: EventErrorSent, Code: code})
	w.Error(code, msg)
}

// Answer sends e through w if it is not nil, else an empty response: the
// answer to a store that a hook completes.
func (s *Service) Answer(w Writer, e *krpc.Error) {
	if e != nil {
		s.fail(w, e.Code, e.Msg)
		return
	}
	s.reply(w, &krpc.Return{})
}

// newReply returns the scratch's response, cleared: a reply that the
// writer encodes at once needs no allocation of its own. The response
// handed out before is gone then.
func (s *Service) newReply() *krpc.Return {
	r := &s.scratch().ret
	*r = krpc.Return{}
	return r
}

// nodes returns a response holding the K closest nodes the table knows to
// target (BEP 5; BEP 32 "want"), leaving out the querier (see
// NotQuerier). The common case, an IPv4 table asked for IPv4 nodes, hands
// the table's answer over as "nodes" without copying it.
func (s *Service) nodes(target krpc.ID, a *krpc.Args, from netip.AddrPort) *krpc.Return {
	r := s.newReply()
	want4, want6 := a.WantsNodes(from.Addr().Is6() && !from.Addr().Is4In6())
	if s.Hooks.Nodes != nil && s.Hooks.Nodes(r, target, want4, want6, a.ID, from) {
		return r
	}
	if s.Table == nil {
		return r
	}
	sc := s.scratch()
	sc.nodes = s.Table.AppendClosest(sc.nodes[:0], target, s.K+2)
	closest := NotQuerier(sc.nodes, a.ID, from, s.K)
	if len(closest) == 0 {
		return r
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
		return r
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
	return r
}

// NotQuerier removes the querier from closest, in place, and keeps at most
// k nodes. A node that lists the asker to itself wastes a slot of its
// answer and sends the asker's lookup back to the asker (BEP 5: the K
// nodes closest to the target are for the querier to ask next). The
// querier is any entry with its id or its address; both can be in the
// table (it is added when it queries), so callers ask the table for k+2
// nodes.
func NotQuerier(closest []krpc.NodeInfo, id krpc.ID, from netip.AddrPort, k int) []krpc.NodeInfo {
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

// isV6 reports whether addr is a real IPv6 address (not IPv4-mapped).
func isV6(addr netip.AddrPort) bool { return addr.Addr().Is6() && !addr.Addr().Is4In6() }

// tokens returns the write tokens, made at the first use.
func (s *Service) tokens(now time.Time) *storage.Tokens {
	if s.Tokens == nil {
		var src io.Reader = randReader{s.Rand}
		if s.Rand == nil {
			src = nil // crypto/rand
		}
		s.Tokens = storage.NewTokens(src, now)
	}
	return s.Tokens
}

// issue returns a write token for ip and target.
func (s *Service) issue(ip netip.Addr, target krpc.ID, now time.Time) string {
	s.count(Event{Kind: EventTokenIssued})
	return s.tokens(now).Issue(ip, target, now)
}

// check reports whether token is one we gave ip for target; a token that
// checks shows ip owns its address.
func (s *Service) check(token string, ip netip.Addr, target krpc.ID, now time.Time) bool {
	if !s.tokens(now).Check(token, ip, target, now) {
		s.count(Event{Kind: EventTokenRejected})
		return false
	}
	if s.Hooks.Proved != nil {
		s.Hooks.Proved(ip, now)
	}
	return true
}

// replyCap is Hooks.Cap, or no cap.
func (s *Service) replyCap(from netip.AddrPort, now time.Time) (int, bool) {
	if s.Hooks.Cap == nil {
		return 0, false
	}
	return s.Hooks.Cap(from, now)
}

// peers returns the peer store, made at the first announce.
func (s *Service) peers() *storage.PeerStore {
	if s.Peers == nil {
		s.Peers = storage.NewPeerStore(s.ID, storage.PeerConfig{TTL: peerTTL})
	}
	return s.Peers
}

// items returns the item store, made at the first put.
func (s *Service) items() *storage.ItemStore {
	if s.Items == nil {
		s.Items = storage.NewItemStore(s.ID, storage.ItemConfig{})
	}
	return s.Items
}

// getPeers answers get_peers (BEP 5): a token always, "values" when peers
// are stored (a random sample that fits the packet), and the closest
// nodes.
func (s *Service) getPeers(q Query, w Writer) {
	a, from, now := q.Msg.A, q.From, q.Now
	if a.InfoHash == nil {
		s.fail(w, krpc.ErrCodeProtocol, "get_peers: info_hash missing")
		return
	}
	ih := *a.InfoHash
	r := s.nodes(ih, a, from)
	r.Token = s.issue(from.Addr(), ih, now)
	if s.Peers == nil {
		s.reply(w, r)
		return
	}
	limit, capped := replyBudget, false
	if c, ok := s.replyCap(from, now); ok && c-160 < limit {
		limit, capped = c-160, true // the amplification guard
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
			s.count(Event{Kind: EventReplyTrimmed})
		}
		if filters := 2 * (krpc.BloomLen + 10); budget >= filters {
			r.BFsd, r.BFpe = s.scrapeFilters(ih, isV6(from), now)
			budget -= filters
		} else {
			s.count(Event{Kind: EventReplyTrimmed})
		}
	}
	most := max(0, budget/per)
	var peers []netip.AddrPort
	if a.NoSeed == 1 {
		peers = s.Peers.NonSeedsFrom(from.Addr(), ih, isV6(from), most, now, s.Rand) // BEP 33
	} else {
		peers = s.Peers.PeersFrom(from.Addr(), ih, isV6(from), most, now, s.Rand)
	}
	if capped && len(peers) == most && most > 0 {
		s.count(Event{Kind: EventReplyTrimmed}) // perhaps more were stored
	}
	if len(peers) > 0 {
		r.Values = peers
	}
	s.reply(w, r)
}

// scrapeFilters builds the BEP 33 seed and peer bloom filters of the peers
// stored for ih in the requester's family (as libtorrent does).
func (s *Service) scrapeFilters(ih krpc.ID, v6 bool, now time.Time) (seeds, peers *krpc.Bloom) {
	seeds, peers = new(krpc.Bloom), new(krpc.Bloom)
	s.Peers.Each(ih, now, func(addr netip.AddrPort, seed bool) {
		ip := addr.Addr()
		if (ip.Is6() && !ip.Is4In6()) != v6 {
			return
		}
		if seed {
			seeds.Add(ip)
		} else {
			peers.Add(ip)
		}
	})
	return seeds, peers
}

// announce answers announce_peer (BEP 5): the token must be one we gave
// this IP for this infohash; the peer is stored at the sender's IP and the
// given port, or its UDP source port with implied_port.
func (s *Service) announce(q Query, w Writer) {
	a, from, now := q.Msg.A, q.From, q.Now
	reject := func(reason, msg string) {
		s.count(Event{Kind: EventStoreRefused, Store: metrics.StorePeer, Reason: reason})
		s.fail(w, krpc.ErrCodeProtocol, msg)
	}
	if a.InfoHash == nil {
		reject(metrics.RejectMalformed, "announce_peer: info_hash missing")
		return
	}
	if a.Token == "" {
		reject(metrics.RejectMalformed, "announce_peer: token missing")
		return
	}
	port := from.Port()
	if a.ImpliedPort == 0 {
		if a.Port == nil || *a.Port <= 0 || *a.Port > 65535 {
			reject(metrics.RejectMalformed, "announce_peer: port missing or out of range")
			return
		}
		port = uint16(*a.Port)
	}
	if !s.check(a.Token, from.Addr(), *a.InfoHash, now) {
		reject(metrics.RejectBadToken, "invalid token")
		return
	}
	seed := a.Seed != nil && *a.Seed == 1 // BEP 33: absent or != 1 means peer
	ih, peer := *a.InfoHash, netip.AddrPortFrom(from.Addr(), port)
	if s.Hooks.StorePeer != nil {
		s.Hooks.StorePeer(w, ih, peer, seed, now)
		return
	}
	// A refusal (full, or over the source's quota) is answered as a
	// success, as libtorrent does: the announcer learns nothing from it.
	s.Announced(s.peers().Announce(ih, peer, seed, now))
	s.reply(w, &krpc.Return{})
}

// Announced counts the refusal err of PeerStore.Announce, if any, and
// reports whether the peer was stored (Announce's error is nil exactly
// then).
func (s *Service) Announced(err error) bool {
	if err == nil {
		return true
	}
	s.Refused(metrics.StorePeer, err)
	return false
}

// get answers a BEP 44 get: a token, the closest nodes, and the item if
// stored. With "seq" in the query, a mutable item's k, v and sig are left
// out unless the stored seq is greater (the seq is still given). The salt
// is never echoed (BEP 44).
func (s *Service) get(q Query, w Writer) {
	a, from, now := q.Msg.A, q.From, q.Now
	target, ok := s.target(q, w)
	if !ok {
		return
	}
	r := s.nodes(target, a, from)
	r.Token = s.issue(from.Addr(), target, now)
	if s.Items == nil {
		s.reply(w, r)
		return
	}
	it, ok := s.Items.GetFrom(target, from.Addr(), now)
	if !ok {
		s.reply(w, r)
		return
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
	// value, never withheld, without the nodes (the amplification guard).
	if _, capped := s.replyCap(from, now); capped && len(r.V) > 0 && len(r.Nodes)+len(r.Nodes6) > 0 {
		r.Nodes, r.Nodes6 = nil, nil
		s.count(Event{Kind: EventReplyTrimmed})
	}
	s.reply(w, r)
}

// put answers a BEP 44 put, checking in the order of BEP 44: shape
// (203/205/207), token (203), signature (206), then the store rules
// (301/302).
func (s *Service) put(q Query, w Writer) {
	a, from, now := q.Msg.A, q.From, q.Now
	p := storage.NewPutArgs(a)
	kind := metrics.StoreImmutable
	if p.Mutable() {
		kind = metrics.StoreMutable
	}
	tokenOK := func(target krpc.ID) bool { return s.check(a.Token, from.Addr(), target, now) }
	if err := storage.ValidatePut(&p, tokenOK); err != nil {
		s.Answer(w, s.Refused(kind, err))
		return
	}
	if s.Hooks.StoreItem != nil {
		s.Hooks.StoreItem(w, kind, &p, from.Addr(), now)
		return
	}
	s.Answer(w, s.PutResult(kind, s.items().PutFrom(p.Item(), p.Cas, from.Addr(), now)))
}

// PutResult is the error to answer a put that the item store took (err
// nil: none) or refused with err: not stored, so not acknowledged, and the
// publisher can try another node.
func (s *Service) PutResult(kind string, err error) *krpc.Error {
	if err == nil {
		return nil
	}
	return s.Refused(kind, err)
}

// Refused counts a write that a check or the store refused with err, by
// kind (a metrics.StorageKinds value) and reason, and returns the error
// to answer it with.
func (s *Service) Refused(kind string, err error) *krpc.Error {
	e, reason := StoreError(err)
	if reason != "" {
		s.count(Event{Kind: EventStoreRefused, Store: kind, Reason: reason})
	} else {
		s.count(Event{Kind: EventStoreError, Store: kind, Err: err})
	}
	return e
}

// sampleInfohashes answers sample_infohashes (BEP 51): interval, num,
// samples (always present, even empty) and the nodes closest to target.
func (s *Service) sampleInfohashes(q Query, w Writer) {
	a, from, now := q.Msg.A, q.From, q.Now
	target, ok := s.target(q, w)
	if !ok {
		return
	}
	interval := s.SampleInterval
	if interval <= 0 {
		interval = 6 * time.Hour
	}
	c := &s.sample
	// Recompute when the interval has passed, or while the cached sample
	// is short of the maximum (more infohashes may have arrived), as
	// libtorrent does.
	if c.samples == nil || !now.Before(c.at.Add(interval)) || now.Before(c.at) || len(c.samples) < MaxSamples {
		c.samples = krpc.Samples{}
		if s.Peers != nil {
			if ihs := s.Peers.Infohashes(MaxSamples, now, s.Rand); ihs != nil {
				c.samples = krpc.Samples(ihs)
			}
		}
		c.at = now
	}
	samples := c.samples
	r := s.nodes(target, a, from)
	if c, capped := s.replyCap(from, now); capped {
		// The amplification guard: as many samples as fit the cap.
		room := (c - 160 - len(r.Nodes)*krpc.CompactNodeLen4 - len(r.Nodes6)*krpc.CompactNodeLen6) / krpc.IDLen
		if room = max(room, 0); len(samples) > room {
			samples = samples[:room]
			s.count(Event{Kind: EventReplyTrimmed})
		}
	}
	iv := int64(interval / time.Second)
	num := int64(0)
	if s.Peers != nil {
		num = int64(s.Peers.Stats().Infohashes)
	}
	r.Interval, r.Num, r.Samples = &iv, &num, &samples
	s.reply(w, r)
}

// putRules maps each refusal of storage's put checks and item store to its
// metric label.
var putRules = [...]struct {
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

// StoreError is the one place where storage's errors become KRPC errors:
// it returns the error a storing node answers with and the metric label of
// the refusal. A *storage.PutError keeps its message (BEP 44's own text
// for 205 to 302); a full store or a source over its quota is 202 "storage
// full" (the write was not stored, so it is not acknowledged); an invalid
// peer is 203. Anything else is 202 "server error" with no label.
func StoreError(err error) (*krpc.Error, string) {
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

// randReader reads from a seeded source, so token secrets are reproducible.
type randReader struct{ r interface{ Uint64() uint64 } }

func (r randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.r.Uint64())
	}
	return len(p), nil
}
