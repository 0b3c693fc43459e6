package metrics

import "github.com/prometheus/client_golang/prometheus"

// TableStats is a snapshot of the routing table.
type TableStats struct {
	Good, Questionable, Bad int // nodes by liveness state
	Buckets                 int // buckets in the table
	Replacements            int // nodes waiting in replacement caches
	Admitting               int // nodes waiting for, or sent, a confirmation ping
}

// PeerStats is a snapshot of the announce_peer store. The uint64 fields are
// counts since start and must never decrease.
type PeerStats struct {
	Infohashes        int    // infohashes with at least one peer
	Peers             int    // peer entries over all infohashes
	Bytes             int    // estimated memory held
	Sources           int    // source networks (/24, /48) infohashes are charged to
	TopSource         int    // infohashes charged to the network holding the most
	EvictedInfohashes uint64 // infohashes evicted to stay within bounds (EvictOverShare)
	EvictedPeers      uint64 // peers replaced in a full infohash (EvictInfohashFull)
	EvictedPeersBytes uint64 // peers replaced for the byte budget (EvictBytes)
	Expired           uint64 // peers removed because they aged out
	Refused           uint64 // announces refused because the store was full or the source over its quota
}

// ItemStats is a snapshot of the BEP 44 item store. The uint64 fields are
// counts since start and must never decrease.
type ItemStats struct {
	Immutable, Mutable int    // items stored, by kind
	Bytes              int    // estimated memory held
	Sources            int    // source networks (/24, /48) items are charged to
	TopSource          int    // items charged to the network holding the most
	Evicted            uint64 // items evicted to stay within bounds (EvictOverShare)
	Expired            uint64 // items removed because they aged out
}

// DBStats is a snapshot of the on-disk store. The uint64 fields are counts
// since start and must never decrease.
type DBStats struct {
	Commits     uint64 // write transactions committed (fsync'ed)
	Writes      uint64 // write calls that succeeded; concurrent ones share commits
	WriteErrors uint64 // write calls that failed
	Corrupt     uint64 // undecodable records skipped when loading
	Size        int64  // bytes of the data file in use
	Healthy     bool   // the last write succeeded (or none failed yet)
}

// Sources are callbacks that report the state of other components at scrape
// time. A nil callback is skipped: its metrics are not exported. Callbacks
// may be called concurrently from several scrapes, so they must be safe for
// concurrent use, and they should be cheap.
type Sources struct {
	// Table reports the routing table.
	Table func() TableStats
	// Peers reports the announce_peer store.
	Peers func() PeerStats
	// Items reports the BEP 44 item store.
	Items func() ItemStats
	// DB reports the on-disk store; nil when the node keeps everything in
	// memory.
	DB func() DBStats
}

// RegisterSources registers on the Metrics' registry one collector that calls
// the callbacks of s at each scrape and exports:
//
//	dhtd_routing_nodes{state="good|questionable|bad"}   gauge   (Table)
//	dhtd_routing_buckets                                gauge   (Table)
//	dhtd_routing_replacements                           gauge   (Table)
//	dhtd_routing_admissions                             gauge   (Table)
//	dhtd_peers_stored                                   gauge   (Peers)
//	dhtd_infohashes_stored                              gauge   (Peers)
//	dhtd_peer_store_refused_total                       counter (Peers)
//	dhtd_storage_items{kind="immutable|mutable"}        gauge   (Items)
//	dhtd_storage_bytes{kind="peer|item"}                gauge   (Peers, Items)
//	dhtd_storage_sources{kind="infohash|item"}          gauge   (Peers, Items)
//	dhtd_storage_top_source_entries{kind="infohash|item"} gauge (Peers, Items)
//	dhtd_storage_evictions_total{kind="peer|infohash|item",reason=EvictReasons} counter (Peers, Items)
//	dhtd_storage_expired_total{kind="peer|item"}        counter (Peers, Items)
//	dhtd_db_commits_total                               counter (DB)
//	dhtd_db_writes_total                                counter (DB)
//	dhtd_db_write_errors_total                          counter (DB)
//	dhtd_db_corrupt_records_total                       counter (DB)
//	dhtd_db_size_bytes                                  gauge   (DB)
//	dhtd_db_healthy                                     gauge   (DB)
//
// It panics if two calls on the same Metrics register the same metric
// (double registration).
func (m *Metrics) RegisterSources(s Sources) {
	m.reg.MustRegister(&sourcesCollector{s: s})
}

// RegisterDB registers a collector of the dhtd_db_* metrics that calls fn
// at each scrape: RegisterSources with only DB set. It is for a node that
// opens its database after registering its other sources; it panics if the
// DB metrics are already registered.
func (m *Metrics) RegisterDB(fn func() DBStats) {
	m.RegisterSources(Sources{DB: fn})
}

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

