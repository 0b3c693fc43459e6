package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/node"
)

// TestLoadSmoke runs the load tool for a short closed-loop and open-loop
// run of every query kind against an in-process node on loopback: every
// query is answered and every answer validates.
func TestLoadSmoke(t *testing.T) {
	n, err := node.New(node.Config{Listen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), ReplyBytesPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, rate := range []int{0, 2000} {
		for _, q := range []string{"ping", "find_node", "get_peers", "get", "mix"} {
			res, err := runLoad(context.Background(), loadConfig{
				Target: n.Addr(), Query: q, Sockets: 2, Sources: 2, Window: 4, Rate: rate,
				Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, Timeout: 500 * time.Millisecond,
				PID: os.Getpid(), Fill: map[bool]int{true: 16}[q == "find_node"],
			})
			if err != nil {
				t.Fatalf("%s rate %d: %v", q, rate, err)
			}
			if res.Answered == 0 || res.Invalid != 0 || res.Errors != 0 || res.Lost != 0 || res.Answered != res.Sent {
				t.Fatalf("%s rate %d: %+v", q, rate, res)
			}
			if res.ServerRSS <= 0 || res.ServerCPU < 0 {
				t.Fatalf("%s: no /proc figures: %+v", q, res)
			}
			if q == "find_node" && res.TargetNodes == 0 {
				t.Fatalf("fill left find_node answers empty: %+v", res)
			}
		}
	}
}

// TestLoadRefusesNonLoopback: the tool never loads anything but loopback.
func TestLoadRefusesNonLoopback(t *testing.T) {
	var out, errb strings.Builder
	err := run([]string{"load", "--target", "192.0.2.1:6881"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err = %v, want a loopback refusal", err)
	}
}
