package node

import (
	"encoding/json"
	"net/http"

	"github.com/dhtd/dhtd/metrics"
	"github.com/dhtd/dhtd/routing"
)

// readyGoodNodes is how many good nodes the table must hold for Ready.
const readyGoodNodes = 2

// Ready reports whether the routing table holds at least a few good nodes
// and the storage works (StorageHealthy); served as /readyz.
func (n *Node) Ready() bool {
	good, _, _ := n.table.Counts(n.clock.Now())
	return good >= readyGoodNodes && n.StorageHealthy()
}

// RoutingDump is the JSON document of /debug/routing.
type RoutingDump struct {
	ID      string               `json:"id"`
	Addr    string               `json:"addr"`
	Good    int                  `json:"good"`
	Quest   int                  `json:"questionable"`
	Bad     int                  `json:"bad"`
	Buckets []routing.BucketInfo `json:"buckets"`
}

// RoutingSnapshot returns the routing table as a RoutingDump.
func (n *Node) RoutingSnapshot() RoutingDump {
	now := n.clock.Now()
	good, q, bad := n.table.Counts(now)
	return RoutingDump{
		ID: n.id.String(), Addr: n.Addr().String(),
		Good: good, Quest: q, Bad: bad,
		Buckets: n.table.Snapshot(now),
	}
}

// RoutingHandler serves RoutingSnapshot as JSON (/debug/routing).
func (n *Node) RoutingHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(n.RoutingSnapshot())
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
