package routing

import (
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// Defaults for the zero fields of Config.
const (
	DefaultK               = 8                // bucket size (BEP 5)
	DefaultReplacementSize = 8                // replacement cache per bucket (libtorrent practice)
	DefaultGoodWindow      = 15 * time.Minute // good/questionable boundary (BEP 5)
	DefaultMaxFailures     = 2                // consecutive failures before a node is bad (BEP 5 "multiple")
	DefaultRefreshInterval = 15 * time.Minute // bucket refresh after this long unchanged (BEP 5)
	DefaultRetryBase       = time.Minute      // first retry of a bad node (see Table.Retry)
	DefaultRetryMax        = 15 * time.Minute // longest wait between retries of a bad node
)

// MaxBuckets is the most buckets a table can have: one per possible shared
// prefix length with our own id (docs/protocol.md, Table shape).
const MaxBuckets = 160

// Config tunes a Table. The zero value of every field selects its default.
type Config struct {
	// K is the bucket size; default DefaultK (8, BEP 5). Every bucket but
	// the last holds more unless FixedBuckets is set (see Capacity).
	K int
	// FixedBuckets makes every bucket hold K nodes, as BEP 5 has it. By
	// default the table is extended, as libtorrent's
	// dht_extended_routing_table (on by default there) extends its four
	// farthest buckets: buckets 0 and 1, the farthest, which cover 3/4 of
	// the id space, hold 16 and 8 times K, so a lookup's first hop starts
	// about four bits closer to its target; every other bucket but the
	// last (which splits, and holds K) holds 4K, so the node knows most of
	// the nodes near its own id, and a lookup that reaches it learns its
	// target's K closest in one answer. Replies still carry K nodes.
	FixedBuckets bool
	// ReplacementSize bounds each bucket's replacement cache; default
	// DefaultReplacementSize (8).
	ReplacementSize int
	// GoodWindow is how recent an answer (or, for a node that has answered
	// before, a query from it) must be for the node to be good; default
	// DefaultGoodWindow (15 min, BEP 5).
	GoodWindow time.Duration
	// MaxFailures is the number of consecutive failed queries after which a
	// node is bad; default DefaultMaxFailures (2: BEP 5 says "multiple" and
	// asks to retry a failing node once before dropping it).
	MaxFailures int
	// RefreshInterval is how long a bucket may stay unchanged before
	// RefreshTargets returns it; default DefaultRefreshInterval (15 min, BEP 5).
	RefreshInterval time.Duration
	// MaxPerIP limits the number of entries (live plus replacement caches)
	// sharing one IP address across the whole table; 0 (default) means
	// unlimited. libtorrent uses 1 (docs/protocol.md, Admission); loopback tests that run
	// many nodes on 127.0.0.1 need it off. A node that answers us may evict
	// unconfirmed cache entries at its IP to fit.
	MaxPerIP int
	// MaxPerSubnetPerBucket limits the live nodes of one bucket that share
	// an IPv4 /24 or IPv6 /64; 0 (default) means unlimited. libtorrent uses 1
	// (docs/protocol.md, Admission).
	MaxPerSubnetPerBucket int
	// LimitLoopback applies MaxPerIP and MaxPerSubnetPerBucket to loopback
	// addresses too. By default loopback nodes are exempt, so a test
	// network on 127.0.0.1 works with a public node's limits.
	LimitLoopback bool
	// RetryBase and RetryMax space the pings Retry schedules for bad nodes
	// still in the table: RetryBase after the failure that made the node
	// bad, doubling per further failure, at most RetryMax. Defaults
	// DefaultRetryBase (1 min) and DefaultRetryMax (15 min).
	RetryBase, RetryMax time.Duration
	// Prefer, if set, marks the nodes a full bucket prefers (BEP 42 prefer
	// mode: ids that match their address): a preferred node that answers
	// takes the slot of the least recently seen live node that is not
	// preferred, which moves to the replacement cache.
	Prefer func(krpc.NodeInfo) bool
}

func (c Config) withDefaults() Config {
	if c.K <= 0 {
		c.K = DefaultK
	}
	if c.ReplacementSize <= 0 {
		c.ReplacementSize = DefaultReplacementSize
	}
	if c.GoodWindow <= 0 {
		c.GoodWindow = DefaultGoodWindow
	}
	if c.MaxFailures <= 0 {
		c.MaxFailures = DefaultMaxFailures
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.RetryBase <= 0 {
		c.RetryBase = DefaultRetryBase
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	c.MaxPerIP = max(c.MaxPerIP, 0)
	c.MaxPerSubnetPerBucket = max(c.MaxPerSubnetPerBucket, 0)
	return c
}
