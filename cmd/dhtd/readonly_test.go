package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestReadOnlyNode (BEP 43): a `dhtd run --read-only` node that
// bootstraps from a neighbour answers no query (`dhtd probe ping` times
// out) and never enters the neighbour's routing table, although its
// queries reached the neighbour.
func TestReadOnlyNode(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	a := startNode(t, "--no-bootstrap")
	r := startNode(t, "--read-only", "--bootstrap", a.Addr)

	// The read-only node's bootstrap lookup reaches A: A counts a
	// find_node received (no event crosses the process boundary: bounded
	// polling of /metrics).
	deadline := time.Now().Add(e2eWait)
	for {
		code, body := httpGet(t, a.Metrics, "/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: status %d", code)
		}
		if v, ok := metricValue(t, body, "dhtd_queries_received_total", map[string]string{"method": "find_node"}); ok && v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A never received the read-only node's find_node within %v", e2eWait)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
	// A answered it (the lookup ends at A), yet did not add the sender.
	for _, b := range a.routing(t).Buckets {
		for _, e := range b.Nodes {
			if e.ID == r.ID || e.Addr == r.Addr {
				t.Fatalf("A's table holds the read-only node: %+v", e)
			}
		}
	}

	// The read-only node answers nothing: the probe times out, non-zero.
	res := runDhtd(t, "probe", "ping", "--bind", "127.0.0.1:0", "--timeout", "1s", r.Addr)
	if res.code == 0 {
		t.Fatalf("probe ping of a read-only node succeeded:\n%s", res.stdout)
	}
	if !strings.Contains(strings.ToLower(res.stderr+res.stdout), "timeout") && !strings.Contains(strings.ToLower(res.stderr+res.stdout), "timed out") {
		t.Fatalf("probe ping of a read-only node: exit %d without a timeout message:\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	// The same probe of A works: the failure above is the read-only mode.
	if res := runDhtd(t, "probe", "ping", "--bind", "127.0.0.1:0", "--timeout", "2s", a.Addr); res.code != 0 {
		t.Fatalf("probe ping of A: exit %d\n%s", res.code, res.stderr)
	}
}
