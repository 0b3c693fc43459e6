package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// TestRunDualStack (BEP 32): `dhtd run` with an IPv4 and an IPv6
// --listen runs one node per family, each joining its family's network;
// the IPv4 node answers want ["n4","n6"] with nodes and nodes6 (the IPv6
// ones from its sibling's table), and the metrics carry a family label.
func TestRunDualStack(t *testing.T) {
	dhtdBinary(t) // skips under -short
	if pc, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback")
	} else {
		pc.Close()
	}
	t.Parallel()
	start := func(listen string, boot []string) *node.Node {
		cfg := node.LoopbackConfig()
		cfg.Listen, cfg.Bootstrap = listen, boot
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seed4, seed6 := start("127.0.0.1:0", nil), start("[::1]:0", nil)
	for range 4 {
		for _, s := range []*node.Node{seed4, seed6} {
			host := "127.0.0.1:0"
			if s == seed6 {
				host = "[::1]:0"
			}
			n := start(host, []string{s.Addr().String()})
			if err := n.Bootstrap(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}

	d := startNode(t, "--listen", "[::1]:0", "--bootstrap", seed4.Addr().String(), "--bootstrap", seed6.Addr().String())
	line := d.waitLine(`addr=[::1]`)
	m := regexp.MustCompile(`addr=(\[::1\]:\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no IPv6 node started: %q", line)
	}
	addr6 := m[1]

	// Both nodes join their family's network (no event crosses the
	// process boundary: bounded polling of /debug/routing).
	deadline := time.Now().Add(e2eWait)
	for {
		good4, good6 := routingGood(t, d.Metrics, "/debug/routing"), routingGood(t, d.Metrics, "/debug/routing/ipv6")
		if good4 >= 2 && good6 >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tables did not fill: %d good IPv4, %d good IPv6 nodes", good4, good6)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}

	// want n4+n6 at the IPv4 node: both lists, each of its family.
	r := runDhtd(t, "probe", "find_node", "--bind", "127.0.0.1:0", d.Addr, krpc.RandomID().String(),
		"--want", "n4", "--want", "n6", "--json")
	if r.code != 0 {
		t.Fatalf("probe find_node: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var pr struct {
		Nodes  []struct{ Addr string } `json:"nodes"`
		Nodes6 []struct{ Addr string } `json:"nodes6"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &pr); err != nil {
		t.Fatal(err)
	}
	if len(pr.Nodes) == 0 || len(pr.Nodes6) == 0 {
		t.Fatalf("want n4+n6: %d nodes, %d nodes6\n%s", len(pr.Nodes), len(pr.Nodes6), r.stdout)
	}
	for _, n := range pr.Nodes6 {
		if !strings.HasPrefix(n.Addr, "[::1]:") {
			t.Fatalf("nodes6 holds %s", n.Addr)
		}
	}
	// The IPv6 node answers over IPv6.
	if r := runDhtd(t, "probe", "ping", "--bind", "[::1]:0", addr6); r.code != 0 {
		t.Fatalf("probe ping %s: exit %d\n%s", addr6, r.code, r.stderr)
	}

	code, body := httpGet(t, d.Metrics, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		if v, ok := metricValue(t, body, "dhtd_queries_received_total", map[string]string{"family": fam, "method": "ping"}); !ok || v < 1 {
			t.Fatalf("dhtd_queries_received_total{family=%q,method=\"ping\"} = %v, %v; want >= 1", fam, v, ok)
		}
	}
	if strings.Count(body, "\ngo_goroutines ") != 1 {
		t.Fatal("go_goroutines not exactly once")
	}
}

// routingGood reads the "good" count of a /debug/routing endpoint.
func routingGood(t *testing.T, addr, path string) int {
	t.Helper()
	code, body := httpGet(t, addr, path)
	if code != http.StatusOK {
		t.Fatalf("%s: status %d", path, code)
	}
	var d routingDump
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d.Good
}
