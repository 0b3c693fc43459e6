package core

import (
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// Defaults of the republish schedule (Config).
const (
	// DefaultRepublishInterval spaces the rounds of a kept item: BEP 44,
	// Expiration (publishers SHOULD re-put once an hour; storers may drop
	// an item two hours after its last put).
	DefaultRepublishInterval = time.Hour
	// DefaultAnnounceInterval spaces the rounds of a kept announce: half
	// the 30 minutes for which nodes keep a peer (BEP 5 practice).
	DefaultAnnounceInterval = peerTTL / 2
	// RepublishJitter is the largest share, in percent, of an interval by
	// which a round comes early, so that entries kept together (or nodes
	// started together) do not republish in lockstep.
	RepublishJitter = 10
)

// KeepID names one entry of a node's republish schedule (Node.Keep).
type KeepID uint64

// Kept is one entry of a node's republish schedule: something the node
// keeps alive on the network as its publisher (BEP 44, Expiration: the
// publisher re-puts; BEP 5: a peer announces again before nodes drop it).
type Kept struct {
	// Target is the item's target, or the infohash of an announce.
	Target krpc.ID
	// Announce marks an announce of us as a peer of Target on Port
	// (announce_peer), repeated every Config.AnnounceInterval; otherwise
	// the entry is an item, re-put every Config.RepublishInterval.
	Announce bool
	Port     int
	// Item is the record that a round of the node's own re-puts as it is
	// (for a mutable item, the signed record: v, k, salt, seq and sig; the
	// private key is never needed). An entry whose rounds the driver runs
	// (Config.Republish) needs none.
	Item *storage.Item
}

// keepEntry is a Kept with its place on the schedule.
type keepEntry struct {
	id   KeepID
	k    Kept
	due  time.Time
	slot int // index in Node.keepDue; -1 while its round runs
}

// Before orders the waiting entries (Node.keepDue) by due time, then by
// id, so that a seeded driver gives the same order every run.
func (e *keepEntry) Before(o *keepEntry) bool {
	if !e.due.Equal(o.due) {
		return e.due.Before(o.due)
	}
	return e.id < o.id
}

// Slot is where Node.keepDue keeps e's index.
func (e *keepEntry) Slot() *int { return &e.slot }

// Keep adds k to the republish schedule and returns its id: its first
// round comes one interval from now (Config.RepublishInterval, or
// AnnounceInterval for an announce), up to RepublishJitter percent
// early. Keep starts keeping what was just put or announced; it sends
// nothing itself. Without Config.Republish, the node runs the rounds: a
// get (get_peers) lookup, then a put of k.Item (an announce_peer of
// k.Port) to each of the K closest nodes that gave a token; a round that
// no node acknowledged is retried after a twelfth of the interval (a
// third, for an announce).
func (n *Node) Keep(now time.Time, k Kept) KeepID {
	return n.KeepAfter(now, k, n.jitter(n.every(k)))
}

// KeepAfter is Keep with the first round after d exactly (no jitter): for
// an entry whose first round is a fetch, as a driver that watches a
// record someone else publishes needs.
func (n *Node) KeepAfter(now time.Time, k Kept, d time.Duration) KeepID {
	if n.keeps == nil {
		n.keeps = make(map[KeepID]*keepEntry)
	}
	n.keepSeq++
	e := &keepEntry{id: n.keepSeq, k: k, due: now.Add(max(d, 0)), slot: -1}
	n.keeps[e.id] = e
	n.keepDue.Push(e)
	return e.id
}

// Rearm schedules the next round of id after d, up to RepublishJitter
// percent early: the driver's report that the round it ran
// (Config.Republish) has ended. It reports whether id is kept; a round
// already due is moved.
func (n *Node) Rearm(now time.Time, id KeepID, d time.Duration) bool {
	e := n.keeps[id]
	if e == nil {
		return false
	}
	e.due = now.Add(n.jitter(max(d, 0)))
	if e.slot >= 0 {
		n.keepDue.Fix(e)
	} else {
		n.keepDue.Push(e)
	}
	return true
}

// Forget removes id from the republish schedule and reports whether it
// was there. A round of the node's own that is running ends without
// being armed again.
func (n *Node) Forget(id KeepID) bool {
	e := n.keeps[id]
	if e == nil {
		return false
	}
	delete(n.keeps, id)
	n.keepDue.Remove(e)
	return true
}

// Keeping returns how many entries the republish schedule holds.
func (n *Node) Keeping() int { return len(n.keeps) }

// every returns the interval of k's rounds.
func (n *Node) every(k Kept) time.Duration {
	if k.Announce {
		return n.cfg.AnnounceInterval
	}
	return n.cfg.RepublishInterval
}

// jitter returns d less a random share of it, up to RepublishJitter
// percent, drawn from the node's source.
func (n *Node) jitter(d time.Duration) time.Duration {
	if j := int64(d) * RepublishJitter / 100; j > 0 {
		d -= time.Duration(n.rnd.Int64N(j))
	}
	return d
}

// republishDue starts the rounds that are due at now.
func (n *Node) republishDue(now time.Time) {
	for e, ok := n.keepDue.Min(); ok && !now.Before(e.due); e, ok = n.keepDue.Min() {
		n.keepDue.Pop()
		if f := n.cfg.Republish; f != nil {
			f(now, e.id, e.k)
			continue
		}
		n.round(now, e)
	}
}

// round runs one round of the node's own for e.
func (n *Node) round(now time.Time, e *keepEntry) {
	id, every := e.id, n.every(e.k)
	retry := every / 12
	ended := func(r StoreResult) {
		next := every
		if r.Stored == 0 {
			next = retry
		}
		n.Rearm(r.Ended, id, next)
	}
	switch {
	case e.k.Announce:
		retry = every / 3
		n.Announce(now, e.k.Target, e.k.Port, ended)
	case e.k.Item != nil:
		n.PutItem(now, *e.k.Item, ended)
	default:
		// Nothing to put: wait a whole interval, as after a round.
		n.Rearm(now, id, every)
	}
}
