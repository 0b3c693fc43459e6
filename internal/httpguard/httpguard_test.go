package httpguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// request is a request accepted on local, with the given headers ("" are
// left out).
func request(method, host, local string, hdr map[string]string) *http.Request {
	r := httptest.NewRequest(method, "http://x/v1/thing", strings.NewReader("{}"))
	r.Host = host
	for k, v := range hdr {
		if v != "" {
			r.Header.Set(k, v)
		}
	}
	if local != "" {
		addr, err := net.ResolveTCPAddr("tcp", local)
		if err != nil {
			panic(err)
		}
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, addr))
	}
	return r
}

func TestGuardCheck(t *testing.T) {
	g, err := New(Policy{
		AllowedHosts:   []string{"dht.example.org", "proxy.example:8443", "[::1]:9999"},
		AllowedOrigins: []string{"https://app.example.org", "http://127.0.0.1:3000"},
	})
	if err != nil {
		t.Fatal(err)
	}
	const local = "127.0.0.1:8080"
	json := "application/json"
	tests := []struct {
		name         string
		method, host string
		local        string
		access       Access
		origin, site string
		mode, dest   string
		ctype        string
		want         string // "" (served) or a reason
	}{
		// Host
		{name: "listen address", method: "GET", host: "127.0.0.1:8080", local: local},
		{name: "localhost with the port", method: "GET", host: "localhost:8080", local: local},
		{name: "localhost upper case, trailing dot", method: "GET", host: "LOCALHOST.:8080", local: local},
		{name: "localhost other port", method: "GET", host: "localhost:8081", local: local, want: ReasonHost},
		{name: "listen address other port", method: "GET", host: "127.0.0.1:9", local: local, want: ReasonHost},
		{name: "other loopback address", method: "GET", host: "127.0.0.2:8080", local: local, want: ReasonHost},
		{name: "rebound name", method: "GET", host: "evil.example:8080", local: local, want: ReasonHost},
		{name: "rebound name, no port", method: "GET", host: "evil.example", local: local, want: ReasonHost},
		{name: "empty host", method: "GET", host: "", local: local, want: ReasonHost},
		{name: "malformed host", method: "GET", host: "a b:8080", local: local, want: ReasonHost},
		{name: "bare IPv6", method: "GET", host: "::1:8080", local: "[::1]:8080", want: ReasonHost},
		{name: "IPv6 listen address", method: "GET", host: "[::1]:8080", local: "[::1]:8080"},
		{name: "wildcard bind: the address connected to", method: "GET", host: "192.0.2.7:8080", local: "192.0.2.7:8080"},
		{name: "allowed name, any port", method: "GET", host: "dht.example.org:1234", local: local},
		{name: "allowed name, no port", method: "GET", host: "dht.example.org", local: local},
		{name: "allowed name:port", method: "GET", host: "proxy.example:8443", local: local},
		{name: "allowed name, wrong port", method: "GET", host: "proxy.example:8444", local: local, want: ReasonHost},
		{name: "allowed IPv6:port", method: "GET", host: "[::1]:9999", local: local},
		{name: "no listener address known", method: "GET", host: "127.0.0.1:8080", want: ReasonHost},
		{name: "cross-origin route: host still checked", method: "PUT", host: "evil.example:8080", local: local, access: CrossOrigin, want: ReasonHost},

		// Origin
		{name: "same origin write", method: "POST", host: "127.0.0.1:8080", local: local, origin: "http://127.0.0.1:8080", site: "same-origin", ctype: json},
		{name: "same origin via localhost", method: "POST", host: "localhost:8080", local: local, origin: "http://localhost:8080", site: "same-origin", ctype: json},
		{name: "other port origin", method: "POST", host: "127.0.0.1:8080", local: local, origin: "http://127.0.0.1:8081", ctype: json, want: ReasonOrigin},
		{name: "other loopback origin", method: "POST", host: "127.0.0.1:8080", local: local, origin: "http://127.0.0.2:8080", site: "cross-site", ctype: json, want: ReasonOrigin},
		{name: "null origin", method: "POST", host: "127.0.0.1:8080", local: local, origin: "null", ctype: json, want: ReasonOrigin},
		{name: "origin on a GET", method: "GET", host: "127.0.0.1:8080", local: local, origin: "https://evil.example", want: ReasonOrigin},
		{name: "allowed origin", method: "POST", host: "127.0.0.1:8080", local: local, origin: "https://app.example.org", site: "cross-site", ctype: json},
		{name: "allowed origin, explicit default port", method: "POST", host: "127.0.0.1:8080", local: local, origin: "https://app.example.org:443", site: "cross-site", ctype: json},
		{name: "allowed origin, other scheme", method: "POST", host: "127.0.0.1:8080", local: local, origin: "http://app.example.org", site: "cross-site", ctype: json, want: ReasonOrigin},
		{name: "allowed same-site origin", method: "POST", host: "127.0.0.1:8080", local: local, origin: "http://127.0.0.1:3000", site: "same-site", ctype: json},
		{name: "cross-origin route: any origin", method: "PUT", host: "127.0.0.1:8080", local: local, access: CrossOrigin, origin: "https://evil.example", site: "cross-site", ctype: "application/octet-stream"},

		// Sec-Fetch-Site
		{name: "fetch site none (typed URL)", method: "GET", host: "127.0.0.1:8080", local: local, site: "none"},
		{name: "cross-site subresource read", method: "GET", host: "127.0.0.1:8080", local: local, site: "cross-site", mode: "no-cors", dest: "image", want: ReasonFetchSite},
		{name: "same-site write without origin", method: "POST", host: "127.0.0.1:8080", local: local, site: "same-site", ctype: json, want: ReasonFetchSite},
		{name: "cross-site top-level navigation", method: "GET", host: "127.0.0.1:8080", local: local, site: "cross-site", mode: "navigate", dest: "document"},
		{name: "cross-site frame navigation", method: "GET", host: "127.0.0.1:8080", local: local, site: "cross-site", mode: "navigate", dest: "iframe", want: ReasonFetchSite},
		{name: "cross-site form post navigation", method: "POST", host: "127.0.0.1:8080", local: local, site: "cross-site", mode: "navigate", dest: "document", ctype: json, want: ReasonFetchSite},
		{name: "unknown fetch site", method: "GET", host: "127.0.0.1:8080", local: local, site: "sideways", want: ReasonFetchSite},

		// Content-Type of writes
		{name: "json write", method: "PUT", host: "127.0.0.1:8080", local: local, ctype: json},
		{name: "json with charset", method: "POST", host: "127.0.0.1:8080", local: local, ctype: "application/json; charset=utf-8"},
		{name: "json upper case", method: "POST", host: "127.0.0.1:8080", local: local, ctype: "Application/JSON"},
		{name: "text/plain write", method: "POST", host: "127.0.0.1:8080", local: local, ctype: "text/plain", want: ReasonContentType},
		{name: "form write", method: "POST", host: "127.0.0.1:8080", local: local, ctype: "application/x-www-form-urlencoded", want: ReasonContentType},
		{name: "multipart write", method: "POST", host: "127.0.0.1:8080", local: local, ctype: "multipart/form-data; boundary=x", want: ReasonContentType},
		{name: "no content type", method: "POST", host: "127.0.0.1:8080", local: local, want: ReasonContentType},
		{name: "delete without content type", method: "DELETE", host: "127.0.0.1:8080", local: local, want: ReasonContentType},
		{name: "json lookalike", method: "POST", host: "127.0.0.1:8080", local: local, ctype: "application/jsonx", want: ReasonContentType},
		{name: "GET needs none", method: "GET", host: "127.0.0.1:8080", local: local},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(tt.method, tt.host, tt.local, map[string]string{
				"Origin": tt.origin, "Sec-Fetch-Site": tt.site, "Sec-Fetch-Mode": tt.mode,
				"Sec-Fetch-Dest": tt.dest, "Content-Type": tt.ctype,
			})
			ref := g.Check(r, tt.access)
			got := ""
			if ref != nil {
				got = ref.Reason
				if !errors.Is(ref, ErrRefused) || ref.Msg == "" {
					t.Fatalf("refusal %+v: want a message and errors.Is ErrRefused", ref)
				}
				wantStatus := map[string]int{ReasonHost: 421, ReasonOrigin: 403, ReasonFetchSite: 403, ReasonContentType: 415}[got]
				if ref.Status != wantStatus {
					t.Fatalf("refusal %q with status %d, want %d", got, ref.Status, wantStatus)
				}
			}
			if got != tt.want {
				t.Fatalf("refused for %q (%v), want %q", got, ref, tt.want)
			}
		})
	}
}

