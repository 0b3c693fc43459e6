package sim

import (
	"encoding/json"
	"errors"
	"testing"
)

// small is a fast configuration of each scenario.
func small(scenario string, seed uint64) Config {
	return Config{Scenario: scenario, Nodes: 300, Seed: seed, Lookups: 60, Hours: 2, Items: 10}
}

// withoutCost is the report's JSON with the cost zeroed.
func withoutCost(t *testing.T, r Report) string {
	t.Helper()
	r.Cost = Cost{}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSameSeedSameReport(t *testing.T) {
	a, err := Run(small("lookup", 7))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(small("lookup", 7))
	if err != nil {
		t.Fatal(err)
	}
	if ja, jb := withoutCost(t, a), withoutCost(t, b); ja != jb {
		t.Fatalf("same seed, different reports:\n%s\n%s", ja, jb)
	}
	c, err := Run(small("lookup", 8))
	if err != nil {
		t.Fatal(err)
	}
	if withoutCost(t, a) == withoutCost(t, c) {
		t.Fatalf("seeds 7 and 8 gave the same report: %s", withoutCost(t, a))
	}
	if a.Packets == c.Packets {
		t.Errorf("seeds 7 and 8 sent exactly the same packets: %+v", a.Packets)
	}
}

func TestScenarios(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		check    func(t *testing.T, r Report)
	}{
		{"lookup", func(t *testing.T, r Report) {
			if r.FoundClosestPct < 90 {
				t.Errorf("found_closest_pct %.2f, want >= 90 on a small quiet network", r.FoundClosestPct)
			}
			if r.RTTP50 < 1 || r.RTTP50 > r.RTTP99 || r.HopsP50 < 1 || r.HopsP50 > r.HopsP99 {
				t.Errorf("percentiles out of order: rtt %d/%d hops %d/%d", r.RTTP50, r.RTTP99, r.HopsP50, r.HopsP99)
			}
			if r.ClosestMsP50 <= 0 || r.ClosestMsP50 > r.LookupMsP50 {
				t.Errorf("closest answered at p50 %d ms, lookup p50 %d ms: want 0 < closest <= lookup", r.ClosestMsP50, r.LookupMsP50)
			}
			if r.LookupMsP50 <= 0 || r.PacketsPerLook <= 0 {
				t.Errorf("lookup time %d ms, %.1f packets per lookup", r.LookupMsP50, r.PacketsPerLook)
			}
			// The get_peers and get lookups are for published swarms and
			// items: they get peers or the value, before they end.
			v := r.Values
			if v == nil || v.Lookups != 2*r.Lookups/3 {
				t.Fatalf("values %+v of %d lookups: want the figures of the %d get_peers and get lookups", v, r.Lookups, 2*r.Lookups/3)
			}
			if v.FoundPct < 90 {
				t.Errorf("values found by %.2f%%, want >= 90 on a small quiet network", v.FoundPct)
			}
			if v.FirstMsP50 <= 0 || v.FirstMsP50 > v.FirstMsP99 || v.FirstMsP50 > r.LookupMsP50 {
				t.Errorf("first value at p50 %d ms, p99 %d ms, lookup p50 %d ms: want 0 < p50 <= p99 and p50 <= lookup",
					v.FirstMsP50, v.FirstMsP99, r.LookupMsP50)
			}
		}},
		{"churn", func(t *testing.T, r Report) {
			if r.Items != 10 || r.ItemsSurvivedPct < 90 {
				t.Errorf("%d items, %.2f%% survived; want 10 and >= 90%% (publishers stay up)", r.Items, r.ItemsSurvivedPct)
			}
			// A lookup finds only what some node stores.
			if r.ItemsHeldPct < r.ItemsSurvivedPct {
				t.Errorf("%.2f%% of items found by lookups but %.2f%% stored by up nodes", r.ItemsSurvivedPct, r.ItemsHeldPct)
			}
		}},
		{"sybil", func(t *testing.T, r Report) {
			if len(r.Phases) != 1 {
				t.Fatalf("phases %+v", r.Phases)
			}
			// A /24 is one entry per bucket and per lookup: at most a
			// small share of the K result slots.
			if s := r.Phases[0].SybilSharePct; s > 30 {
				t.Errorf("sybil share of results %.2f%%, want <= 30%%", s)
			}
		}},
		{"storm", func(t *testing.T, r Report) {
			if len(r.Phases) != 1 || r.Phases[0].JoinedPct < 90 {
				t.Errorf("phases %+v: want >= 90%% of joiners bootstrapped", r.Phases)
			}
		}},
		{"partition", func(t *testing.T, r Report) {
			if len(r.Phases) != 2 {
				t.Fatalf("phases %+v", r.Phases)
			}
			if h := r.Phases[1]; h.FoundClosestPct < 80 {
				t.Errorf("after healing %.2f%% found the closest, want >= 80", h.FoundClosestPct)
			}
		}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			r, err := Run(small(tc.scenario, 1))
			if err != nil {
				t.Fatal(err)
			}
			if r.Nodes < 300 || r.SimTimeS <= 0 || r.Lookups == 0 || r.Packets.Delivered == 0 {
				t.Fatalf("report %+v", r)
			}
			tc.check(t, r)
		})
	}
}

