package node

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/routing"
)

// Admin is the daemon's handle on a node: what running a node as a service
// needs beyond the embedding API (its metrics registry, the routing table
// itself, the status page's history, the debug handlers and the settings a
// configuration reload changes). Get it with Node.Admin. An embedder needs
// none of it: Node.Stats is the read-only view of the same state.
//
// Its methods are safe for concurrent use.
type Admin struct{ n *Node }

// Admin returns the daemon's handle on n (see Admin).
func (n *Node) Admin() *Admin { return &Admin{n: n} }

// Registry returns the Prometheus registry the node's metrics are on
// (Config.Registry, or the private one New created).
func (a *Admin) Registry() *prometheus.Registry { return a.n.cfg.Registry }

// Metrics returns the node's collectors.
func (a *Admin) Metrics() *metrics.Metrics { return a.n.metrics }

// Table returns the node's routing table. It is the live table, not a
// copy: what is done to it (Add, Remove, ...) changes the node's routing.
func (a *Admin) Table() *routing.Table { return a.n.table }

// readyGoodNodes is how many good nodes the table must hold for
// Stats.Ready.
const readyGoodNodes = 2

// RoutingDump is the JSON document of /debug/routing.
type RoutingDump struct {
	ID      string               `json:"id"`
	Addr    string               `json:"addr"`
	Good    int                  `json:"good"`
	Quest   int                  `json:"questionable"`
	Bad     int                  `json:"bad"`
	Buckets []routing.BucketInfo `json:"buckets"`
}

// RoutingSnapshot returns the routing table as a RoutingDump: every
// bucket, with its nodes and replacements.
func (a *Admin) RoutingSnapshot() RoutingDump {
	n := a.n
	now := n.clock.Now()
	good, q, bad := n.table.Counts(now)
	return RoutingDump{
		ID: n.id.String(), Addr: n.Addr().String(),
		Good: good, Quest: q, Bad: bad,
		Buckets: n.table.Snapshot(now),
	}
}

// RoutingHandler serves RoutingSnapshot as JSON (/debug/routing).
func (a *Admin) RoutingHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.RoutingSnapshot())
	})
}

// registerSources exports the table and stores as gauges.
func (n *Node) registerSources() {
	n.metrics.RegisterSources(metrics.Sources{
		Table: func() metrics.TableStats {
			good, q, bad := n.table.Counts(n.clock.Now())
			return metrics.TableStats{Good: good, Questionable: q, Bad: bad, Buckets: n.table.NumBuckets(), Replacements: n.table.Replacements(), Admitting: n.admitting()}
		},
		Peers: func() metrics.PeerStats {
			s := n.peers.Stats()
			return metrics.PeerStats{
				Infohashes: s.Infohashes, Peers: s.Peers, Bytes: int(s.Bytes),
				Sources: s.Sources, TopSource: s.TopSource,
				EvictedInfohashes: s.EvictedInfohashes, EvictedPeers: s.EvictedPeers,
				EvictedPeersBytes: s.EvictedPeersBytes,
				Expired:           s.Expired, Refused: s.RefusedInfohashes + s.RefusedBytes + s.RefusedQuota,
			}
		},
		Items: func() metrics.ItemStats {
			s := n.items.Stats()
			return metrics.ItemStats{
				Immutable: s.Immutable, Mutable: s.Mutable, Bytes: int(s.Bytes),
				Sources: s.Sources, TopSource: s.TopSource,
				Evicted: s.Evicted, Expired: s.Expired,
			}
		},
	})
}
