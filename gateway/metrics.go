package gateway

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dhtd/dhtd/internal/httpguard"
	"github.com/dhtd/dhtd/node"
)

// routeNames is the fixed label set of dhtd_gateway_requests_total{route}.
var routeNames = []string{
	"immutable_put", "immutable_get", "mutable_get", "mutable_put", "peers",
	"announce", "nodes", "ping", "status", "openapi", "page", "unknown",
	"pkarr_put", "pkarr_get", "pkarr_options",
}

// codeLabels is the fixed label set of dhtd_gateway_requests_total{code}.
var codeLabels = []string{"200", "201", "204", "304", "400", "403", "404", "405", "408", "409", "412", "413", "415", "421", "429", "502", "503", "504", "other"}

// codeLabel maps a status code to its label.
func codeLabel(code int) string {
	if code == 0 {
		code = 200
	}
	s := strconv.Itoa(code)
	for _, l := range codeLabels {
		if l == s {
			return l
		}
	}
	return "other"
}

// gatewayMetrics are the gateway's collectors.
type gatewayMetrics struct {
	requests        *prometheus.CounterVec
	rateLimited     prometheus.Counter
	lookupsRejected prometheus.Counter
	timeouts        prometheus.Counter
	bodyTimeouts    prometheus.Counter
	refused         *prometheus.CounterVec
}

// newMetrics registers the gateway's collectors on reg; the gauges read
// the gateway's bounded structures (lookup slots, the rate limiter's table,
// the node's ring of recent lookups) when scraped.
func newMetrics(reg *prometheus.Registry, g *Gateway) (*gatewayMetrics, error) {
	m := &gatewayMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dhtd", Subsystem: "gateway", Name: "requests_total",
			Help: "HTTP gateway requests answered, by route and status code.",
		}, []string{"route", "code"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dhtd", Subsystem: "gateway", Name: "rate_limited_total",
			Help: "HTTP gateway requests refused with 429 by the per-client rate limit.",
		}),
		lookupsRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dhtd", Subsystem: "gateway", Name: "lookups_rejected_total",
			Help: "HTTP gateway requests refused with 503 because every lookup slot was busy.",
		}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dhtd", Subsystem: "gateway", Name: "timeouts_total",
			Help: "HTTP gateway lookups cut off by the request timeout (504).",
		}),
		bodyTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dhtd", Subsystem: "gateway", Name: "body_timeouts_total",
			Help: "HTTP gateway requests whose body did not arrive within the body timeout (408).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dhtd", Subsystem: "gateway", Name: "refused_total",
			Help: "HTTP gateway requests refused as possibly sent by a web page of another site: by reason (host 421, origin and fetch_site 403, content_type 415).",
		}, []string{"reason"}),
	}
	cs := []prometheus.Collector{
		m.requests, m.rateLimited, m.lookupsRejected, m.timeouts, m.bodyTimeouts, m.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dhtd", Subsystem: "gateway", Name: "bodies_reading",
			Help: "HTTP gateway requests reading their body (each bounded by the body timeout and size); they hold no lookup slot.",
		}, func() float64 { return float64(g.bodiesReading.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dhtd", Subsystem: "gateway", Name: "lookups_in_flight",
			Help: "HTTP gateway requests holding a lookup slot.",
		}, func() float64 { return float64(len(g.slots)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dhtd", Subsystem: "gateway", Name: "lookup_slots",
			Help: "HTTP gateway lookup slots (the bound of lookups_in_flight).",
		}, func() float64 { return float64(cap(g.slots)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dhtd", Subsystem: "gateway", Name: "rate_limit_clients",
			Help: "Client addresses tracked by the HTTP gateway's rate limiter.",
		}, func() float64 { return float64(g.limiter.len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dhtd", Subsystem: "gateway", Name: "rate_limit_clients_max",
			Help: "Bound of rate_limit_clients.",
		}, func() float64 { return float64(g.cfg.MaxClients) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "dhtd", Name: "recent_lookups",
			Help: "Lookups kept in the node's ring of recent lookups (at most " + strconv.Itoa(node.RecentLookupsSize) + ").",
		}, func() float64 { return float64(len(g.n.Admin().RecentLookups())) }),
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("already registered on this registry (one gateway per registry)")
			}
			return nil, err
		}
	}
	for _, r := range httpguard.Reasons {
		m.refused.WithLabelValues(r)
	}
	for _, r := range routeNames {
		for _, c := range codeLabels {
			m.requests.WithLabelValues(r, c)
		}
	}
	return m, nil
}
