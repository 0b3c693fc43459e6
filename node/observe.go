package node

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
)

// Version is the dhtd version reported in dhtd_build_info and by the CLI.
const Version = "0.1.0"

func goVersion() string { return runtime.Version() }

func metricsCode(c int64) string { return metrics.ErrorCodeLabel(c) }

// hotCounters are the per-packet counters, resolved once from their fixed
// label sets (krpc's, through metrics): WithLabelValues hashes and locks on
// every call, which showed as ~10% of the CPU of answering a ping.
type hotCounters struct {
	recvPkts, recvBytes, sentPkts, sentBytes map[string]prometheus.Counter
	queries                                  map[string]prometheus.Counter // by metrics.Methods
}

func newHotCounters(m *metrics.Metrics) *hotCounters {
	h := &hotCounters{
		recvPkts: map[string]prometheus.Counter{}, recvBytes: map[string]prometheus.Counter{},
		sentPkts: map[string]prometheus.Counter{}, sentBytes: map[string]prometheus.Counter{},
		queries: map[string]prometheus.Counter{},
	}
	for _, k := range metrics.PacketKinds {
		h.recvPkts[k], h.recvBytes[k] = m.PacketsReceived.WithLabelValues(k), m.BytesReceived.WithLabelValues(k)
		h.sentPkts[k], h.sentBytes[k] = m.PacketsSent.WithLabelValues(k), m.BytesSent.WithLabelValues(k)
	}
	for _, meth := range metrics.Methods {
		h.queries[meth] = m.QueriesReceived.WithLabelValues(meth)
	}
	return h
}

// queryReceived counts a query of method q (any string from the network).
func (n *Node) queryReceived(q string) { n.hot.queries[metrics.MethodLabel(q)].Inc() }

// hot returns the resolved counter of label, or resolves it from vec if it
// is not among them (a kind krpc added without listing it in
// krpc.PacketKinds, which its tests forbid): slower, never a nil counter.
func hot(resolved map[string]prometheus.Counter, vec *prometheus.CounterVec, label string) prometheus.Counter {
	if c, ok := resolved[label]; ok {
		return c
	}
	return vec.WithLabelValues(label)
}

// serverEvents wires the transport's counters to Prometheus. Every label
// passed by krpc is one of its fixed constants.
func (n *Node) serverEvents() krpc.Events {
	m := n.metrics
	h := n.hot
	return krpc.Events{
		Received: func(kind string, size int) {
			hot(h.recvPkts, m.PacketsReceived, kind).Inc()
			hot(h.recvBytes, m.BytesReceived, kind).Add(float64(size))
		},
		Sent: func(kind string, size int) {
			hot(h.sentPkts, m.PacketsSent, kind).Inc()
			hot(h.sentBytes, m.BytesSent, kind).Add(float64(size))
		},
		Dropped: func(reason string) { m.PacketsDropped.WithLabelValues(reason).Inc() },
		QueryDone: func(method, outcome string, rtt time.Duration) {
			method = metrics.MethodLabel(method)
			m.QueriesSent.WithLabelValues(method, outcome).Inc()
			if outcome == krpc.OutcomeAnswered {
				m.QueryRTT.WithLabelValues(method).Observe(rtt.Seconds())
			}
		},
		InFlight: func(k int) { m.TransactionsInFlight.Set(float64(k)) },
	}
}
