package conformance_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/conformance"
	"github.com/dhtd/dhtd/node"
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
	cfg := node.TestConfig()
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
		case r.Status == conformance.Fail && !knownUntilMerge[r.Name]:
			t.Errorf("dhtd fails %s (%s): %s", r.Name, r.Level, r.Reason)
		case r.Status == conformance.Skip && !unprovokable[r.Name]:
			t.Errorf("%s skipped: %s", r.Name, r.Reason)
		}
	}
	if rep.MustFailed != 0 {
		t.Errorf("%d MUST checks failed", rep.MustFailed)
	}
}

// knownUntilMerge are the checks dhtd fails on this branch until the
// interop fixes (the querier left out of "nodes", an immutable put with seq
// stored) are merged; they must pass afterwards.
var knownUntilMerge = map[string]bool{"nodes.not-querier": true, "bep44.immutable-with-seq": true}

// unprovokable are the checks no run against a loopback node can exercise:
// 201 and 202 have no trigger, token expiry needs a wait of minutes, and
// BEP 42 exempts local addresses.
var unprovokable = map[string]bool{"errors.201": true, "errors.202": true, "tokens.expiry": true, "bep42.target-id": true}
