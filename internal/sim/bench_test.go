package sim

import "testing"

// BenchmarkLookupScenario runs the lookup scenario on 2,000 nodes (20%
// unreachable) per iteration and reports its figures: round trips and
// hops at p50/p99, the share of lookups that found the closest node, and
// the heap per node once warm.
func BenchmarkLookupScenario(b *testing.B) {
	var r Report
	for b.Loop() {
		var err error
		if r, err = Run(Config{Scenario: "lookup", Nodes: 2000, Seed: 1, Lookups: 300}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(r.RTTP50), "rtt-p50")
	b.ReportMetric(float64(r.RTTP99), "rtt-p99")
	b.ReportMetric(float64(r.HopsP50), "hops-p50")
	b.ReportMetric(r.FoundClosestPct, "found-closest-%")
	b.ReportMetric(float64(r.Cost.BytesPerNode), "bytes/node")
	b.ReportMetric(float64(r.Cost.Events), "events")
}
