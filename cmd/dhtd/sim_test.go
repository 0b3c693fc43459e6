package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// dhtd sim --json prints one object whose lookup figures carry the names
// scripts read; the same seed prints the same object outside "cost".
func TestSimCommandJSON(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(seed string) map[string]any {
		out, err := runApp(ctx, "sim", "--nodes", "200", "--seed", seed, "--lookups", "40", "--mem-limit", "0", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		for _, k := range []string{"rtt_p50", "rtt_p90", "rtt_p99", "hops_p50", "hops_p99", "found_closest_pct", "values", "cost"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("no %q in %s", k, out)
			}
		}
		for _, k := range []string{"lookups", "found_pct", "first_ms_p50", "first_ms_p90", "first_ms_p99"} {
			if v, ok := m["values"].(map[string]any); !ok || v[k] == nil {
				t.Fatalf("no values.%s in %s", k, out)
			}
		}
		if pct := m["found_closest_pct"].(float64); pct < 0 || pct > 100 {
			t.Fatalf("found_closest_pct %v outside 0-100", pct)
		}
		delete(m, "cost")
		return m
	}
	a, b := run("3"), run("3")
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatalf("same seed, different output:\n%s\n%s", ja, jb)
	}
}

// A share of 0 on the command line is none, not the default: no node is
// unreachable and no packet is lost.
func TestSimCommandZeroShares(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		unreachable, loss string
		wantPct           float64
		wantLost          bool
	}{
		{"0", "0", 0, false},
		{"0.5", "0.05", 50, true},
	} {
		out, err := runApp(ctx, "sim", "--nodes", "200", "--lookups", "20", "--mem-limit", "0", "--json",
			"--unreachable", tc.unreachable, "--loss", tc.loss)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			UnreachablePct float64 `json:"unreachable_pct"`
			Packets        struct {
				Lost int `json:"lost"`
			} `json:"packets"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		if r.UnreachablePct != tc.wantPct || (r.Packets.Lost > 0) != tc.wantLost {
			t.Errorf("--unreachable %s --loss %s: %v%% unreachable, %d packets lost; want %v%%, lost %v",
				tc.unreachable, tc.loss, r.UnreachablePct, r.Packets.Lost, tc.wantPct, tc.wantLost)
		}
	}
}

func TestSimCommandText(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := runApp(ctx, "sim", "--nodes", "150", "--lookups", "20", "--scenario", "storm", "--mem-limit", "0")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"scenario storm: 150 nodes", "found the closest node", "of joiners bootstrapped", "cost:"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	out, err = runApp(ctx, "sim", "--nodes", "150", "--lookups", "20", "--mem-limit", "0")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"scenario lookup: 150 nodes", "round trips p50/p90/p99", "got peers or the value"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if _, err := runApp(ctx, "sim", "--nodes", "150", "--scenario", "bogus", "--mem-limit", "0", "--progress"); err == nil ||
		!strings.Contains(err.Error(), "unknown scenario") {
		t.Errorf("bogus scenario: err %v", err)
	}
}
