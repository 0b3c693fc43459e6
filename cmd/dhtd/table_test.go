package main

import (
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
)

// TestTableShowsRTT: two running nodes that found each other show the
// round trip of each other's answers in /debug/routing (rtt_ms) and in
// `dhtd table`.
func TestTableShowsRTT(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	a := startNode(t, "--no-bootstrap", "--storage", "memory")
	b := startNode(t, "--bootstrap", a.Addr, "--storage", "memory")
	b.waitKnows(t, a)

	code, body := httpGet(t, b.Metrics, "/debug/routing")
	var d struct {
		Buckets []struct {
			Nodes []struct {
				ID    string  `json:"id"`
				RTTMs float64 `json:"rtt_ms"`
			} `json:"nodes"`
		} `json:"buckets"`
	}
	if err := json.Unmarshal([]byte(body), &d); code != 200 || err != nil {
		t.Fatalf("/debug/routing: %d %v", code, err)
	}
	var rtt float64
	for _, bk := range d.Buckets {
		for _, n := range bk.Nodes {
			if n.ID == a.ID {
				rtt = n.RTTMs
			}
		}
	}
	if rtt <= 0 {
		t.Errorf("/debug/routing: rtt_ms of %s is %v, want > 0", a.ID, rtt)
	}

	r := runDhtd(t, "table", "--admin", b.Metrics)
	if r.code != 0 {
		t.Fatalf("dhtd table: exit %d: %s", r.code, r.stderr)
	}
	re := regexp.MustCompile(`(?m)^  ` + a.ID + ` \S+ +\S+ +rtt ([0-9.]+) ms `)
	m := re.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("dhtd table: no line for %s with its rtt:\n%s", a.ID, r.stdout)
	}
	// Printed to 0.1 ms: a loopback round trip may show as 0.0.
	if v, err := strconv.ParseFloat(m[1], 64); err != nil || v < 0 {
		t.Errorf("dhtd table: rtt %q of %s, want a number of ms", m[1], a.ID)
	}
}
