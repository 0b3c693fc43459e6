package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/anacrolix/torrent/bencode"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/storage"
)

// PeersResult is the outcome of GetPeers.
type PeersResult struct {
	Lookup LookupResult     // the K closest responders, with their tokens
	Peers  []netip.AddrPort // every distinct peer returned
	HeldBy []PeersFrom      // the nodes that returned peers, in reply order
}

// PeersFrom is one node that answered get_peers with peers, and the valid
// peers it returned (some may have come from other nodes too).
type PeersFrom struct {
	Node  krpc.NodeInfo
	Peers []netip.AddrPort
}

// GetPeers runs an iterative get_peers lookup for ih (BEP 5). onPeer, if not
// nil, sees each new peer as it arrives, so a caller can start on the first
// peers early; it runs on the lookup goroutine and must not block long.
// No peers is no error; the error wraps ErrNoNodes or ErrNoAnswer when the
// lookup reached nobody.
func (n *Node) GetPeers(ctx context.Context, ih krpc.ID, onPeer func(netip.AddrPort)) (PeersResult, error) {
	var res PeersResult
	seen := make(map[netip.AddrPort]bool)
	// The peers this node stores come first: they were announced to us,
	// and no other node may hold them.
	for _, p := range n.peers.Peers(ih, n.Addr().Addr().Is6(), localPeersMax, n.clock.Now(), nil) {
		seen[p] = true
		res.Peers = append(res.Peers, p)
		if onPeer != nil {
			onPeer(p)
		}
	}
	lr, err := n.lookup(ctx, metrics.LookupGetPeers, ih, n.ask(krpc.MethodGetPeers, &krpc.Args{InfoHash: &ih}), func(from krpc.NodeInfo, m *krpc.Msg) bool {
		var held []netip.AddrPort
		for _, p := range m.R.Values {
			if !p.IsValid() || p.Port() == 0 {
				continue
			}
			held = append(held, p)
			if seen[p] {
				continue
			}
			seen[p] = true
			res.Peers = append(res.Peers, p)
			if onPeer != nil {
				onPeer(p)
			}
		}
		if len(held) > 0 {
			res.HeldBy = append(res.HeldBy, PeersFrom{Node: from, Peers: held})
		}
		return false
	})
	res.Lookup = lr
	if len(res.Peers) == 0 {
		n.recent.markNotFound("get_peers", ih.String())
	}
	if err != nil && len(res.Peers) > 0 && ctx.Err() == nil {
		err = nil // the lookup failed, but our own store answered
	}
	return res, err
}

// localPeersMax bounds the peers GetPeers takes from the node's own store.
const localPeersMax = 1000

// AnnounceResult is the outcome of Announce.
type AnnounceResult struct {
	Peers      PeersResult     // the get_peers lookup that found the storers
	Announced  int             // announce_peer queries sent
	Accepted   int             // answered with success
	StoredAt   []krpc.NodeInfo // the nodes that answered with success
	RefusedBy  []NodeError     // the nodes that answered with a KRPC error
	Unanswered []krpc.NodeInfo // the nodes that did not answer in time
	Errors     map[int64]int   // KRPC error replies by code
}

// NodeError is one node's refusal of a write (announce_peer or put): the
// node and the KRPC error it answered with (BEP 5 "e": code and message).
type NodeError struct {
	Node krpc.NodeInfo
	Code int64
	Msg  string
}

// String is "ADDR (id ID): CODE MESSAGE".
func (e NodeError) String() string {
	return fmt.Sprintf("%s (id %s): %d %s", e.Node.Addr, e.Node.ID, e.Code, e.Msg)
}

// ErrNotStored is wrapped by the error of a put or announce that no node
// accepted; the message names each node that refused and why. The error
// also wraps ErrRefused when a node refused, else ErrNoAnswer when the
// storers stayed silent.
var ErrNotStored = errors.New("no node stored it")

// writeOutcome is what writeToClosest's writes came to, node by node.
type writeOutcome struct {
	sent       int
	storedAt   []krpc.NodeInfo
	refusedBy  []NodeError
	unanswered []krpc.NodeInfo
	codes      map[int64]int
}

