package node

// Keeping BEP 44 items alive: the Republisher.
//
// Design choice: items and peers survive churn because
// their publisher republishes (re-announces) them, not because storers
// hand them over.
//
//   - BEP 44 puts the duty on the publisher: storers MAY drop an item 2 h
//     after its last put, and publishers SHOULD re-put once an hour
//     (BEP 44, Expiration). A re-put is an ordinary get lookup followed by put to
//     the K closest nodes that answered, so every republish lands on the
//     nodes that are the K closest *now*: a node that joined closer to the
//     target than an old holder, or that became one of the K closest
//     because a holder left, receives the item within one interval.
//   - Handover by storers (Kademlia's "store to a newly seen closer node")
//     would need each storer to watch its table for every key it holds and
//     re-put on each change: K-fold traffic per item, puts that nobody who
//     cares about the item asked for, and items kept alive after their
//     publisher lost interest, which BEP 44's expiry is meant to prevent.
//     It would also change the query path of every node, where the
//     republisher is an opt-in of the nodes that publish.
//   - The cost is bounded and paid by the interested party: one lookup and
//     at most K puts per item per interval, fewer when the BEP 44 skip rule
//     applies.
//
// An item whose publisher stops is then only as durable as its copies
// until they expire, which is what BEP 44 intends.
//
// Peers work the same way (BEP 5): storers drop a peer 30 min after its
// last announce, so a Republisher re-announces every half peer TTL (15 min
// by default), each time to the K closest nodes of that moment.
//
// A mutable item is republished as the same signed record (v, k, salt,
// seq, sig): anyone may re-put it without the private key, and the
// Republisher never holds the key. If the network holds a newer validly
// signed record for the same key and salt, the key's owner has moved on:
// the Republisher adopts that record (re-putting the old one would only be
// refused with error 302).

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/storage"
)

// Republish outcomes, as logged and counted in RepublishStats.
const (
	republishPut        = "put"        // re-put to the K closest
	republishSkipped    = "skipped"    // enough copies (BEP 44)
	republishFailed     = "failed"     // no node stored it; retried sooner
	republishSuperseded = "superseded" // a newer seq was adopted, then put
)

// maxConcurrentRepublish bounds the republish rounds a Republisher runs at
// once, so that items kept together do not start hundreds of lookups
// together when the interval ends.
const maxConcurrentRepublish = 4

// RepublishStats counts a Republisher's work since it was created.
type RepublishStats struct {
	Kept        int    // items kept now
	Announces   int    // announces kept now
	Republished uint64 // rounds that re-put an item
	Skipped     uint64 // rounds skipped because enough copies exist (BEP 44)
	Reannounced uint64 // rounds that re-announced a peer
	Failed      uint64 // rounds in which no node stored the item or accepted the announce
	Superseded  uint64 // mutable items replaced by a newer seq found on the network
}

// Republisher keeps BEP 44 items alive by re-putting them to the K closest
// nodes every Config.RepublishInterval (default 1h), while it runs (BEP
// 44: publishers SHOULD re-put once an hour). A round
// is skipped when a get lookup shows enough copies (more than K found and
// the K closest storers all hold it, per BEP 44) and skipping cannot let
// the copies our last put made expire before the next round. Rounds come
// up to 10% early, at random, so that items put together spread out; a
// round in which no node stores the item is retried after a twelfth of the
// interval (5 min by default).
//
// It also keeps announces (Announce): a peer is re-announced every half
// peer TTL (storage.PeerConfig.TTL, default 30 min), so that the K
// closest nodes of the moment always hold it (BEP 5).
//
// The rounds are timed by the protocol core's republish schedule
// (core.Node.Keep), on the node's timer: the core says when a round is
// due, the Republisher runs it on a goroutine of its own and tells the
// core when the next one is.
//
// Create it with NewRepublisher; Close stops it (closing the node
// stops its rounds too, but Close should still be called). It is safe for
// concurrent use.
type Republisher struct {
	n        *Node
	interval time.Duration
	ctx      context.Context
	cancel   context.CancelFunc
	sem      chan struct{}
	wg       sync.WaitGroup // the rounds running

	// runMu guards stopping; the core's timer takes it to start a round
	// (start), so it is never held while calling into the core.
	runMu    sync.Mutex
	stopping bool

	mu        sync.Mutex
	items     map[krpc.ID]*keptItem
	announces map[krpc.ID]*keptAnnounce
	closed    bool
	stats     RepublishStats
	// onRound, if set (OnRound), is called after each round with its outcome.
	onRound func(target krpc.ID, outcome string, err error)
}

