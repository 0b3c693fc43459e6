package gateway

import (
	"context"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/dhtd/dhtd/node"
)

// routingIDs returns the ids of n's live routing-table nodes, sorted.
func routingIDs(n *node.Node) []string {
	var ids []string
	for _, b := range n.Admin().RoutingSnapshot().Buckets {
		for _, e := range b.Nodes {
			ids = append(ids, e.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

func TestGatewayStatus(t *testing.T) {
	nodes := startNet(t, 4)
	_, ts := serve(t, nodes[0], nil)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if _, err := nodes[0].FindNode(ctx, nodes[2].ID()); err != nil {
		t.Fatal(err)
	}
	var put putAnswer
	callJSON(t, "POST", ts.URL+"/v1/immutable", `{"value":"status"}`, http.StatusOK, &put)

	var st statusOut
	callJSON(t, "GET", ts.URL+"/v1/status", "", http.StatusOK, &st)
	if st.ID != nodes[0].ID().String() || st.BEP42.Mode != "off" || st.K != 8 || st.UptimeS <= 0 {
		t.Fatalf("status head %+v", st)
	}
	if len(st.Addresses) != 2 || st.Addresses[0] != "udp://"+nodes[0].Addr().String() || !strings.HasPrefix(st.Addresses[1], "http://127.0.0.1:") {
		t.Fatalf("addresses %v: want the UDP and the HTTP address", st.Addresses)
	}
	var ids []string
	for _, b := range st.Buckets {
		for _, n := range b.Nodes {
			ids = append(ids, n.ID)
		}
	}
	sort.Strings(ids)
	if want := routingIDs(nodes[0]); strings.Join(ids, ",") != strings.Join(want, ",") || len(ids) != 4 {
		t.Fatalf("status nodes %v, routing table %v: want the same 4", ids, want)
	}
	var sawFind, sawGet bool
	for _, l := range st.Lookups {
		sawFind = sawFind || (l.Kind == "find_node" && l.Target == nodes[2].ID().String() && l.Queries > 0)
		sawGet = sawGet || (l.Kind == "get" && l.Target == put.Target && l.Queries > 0)
	}
	if !sawFind || !sawGet {
		t.Fatalf("recent lookups %+v: want the find_node and the put's get", st.Lookups)
	}
	// a storer's own status page counts the item.
	for _, n := range nodes {
		if n.Addr().String() != put.StoredAt[0].Addr {
			continue
		}
		_, ts2 := serve(t, n, nil)
		var st2 statusOut
		callJSON(t, "GET", ts2.URL+"/v1/status", "", http.StatusOK, &st2)
		if st2.Stored.Immutable < 1 {
			t.Fatalf("storer %s status: stored %+v, want an immutable item", n.Addr(), st2.Stored)
		}
	}

	pages := []struct {
		path, ctype, has string
		code             int
	}{
		{"/", "text/html; charset=utf-8", `<svg id="keyspace"`, 200},
		{"/ui/app.js", "text/javascript; charset=utf-8", "dhtd:rendered", 200},
		{"/ui/style.css", "text/css; charset=utf-8", ".node", 200},
		{"/ui/missing.js", "", "", 404},
		{"/ui/..%2fopenapi.json", "", "", 404},
		{"/elsewhere", "", "", 404},
	}
	for _, p := range pages {
		resp, err := testClient.Get(ts.URL + p.path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		sb := string(body)
		if resp.StatusCode != p.code {
			t.Fatalf("%s: status %d, want %d", p.path, resp.StatusCode, p.code)
		}
		if p.code != 200 {
			continue
		}
		if resp.Header.Get("Content-Type") != p.ctype || !strings.Contains(sb, p.has) {
			t.Fatalf("%s: type %q, want %q containing %q", p.path, resp.Header.Get("Content-Type"), p.ctype, p.has)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "http") {
			t.Fatalf("%s: CSP %q: want same-origin only", p.path, csp)
		}
		// no external requests: nothing in the page names another origin.
		if rest := strings.ReplaceAll(sb, "http://www.w3.org/2000/svg", ""); strings.Contains(rest, "://") {
			t.Fatalf("%s refers to another origin", p.path)
		}
	}
}