// notStored is the error of a write no node accepted: it wraps
// ErrNotStored and lists every refusal; it wraps ErrRefused too if a node
// refused, else ErrNoAnswer if a node stayed silent.
func (w writeOutcome) notStored(what string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "(%d tried", w.sent)
	if len(w.unanswered) > 0 {
		fmt.Fprintf(&b, ", %d did not answer", len(w.unanswered))
	}
	b.WriteString(")")
	for i, e := range w.refusedBy {
		if i == 0 {
			b.WriteString(": refused by ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(e.String())
	}
	err := fmt.Errorf("%s: %w %s", what, ErrNotStored, b.String())
	switch {
	case len(w.refusedBy) > 0:
		return withKind(ErrRefused, err)
	case len(w.unanswered) > 0:
		return withKind(ErrNoAnswer, err)
	}
	return err
}

// AnnounceOptions are the arguments of Announce. The zero value announces
// the port of this node's UDP socket, as a non-seed.
type AnnounceOptions struct {
	// Port is the port peers should connect to (1..65535); ignored with
	// ImpliedPort. Zero means ImpliedPort.
	Port int
	// ImpliedPort asks storers to use the UDP source port of this node's
	// socket instead of Port (BEP 5 "implied_port"), for a peer behind a
	// NAT that shares the DHT socket's port mapping.
	ImpliedPort bool
	// Seed announces us as a seed (BEP 33 "seed" = 1), counted in the
	// storers' seed bloom filter.
	Seed bool
}

// Announce looks up ih, then announces us as a peer (on o.Port, or with
// o.ImpliedPort on the UDP source port of this node's socket) to the K
// closest responders that gave a token (BEP 5). If no storer accepted it,
// the error wraps ErrNotStored, and ErrRefused or ErrNoAnswer; a lookup
// that reached nobody wraps ErrNoNodes or ErrNoAnswer.
func (n *Node) Announce(ctx context.Context, ih krpc.ID, o AnnounceOptions) (AnnounceResult, error) {
	port, impliedPort := o.Port, o.ImpliedPort || o.Port == 0
	if !impliedPort && (port <= 0 || port > 65535) {
		return AnnounceResult{}, fmt.Errorf("announce %s: port %d out of range", ih, port)
	}
	pr, err := n.GetPeers(ctx, ih, nil)
	res := AnnounceResult{Peers: pr}
	if err != nil {
		return res, fmt.Errorf("announce %s: %w", ih, err)
	}
	p := int64(port)
	implied := int64(0)
	if impliedPort {
		implied = 1
	}
	w := n.writeToClosest(ctx, pr.Lookup.Closest, func(f Found) *krpc.Args {
		a := &krpc.Args{InfoHash: &ih, Port: &p, ImpliedPort: implied, Token: f.Reply.R.Token}
		if o.Seed {
			one := int64(1)
			a.Seed = &one
		}
		return a
	}, krpc.MethodAnnouncePeer)
	res.Announced, res.Accepted, res.Errors = w.sent, len(w.storedAt), w.codes
	res.StoredAt, res.RefusedBy, res.Unanswered = w.storedAt, w.refusedBy, w.unanswered
	if res.Accepted == 0 {
		return res, w.notStored("announce " + ih.String())
	}
	return res, nil
}

// writeToClosest sends one write query (announce_peer or put) to each
// responder that gave a token, all at once, and reports each node's
// answer: success (storedAt), a KRPC error (refusedBy) or none
// (unanswered). Each list is in the order of closest.
func (n *Node) writeToClosest(ctx context.Context, closest []Found, args func(Found) *krpc.Args, method string) writeOutcome {
	w := writeOutcome{codes: make(map[int64]int)}
	type answer struct {
		err   error
		ke    *krpc.Error
		asked bool
	}
	answers := make([]answer, len(closest))
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(closest)) // the callbacks never block
	calls := make([]krpc.Call, len(closest))
	out := 0
	for i, f := range closest {
		if f.Reply == nil || f.Reply.R == nil || f.Reply.R.Token == "" {
			continue
		}
		w.sent++
		answers[i].asked = true
		c, err := n.queryAsync(ctx, f.Node.Addr, method, args(f), func(_ *krpc.Msg, err error) { results <- result{i, err} })
		if err != nil {
			answers[i].err = err
			continue
		}
		calls[i] = c
		out++
	}
	stop := ctx.Done()
	for out > 0 {
		select {
		case r := <-results:
			answers[r.i].err = r.err
			out--
		case <-stop:
			stop = nil // the answers already on their way are still taken
			for i, c := range calls {
				if c.Cancel() {
					answers[i].err = fmt.Errorf("%s to %s: %w", method, closest[i].Node.Addr, ctx.Err())
					out--
				}
			}
		}
	}
	for i := range answers {
		if a := &answers[i]; a.err != nil && !errors.As(a.err, &a.ke) {
			n.log.Debug("store query failed", "method", method, "node", closest[i].Node, "err", a.err)
		}
	}
	for i, a := range answers {
		node := closest[i].Node
		switch {
		case !a.asked:
		case a.err == nil:
			w.storedAt = append(w.storedAt, node)
		case a.ke != nil:
			w.codes[a.ke.Code]++
			w.refusedBy = append(w.refusedBy, NodeError{Node: node, Code: a.ke.Code, Msg: a.ke.Msg})
		default:
			w.unanswered = append(w.unanswered, node)
		}
	}
	return w
}

