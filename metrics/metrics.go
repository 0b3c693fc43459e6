// Package metrics defines every Prometheus metric of a dhtd node and the
// HTTP handler that serves them.
//
// Nothing registers on the global Prometheus registerer: New takes a
// *prometheus.Registry, so several nodes can live in one process, each with
// its own registry. Label values come only from the fixed sets in labels.go;
// every combination is created at zero by New so all series exist from the
// first scrape. The transport's labels (packet kinds, drop reasons, query
// outcomes) are krpc's own sets, the only package of the project this one
// imports. Gauges owned by other components (routing table, stores) are
// read through the callbacks of Sources.
package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "dhtd"

// Histogram buckets. They are explicit so that dashboards stay comparable
// across releases.
var (
	// rttBuckets spans one KRPC round trip: 1ms to 10s.
	rttBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// lookupBuckets spans one iterative lookup: 10ms to 2 minutes.
	lookupBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	// queryCountBuckets counts the queries sent by one lookup: 1 to 256.
	queryCountBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}
)

// BuildInfo describes the running binary; it is exported as the labels of
// dhtd_build_info.
type BuildInfo struct {
	// Version is the dhtd version; empty means "unknown".
	Version string
	// GoVersion is the Go toolchain version; empty means runtime.Version().
	GoVersion string
}

// Metrics holds the collectors of one node. Its fields are safe for
// concurrent use. Label values must come from the fixed sets of this
// package (see labels.go).
type Metrics struct {
	// PacketsReceived counts datagrams received, by kind (PacketKinds).
	PacketsReceived *prometheus.CounterVec
	// PacketsSent counts datagrams sent, by kind (PacketKinds).
	PacketsSent *prometheus.CounterVec
	// BytesReceived counts the bytes of datagrams received, by kind (PacketKinds).
	BytesReceived *prometheus.CounterVec
	// BytesSent counts the bytes of datagrams sent, by kind (PacketKinds).
	BytesSent *prometheus.CounterVec
	// PacketsDropped counts datagrams dropped, inbound or outbound, by reason (DropReasons).
	PacketsDropped *prometheus.CounterVec

	// QueriesReceived counts queries received, by method (Methods, via MethodLabel).
	QueriesReceived *prometheus.CounterVec
	// ErrorsSent counts KRPC errors sent, by code (ErrorCodes, via ErrorCodeLabel).
	ErrorsSent *prometheus.CounterVec

	// QueriesSent counts finished outbound queries, by method (SentMethods)
	// and outcome (QueryOutcomes).
	QueriesSent *prometheus.CounterVec
	// QueryRTT observes the round-trip time in seconds of answered queries,
	// by method (SentMethods).
	QueryRTT *prometheus.HistogramVec
	// TransactionsInFlight is the number of outbound queries awaiting a reply.
	TransactionsInFlight prometheus.Gauge

	// Lookups counts finished iterative lookups, by kind (LookupKinds) and
	// outcome (LookupOutcomes).
	Lookups *prometheus.CounterVec
	// LookupDuration observes the duration in seconds of lookups, by kind (LookupKinds).
	LookupDuration *prometheus.HistogramVec
	// LookupQueries observes the number of queries sent per lookup, by kind (LookupKinds).
	LookupQueries *prometheus.HistogramVec

	// TokensIssued counts write tokens handed out in get_peers and get responses.
	TokensIssued prometheus.Counter
	// TokensRejected counts write tokens that failed validation.
	TokensRejected prometheus.Counter
	// StorageRejections counts refused writes, by kind (StorageKinds) and
	// reason (RejectReasons of the kind).
	StorageRejections *prometheus.CounterVec
	// RepliesTrimmed counts replies cut down to the size allowed a querier
	// that has not shown it owns its address (amplification guard).
	RepliesTrimmed prometheus.Counter

	// DBWritesInFlight is the number of acknowledgements (put,
	// announce_peer) waiting for their write to the on-disk store to be
	// durable; bounded by node.Config.MaxPendingWrites.
	DBWritesInFlight prometheus.Gauge
	// DBDeletesDropped counts evictions that could not be queued for
	// deletion from the on-disk store because the queue was full (the
	// records then go at their expiry).
	DBDeletesDropped prometheus.Counter

	// BuildInfo is the constant 1, labelled with version and goversion.
	BuildInfo *prometheus.GaugeVec

	reg prometheus.Registerer // the registry, wrapped with the family label if any
}

// Options adjust New.
type Options struct {
	// Family, if set, labels every series of these metrics family=Family,
	// so that the nodes of a dual-stack process (one per address family,
	// BEP 32; Family "ipv4" or "ipv6") share one registry.
	Family string
	// NoRuntime skips the Go runtime and process collectors, which a
	// registry holds once: the second node of a dual-stack process sets it.
	NoRuntime bool
}

// New creates the collectors of one node and registers them, together with
// the Go runtime and process collectors, on reg. Every label combination of
// the fixed sets is initialised to zero.
//
// New panics if registration fails, which only happens on programmer error:
// a nil reg, or calling New twice with the same registry. Use one registry
// per Metrics.
func New(reg *prometheus.Registry, bi BuildInfo) *Metrics {
	return NewWith(reg, bi, Options{})
}

