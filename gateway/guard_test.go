package gateway

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/internal/httpguard"
)

// TestGatewayRefusesWebPages: the Host, Origin, Sec-Fetch-Site and
// Content-Type checks on a gateway listening on loopback, as browsers and
// other clients send them; no answer carries a CORS header.
func TestGatewayRefusesWebPages(t *testing.T) {
	nodes := startNet(t, 3)
	g, ts := serve(t, nodes[0], func(c *Config) {
		c.AllowedHosts = []string{"dht.example.org"}
		c.AllowedOrigins = []string{"https://app.example.org"}
	})
	self := ts.Listener.Addr().String()
	port := strconv.Itoa(ts.Listener.Addr().(*net.TCPAddr).Port)
	ih := strings.Repeat("3c", 20)
	put := `{"value":"guard test"}`
	json := "application/json"
	type hdr = map[string]string
	tests := []struct {
		name, method, path, body string
		h                        hdr
		want                     int
		reason                   string // of a refusal
	}{
		{"listen address", "GET", "/v1/ping", "", hdr{"Host": self}, 200, ""},
		{"localhost with the port", "GET", "/v1/ping", "", hdr{"Host": "localhost:" + port}, 200, ""},
		{"allowed host", "GET", "/v1/ping", "", hdr{"Host": "dht.example.org"}, 200, ""},
		{"rebound name", "GET", "/v1/status", "", hdr{"Host": "evil.example"}, 421, "host"},
		{"rebound name with the port", "GET", "/v1/status", "", hdr{"Host": "evil.example:" + port}, 421, "host"},
		{"rebound name, status page", "GET", "/", "", hdr{"Host": "evil.example:" + port}, 421, "host"},
		{"rebound name, write", "POST", "/v1/immutable", put, hdr{"Host": "evil.example:" + port, "Content-Type": json}, 421, "host"},
		{"other loopback address", "GET", "/v1/ping", "", hdr{"Host": "127.0.0.2:" + port}, 421, "host"},
		{"localhost, other port", "GET", "/v1/ping", "", hdr{"Host": "localhost:1"}, 421, "host"},

		{"json put", "POST", "/v1/immutable", put, hdr{"Content-Type": json}, 200, ""},
		{"text/plain put", "POST", "/v1/immutable", put, hdr{"Content-Type": "text/plain"}, 415, "content_type"},
		{"form put", "POST", "/v1/immutable", put, hdr{"Content-Type": "application/x-www-form-urlencoded"}, 415, "content_type"},
		{"put without content type", "POST", "/v1/immutable", put, hdr{}, 415, "content_type"},
		{"text/plain announce", "POST", "/v1/announce/" + ih + "?port=1", "", hdr{"Content-Type": "text/plain"}, 415, "content_type"},
		{"announce without content type", "POST", "/v1/announce/" + ih + "?port=1", "", hdr{}, 415, "content_type"},
		{"text/plain mutable put", "PUT", "/v1/mutable/" + strings.Repeat("ab", 32), "{}", hdr{"Content-Type": "text/plain"}, 415, "content_type"},

		{"same-origin put", "POST", "/v1/immutable", put, hdr{"Content-Type": json, "Origin": "http://" + self, "Sec-Fetch-Site": "same-origin"}, 200, ""},
		{"cross-origin put", "POST", "/v1/immutable", put, hdr{"Content-Type": json, "Origin": "http://127.0.0.2:" + port, "Sec-Fetch-Site": "cross-site"}, 403, "origin"},
		{"null origin put", "POST", "/v1/immutable", put, hdr{"Content-Type": json, "Origin": "null"}, 403, "origin"},
		{"allowed origin put", "POST", "/v1/immutable", put, hdr{"Content-Type": json, "Origin": "https://app.example.org", "Sec-Fetch-Site": "cross-site"}, 200, ""},
		{"cross-site put without origin", "POST", "/v1/immutable", put, hdr{"Content-Type": json, "Sec-Fetch-Site": "cross-site"}, 403, "fetch_site"},
		{"same-site announce", "POST", "/v1/announce/" + ih + "?port=1", "", hdr{"Content-Type": json, "Sec-Fetch-Site": "same-site"}, 403, "fetch_site"},
		{"cross-site lookup from an img", "GET", "/v1/peers/" + ih, "", hdr{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}, 403, "fetch_site"},
		{"cross-site link to the page", "GET", "/", "", hdr{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, 200, ""},
		{"typed URL", "GET", "/v1/ping", "", hdr{"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, 200, ""},
		{"same-origin poll", "GET", "/v1/status", "", hdr{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}, 200, ""},
		{"cross-origin preflight", "OPTIONS", "/v1/immutable", "", hdr{"Origin": "http://127.0.0.2:" + port, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}, 403, "origin"},
	}
	wantRefused := map[string]float64{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rd io.Reader
			if tt.body != "" {
				rd = strings.NewReader(tt.body)
			}
			req, err := http.NewRequest(tt.method, ts.URL+tt.path, rd)
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
			resp, err := testClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, b)
			}
			for k := range resp.Header {
				if strings.HasPrefix(k, "Access-Control-") {
					t.Fatalf("answer carries %s: %q", k, resp.Header.Get(k))
				}
			}
		})
		if tt.reason != "" {
			wantRefused[tt.reason]++
		}
	}
	for _, reason := range httpguard.Reasons {
		if got := testutil.ToFloat64(g.m.refused.WithLabelValues(reason)); got != wantRefused[reason] {
			t.Errorf("refused_total{reason=%q} %v, want %v", reason, got, wantRefused[reason])
		}
	}
}