// GetOptions tune Get.
type GetOptions struct {
	// Salt is the salt of a mutable item; its target is SHA-1(k ‖ salt).
	Salt []byte
	// Seq, if set, asks nodes to send a mutable item only if theirs is newer.
	Seq *int64
}

// GetResult is the outcome of Get.
type GetResult struct {
	Target krpc.ID
	Found  bool
	Item   storage.Item    // the value (raw bencode) and, if mutable, k, seq, sig
	Count  int             // nodes that returned this value (and seq), this one included
	Local  bool            // this node's own store held the item
	HeldBy []krpc.NodeInfo // the other nodes that returned it, in reply order
	Lookup LookupResult
}

// Get looks up a BEP 44 item. A value is accepted only if it hashes to the
// target (immutable) or its key and salt give the target and its signature
// checks (mutable). For mutable items the highest seq wins; Count says how
// many nodes returned it. An immutable get stops at the first valid value.
// If nodes answered but none held the item, the error wraps ErrNotFound;
// a lookup that reached nobody wraps ErrNoNodes or ErrNoAnswer.
func (n *Node) Get(ctx context.Context, target krpc.ID, opts GetOptions) (GetResult, error) {
	return n.get(ctx, target, opts, true)
}

// get runs the get lookup; with stopEarly an immutable value ends it (a put
// runs it to the end, to find the K closest nodes and their tokens).
func (n *Node) get(ctx context.Context, target krpc.ID, opts GetOptions, stopEarly bool) (GetResult, error) {
	res := GetResult{Target: target}
	// This node's own store first: it holds only checked items, by target
	// (so a mutable one's salt is the one asked for).
	if it, ok := n.items.Get(target, n.clock.Now()); ok && (!it.Mutable || opts.Seq == nil || it.Seq > *opts.Seq) {
		res.Found, res.Item, res.Count, res.Local = true, it, 1, true
		if stopEarly && !it.Mutable {
			return res, nil // immutable: the value is settled
		}
	}
	lr, err := n.lookup(ctx, metrics.LookupGet, target, n.ask(krpc.MethodGet, &krpc.Args{Target: &target, Seq: opts.Seq}), func(from krpc.NodeInfo, m *krpc.Msg) bool {
		it, ok := verifyItem(target, opts.Salt, m.R)
		if !ok {
			return false
		}
		switch {
		case !res.Found || (it.Mutable && it.Seq > res.Item.Seq):
			res.Found, res.Item, res.Count, res.Local = true, it, 1, false
			res.HeldBy = append(res.HeldBy[:0], from)
		case it.Seq == res.Item.Seq && bytes.Equal(it.V, res.Item.V):
			res.Count++
			res.HeldBy = append(res.HeldBy, from)
		}
		return stopEarly && !it.Mutable // immutable: the first valid value settles it
	})
	res.Lookup = lr
	if res.Found {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	if stopEarly { // a Get, not a put's lookup of the current item
		n.recent.markNotFound(metrics.LookupGet, target.String())
	}
	return res, fmt.Errorf("get %s: %w (%d nodes queried)", target, ErrNotFound, lr.Queried)
}

// verifyItem checks a get reply's item against the target (BEP 44).
func verifyItem(target krpc.ID, salt []byte, r *krpc.Return) (storage.Item, bool) {
	if r == nil || len(r.V) == 0 {
		return storage.Item{}, false
	}
	v := []byte(r.V)
	if r.K == "" {
		if storage.ImmutableTarget(v) != target {
			return storage.Item{}, false
		}
		return storage.Item{V: v}, true
	}
	k := []byte(r.K)
	if r.Seq == nil || storage.MutableTarget(k, salt) != target ||
		!storage.VerifyMutable(k, salt, *r.Seq, v, []byte(r.Sig)) {
		return storage.Item{}, false
	}
	return storage.Item{V: v, K: k, Salt: salt, Seq: *r.Seq, Sig: []byte(r.Sig), Mutable: true}, true
}

// PutResult is the outcome of a put.
type PutResult struct {
	Target     krpc.ID
	Seq        int64           // the seq put (mutable)
	Sent       int             // put queries sent
	Stored     int             // nodes that answered with success
	StoredAt   []krpc.NodeInfo // those nodes
	RefusedBy  []NodeError     // the nodes that answered with a KRPC error
	Unanswered []krpc.NodeInfo // the nodes that did not answer in time
	Errors     map[int64]int   // KRPC error replies by code (e.g. 301, 302)
	Lookup     LookupResult
}

// setWrites copies a write outcome into the result.
func (r *PutResult) setWrites(w writeOutcome) {
	r.Sent, r.Stored, r.Errors = w.sent, len(w.storedAt), w.codes
	r.StoredAt, r.RefusedBy, r.Unanswered = w.storedAt, w.refusedBy, w.unanswered
}

// PutImmutable stores the bencoded value v (at most 1000 bytes) on the K
// closest nodes to SHA-1(v) (BEP 44) and reports how many stored it.
func (n *Node) PutImmutable(ctx context.Context, v []byte) (PutResult, error) {
	if err := storage.CheckValue(v); err != nil {
		return PutResult{}, fmt.Errorf("put: %w", err)
	}
	target := storage.ImmutableTarget(v)
	gr, err := n.get(ctx, target, GetOptions{}, false)
	res := PutResult{Target: target, Lookup: gr.Lookup}
	if err != nil && len(gr.Lookup.Closest) == 0 {
		return res, fmt.Errorf("put %s: %w", target, err)
	}
	w := n.writeToClosest(ctx, gr.Lookup.Closest, func(f Found) *krpc.Args {
		return &krpc.Args{V: bencode.Bytes(v), Token: f.Reply.R.Token}
	}, krpc.MethodPut)
	res.setWrites(w)
	if res.Stored == 0 {
		return res, w.notStored("put " + target.String())
	}
	return res, nil
}

// PutOptions tune PutMutable.
type PutOptions struct {
	// Salt makes one key publish several items (at most 64 bytes).
	Salt []byte
	// Seq is the sequence number to publish; nil means one more than the
	// highest found on the network (1 if none).
	Seq *int64
	// Cas, if set, asks storers to accept only if their seq equals it.
	Cas *int64
}

// ErrSeqNotNewer is returned when an explicit seq is not above the seq
// already on the network.
var ErrSeqNotNewer = errors.New("seq is not newer than the stored one")

// PutMutable signs v (bencoded) with priv and stores it under
// SHA-1(public key ‖ salt) on the K closest nodes (BEP 44).
func (n *Node) PutMutable(ctx context.Context, priv ed25519.PrivateKey, v []byte, opts PutOptions) (PutResult, error) {
	if err := storage.CheckValue(v); err != nil {
		return PutResult{}, fmt.Errorf("put: %w", err)
	}
	if len(opts.Salt) > storage.MaxSaltLen {
		return PutResult{}, fmt.Errorf("put: salt is %d bytes, at most %d", len(opts.Salt), storage.MaxSaltLen)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return n.putMutable(ctx, pub, v, opts, func(seq int64) []byte { return storage.SignMutable(priv, opts.Salt, seq, v) })
}

// putMutable looks up the K closest nodes to SHA-1(pub ‖ salt), picks the
// seq (opts.Seq, else one above the network's), has sign sign it and puts
// the item to every storer that gave a token. The caller checks v and salt.
func (n *Node) putMutable(ctx context.Context, pub ed25519.PublicKey, v []byte, opts PutOptions, sign func(seq int64) []byte) (PutResult, error) {
	target := storage.MutableTarget(pub, opts.Salt)
	gr, err := n.get(ctx, target, GetOptions{Salt: opts.Salt}, false)
	res := PutResult{Target: target, Lookup: gr.Lookup}
	if err != nil && len(gr.Lookup.Closest) == 0 {
		return res, fmt.Errorf("put %s: %w", target, err)
	}
	switch {
	case opts.Seq != nil:
		res.Seq = *opts.Seq
	case gr.Found:
		res.Seq = gr.Item.Seq + 1
	default:
		res.Seq = 1
	}
	sig := sign(res.Seq)
	seq := res.Seq
	w := n.writeToClosest(ctx, gr.Lookup.Closest, func(f Found) *krpc.Args {
		return &krpc.Args{
			V: bencode.Bytes(v), K: string(pub), Sig: string(sig), Salt: string(opts.Salt),
			Seq: &seq, Cas: opts.Cas, Token: f.Reply.R.Token,
		}
	}, krpc.MethodPut)
	res.setWrites(w)
	if res.Stored == 0 {
		if gr.Found && opts.Seq != nil && *opts.Seq <= gr.Item.Seq {
			err := fmt.Errorf("put %s seq %d: %w (network has %d)", target, seq, ErrSeqNotNewer, gr.Item.Seq)
			if len(w.refusedBy) > 0 {
				err = withKind(ErrRefused, err)
			}
			return res, err
		}
		return res, w.notStored("put " + target.String())
	}
	return res, nil
}