// keptItem is one item a Republisher keeps alive.
type keptItem struct {
	item    storage.Item
	lastPut time.Time   // our last put that some node accepted
	id      core.KeepID // its entry on the core's schedule
}

// keptAnnounce is one announce a Republisher keeps alive.
type keptAnnounce struct {
	opts AnnounceOptions
	id   core.KeepID
}

// NewRepublisher returns a Republisher for items published through n. It
// keeps nothing until PutImmutable, PutMutable, Keep or Announce is
// called.
func NewRepublisher(n *Node) *Republisher {
	r := &Republisher{
		n:         n,
		interval:  n.cfg.RepublishInterval,
		sem:       make(chan struct{}, maxConcurrentRepublish),
		items:     make(map[krpc.ID]*keptItem),
		announces: make(map[krpc.ID]*keptAnnounce),
	}
	r.ctx, r.cancel = context.WithCancel(n.ctx)
	return r
}

// OnRound sets f to be called after each round, in the round's
// goroutine, with the item's target (or the announce's infohash), the
// round's outcome ("put", "skipped": enough copies, BEP 44; "failed": no
// node stored it, retried sooner; "superseded": a newer seq found on the
// network was adopted and put) and the error of a failed round. Rounds of
// other items may wait while f runs. nil removes it.
func (r *Republisher) OnRound(f func(target krpc.ID, outcome string, err error)) {
	r.mu.Lock()
	r.onRound = f
	r.mu.Unlock()
}

// Interval returns the republish interval.
func (r *Republisher) Interval() time.Duration { return r.interval }

// AnnounceInterval returns how often kept announces are repeated: half the
// peer TTL, at most the republish interval.
func (r *Republisher) AnnounceInterval() time.Duration {
	return min(r.interval, r.n.peers.Config().TTL/2)
}

