package node

import (
	"runtime"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/metrics"
)

// Version is the dhtd version reported in dhtd_build_info and by the CLI.
const Version = "0.1.0"

func goVersion() string { return runtime.Version() }

func metricsMethod(q string) string { return metrics.MethodLabel(q) }

func metricsCode(c int64) string { return metrics.ErrorCodeLabel(c) }

// serverEvents wires the transport's counters to Prometheus. Every label
// passed by krpc is one of its fixed constants.
func (n *Node) serverEvents() krpc.Events {
	m := n.metrics
	return krpc.Events{
		Received: func(kind string, size int) {
			m.PacketsReceived.WithLabelValues(kind).Inc()
			m.BytesReceived.WithLabelValues(kind).Add(float64(size))
		},
		Sent: func(kind string, size int) {
			m.PacketsSent.WithLabelValues(kind).Inc()
			m.BytesSent.WithLabelValues(kind).Add(float64(size))
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