func TestGuardPolicyErrors(t *testing.T) {
	for _, p := range []Policy{
		{AllowedHosts: []string{"a b"}},
		{AllowedHosts: []string{"host:99999"}},
		{AllowedHosts: []string{"::1"}},
		{AllowedHosts: []string{"http://x/"}},
		{AllowedOrigins: []string{"app.example.org"}},
		{AllowedOrigins: []string{"ftp://app.example.org"}},
		{AllowedOrigins: []string{"https://app.example.org/path"}},
		{AllowedOrigins: []string{"null"}},
	} {
		if _, err := New(p); err == nil {
			t.Errorf("New(%+v): want an error", p)
		}
	}
	if got := ParseList(" a.example, ,b.example:80,"); len(got) != 2 || got[0] != "a.example" || got[1] != "b.example:80" {
		t.Errorf("ParseList: %q", got)
	}
}

func TestGuardHandler(t *testing.T) {
	var zero Guard // allows only the listener's own address
	var reasons []string
	h := zero.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("served"))
	}), func(reason string) { reasons = append(reasons, reason) })
	ts := httptest.NewServer(h)
	defer ts.Close()
	for _, tt := range []struct {
		host string
		want int
	}{
		{ts.Listener.Addr().String(), 200},
		{"evil.example", 421},
	} {
		req, _ := http.NewRequest("GET", ts.URL+"/metrics", nil)
		req.Host = tt.host
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("Host %s: status %d (CORS %q), want %d and no CORS header", tt.host, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), tt.want)
		}
	}
	if len(reasons) != 1 || reasons[0] != ReasonHost {
		t.Fatalf("counted refusals %v, want [host]", reasons)
	}
}