func TestUnknownScenario(t *testing.T) {
	if _, err := Run(Config{Scenario: "nope", Nodes: 100}); !errors.Is(err, ErrScenario) {
		t.Fatalf("err %v, want ErrScenario", err)
	}
}

// Joining as dhtd run does, with a lookup in each bucket that has room,
// fills the tables further, and the report says so.
func TestFillBucketsFillsTables(t *testing.T) {
	plain, filled := runBoth(t, small("lookup", 3), func(c *Config) { c.FillBuckets = true })
	if plain.FillBuckets || !filled.FillBuckets {
		t.Errorf("reported fill_buckets %v and %v, want false and true", plain.FillBuckets, filled.FillBuckets)
	}
	if filled.TableNodesAvg <= plain.TableNodesAvg {
		t.Errorf("tables hold %.2f nodes with the bucket fill, %.2f without: want more", filled.TableNodesAvg, plain.TableNodesAvg)
	}
}

// More warm-up lookups stand for a network that has run longer: the
// routing tables must hold more nodes, and the report must say how many
// warm lookups it ran.
func TestWarmLookupsFillTables(t *testing.T) {
	quiet, warm := runBoth(t, small("lookup", 3), func(c *Config) { c.WarmLookups = 6 })
	if quiet.WarmLookups != defaultWarmLookups || warm.WarmLookups != 6 {
		t.Errorf("reported warm lookups %d and %d, want %d and 6", quiet.WarmLookups, warm.WarmLookups, defaultWarmLookups)
	}
	if warm.TableNodesAvg <= quiet.TableNodesAvg {
		t.Errorf("tables hold %.2f nodes after 6 warm lookups a node, %.2f after %d: want more",
			warm.TableNodesAvg, quiet.TableNodesAvg, defaultWarmLookups)
	}
}

// Tables filled from global knowledge hold about every reachable node of
// a small network (its buckets can take them all), far more than the
// warm-up gives; the report says so, and the run stays deterministic.
func TestFullTablesFillTables(t *testing.T) {
	plain, full := runBoth(t, small("lookup", 3), func(c *Config) { c.FullTables = true })
	cfg := small("lookup", 3)
	cfg.FullTables = true
	again, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if plain.FullTables || !full.FullTables {
		t.Errorf("reported full_tables %v and %v, want false and true", plain.FullTables, full.FullTables)
	}
	reachable := float64(full.Nodes) * (1 - full.UnreachablePct/100)
	if full.TableNodesAvg < 0.9*(reachable-1) || full.TableNodesAvg <= plain.TableNodesAvg {
		t.Errorf("full tables hold %.2f nodes (warm-up alone: %.2f), want at least 90%% of the %.0f other reachable nodes",
			full.TableNodesAvg, plain.TableNodesAvg, reachable-1)
	}
	if a, b := withoutCost(t, full), withoutCost(t, again); a != b {
		t.Errorf("two runs with the same seed differ:\n%s\n%s", a, b)
	}
}

// runBoth runs cfg, then cfg as change leaves it, and returns both
// reports.
func runBoth(t *testing.T, cfg Config, change func(*Config)) (before, after Report) {
	t.Helper()
	before, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	change(&cfg)
	after, err = Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return before, after
}

// The workers process the peers' events side by side, yet every scenario
// gives the same report, byte for byte outside the cost, on one worker
// and on three: a peer's events come out in the same order, and no draw
// depends on which worker ran first. (Under -race this also checks that
// the workers share nothing unguarded.)
func TestWorkersSameReport(t *testing.T) {
	for _, scenario := range Scenarios {
		t.Run(scenario, func(t *testing.T) {
			cfg := small(scenario, 5)
			cfg.Nodes, cfg.Lookups, cfg.Hours = 150, 30, 1
			cfg.Net.Workers = 1
			one, three := runBoth(t, cfg, func(c *Config) { c.Net.Workers = 3 })
			if a, b := withoutCost(t, one), withoutCost(t, three); a != b {
				t.Fatalf("1 worker and 3 workers differ:\n%s\n%s", a, b)
			}
			if one.Lookups == 0 || one.Packets.Delivered == 0 {
				t.Fatalf("report %+v: nothing ran", one)
			}
		})
	}
}