// TestGatewayCrossOriginOptIn: a route that opts in to cross-origin access
// serves any page, with CORS headers and a preflight; the Host is still
// checked.
func TestGatewayCrossOriginOptIn(t *testing.T) {
	nodes := startNet(t, 1)
	g, _ := serve(t, nodes[0], nil)
	relay := []route{
		{"PUT /relay/{key}", "unknown", false, crossOrigin, func(_ *Gateway, w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(b)
		}},
		{"GET /relay/{key}", "unknown", false, crossOrigin, func(_ *Gateway, w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
		}},
	}
	mux := http.NewServeMux()
	for _, rt := range relay {
		mux.Handle(rt.pattern, g.wrap(rt))
	}
	pf := preflights(relay)
	if len(pf) != 1 || pf["/relay/{key}"] != "PUT, GET" {
		t.Fatalf("preflights %v, want /relay/{key}: PUT, GET", pf)
	}
	for path, methods := range pf {
		mux.Handle("OPTIONS "+path, g.preflight(methods))
	}
	ts := httptest.NewServer(mux)
	defer ts.Close()
	tests := []struct {
		name, method, host string
		h                  map[string]string
		want               int
		cors               bool
	}{
		{"cross-site text/plain put", "PUT", "", map[string]string{"Origin": "https://any.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}, 200, true},
		{"preflight", "OPTIONS", "", map[string]string{"Origin": "https://any.example", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "content-type"}, 204, true},
		{"rebound name", "PUT", "evil.example", map[string]string{"Origin": "https://any.example", "Content-Type": "text/plain"}, 421, false},
		{"rebound name preflight", "OPTIONS", "evil.example", map[string]string{"Origin": "https://any.example", "Access-Control-Request-Method": "PUT"}, 421, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, ts.URL+"/relay/k", strings.NewReader("payload"))
			if tt.host != "" {
				req.Host = tt.host
			}
			for k, v := range tt.h {
				req.Header.Set(k, v)
			}
			resp, err := testClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			acao := resp.Header.Get("Access-Control-Allow-Origin")
			if resp.StatusCode != tt.want || (acao == "*") != tt.cors {
				t.Fatalf("status %d, Access-Control-Allow-Origin %q: want %d, CORS %v", resp.StatusCode, acao, tt.want, tt.cors)
			}
			if tt.method == "OPTIONS" && tt.cors &&
				(resp.Header.Get("Access-Control-Allow-Methods") != "PUT, GET" || resp.Header.Get("Access-Control-Allow-Headers") != "content-type") {
				t.Fatalf("preflight answer %v", resp.Header)
			}
		})
	}
}