// Announce announces us as a peer of ih like Node.Announce and, if some
// node accepted it, keeps it: it is repeated every AnnounceInterval, to
// the K closest nodes of the moment, until ForgetAnnounce or Close.
func (r *Republisher) Announce(ctx context.Context, ih krpc.ID, o AnnounceOptions) (AnnounceResult, error) {
	res, err := r.n.Announce(ctx, ih, o)
	if err != nil {
		return res, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.ctx.Err() != nil {
		return res, fmt.Errorf("keep announce %s: republisher closed", ih)
	}
	if old := r.announces[ih]; old != nil {
		r.n.forget(old.id)
	}
	a := &keptAnnounce{opts: o}
	a.id = r.n.keep(core.Kept{Target: ih, Announce: true, Port: o.Port}, -1, r.start(func() { r.announceRound(ih, a) }))
	if a.id == 0 {
		delete(r.announces, ih)
		r.stats.Announces = len(r.announces)
		return res, fmt.Errorf("keep announce %s: node closed", ih)
	}
	r.announces[ih] = a
	r.stats.Announces = len(r.announces)
	return res, nil
}

// ForgetAnnounce stops re-announcing ih; it reports whether it was kept.
func (r *Republisher) ForgetAnnounce(ih krpc.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.announces[ih]
	if a == nil {
		return false
	}
	r.n.forget(a.id)
	delete(r.announces, ih)
	r.stats.Announces = len(r.announces)
	return true
}

// PutImmutable puts v like Node.PutImmutable and, if some node stored it,
// keeps it: it is re-put every interval until Forget or Close.
func (r *Republisher) PutImmutable(ctx context.Context, v []byte) (PutResult, error) {
	res, err := r.n.PutImmutable(ctx, v)
	if err != nil {
		return res, err
	}
	return res, r.Keep(storage.Item{V: v})
}

// PutMutable signs and puts v like Node.PutMutable and, if some node stored
// it, keeps the signed record (v, k, salt, seq, sig): it is re-put as is
// every interval until Forget or Close. The private key is not kept.
func (r *Republisher) PutMutable(ctx context.Context, priv ed25519.PrivateKey, v []byte, opts PutOptions) (PutResult, error) {
	res, err := r.n.PutMutable(ctx, priv, v, opts)
	if err != nil {
		return res, err
	}
	// Ed25519 signatures are deterministic: this is the signature just put.
	it := storage.Item{
		V: v, K: priv.Public().(ed25519.PublicKey), Salt: opts.Salt, Seq: res.Seq,
		Sig: storage.SignMutable(priv, opts.Salt, res.Seq, v), Mutable: true,
	}
	return res, r.Keep(it)
}

// Keep starts keeping an item that was just put (by Node.PutImmutable or
// Node.PutMutable, or by anyone: an interested node may republish, BEP
// 44); its first round is one interval from now (less the jitter). A mutable item must carry
// its k, salt, seq and a valid sig. Keeping a target already kept replaces
// its record unless that is a mutable record with a higher seq.
func (r *Republisher) Keep(it storage.Item) error {
	if err := checkKeepable(it); err != nil {
		return err
	}
	target := it.Target()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.ctx.Err() != nil {
		return fmt.Errorf("keep %s: republisher closed", target)
	}
	if old := r.items[target]; old != nil {
		if old.item.Mutable && old.item.Seq > it.Seq {
			return nil
		}
		r.n.forget(old.id)
		delete(r.items, target)
	}
	k := &keptItem{item: it.Clone(), lastPut: r.n.clock.Now()}
	if k.id = r.n.keep(core.Kept{Target: target}, -1, r.start(func() { r.round(target, k) })); k.id == 0 {
		r.stats.Kept = len(r.items)
		return fmt.Errorf("keep %s: node closed", target)
	}
	r.items[target] = k
	r.stats.Kept = len(r.items)
	return nil
}

// Watch keeps alive the mutable item of pub and salt that someone else
// publishes, without its record or private key: each round fetches the
// newest validly signed record from the network and re-puts it to the K
// closest nodes, so the item lives as long as the Republisher runs and
// follows every update its owner makes (BEP 44: any node may republish a
// signed record). The first round runs after first; a round that finds no
// record is retried after a twelfth of the interval; until one is found,
// Item reports a record with no value. Watching a target already kept or
// watched changes nothing.
func (r *Republisher) Watch(pub ed25519.PublicKey, salt []byte, first time.Duration) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("watch: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if len(salt) > storage.MaxSaltLen {
		return fmt.Errorf("watch: salt is %d bytes, at most %d", len(salt), storage.MaxSaltLen)
	}
	it := storage.Item{K: append([]byte(nil), pub...), Salt: salt, Seq: -1, Mutable: true}
	target := it.Target()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.ctx.Err() != nil {
		return fmt.Errorf("watch %s: republisher closed", target)
	}
	if r.items[target] != nil {
		return nil
	}
	k := &keptItem{item: it.Clone()} // lastPut zero: no copy of ours yet
	if k.id = r.n.keep(core.Kept{Target: target}, max(first, 0), r.start(func() { r.round(target, k) })); k.id == 0 {
		return fmt.Errorf("watch %s: node closed", target)
	}
	r.items[target] = k
	r.stats.Kept = len(r.items)
	return nil
}

// checkKeepable validates an item the way a storing node would.
func checkKeepable(it storage.Item) error {
	if err := storage.CheckValue(it.V); err != nil {
		return fmt.Errorf("keep: %w", err)
	}
	if !it.Mutable {
		return nil
	}
	if len(it.Salt) > storage.MaxSaltLen {
		return fmt.Errorf("keep: salt is %d bytes, at most %d", len(it.Salt), storage.MaxSaltLen)
	}
	if len(it.K) != ed25519.PublicKeySize || !storage.VerifyMutable(it.K, it.Salt, it.Seq, it.V, it.Sig) {
		return errors.New("keep: mutable item without a valid signature")
	}
	return nil
}

// Forget stops keeping target; it reports whether it was kept.
func (r *Republisher) Forget(target krpc.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.items[target]
	if k == nil {
		return false
	}
	r.n.forget(k.id)
	delete(r.items, target)
	r.stats.Kept = len(r.items)
	return true
}

// Item returns the record kept for target (for a mutable item, the newest
// seen: it may have been superseded).
func (r *Republisher) Item(target krpc.ID) (storage.Item, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.items[target]
	if k == nil {
		return storage.Item{}, false
	}
	return k.item.Clone(), true
}

