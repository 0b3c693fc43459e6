package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// TestEchoBaseline: every query sent to either echo server (batched and
// bare) comes back and counts as answered in --echo mode, with its CPU
// figure.
func TestEchoBaseline(t *testing.T) {
	for _, tc := range []struct {
		name string
		loop func(*net.UDPConn) error
	}{{"batched", echoLoop}, {"bare", bareEchoLoop}} {
		t.Run(tc.name, func(t *testing.T) { testEcho(t, tc.loop) })
	}
}

func testEcho(t *testing.T, loop func(*net.UDPConn) error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- loop(c) }()
	defer func() {
		_ = c.Close()
		if err := <-done; err != nil {
			t.Errorf("echo loop: %v", err)
		}
	}()
	for _, rate := range []int{0, 2000} {
		res, err := runLoad(context.Background(), loadConfig{
			Target: c.LocalAddr().(*net.UDPAddr).AddrPort(), Query: "find_node", Sockets: 2, Sources: 2, Window: 8,
			Rate: rate, Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, Timeout: 500 * time.Millisecond,
			PID: os.Getpid(), Echo: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Answered == 0 || res.Answered != res.Sent || res.Invalid != 0 || res.Lost != 0 {
			t.Fatalf("rate %d: %+v", rate, res)
		}
	}
}

// TestFillerSeedAndStoredLoad: the fillers enter a node's table when
// offered; seed stores 50 peers and a 1,000-byte item; get_peers and get
// on them then carry the peers and the value in every answer.
func TestFillerSeedAndStoredLoad(t *testing.T) {
	n, err := node.New(node.Config{Listen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), ReplyBytesPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	fdone := make(chan error, 1)
	go func() { fdone <- fillerCommand([]string{"--count", "16"}, inR, outW, io.Discard); _ = outW.Close() }()
	out := bufio.NewScanner(outR)
	if !out.Scan() || !strings.HasPrefix(out.Text(), "fillers ") {
		t.Fatalf("filler first line %q", out.Text())
	}
	if _, err := io.WriteString(inW, "offer "+n.Addr().String()+"\n"); err != nil {
		t.Fatal(err)
	}
	if !out.Scan() || out.Text() != "offered "+n.Addr().String() {
		t.Fatalf("filler answer %q", out.Text())
	}
	deadline := time.Now().Add(10 * time.Second)
	for n.Admin().Table().Len() < 16 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling the table: no event to await from outside the node
	}
	if got := n.Admin().Table().Len(); got != 16 {
		t.Fatalf("table holds %d nodes, want the 16 fillers", got)
	}

	seedAndLoad(t, n.Addr(), "get_peers", "get")
	_ = inW.Close()
	if err := <-fdone; err != nil {
		t.Fatalf("filler: %v", err)
	}
}

// seedAndLoad runs seed against target (50 peers and a 1,000-byte item),
// then a short closed-loop load of each of queries: every query answered
// and valid, 8 nodes in the answers, and for get_peers and get the stored
// peers and value in every answer.
func seedAndLoad(t *testing.T, target netip.AddrPort, queries ...string) {
	t.Helper()
	var sb strings.Builder
	if err := seedCommand([]string{"--target", target.String()}, &sb, io.Discard); err != nil {
		t.Fatal(err)
	}
	var seeded seedResult
	if err := json.Unmarshal([]byte(sb.String()), &seeded); err != nil {
		t.Fatal(err)
	}
	if seeded.Peers != 50 || seeded.Values != 50 || seeded.ItemBytes != 1000 {
		t.Fatalf("seed: %+v, want 50 peers and a 1000-byte item", seeded)
	}
	keys := map[string]string{"get_peers": seeded.Infohash, "get": seeded.Item}
	for _, query := range queries {
		cfg := loadConfig{
			Target: target, Query: query, Sockets: 1, Sources: 1, Window: 8, Duration: 200 * time.Millisecond,
			Warmup: 50 * time.Millisecond, Timeout: 500 * time.Millisecond,
		}
		if k, ok := keys[query]; ok {
			key, err := krpc.ParseID(k)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Key, cfg.ExpectStored = &key, true
		}
		res, err := runLoad(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Answered == 0 || res.Answered != res.Sent || res.Invalid != 0 || res.MaxNodes != 8 {
			t.Fatalf("%s: %+v", query, res)
		}
		if query == "get_peers" && res.MaxValues != 50 {
			t.Fatalf("get_peers answers carry %d peers, want 50", res.MaxValues)
		}
	}
}