var (
	descRoutingNodes        = newDesc("routing_nodes", "Nodes in the routing table, by state.", "state")
	descRoutingBuckets      = newDesc("routing_buckets", "Buckets in the routing table.")
	descRoutingReplacements = newDesc("routing_replacements", "Nodes waiting in the replacement caches.")
	descRoutingAdmissions   = newDesc("routing_admissions", "Nodes waiting for, or sent, the ping that admits them to the routing table.")
	descPeersStored         = newDesc("peers_stored", "Peer entries in the announce_peer store.")
	descInfohashesStored    = newDesc("infohashes_stored", "Infohashes in the announce_peer store.")
	descPeerStoreRefused    = newDesc("peer_store_refused_total", "Announces refused because the peer store was full or the source over its quota.")
	descStorageItems        = newDesc("storage_items", "BEP 44 items stored, by kind.", "kind")
	descStorageBytes        = newDesc("storage_bytes", "Estimated memory held by the stores, by kind.", "kind")
	descStorageSources      = newDesc("storage_sources", "Source networks (/24, IPv6 /48) holding stored entries, by kind.", "kind")
	descStorageTopSource    = newDesc("storage_top_source_entries", "Entries held by the source network holding the most, by kind (per-source quota: storage MaxPerSource).", "kind")
	descStorageEvictions    = newDesc("storage_evictions_total", "Entries evicted to keep the stores within bounds, by kind and reason.", "kind", "reason")
	descStorageExpired      = newDesc("storage_expired_total", "Entries removed because they aged out, by kind.", "kind")
	descDBCommits           = newDesc("db_commits_total", "Write transactions committed to the on-disk store (each one fsync).")
	descDBWrites            = newDesc("db_writes_total", "Writes to the on-disk store that succeeded; concurrent writes share commits.")
	descDBWriteErrors       = newDesc("db_write_errors_total", "Writes to the on-disk store that failed.")
	descDBCorrupt           = newDesc("db_corrupt_records_total", "Undecodable records skipped while loading the on-disk store.")
	descDBSize              = newDesc("db_size_bytes", "Bytes of the on-disk store's data file in use.")
	descDBHealthy           = newDesc("db_healthy", "1 while writes to the on-disk store succeed, 0 from a failed write until the next one succeeds.")
)

// sourcesCollector is the prometheus.Collector behind RegisterSources.
type sourcesCollector struct {
	s Sources
}

// Describe sends the descriptors of every metric the collector can emit.
func (c *sourcesCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.s.Table != nil {
		ch <- descRoutingNodes
		ch <- descRoutingBuckets
		ch <- descRoutingReplacements
		ch <- descRoutingAdmissions
	}
	if c.s.Peers != nil {
		ch <- descPeersStored
		ch <- descInfohashesStored
		ch <- descPeerStoreRefused
	}
	if c.s.Items != nil {
		ch <- descStorageItems
	}
	if c.s.Peers != nil || c.s.Items != nil {
		ch <- descStorageBytes
		ch <- descStorageEvictions
		ch <- descStorageSources
		ch <- descStorageTopSource
		ch <- descStorageExpired
	}
	if c.s.DB != nil {
		ch <- descDBCommits
		ch <- descDBWrites
		ch <- descDBWriteErrors
		ch <- descDBCorrupt
		ch <- descDBSize
		ch <- descDBHealthy
	}
}

// Collect calls each non-nil callback once and emits its values.
func (c *sourcesCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if c.s.Table != nil {
		t := c.s.Table()
		gauge(descRoutingNodes, float64(t.Good), "good")
		gauge(descRoutingNodes, float64(t.Questionable), "questionable")
		gauge(descRoutingNodes, float64(t.Bad), "bad")
		gauge(descRoutingBuckets, float64(t.Buckets))
		gauge(descRoutingReplacements, float64(t.Replacements))
		gauge(descRoutingAdmissions, float64(t.Admitting))
	}
	if c.s.Peers != nil {
		p := c.s.Peers()
		gauge(descPeersStored, float64(p.Peers))
		gauge(descInfohashesStored, float64(p.Infohashes))
		gauge(descStorageBytes, float64(p.Bytes), "peer")
		gauge(descStorageSources, float64(p.Sources), "infohash")
		gauge(descStorageTopSource, float64(p.TopSource), "infohash")
		counter(descStorageEvictions, p.EvictedPeers, "peer", EvictInfohashFull)
		counter(descStorageEvictions, p.EvictedPeersBytes, "peer", EvictBytes)
		counter(descStorageEvictions, p.EvictedInfohashes, "infohash", EvictOverShare)
		counter(descStorageExpired, p.Expired, "peer")
		counter(descPeerStoreRefused, p.Refused)
	}
	if c.s.Items != nil {
		it := c.s.Items()
		gauge(descStorageItems, float64(it.Immutable), "immutable")
		gauge(descStorageItems, float64(it.Mutable), "mutable")
		gauge(descStorageBytes, float64(it.Bytes), "item")
		gauge(descStorageSources, float64(it.Sources), "item")
		gauge(descStorageTopSource, float64(it.TopSource), "item")
		counter(descStorageEvictions, it.Evicted, "item", EvictOverShare)
		counter(descStorageExpired, it.Expired, "item")
	}
	if c.s.DB != nil {
		d := c.s.DB()
		counter(descDBCommits, d.Commits)
		counter(descDBWrites, d.Writes)
		counter(descDBWriteErrors, d.WriteErrors)
		counter(descDBCorrupt, d.Corrupt)
		gauge(descDBSize, float64(d.Size))
		healthy := 0.0
		if d.Healthy {
			healthy = 1
		}
		gauge(descDBHealthy, healthy)
	}
}