// Stats returns the counters.
func (r *Republisher) Stats() RepublishStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Close stops every pending round, cancels the rounds running and waits
// for them. Items are no longer kept. It is idempotent.
func (r *Republisher) Close() {
	r.mu.Lock()
	r.closed = true
	var ids []core.KeepID
	for _, k := range r.items {
		ids = append(ids, k.id)
	}
	for _, a := range r.announces {
		ids = append(ids, a.id)
	}
	r.mu.Unlock()
	r.n.forget(ids...)
	r.runMu.Lock()
	r.stopping = true // no round starts from now on
	r.runMu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// start returns the core's call of a due round (core.Config.Republish):
// it runs fn on a goroutine that Close waits for, unless the Republisher
// is closing. The core calls it holding the driver's lock, so it takes
// no lock that is held while calling into the core.
func (r *Republisher) start(fn func()) func() {
	return func() {
		r.runMu.Lock()
		defer r.runMu.Unlock()
		if r.stopping {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			fn()
		}()
	}
}

// announceRound repeats one kept announce, on a goroutine of its own.
func (r *Republisher) announceRound(ih krpc.ID, a *keptAnnounce) {
	r.mu.Lock()
	if r.closed || r.ctx.Err() != nil || r.announces[ih] != a {
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()

	select {
	case r.sem <- struct{}{}:
	case <-r.ctx.Done():
		return
	}
	res, err := r.n.Announce(r.ctx, ih, a.opts)
	<-r.sem
	if r.ctx.Err() != nil {
		return
	}
	outcome, next := republishPut, r.AnnounceInterval()
	r.mu.Lock()
	if err != nil {
		outcome, next = republishFailed, next/3
		r.stats.Failed++
	} else {
		r.stats.Reannounced++
	}
	hook := r.onRound
	if !r.closed && r.announces[ih] == a {
		r.n.rearm(a.id, next)
	}
	r.mu.Unlock()
	if err != nil {
		r.n.log.Warn("re-announce", "info_hash", ih, "err", err)
	} else {
		r.n.log.Debug("re-announce", "info_hash", ih, "accepted", res.Accepted)
	}
	if hook != nil {
		hook(ih, outcome, err)
	}
}

// round runs one republish of k, on a goroutine of its own.
func (r *Republisher) round(target krpc.ID, k *keptItem) {
	r.mu.Lock()
	if r.closed || r.ctx.Err() != nil || r.items[target] != k {
		r.mu.Unlock()
		return
	}
	it, lastPut := k.item, k.lastPut
	r.mu.Unlock()

	select {
	case r.sem <- struct{}{}:
	case <-r.ctx.Done():
		return
	}
	outcome, it, err := r.republish(r.ctx, target, it, lastPut)
	<-r.sem
	if r.ctx.Err() != nil {
		return // closing: the outcome means nothing
	}
	now := r.n.clock.Now()
	next := r.interval
	r.mu.Lock()
	switch outcome {
	case republishPut, republishSuperseded:
		r.stats.Republished++
		if outcome == republishSuperseded {
			r.stats.Superseded++
		}
		k.lastPut = now
	case republishSkipped:
		r.stats.Skipped++
	case republishFailed:
		r.stats.Failed++
		next = r.interval / 12
	}
	k.item = it
	hook := r.onRound
	if !r.closed && r.items[target] == k {
		r.n.rearm(k.id, next)
	}
	r.mu.Unlock()
	if err != nil {
		r.n.log.Warn("republish", "target", target, "outcome", outcome, "err", err)
	} else {
		r.n.log.Debug("republish", "target", target, "outcome", outcome, "seq", it.Seq)
	}
	if hook != nil {
		hook(target, outcome, err)
	}
}

// republish runs one round for it: a get lookup to the end (to find the K
// closest storers and their tokens), the BEP 44 skip check, then a put of
// the record to every storer that gave a token. It returns the outcome and
// the record now kept (a newer one for a superseded mutable item).
func (r *Republisher) republish(ctx context.Context, target krpc.ID, it storage.Item, lastPut time.Time) (string, storage.Item, error) {
	gr, err := r.n.get(ctx, target, GetOptions{Salt: it.Salt}, false)
	if len(gr.Lookup.Closest) == 0 {
		return republishFailed, it, fmt.Errorf("republish %s: %w", target, err)
	}
	outcome := republishPut
	switch watched := it.Mutable && it.Sig == nil; {
	case watched && !gr.Found: // no record seen yet
		return republishFailed, it, fmt.Errorf("republish %s: no record found (%d nodes queried)", target, gr.Lookup.Queried)
	case watched:
		it = gr.Item.Clone() // the first record of a watched item
	case it.Mutable && gr.Found && gr.Item.Seq > it.Seq:
		// verifyItem checked the signature over (salt, seq, v) for this key.
		it, outcome = gr.Item.Clone(), republishSuperseded
	}
	// Skipping may not let the copies our last put refreshed expire before
	// the round after this one: storers keep an item for the item TTL after
	// its last put (our own store's TTL is the assumption for theirs).
	ttl := r.n.items.Config().TTL
	if outcome == republishPut && !lastPut.IsZero() && r.n.clock.Now().Sub(lastPut)+r.interval < ttl && r.enoughCopies(gr, it) {
		return republishSkipped, it, nil
	}
	seq := it.Seq
	w := r.n.writeToClosest(ctx, gr.Lookup.Closest, func(f Found) *krpc.Args {
		a := &krpc.Args{V: bencode.Bytes(it.V), Token: f.Reply.R.Token}
		if it.Mutable {
			a.K, a.Sig, a.Salt, a.Seq = string(it.K), string(it.Sig), string(it.Salt), &seq
		}
		return a
	}, krpc.MethodPut)
	if len(w.storedAt) == 0 {
		return republishFailed, it, w.notStored(fmt.Sprintf("republish %s (%d answered the lookup)", target, len(gr.Lookup.Closest)))
	}
	return outcome, it, nil
}

// enoughCopies is BEP 44's condition for skipping a republish: the get
// lookup found more than K copies, and the K closest nodes eligible for
// storing (those that gave a token) all hold the item — returned it, or,
// for a mutable item, returned its seq; only copies with the newest seq
// count (BEP 44, Expiration).
func (r *Republisher) enoughCopies(gr GetResult, it storage.Item) bool {
	k := r.n.cfg.K
	if !gr.Found || gr.Count <= k || (it.Mutable && gr.Item.Seq != it.Seq) {
		return false
	}
	eligible := 0
	for _, f := range gr.Lookup.Closest {
		if eligible == k {
			break
		}
		rr := f.Reply.R
		if rr == nil || rr.Token == "" {
			continue
		}
		eligible++
		if it.Mutable {
			if rr.Seq == nil || *rr.Seq != it.Seq {
				return false
			}
			continue
		}
		if _, ok := verifyItem(gr.Target, nil, rr); !ok {
			return false
		}
	}
	return eligible == k
}

// keep puts an entry on the core's republish schedule (core.Node.Keep):
// its first round after one interval, less the core's jitter, or after
// first exactly if first >= 0. round is called when each round is due,
// holding the driver's lock: it must not block. keep returns 0 once the
// node has closed.
func (n *Node) keep(k core.Kept, first time.Duration, round func()) core.KeepID {
	var id core.KeepID
	n.srv.Do(func(cn *core.Node, now time.Time) {
		if first >= 0 {
			id = cn.KeepAfter(now, k, first)
		} else {
			id = cn.Keep(now, k)
		}
		n.keepMu.Lock()
		n.keepRounds[id] = round
		n.keepMu.Unlock()
	})
	return id
}

// rearm schedules the next round of id after d, less the core's jitter.
func (n *Node) rearm(id core.KeepID, d time.Duration) {
	n.srv.Do(func(cn *core.Node, now time.Time) { cn.Rearm(now, id, d) })
}

// forget takes ids off the core's republish schedule.
func (n *Node) forget(ids ...core.KeepID) {
	if len(ids) == 0 {
		return
	}
	n.srv.Do(func(cn *core.Node, _ time.Time) {
		n.keepMu.Lock()
		defer n.keepMu.Unlock()
		for _, id := range ids {
			cn.Forget(id)
			delete(n.keepRounds, id)
		}
	})
}

// republishDue is the core's Config.Republish: it starts the round of
// id, which its Republisher registered with keep.
func (n *Node) republishDue(_ time.Time, id core.KeepID, _ core.Kept) {
	n.keepMu.Lock()
	round := n.keepRounds[id]
	n.keepMu.Unlock()
	if round != nil {
		round()
	}
}
