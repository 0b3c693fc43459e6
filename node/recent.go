package node

import (
	"sync"
	"time"
)

// RecentLookupsSize is how many finished lookups Admin.RecentLookups keeps;
// older ones are overwritten (a fixed ring, so its memory is bounded).
const RecentLookupsSize = 32

// RecentLookup describes one finished iterative lookup, for the status page.
type RecentLookup struct {
	Kind    string        `json:"kind"`   // a metrics.LookupKinds value: get_peers, get, find_node, ...
	Target  string        `json:"target"` // 40 hex characters
	Outcome string        `json:"outcome"`
	Start   time.Time     `json:"start"`
	Elapsed time.Duration `json:"elapsed_ns"`
	Queried int           `json:"queried"` // queries sent (the lookup's hops)
	Failed  int           `json:"failed"`  // queries that timed out or failed
	Closest int           `json:"closest"` // responders in the closest set
}

// recentLookups is a fixed-size ring of RecentLookup. The zero value is
// ready to use.
type recentLookups struct {
	mu   sync.Mutex
	buf  [RecentLookupsSize]RecentLookup
	next int // slot of the next write
	n    int // slots filled, at most RecentLookupsSize
}

func (r *recentLookups) add(l RecentLookup) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = l
	r.next = (r.next + 1) % RecentLookupsSize
	r.n = min(r.n+1, RecentLookupsSize)
}

// list returns the kept lookups, newest first.
func (r *recentLookups) list() []RecentLookup {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]RecentLookup, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, r.buf[(r.next-i+RecentLookupsSize)%RecentLookupsSize])
	}
	return out
}

// markNotFound changes the outcome of the newest "ok" lookup of kind for
// target to "not_found": the lookup ran, but found no item or no peer.
func (r *recentLookups) markNotFound(kind string, target string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 1; i <= r.n; i++ {
		l := &r.buf[(r.next-i+RecentLookupsSize)%RecentLookupsSize]
		if l.Kind == kind && l.Target == target {
			if l.Outcome == "ok" {
				l.Outcome = "not_found"
			}
			return
		}
	}
}

// recordLookup adds a finished lookup to the ring (called from lookup).
func (n *Node) recordLookup(kind, outcome string, res LookupResult) {
	n.history.noteLookup(res.Elapsed)
	n.recent.add(RecentLookup{
		Kind: kind, Target: res.Target.String(), Outcome: outcome,
		Start: n.clock.Now().Add(-res.Elapsed), Elapsed: res.Elapsed,
		Queried: res.Queried, Failed: res.Failed, Closest: len(res.Closest),
	})
}

// RecentLookups returns the last RecentLookupsSize lookups this node
// finished (its own and the API's), newest first.
func (a *Admin) RecentLookups() []RecentLookup { return a.n.recent.list() }
