package main

import (
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestRunHTTPRefusesWebPages runs `dhtd run --http` with
// --http-allowed-hosts and --http-allowed-origins and checks the Host,
// Origin, Sec-Fetch-Site and Content-Type rules on both of its HTTP
// listeners: the gateway and the metrics listener (/metrics, /healthz,
// /readyz, /debug/routing).
func TestRunHTTPRefusesWebPages(t *testing.T) {
	n := startNode(t, "--no-bootstrap", "--storage", "memory", "--http", "127.0.0.1:0",
		"--http-allowed-hosts", "dht.example.org, proxy.example:8443",
		"--http-allowed-origins", "https://app.example.org")
	gl := n.waitLine(`msg="gateway listening"`)
	m := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(gl)
	if m == nil {
		t.Fatalf("no loopback addr= in %q", gl)
	}
	listeners := map[string]string{"gateway": m[1], "metrics": n.Metrics}
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

	type hdr = map[string]string
	tests := []struct {
		name, listener, method, path string
		h                            hdr
		want                         int
	}{
		// the metrics listener
		{"metrics, own address", "metrics", "GET", "/metrics", hdr{}, 200},
		{"healthz via localhost", "metrics", "GET", "/healthz", hdr{"Host": "localhost:" + port(n.Metrics)}, 200},
		{"routing via an allowed host", "metrics", "GET", "/debug/routing", hdr{"Host": "dht.example.org"}, 200},
		{"routing via an allowed host:port", "metrics", "GET", "/debug/routing", hdr{"Host": "proxy.example:8443"}, 200},
		{"routing via a rebound name", "metrics", "GET", "/debug/routing", hdr{"Host": "evil.example"}, 421},
		{"metrics via a rebound name", "metrics", "GET", "/metrics", hdr{"Host": "evil.example:" + port(n.Metrics)}, 421},
		{"readyz via a rebound name", "metrics", "GET", "/readyz", hdr{"Host": "evil.example"}, 421},
		{"healthz via a rebound name", "metrics", "GET", "/healthz", hdr{"Host": "evil.example"}, 421},
		{"allowed host, wrong port", "metrics", "GET", "/healthz", hdr{"Host": "proxy.example:8444"}, 421},
		{"routing read by another site's script", "metrics", "GET", "/debug/routing", hdr{"Origin": "http://127.0.0.2:8000", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}, 403},
		{"metrics fetched no-cors by another site", "metrics", "GET", "/metrics", hdr{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"}, 403},
		{"routing read by an allowed origin", "metrics", "GET", "/debug/routing", hdr{"Origin": "https://app.example.org", "Sec-Fetch-Site": "cross-site"}, 200},
		{"form post to metrics", "metrics", "POST", "/metrics", hdr{"Content-Type": "application/x-www-form-urlencoded"}, 415},

		// the gateway
		{"gateway ping", "gateway", "GET", "/v1/ping", hdr{}, 200},
		{"gateway via an allowed host", "gateway", "GET", "/v1/status", hdr{"Host": "dht.example.org"}, 200},
		{"gateway via a rebound name", "gateway", "GET", "/v1/status", hdr{"Host": "evil.example"}, 421},
		{"gateway text/plain put", "gateway", "POST", "/v1/immutable", hdr{"Content-Type": "text/plain"}, 415},
		{"gateway announce without content type", "gateway", "POST", "/v1/announce/" + strings.Repeat("ab", 20) + "?port=1", hdr{}, 415},
		{"gateway cross-site put", "gateway", "POST", "/v1/immutable", hdr{"Content-Type": "application/json", "Origin": "http://127.0.0.2:8000", "Sec-Fetch-Site": "cross-site"}, 403},
		{"gateway cross-site put without origin", "gateway", "POST", "/v1/immutable", hdr{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403},
		// allowed, and then refused by the gateway for its content (an
		// empty body): the checks let it through.
		{"gateway put from an allowed origin", "gateway", "POST", "/v1/immutable", hdr{"Content-Type": "application/json", "Origin": "https://app.example.org", "Sec-Fetch-Site": "cross-site"}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, "http://"+listeners[tt.listener]+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.h {
				if k == "Host" {
					req.Host = v
				} else {
					req.Header.Set(k, v)
				}
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, b)
			}
			if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
				t.Fatalf("answer carries Access-Control-Allow-Origin %q", v)
			}
		})
	}
	// every refusal of the metrics listener is counted with its reason.
	_, body := httpGet(t, n.Metrics, "/metrics")
	for reason, want := range map[string]float64{"host": 5, "origin": 1, "fetch_site": 1, "content_type": 1} {
		got, ok := metricValue(t, body, "dhtd_metrics_http_refused_total", map[string]string{"reason": reason})
		if !ok || got != want {
			t.Errorf("dhtd_metrics_http_refused_total{reason=%q} = %v (present %v), want %v", reason, got, ok, want)
		}
	}
}

// TestRunHTTPPolicyBadFlags: an entry of --http-allowed-hosts or
// --http-allowed-origins that is not a host or an origin is one line and
// exit 1.
func TestRunHTTPPolicyBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--http-allowed-hosts", "a b"},
		{"--http-allowed-origins", "app.example.org"},
		{"--http-allowed-origins", "https://app.example.org/path"},
	} {
		r := runDhtd(t, append([]string{"run", "--no-bootstrap", "--storage", "memory", "--listen", "127.0.0.1:0", "--metrics-listen", ""}, args...)...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 1 || len(lines) != 1 || !strings.Contains(r.stderr, args[0]) {
			t.Errorf("%q: exit %d, stderr %q: want exit 1 and one line naming %s", args, r.code, r.stderr, args[0])
		}
	}
}
