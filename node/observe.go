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
// label sets: WithLabelValues hashes and locks on every call, which showed
// as ~10% of the CPU of answering a ping.
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

// serverEvents wires the transport's counters to Prometheus. Every label
// passed by krpc is one of its fixed constants.
func (n *Node) serverEvents() krpc.Events {
	m := n.metrics
	h := n.hot
	return krpc.Events{
		Received: func(kind string, size int) {
			h.recvPkts[kind].Inc()
			h.recvBytes[kind].Add(float64(size))
		},
		Sent: func(kind string, size int) {
			h.sentPkts[kind].Inc()
			h.sentBytes[kind].Add(float64(size))
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
