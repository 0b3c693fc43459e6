package main

import (
	"bytes"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"
)

// conformanceJSON mirrors the --json report.
type conformanceJSON struct {
	Target   string `json:"target"`
	TargetID string `json:"target_id"`
	Results  []struct {
		Name   string `json:"name"`
		Group  string `json:"group"`
		BEP    int    `json:"bep"`
		Level  string `json:"level"`
		Status string `json:"status"`
		Reason string `json:"reason"`
		Rule   string `json:"rule"`
	} `json:"results"`
	Passed     int              `json:"passed"`
	Failed     int              `json:"failed"`
	Skipped    int              `json:"skipped"`
	MustFailed int              `json:"must_failed"`
	Packets    map[string]int64 `json:"packets"`
}

// TestConformanceAgainstRunProcess points `dhtd conformance --json` at a
// `dhtd run` process on loopback.
func TestConformanceAgainstRunProcess(t *testing.T) {
	n := startNode(t, "--no-bootstrap", "--storage", "memory")
	res := runDhtd(t, "conformance", n.Addr, "--json", "--timeout", "300ms")
	var rep conformanceJSON
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s\nstderr: %s", err, res.stdout, res.stderr)
	}
	if rep.Target != n.Addr || rep.TargetID != n.ID {
		t.Errorf("target %s id %s, want %s id %s", rep.Target, rep.TargetID, n.Addr, n.ID)
	}
	if rep.Passed+rep.Failed+rep.Skipped != len(rep.Results) || rep.Passed < 80 {
		t.Errorf("%d passed, %d failed, %d skipped of %d results", rep.Passed, rep.Failed, rep.Skipped, len(rep.Results))
	}
	for _, r := range rep.Results {
		if r.Name == "" || r.BEP == 0 || r.Level == "" || r.Rule == "" || r.Reason == "" {
			t.Errorf("incomplete result %+v", r)
		}
		if r.Status == "FAIL" {
			t.Errorf("dhtd fails %s (%s): %s", r.Name, r.Level, r.Reason)
		}
	}
	if len(rep.Packets) < 2 {
		t.Errorf("packets from %d source addresses, want several on loopback", len(rep.Packets))
	}
	if (res.code != 0) != (rep.MustFailed > 0) {
		t.Errorf("exit %d with %d MUST failures", res.code, rep.MustFailed)
	}
}

// TestConformanceTextAndOnly checks the text report of --only groups and its
// closing line.
func TestConformanceTextAndOnly(t *testing.T) {
	n := startNode(t, "--no-bootstrap", "--storage", "memory")
	res := runDhtd(t, "conformance", n.Addr, "--only", "envelope", "--only", "errors", "--timeout", "300ms")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	last := lines[len(lines)-1]
	if !regexp.MustCompile(`^conformance: \d+ passed, 0 failed, \d+ skipped$`).MatchString(last) {
		t.Errorf("closing line %q", last)
	}
	line := regexp.MustCompile(`^(PASS|FAIL|SKIP)  (\S+)\s+BEP \d+, .+  (MUST|SHOULD|practice)\s+\S`)
	checks := 0
	for _, l := range lines[1 : len(lines)-1] {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("line %q", l)
			continue
		}
		checks++
		if !strings.HasPrefix(m[2], "envelope.") && !strings.HasPrefix(m[2], "errors.") {
			t.Errorf("--only envelope --only errors ran %s", m[2])
		}
	}
	if checks < 8 {
		t.Errorf("%d check lines:\n%s", checks, res.stdout)
	}
}

// TestConformanceExitCodes: a node that never answers, and an unknown
// group, exit non-zero.
func TestConformanceExitCodes(t *testing.T) {
	pc := silentUDP(t)
	res := runDhtd(t, "conformance", pc.LocalAddr().String(), "--timeout", "100ms")
	if res.code == 0 || !strings.Contains(res.stderr, "does not answer") {
		t.Errorf("silent target: exit %d, stderr %q", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "conformance: 0 passed, 0 failed,") {
		t.Errorf("silent target: stdout %q", res.stdout)
	}
	bare := bareResponder(t)
	res = runDhtd(t, "conformance", bare, "--only", "tokens", "--timeout", "200ms")
	if res.code != 1 || !strings.Contains(res.stderr, "MUST check(s) failed") || !strings.Contains(res.stdout, "FAIL  tokens.get_peers-token") {
		t.Errorf("a MUST failure: exit %d, stderr %q\n%s", res.code, res.stderr, res.stdout)
	}
	res = runDhtd(t, "conformance", pc.LocalAddr().String(), "--only", "nosuchgroup")
	if res.code == 0 || !strings.Contains(res.stderr, "unknown group") {
		t.Errorf("unknown group: exit %d, stderr %q", res.code, res.stderr)
	}
}

// bareResponder answers every query with a response holding only an id (no
// token, no nodes), echoing the 2-byte transaction id; it returns its
// address.
func bareResponder(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			i := bytes.Index(buf[:n], []byte("1:t2:"))
			if i < 0 || i+7 > n {
				continue
			}
			reply := "d1:rd2:id20:bbbbbbbbbbbbbbbbbbbbe1:t2:" + string(buf[i+5:i+7]) + "1:y1:re"
			_, _ = pc.WriteTo([]byte(reply), from)
		}
	}()
	return pc.LocalAddr().String()
}
