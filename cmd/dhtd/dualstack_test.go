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

// TestRunDualStackStatus (BEP 32): a dual-stack `dhtd run --http` shows
// the node of each family, with its id, address and table, on /v1/status,
// on the status page and in `dhtd table`. One node of each family joins
// through it, so each family's table holds a node the other's does not.
func TestRunDualStackStatus(t *testing.T) {
	dhtdBinary(t) // skips under -short
	if pc, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback")
	} else {
		pc.Close()
	}
	t.Parallel()
	d := startNode(t, "--listen", "[::1]:0", "--no-bootstrap", "--storage", "memory", "--http", "127.0.0.1:0")
	m := regexp.MustCompile(`addr=(\[::1\]:\d+)`).FindStringSubmatch(d.waitLine(`addr=[::1]`))
	if m == nil {
		t.Fatal("no IPv6 node started")
	}
	addr6 := m[1]
	m = regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(d.waitLine(`msg="gateway listening"`))
	if m == nil {
		t.Fatal("no gateway address")
	}
	gw := m[1]

	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	joined := map[string]string{} // family -> id of the node that joined it
	for fam, boot := range map[string]string{"ipv4": d.Addr, "ipv6": addr6} {
		cfg := node.LoopbackConfig()
		cfg.Listen, cfg.Bootstrap = "127.0.0.1:0", []string{boot}
		if fam == "ipv6" {
			cfg.Listen = "[::1]:0"
		}
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		joined[fam] = n.ID().String()
	}

	type family struct {
		Family  string `json:"family"`
		ID      string `json:"id"`
		Address string `json:"address"`
		Good    int    `json:"good"`
		Buckets []struct {
			Nodes []struct {
				ID string `json:"id"`
			} `json:"nodes"`
		} `json:"buckets"`
	}
	var st struct {
		ID        string   `json:"id"`
		Addresses []string `json:"addresses"`
		Families  []family `json:"families"`
	}
	has := func(f family, id string) bool {
		for _, b := range f.Buckets {
			for _, n := range b.Nodes {
				if n.ID == id {
					return true
				}
			}
		}
		return false
	}
	// Each family's node learns the joiner of its family (it pings it
	// back; no event crosses the process boundary: bounded polling).
	for deadline := time.Now().Add(e2eWait); ; time.Sleep(50 * time.Millisecond) { // polling interval
		code, body := httpGet(t, gw, "/v1/status")
		if code != http.StatusOK {
			t.Fatalf("/v1/status: %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Families) == 2 && has(st.Families[0], joined["ipv4"]) && has(st.Families[1], joined["ipv6"]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/v1/status families after %v: %s", e2eWait, body)
		}
	}
	f4, f6 := st.Families[0], st.Families[1]
	if f4.Family != "ipv4" || f4.ID != d.ID || f4.ID != st.ID || f4.Address != "udp://"+d.Addr || f4.Good < 1 {
		t.Errorf("first family %+v, want ipv4, id %s at udp://%s with a good node", f4, d.ID, d.Addr)
	}
	if f6.Family != "ipv6" || !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(f6.ID) || f6.ID == d.ID || f6.Address != "udp://"+addr6 || f6.Good < 1 {
		t.Errorf("second family %+v, want ipv6, an id of its own, at udp://%s with a good node", f6, addr6)
	}
	if want := []string{"udp://" + d.Addr, "udp://" + addr6, "http://" + gw}; strings.Join(st.Addresses, " ") != strings.Join(want, " ") {
		t.Errorf("addresses %v, want %v", st.Addresses, want)
	}
	if has(f4, joined["ipv6"]) || has(f6, joined["ipv4"]) {
		t.Errorf("a family's table holds a node of the other family: %+v", st.Families)
	}

	if code, body := httpGet(t, gw, "/"); code != http.StatusOK || !strings.Contains(body, `id="families"`) {
		t.Errorf("GET /: %d, want the status page with its families section", code)
	}

	r := runDhtd(t, "table", "--admin", d.Metrics)
	if r.code != 0 {
		t.Fatalf("dhtd table: exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"node " + d.ID + " at " + d.Addr + " (ipv4):",
		"node " + f6.ID + " at " + addr6 + " (ipv6):",
		"  " + joined["ipv4"] + " 127.0.0.1:",
		"  " + joined["ipv6"] + " [::1]:",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dhtd table lacks %q:\n%s", want, r.stdout)
		}
	}
	if i4, i6 := strings.Index(r.stdout, "(ipv4)"), strings.Index(r.stdout, "(ipv6)"); i4 < 0 || i6 < i4 {
		t.Errorf("dhtd table: want the IPv4 table, then the IPv6 one:\n%s", r.stdout)
	}

	r = runDhtd(t, "table", "--admin", d.Metrics, "--json")
	if r.code != 0 {
		t.Fatalf("dhtd table --json: exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var addrs []string
	for _, l := range lines {
		var doc struct{ Addr string }
		if err := json.Unmarshal([]byte(l), &doc); err != nil {
			t.Fatalf("dhtd table --json: line %q: %v", l, err)
		}
		addrs = append(addrs, doc.Addr)
	}
	if want := []string{d.Addr, addr6}; strings.Join(addrs, " ") != strings.Join(want, " ") {
		t.Errorf("dhtd table --json: documents for %v, want one per family %v", addrs, want)
	}
}
