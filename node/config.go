package node

import (
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

// ClientVersion is the "v" this node sends: "DH" (dhtd) and two version
// bytes (BEP 5, BEP 20 style).
const ClientVersion = "DH\x00\x01"

// Config configures a Node. Zero values mean the documented defaults.
type Config struct {
	// ID is the node id. Zero picks a random one.
	ID krpc.ID
	// Listen is the UDP address to bind when Conn is nil. Default
	// "0.0.0.0:6881".
	Listen string
	// Conn, if set, is the packet socket to serve on (a real UDP socket or
	// a simulated one); the node closes it on Close.
	Conn net.PacketConn
	// Bootstrap lists "host:port" addresses to join through. Default none:
	// the command line supplies the public routers; tests pass loopback
	// nodes.
	Bootstrap []string
	// K is the bucket size and the size of a lookup's closest set. Default 8
	// (BEP 5).
	K int
	// Alpha is the number of queries a lookup keeps in flight. Default 5
	// (practice, libtorrent dht_search_branching; Kademlia's is 3).
	Alpha int
	// QueryTimeout bounds each query. Default 2s.
	QueryTimeout time.Duration
	// LookupTimeout bounds a whole lookup. Default 30s.
	LookupTimeout time.Duration
	// MaintenanceInterval is how often the node pings questionable nodes
	// and refreshes stale buckets (the core's upkeep), the first time at a
	// random point of the second interval, so that nodes started together
	// drift apart. Default 1m.
	MaintenanceInterval time.Duration
	// HistoryInterval is how often the node samples its rates for the
	// status page's charts (Admin.History keeps HistoryLen samples).
	// Default HistoryInterval (10 s): HistoryLen samples are the last hour.
	// Negative: no sampling (simulations of many nodes).
	HistoryInterval time.Duration
	// MaxBackgroundPings bounds the pings of one upkeep (the liveness
	// timer, every MaintenanceInterval): of questionable nodes, raised to
	// what reaches every node of the table twice within the good window,
	// and of bad nodes due a retry. Separately, it bounds the confirmation
	// pings in flight that admit new nodes to the table, and the pings
	// answers ask for. Nodes waiting for a confirmation slot are scheduled
	// (admission.go), up to four per slot; more are dropped and counted as
	// admission_busy. Default 16.
	MaxBackgroundPings int
	// MaxLookups bounds concurrent lookups started by the node itself
	// (refreshes). Default 4.
	MaxLookups int
	// MaxInFlight bounds queries awaiting an answer. Default 1024.
	MaxInFlight int
	// LookupMaxPerSubnet caps the nodes one /24 (IPv4) or /64 (IPv6) may
	// contribute to a lookup's candidates, so a Sybil subnet cannot capture
	// it (practice, libtorrent). Default 2; negative disables. Loopback
	// addresses are exempt unless LimitLoopback is set, so a test network
	// on 127.0.0.1 works with the defaults.
	LookupMaxPerSubnet int
	// LimitLoopback applies every per-IP and per-subnet defence to loopback
	// addresses (127.0.0.0/8, ::1), which are exempt by default so local
	// test networks work; tests switch it on to exercise the defences.
	LimitLoopback bool
	// RateLimit is the per-source-IP packet limit checked before a packet
	// is decoded (krpc.IPLimiter; its defaults: 20/s, burst 100, 65536
	// slots, loopback exempt unless LimitLoopback). A negative Rate
	// disables it.
	RateLimit krpc.IPLimiterConfig
	// ReplyBytesPerSecond is the global budget of response bytes per
	// second, with a burst of two seconds' worth; replies beyond it are not
	// sent. Default 1 MiB/s (libtorrent's 8000 B/s, docs/protocol.md, Limits, is far too
	// little for a node that answers fast; this bounds what any flood can
	// make us send). Negative disables.
	ReplyBytesPerSecond int
	// BEP42 is how node ids are checked against their addresses (BEP 42):
	// routing.BEP42Off (default, as libtorrent and anacrolix);
	// routing.BEP42Prefer: nodes whose id verifies take the bucket slots
	// of nodes whose id does not, and are chosen first as lookup results
	// (so as storage targets); routing.BEP42Enforce: queries from a
	// non-verifying id get error 203 and never enter the table, its replies
	// count as failures, and non-verifying ids learned from "nodes" are not
	// queried (so never chosen to store). Local addresses are exempt (BEP
	// 42), loopback only while LimitLoopback is unset.
	BEP42 routing.BEP42Mode
	// UnverifiedReplyBytes caps the replies to a querier that has not
	// shown it owns its address (amplify.go): default 700 bytes, about
	// seven times a get_peers query and room for a BEP 33 scrape's two
	// bloom filters; negative disables the cap.
	UnverifiedReplyBytes int
	// SampleInterval is the BEP 51 "interval" of sample_infohashes
	// replies: how long a sample is reused, and how long an indexer should
	// wait before asking again. Default 6 h (libtorrent); at most 6 h (BEP
	// 51: 0..21600 s).
	SampleInterval time.Duration
	// ReadOnly makes the node a BEP 43 read-only node: it sends ro=1 and
	// answers no queries.
	ReadOnly bool
	// Table configures the routing table (bucket size follows K).
	Table routing.Config
	// Peers configures the peer store, including the per-source quota
	// (storage.PeerConfig.MaxPerSource: 2% of the infohashes per /24 or
	// /48 by default; loopback exempt unless LimitLoopback).
	Peers storage.PeerConfig
	// Items configures the BEP 44 item store, including the per-source
	// quota (storage.ItemConfig.MaxPerSource: 2% of the items per /24 or
	// /48 by default; loopback exempt unless LimitLoopback).
	Items storage.ItemConfig
	// TokenRotate is how often the write-token secret changes; a token is
	// accepted for between one and two periods after it was given. Default
	// 5m (BEP 5: tokens up to ten minutes old are accepted). Tests shorten
	// it to watch tokens expire.
	TokenRotate time.Duration
	// RepublishInterval is how often a Republisher re-puts the items it
	// keeps (BEP 44: publishers SHOULD re-put once an hour). Default 1h.
	RepublishInterval time.Duration
	// Clock defaults to the system clock.
	Clock krpc.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the node's Prometheus metrics. Nil creates a private
	// registry (see Admin.Registry).
	Registry *prometheus.Registry
	// Metrics labels this node's series with its address family and skips
	// the runtime collectors, for dual-stack processes whose nodes share
	// Registry (BEP 32). Zero: no family label.
	Metrics metrics.Options

	// DataDir is the directory of the node's database (DBFileName in it,
	// created with the directory if missing). Empty keeps everything in
	// memory: the id, routing table, peers and items are lost on Close.
	// With a DataDir the node keeps its id (unless ID is set, which then
	// replaces the saved one), saves its routing table every SaveInterval
	// and on Close and pings the saved nodes at start, and acknowledges a
	// put or announce_peer only once it is on disk. Only one node (or
	// process) can use a DataDir at a time: New fails, after about a
	// second, with an error wrapping storage.ErrDBLocked.
	DataDir string
	// SaveInterval is how often the routing table is saved and expired
	// records are deleted from the database (DataDir only). Default 5m.
	SaveInterval time.Duration
	// FailOnCorrupt makes New fail, with an error wrapping
	// storage.ErrDBCorrupt or ErrDataLoss, when the database is damaged,
	// or missing or empty in a data dir that held one (DataDir only).
	// False (the default) moves a damaged file aside and starts with what
	// can be salvaged from it; see openDB.
	FailOnCorrupt bool
	// MaxPendingWrites bounds the puts and announces waiting for their
	// write to the database before they are acknowledged (DataDir only);
	// more are refused with 202 "server busy". Default 256.
	MaxPendingWrites int
}

// LoopbackConfig returns a profile with small timers for tests and
// simulations on loopback: short query and lookup timeouts and frequent
// maintenance. Listen is 127.0.0.1:0.
func LoopbackConfig() Config {
	return Config{
		Listen:              "127.0.0.1:0",
		QueryTimeout:        500 * time.Millisecond,
		LookupTimeout:       10 * time.Second,
		MaintenanceInterval: 2 * time.Second,
		Logger:              slog.New(slog.DiscardHandler),
		// A small limiter table (16 KiB instead of 1 MiB): simulations
		// run a thousand nodes in one process.
		RateLimit: krpc.IPLimiterConfig{Slots: 1024},
	}
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = "0.0.0.0:6881"
	}
	if c.K <= 0 {
		c.K = 8
	}
	if c.Alpha <= 0 {
		c.Alpha = 5
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 2 * time.Second
	}
	if c.LookupTimeout <= 0 {
		c.LookupTimeout = 30 * time.Second
	}
	if c.HistoryInterval == 0 {
		c.HistoryInterval = HistoryInterval
	}
	if c.MaintenanceInterval <= 0 {
		c.MaintenanceInterval = time.Minute
	}
	if c.MaxBackgroundPings <= 0 {
		c.MaxBackgroundPings = 16
	}
	if c.MaxLookups <= 0 {
		c.MaxLookups = 4
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.SaveInterval <= 0 {
		c.SaveInterval = 5 * time.Minute
	}
	if c.MaxPendingWrites <= 0 {
		c.MaxPendingWrites = 256
	}
	if c.LookupMaxPerSubnet == 0 {
		c.LookupMaxPerSubnet = 2
	}
	if c.Table.K == 0 {
		c.Table.K = c.K
	}
	// Anti-Sybil address rules (docs/protocol.md, Admission, practice libtorrent): one
	// entry per IP, two per /24 (/64) per bucket; negative disables.
	if c.Table.MaxPerIP == 0 {
		c.Table.MaxPerIP = 1
	}
	if c.Table.MaxPerSubnetPerBucket == 0 {
		c.Table.MaxPerSubnetPerBucket = 2
	}
	c.Table.LimitLoopback = c.Table.LimitLoopback || c.LimitLoopback
	c.RateLimit.LimitLoopback = c.RateLimit.LimitLoopback || c.LimitLoopback
	c.Items.LimitLoopback = c.Items.LimitLoopback || c.LimitLoopback
	c.Peers.LimitLoopback = c.Peers.LimitLoopback || c.LimitLoopback
	if c.UnverifiedReplyBytes == 0 {
		c.UnverifiedReplyBytes = 700
	}
	if c.SampleInterval <= 0 || c.SampleInterval > 6*time.Hour {
		c.SampleInterval = 6 * time.Hour
	}
	if c.ReplyBytesPerSecond == 0 {
		c.ReplyBytesPerSecond = 1 << 20
	}
	if c.RepublishInterval <= 0 {
		c.RepublishInterval = time.Hour
	}
	if c.Clock == nil {
		c.Clock = krpc.SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}
