package routing

import "time"

// BucketInfo describes one bucket for a JSON dump of the table.
type BucketInfo struct {
	// Index is the bucket's position, which is also the number of leading
	// bits its nodes share with our id (at least that many for the last).
	Index        int            `json:"index"`
	Last         bool           `json:"last"`     // the catch-all bucket covering our own id
	Capacity     int            `json:"capacity"` // live nodes it holds when full (see Config.FixedBuckets)
	LastChanged  time.Time      `json:"last_changed,omitzero"`
	Nodes        []NodeSnapshot `json:"nodes"`
	Replacements []NodeSnapshot `json:"replacements"`
}

// NodeSnapshot describes one live or cached node for a JSON dump.
type NodeSnapshot struct {
	ID           string        `json:"id"`   // 40 hex characters
	Addr         string        `json:"addr"` // IP:port
	State        string        `json:"state"`
	Confirmed    bool          `json:"confirmed"` // has answered one of our queries
	FirstSeen    time.Time     `json:"first_seen,omitzero"`
	LastResponse time.Time     `json:"last_response,omitzero"`
	LastQuery    time.Time     `json:"last_query,omitzero"`
	Failures     int           `json:"failures"`
	RTT          time.Duration `json:"rtt_ns"` // of the last answer; 0 if unknown
	RTTMillis    float64       `json:"rtt_ms"` // the same in milliseconds
}

// Snapshot returns the state of every bucket at now, farthest bucket first.
func (t *Table) Snapshot(now time.Time) []BucketInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]BucketInfo, len(t.buckets))
	for i, b := range t.buckets {
		out[i] = BucketInfo{
			Index:        i,
			Last:         i == len(t.buckets)-1,
			Capacity:     t.capacity(i),
			LastChanged:  b.lastChanged,
			Nodes:        t.snapshotEntries(b.nodes, now),
			Replacements: t.snapshotEntries(b.repl, now),
		}
	}
	return out
}

func (t *Table) snapshotEntries(es []*entry, now time.Time) []NodeSnapshot {
	out := make([]NodeSnapshot, len(es))
	for i, e := range es {
		out[i] = NodeSnapshot{
			ID:           e.info.ID.String(),
			Addr:         e.info.Addr.String(),
			State:        e.state(t.stamp(now), &t.cfg).String(),
			Confirmed:    e.confirmed(),
			FirstSeen:    t.time(e.firstSeen),
			LastResponse: t.time(e.lastResponse),
			LastQuery:    t.time(e.lastQuery),
			Failures:     int(e.failures),
			RTT:          e.rtt,
			RTTMillis:    float64(e.rtt.Microseconds()) / 1000,
		}
	}
	return out
}
