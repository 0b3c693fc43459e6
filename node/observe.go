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
// every call, which showed as ~10% of the CPU of answering a ping. They
// are found by a switch on the label, which costs less than a map lookup
// (a string hash) per packet.
type hotCounters struct {
	recvPkts, recvBytes, sentPkts, sentBytes [4]prometheus.Counter         // by kindIndex
	queries                                  map[string]prometheus.Counter // by metrics.Methods
	ping, findNode, getPeers, get            prometheus.Counter            // the common ones, by switch
}

// kindIndex is the index of a krpc packet kind in hotCounters' arrays, or
// -1 for a kind krpc added without listing it in krpc.PacketKinds (which
// its tests forbid).
func kindIndex(kind string) int {
	switch kind {
	case krpc.PacketQuery:
		return 0
	case krpc.PacketResponse:
		return 1
	case krpc.PacketError:
		return 2
	case krpc.PacketInvalid:
		return 3
	}
	return -1
}

func newHotCounters(m *metrics.Metrics) *hotCounters {
	h := &hotCounters{queries: map[string]prometheus.Counter{}}
	for _, k := range metrics.PacketKinds {
		if i := kindIndex(k); i >= 0 {
			h.recvPkts[i], h.recvBytes[i] = m.PacketsReceived.WithLabelValues(k), m.BytesReceived.WithLabelValues(k)
			h.sentPkts[i], h.sentBytes[i] = m.PacketsSent.WithLabelValues(k), m.BytesSent.WithLabelValues(k)
		}
	}
	for _, meth := range metrics.Methods {
		h.queries[meth] = m.QueriesReceived.WithLabelValues(meth)
	}
	h.ping, h.findNode = h.queries[krpc.MethodPing], h.queries[krpc.MethodFindNode]
	h.getPeers, h.get = h.queries[krpc.MethodGetPeers], h.queries[krpc.MethodGet]
	return h
}

// queryReceived counts a query of method q (any string from the network).
func (n *Node) queryReceived(q string) {
	h := n.hot
	switch q {
	case krpc.MethodPing:
		h.ping.Inc()
	case krpc.MethodFindNode:
		h.findNode.Inc()
	case krpc.MethodGetPeers:
		h.getPeers.Inc()
	case krpc.MethodGet:
		h.get.Inc()
	default:
		h.queries[metrics.MethodLabel(q)].Inc()
	}
}

// countPacket adds one packet of size bytes of kind to the resolved
// counters pkts and bytes, or, for a kind not among them, to vecs:
// slower, never a nil counter.
func countPacket(pkts, bytes *[4]prometheus.Counter, pvec, bvec *prometheus.CounterVec, kind string, size int) {
	if i := kindIndex(kind); i >= 0 {
		pkts[i].Inc()
		bytes[i].Add(float64(size))
		return
	}
	pvec.WithLabelValues(kind).Inc()
	bvec.WithLabelValues(kind).Add(float64(size))
}

// serverEvents wires the transport's counters to Prometheus. Every label
// passed by krpc is one of its fixed constants.
func (n *Node) serverEvents() krpc.Events {
	m := n.metrics
	h := n.hot
	return krpc.Events{
		Received: func(kind string, size int) {
			countPacket(&h.recvPkts, &h.recvBytes, m.PacketsReceived, m.BytesReceived, kind, size)
		},
		Sent: func(kind string, size int) {
			countPacket(&h.sentPkts, &h.sentBytes, m.PacketsSent, m.BytesSent, kind, size)
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
