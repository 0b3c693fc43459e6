package conformance_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/conformance"
)

// sloppyNode answers every packet that has a "t" with a bare {"id": ...}
// response: no token, no "ip", no error for a bad query, and an answer to
// garbage. It stops when the test ends.
func sloppyNode(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			tid := "zz"
			// Find "1:t" followed by a 2-byte id, as the suite sends them.
			for i := 0; i+6 <= n; i++ {
				if string(buf[i:i+5]) == "1:t2:" && i+7 <= n {
					tid = string(buf[i+5 : i+7])
					break
				}
			}
			reply := "d1:rd2:id20:sloppysloppysloppy12e1:t2:" + tid + "1:y1:re"
			_, _ = pc.WriteToUDPAddrPort([]byte(reply), from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestSloppyNodeFails checks that the suite fails what it should: a node
// that answers everything alike breaks MUST, SHOULD and practice checks.
func TestSloppyNodeFails(t *testing.T) {
	addr := sloppyNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := conformance.Run(ctx, conformance.Config{
		Target: addr, Timeout: 200 * time.Millisecond,
		Only: []string{"envelope", "errors", "malformed", "tokens", "bep42"},
	})
	if err != nil {
		t.Fatal(err)
	}
	logReport(t, rep)
	status := map[string]conformance.Status{}
	for _, r := range rep.Results {
		status[r.Name] = r.Status
		if r.Group == "nodes" || r.Group == "bep44" {
			t.Errorf("--only leaked %s", r.Name)
		}
	}
	for _, name := range []string{
		"envelope.t-echo", "envelope.y-response", "envelope.r-id",
		"errors.204", "malformed.silent-not-bencode", "malformed.203-no-a",
		"tokens.get_peers-token", "bep42.ip",
	} {
		want := conformance.Fail
		if name[:8] == "envelope" {
			want = conformance.Pass
		}
		if status[name] != want {
			t.Errorf("%s = %s, want %s", name, status[name], want)
		}
	}
	if rep.MustFailed == 0 {
		t.Error("no MUST check failed")
	}
	if rep.Passed+rep.Failed+rep.Skipped != len(rep.Results) || rep.Failed == 0 {
		t.Errorf("counts %d/%d/%d of %d results", rep.Passed, rep.Failed, rep.Skipped, len(rep.Results))
	}
	for src, n := range rep.Packets {
		if n > 200 {
			t.Errorf("%s sent %d packets, over the default budget", src, n)
		}
	}
}

// TestPacketBudget checks that a source stops at its budget and the checks
// it could not run are skipped, not failed.
func TestPacketBudget(t *testing.T) {
	addr := sloppyNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := conformance.Run(ctx, conformance.Config{
		Target: addr, Timeout: 200 * time.Millisecond, MaxPackets: 4,
		Sources: []netip.Addr{netip.MustParseAddr("127.0.0.2")},
		Only:    []string{"envelope", "malformed"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Packets["127.0.0.2"]; got != 4 {
		t.Errorf("sent %d packets, want the budget of 4", got)
	}
	skipped := 0
	for _, r := range rep.Results {
		if r.Status == conformance.Skip {
			skipped++
		}
	}
	if skipped < 10 {
		t.Errorf("%d checks skipped past the budget:\n%+v", skipped, rep.Results)
	}
}
