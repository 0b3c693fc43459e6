package node

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The node keeps the last hour of a few rates for the status page's
// charts: one sample every HistoryInterval (Config.HistoryInterval) in a
// fixed ring of HistoryLen, so its memory is bounded whatever the traffic.
const (
	HistoryInterval = 10 * time.Second
	HistoryLen      = 360 // one hour
	// historyLookups bounds the lookup durations kept per interval for
	// the percentiles; a busier interval keeps the first ones.
	historyLookups = 512
)

// HistorySample is one interval of the node's activity. Rates are per
// second over the interval; the maps are keyed by the metrics' fixed label
// sets (method, drop reason).
type HistorySample struct {
	Time        time.Time          `json:"time"`
	PacketsIn   float64            `json:"packets_in"`
	PacketsOut  float64            `json:"packets_out"`
	Answers     map[string]float64 `json:"answers,omitempty"` // queries received by method
	Drops       map[string]float64 `json:"drops,omitempty"`   // datagrams dropped by reason
	LookupP50Ms float64            `json:"lookup_p50_ms"`
	LookupP99Ms float64            `json:"lookup_p99_ms"`
	Lookups     int                `json:"lookups"` // finished in the interval
	TableSize   int                `json:"table_size"`
}

// history is the ring of samples and what the next sample is computed
// from.
type history struct {
	mu      sync.Mutex
	buf     [HistoryLen]HistorySample
	next, n int
	last    time.Time          // time of the previous reading
	prev    map[string]float64 // counter totals at the previous reading
	lookups []time.Duration    // durations of the lookups finished since
}

// noteLookup adds a finished lookup's duration to the current interval.
func (h *history) noteLookup(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.lookups) < historyLookups {
		h.lookups = append(h.lookups, d)
	}
}

// History returns the samples of the last hour, oldest first.
func (a *Admin) History() []HistorySample {
	h := &a.n.history
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]HistorySample, 0, h.n)
	for i := h.n; i >= 1; i-- {
		out = append(out, h.buf[(h.next-i+HistoryLen)%HistoryLen])
	}
	return out
}

// sampleHistory takes one sample: the counters' increase since the last
// reading, per second (the first reading only sets the base).
func (n *Node) sampleHistory() {
	now := n.clock.Now()
	cur := make(map[string]float64)
	addVec(cur, "in", n.metrics.PacketsReceived, "")
	addVec(cur, "out", n.metrics.PacketsSent, "")
	addVec(cur, "answer.", n.metrics.QueriesReceived, "method")
	addVec(cur, "drop.", n.metrics.PacketsDropped, "reason")
	size := n.table.Len()
	h := &n.history
	h.mu.Lock()
	defer h.mu.Unlock()
	lookups := h.lookups
	h.lookups = nil
	if h.prev == nil {
		h.prev, h.last = cur, now
		return
	}
	secs := now.Sub(h.last).Seconds()
	if secs <= 0 {
		return
	}
	rate := func(k string) float64 { return max(0, cur[k]-h.prev[k]) / secs }
	s := HistorySample{
		Time: now, PacketsIn: rate("in"), PacketsOut: rate("out"),
		Lookups: len(lookups), TableSize: size,
	}
	// Maps only where something happened: an idle sample costs no map.
	put := func(m *map[string]float64, k string, r float64) {
		if *m == nil {
			*m = make(map[string]float64)
		}
		(*m)[k] = r
	}
	for k := range cur {
		switch r := rate(k); {
		case r <= 0:
		case len(k) > 7 && k[:7] == "answer.":
			put(&s.Answers, k[7:], r)
		case len(k) > 5 && k[:5] == "drop.":
			put(&s.Drops, k[5:], r)
		}
	}
	if len(lookups) > 0 {
		slices.Sort(lookups)
		pct := func(p float64) float64 {
			return float64(lookups[int(p*float64(len(lookups)-1))].Microseconds()) / 1000
		}
		s.LookupP50Ms, s.LookupP99Ms = pct(0.50), pct(0.99)
	}
	h.buf[h.next] = s
	h.next = (h.next + 1) % HistoryLen
	h.n = min(h.n+1, HistoryLen)
	h.prev, h.last = cur, now
}

// addVec adds the series of a counter vector to totals: under prefix plus
// the value of label, or summed under prefix when label is "".
func addVec(totals map[string]float64, prefix string, c prometheus.Collector, label string) {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil || d.Counter == nil {
			continue
		}
		key := prefix
		if label != "" {
			for _, lp := range d.Label {
				if lp.GetName() == label {
					key = prefix + lp.GetValue()
				}
			}
		}
		totals[key] += d.Counter.GetValue()
	}
}