// NewWith is New with options (family label, runtime collectors).
func NewWith(reg *prometheus.Registry, bi BuildInfo, o Options) *Metrics {
	if reg == nil {
		panic("metrics: New called with a nil registry")
	}
	if bi.Version == "" {
		bi.Version = "unknown"
	}
	if bi.GoVersion == "" {
		bi.GoVersion = runtime.Version()
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	histogramVec := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
	}
	m := &Metrics{
		PacketsReceived: counterVec("packets_received_total", "KRPC datagrams received, by kind.", "kind"),
		PacketsSent:     counterVec("packets_sent_total", "KRPC datagrams sent, by kind.", "kind"),
		BytesReceived:   counterVec("received_bytes_total", "Bytes of KRPC datagrams received, by kind.", "kind"),
		BytesSent:       counterVec("sent_bytes_total", "Bytes of KRPC datagrams sent, by kind.", "kind"),
		PacketsDropped:  counterVec("packets_dropped_total", "Datagrams dropped, by reason.", "reason"),

		QueriesReceived: counterVec("queries_received_total", "KRPC queries received, by method.", "method"),
		ErrorsSent:      counterVec("errors_sent_total", "KRPC errors sent, by code.", "code"),

		QueriesSent: counterVec("queries_sent_total", "Outbound KRPC queries finished, by method and outcome.", "method", "outcome"),
		QueryRTT:    histogramVec("query_rtt_seconds", "Round-trip time of answered KRPC queries, by method.", rttBuckets, "method"),
		TransactionsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "transactions_in_flight",
			Help: "Outbound KRPC queries awaiting a reply.",
		}),

		Lookups:        counterVec("lookups_total", "Iterative lookups finished, by kind and outcome.", "kind", "outcome"),
		LookupDuration: histogramVec("lookup_duration_seconds", "Duration of iterative lookups, by kind.", lookupBuckets, "kind"),
		LookupQueries:  histogramVec("lookup_queries", "Queries sent per iterative lookup, by kind.", queryCountBuckets, "kind"),

		TokensIssued: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "tokens_issued_total",
			Help: "Write tokens handed out.",
		}),
		TokensRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "tokens_rejected_total",
			Help: "Write tokens that failed validation.",
		}),
		RepliesTrimmed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "replies_trimmed_total",
			Help: "Replies cut down to the size allowed a querier that has not shown it owns its address.",
		}),
		StorageRejections: counterVec("storage_rejections_total", "Writes refused by the peer and item stores, by kind and reason.", "kind", "reason"),

		DBWritesInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "db_writes_in_flight",
			Help: "Acknowledgements waiting for their write to the on-disk store to be durable.",
		}),
		DBDeletesDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "db_deletes_dropped_total",
			Help: "Evictions not deleted from the on-disk store because the delete queue was full.",
		}),

		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "build_info",
			Help: "Always 1; labelled with the dhtd version and the Go version it was built with.",
		}, []string{"version", "goversion"}),
	}
	var r prometheus.Registerer = reg
	if o.Family != "" {
		r = prometheus.WrapRegistererWith(prometheus.Labels{"family": o.Family}, reg)
	}
	m.reg = r

	for _, k := range PacketKinds {
		m.PacketsReceived.WithLabelValues(k)
		m.PacketsSent.WithLabelValues(k)
		m.BytesReceived.WithLabelValues(k)
		m.BytesSent.WithLabelValues(k)
	}
	for _, r := range DropReasons {
		m.PacketsDropped.WithLabelValues(r)
	}
	for _, meth := range Methods {
		m.QueriesReceived.WithLabelValues(meth)
	}
	for _, meth := range SentMethods {
		m.QueryRTT.WithLabelValues(meth)
		for _, o := range QueryOutcomes {
			m.QueriesSent.WithLabelValues(meth, o)
		}
	}
	for _, c := range ErrorCodes {
		m.ErrorsSent.WithLabelValues(c)
	}
	for _, k := range LookupKinds {
		m.LookupDuration.WithLabelValues(k)
		m.LookupQueries.WithLabelValues(k)
		for _, o := range LookupOutcomes {
			m.Lookups.WithLabelValues(k, o)
		}
	}
	for _, k := range StorageKinds {
		for _, r := range RejectReasons[k] {
			m.StorageRejections.WithLabelValues(k, r)
		}
	}
	m.BuildInfo.WithLabelValues(bi.Version, bi.GoVersion).Set(1)

	r.MustRegister(
		m.PacketsReceived, m.PacketsSent, m.BytesReceived, m.BytesSent, m.PacketsDropped,
		m.QueriesReceived, m.ErrorsSent,
		m.QueriesSent, m.QueryRTT, m.TransactionsInFlight,
		m.Lookups, m.LookupDuration, m.LookupQueries,
		m.TokensIssued, m.TokensRejected, m.StorageRejections, m.RepliesTrimmed,
		m.DBWritesInFlight, m.DBDeletesDropped,
		m.BuildInfo,
	)
	if !o.NoRuntime {
		reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
	}
	return m
}
