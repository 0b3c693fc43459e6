package conformance_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/conformance"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/routing"
)

// logReport logs every result of rep.
func logReport(t *testing.T, rep *conformance.Report) {
	t.Helper()
	var b strings.Builder
	for _, r := range rep.Results {
		fmt.Fprintf(&b, "%s %-40s BEP %d %-8s %s\n", r.Status, r.Name, r.BEP, r.Level, r.Reason)
	}
	t.Logf("%s: %d passed, %d failed, %d skipped (%d ms)\n%s", rep.Target, rep.Passed, rep.Failed, rep.Skipped, rep.ElapsedMillis, b.String())
}

// TestAgainstDhtd runs the suite against an in-process dhtd node on real
// UDP on loopback.
func TestAgainstDhtd(t *testing.T) {
	cfg := node.LoopbackConfig()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := conformance.Run(ctx, conformance.Config{Target: n.Addr(), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	logReport(t, rep)
	for _, r := range rep.Results {
		switch {
		case r.Status == conformance.Fail:
			t.Errorf("dhtd fails %s (%s): %s", r.Name, r.Level, r.Reason)
		case r.Status == conformance.Skip && !unprovokable[r.Name]:
			t.Errorf("%s skipped: %s", r.Name, r.Reason)
		}
	}
	if rep.MustFailed != 0 {
		t.Errorf("%d MUST checks failed", rep.MustFailed)
	}
}

// unprovokable are the checks no run against a loopback node can exercise:
// 201 and 202 have no trigger, token expiry needs a wait of minutes, and
// BEP 42 exempts local addresses.
var unprovokable = map[string]bool{"errors.201": true, "errors.202": true, "tokens.expiry": true, "bep42.target-id": true}

// TestAgainstDhtdIPv6 runs the suite against a dhtd node on [::1]: one
// source address, so the checks that need a second querier IP are skipped.
func TestAgainstDhtdIPv6(t *testing.T) {
	cfg := node.LoopbackConfig()
	cfg.Listen = "[::1]:0"
	n, err := node.New(cfg)
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := conformance.Run(ctx, conformance.Config{Target: n.Addr(), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	logReport(t, rep)
	needTwoIPs := map[string]bool{"tokens.ip-bound": true, "tokens.put-ip-bound": true, "bep33.filters": true, "bep33.filter-content": true, "bep33.noseed": true}
	for _, r := range rep.Results {
		switch {
		case r.Status == conformance.Fail:
			t.Errorf("dhtd fails %s (%s): %s", r.Name, r.Level, r.Reason)
		case r.Status == conformance.Skip && !unprovokable[r.Name] && !needTwoIPs[r.Name]:
			t.Errorf("%s skipped: %s", r.Name, r.Reason)
		}
	}
}

// TestTokenExpiryAgainstDhtd watches a dhtd token expire (its secret turns
// every 50 ms, so a token is refused 100 to 150 ms after it was given), and
// a token of a node with the default five minutes stay valid.
func TestTokenExpiryAgainstDhtd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		rotate, wait time.Duration
		want         conformance.Status
	}{
		{50 * time.Millisecond, 300 * time.Millisecond, conformance.Pass},
		{50 * time.Millisecond, 0, conformance.Skip},
		{0, 300 * time.Millisecond, conformance.Fail},
	} {
		cfg := node.LoopbackConfig()
		cfg.TokenRotate = c.rotate
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := conformance.Run(ctx, conformance.Config{Target: n.Addr(), Timeout: 300 * time.Millisecond, Only: []string{"tokens"}, TokenWait: c.wait})
		_ = n.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Results {
			if r.Name == "tokens.expiry" && r.Status != c.want {
				t.Errorf("rotate %v, wait %v: %s %s, want %s", c.rotate, c.wait, r.Status, r.Reason, c.want)
			}
		}
	}
}

// TestAgainstEnforcingDhtd runs the suite against a dhtd node that enforces
// BEP 42 on loopback too: the suite learns its address from the refusal and
// queries with valid ids, and the node's refusal of a random id fails the
// BEP 42 rule that every request be served.
func TestAgainstEnforcingDhtd(t *testing.T) {
	cfg := node.LoopbackConfig()
	cfg.BEP42 = routing.BEP42Enforce
	cfg.LimitLoopback = true
	cfg.RateLimit.Rate = -1
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := conformance.Run(ctx, conformance.Config{Target: n.Addr(), Timeout: 300 * time.Millisecond,
		Only: []string{"envelope", "tokens", "bep42", "bep44"}})
	if err != nil {
		t.Fatal(err)
	}
	logReport(t, rep)
	status := map[string]conformance.Status{}
	for _, r := range rep.Results {
		status[r.Name] = r.Status
	}
	for name, want := range map[string]conformance.Status{
		"envelope.t-echo": conformance.Pass, "tokens.announce-stored": conformance.Pass, "tokens.ip-bound": conformance.Pass,
		"bep44.mutable-roundtrip": conformance.Pass, "bep42.ip": conformance.Pass, "bep42.serve-any-id": conformance.Fail,
	} {
		if status[name] != want {
			t.Errorf("%s = %s, want %s", name, status[name], want)
		}
	}
}
