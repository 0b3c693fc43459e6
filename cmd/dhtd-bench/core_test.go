package main

import (
	"bufio"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestCoreCommandSeedAndLoad: the core on a socket (dhtd-bench core) takes
// the fillers into its table when they are offered, stores what seed
// stores, and answers the load's get_peers and get with the 50 peers, the
// 1,000-byte item and 8 nodes, every query answered; EOF on stdin ends it.
func TestCoreCommandSeedAndLoad(t *testing.T) {
	cinR, cinW := io.Pipe()
	coutR, coutW := io.Pipe()
	cdone := make(chan error, 1)
	go func() { cdone <- coreCommand(nil, cinR, coutW, io.Discard); _ = coutW.Close() }()
	cout := bufio.NewScanner(coutR)
	if !cout.Scan() || !strings.HasPrefix(cout.Text(), "listening ") {
		t.Fatalf("core first line %q", cout.Text())
	}
	target, err := netip.ParseAddrPort(strings.Fields(cout.Text())[1])
	if err != nil {
		t.Fatal(err)
	}
	table := func() string {
		t.Helper()
		if _, err := io.WriteString(cinW, "table\n"); err != nil {
			t.Fatal(err)
		}
		if !cout.Scan() {
			t.Fatal("core: no answer to table")
		}
		return cout.Text()
	}

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	go func() { _ = fillerCommand([]string{"--count", "16"}, inR, outW, io.Discard); _ = outW.Close() }()
	defer inW.Close()
	out := bufio.NewScanner(outR)
	if !out.Scan() || !strings.HasPrefix(out.Text(), "fillers ") {
		t.Fatalf("filler first line %q", out.Text())
	}
	if _, err := io.WriteString(inW, "offer "+target.String()+"\n"); err != nil {
		t.Fatal(err)
	}
	if !out.Scan() || out.Text() != "offered "+target.String() {
		t.Fatalf("filler answer %q", out.Text())
	}
	deadline := time.Now().Add(10 * time.Second)
	for table() != "table 16" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling the table: no event to await from outside the node
	}
	if got := table(); got != "table 16" {
		t.Fatalf("core: %q, want the 16 fillers", got)
	}

	seedAndLoad(t, target, "find_node", "get_peers", "get")
	_ = cinW.Close()
	select {
	case err := <-cdone:
		if err != nil {
			t.Fatalf("core: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("core did not end at EOF")
	}
}
