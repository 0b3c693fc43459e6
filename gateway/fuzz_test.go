package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/pkarr"
	"github.com/dhtd/dhtd/node"
)

// FuzzGatewayRequest: whatever method, path, body, Host, Origin,
// Sec-Fetch-Site and Content-Type a client sends, the gateway answers with
// a status it documents and, under /v1/, a JSON body; nothing panics; no
// answer carries a CORS header, and a write not refused by the web-page
// checks was application/json from the gateway's own address. The node has
// no peers, so every lookup fails at once and the fuzzer exercises
// parsing and validation.
func FuzzGatewayRequest(f *testing.F) {
	n, err := node.New(node.LoopbackConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	g, err := New(n, Config{
		Logger:         slog.New(slog.DiscardHandler),
		RatePerSecond:  1e9,
		RateBurst:      1 << 30,
		RequestTimeout: 2 * time.Second,
	})
	if err != nil {
		f.Fatal(err)
	}
	hex40 := strings.Repeat("ab", 20)
	// a valid relay body: signature, seq, a packet of one TXT record.
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	z32Key := pkarr.KeyString(priv.Public().(ed25519.PublicKey))
	packet, err := pkarr.EncodePacket(z32Key, []pkarr.Record{{Name: "@", Type: "TXT", TTL: 60, Value: "fuzz"}})
	if err != nil {
		f.Fatal(err)
	}
	sp, err := pkarr.Sign(priv, packet, 1)
	if err != nil {
		f.Fatal(err)
	}
	pkarrBody := sp.Body()
	const (
		self = "127.0.0.1:8080" // the listener's address
		js   = "application/json"
	)
	for _, s := range []struct{ method, path, body, host, origin, site, ctype string }{
		{"GET", "/v1/ping", "", self, "", "", ""},
		{"POST", "/v1/immutable", `{"value":"hello"}`, self, "", "", js},
		{"POST", "/v1/immutable", `{"v":"353a68656c6c6f"}`, "localhost:8080", "", "", js},
		{"GET", "/v1/immutable/" + hex40, "", self, "", "", ""},
		{"GET", "/v1/mutable/" + strings.Repeat("cd", 32) + "?salt=x", "", self, "", "", ""},
		{"PUT", "/v1/mutable/" + strings.Repeat("cd", 32), `{"value":"x","seq":1,"sig":"` + strings.Repeat("00", 64) + `"}`, self, "", "", js},
		{"GET", "/v1/peers/" + hex40 + "?stream=1", "", self, "", "", ""},
		{"POST", "/v1/announce/" + hex40 + "?port=6881", "", self, "", "", js},
		{"GET", "/v1/nodes/" + hex40, "", self, "", "", ""},
		{"GET", "/v1/openapi.json", "", self, "", "", ""},
		{"GET", "/", "", self, "", "", ""},
		// the web-page checks
		{"GET", "/v1/status", "", "evil.example:8080", "", "", ""},
		{"GET", "/v1/status", "", "[::1]:8080", "", "", ""},
		{"POST", "/v1/immutable", `{"value":"csrf"}`, self, "http://127.0.0.2:8080", "cross-site", "text/plain"},
		{"POST", "/v1/immutable", `{"value":"csrf"}`, self, "", "", "text/plain;charset=UTF-8"},
		{"POST", "/v1/immutable", `{"value":"csrf"}`, self, "null", "cross-site", js},
		{"POST", "/v1/announce/" + hex40 + "?port=1", "", self, "", "same-site", js},
		{"POST", "/v1/immutable", `{"value":"ok"}`, self, "http://" + self, "same-origin", js},
		{"OPTIONS", "/v1/immutable", "", self, "https://evil.example", "cross-site", ""},
		{"GET", "/", "", self, "", "cross-site", ""},
		// the Pkarr relay (crossOrigin routes)
		{"GET", "/pkarr/" + z32Key, "", self, "https://app.example", "cross-site", ""},
		{"OPTIONS", "/pkarr/" + z32Key, "", self, "https://app.example", "cross-site", ""},
		{"PUT", "/pkarr/" + z32Key, string(pkarrBody), self, "https://app.example", "cross-site", "application/pkarr.org/relays#payload"},
		{"PUT", "/pkarr/" + strings.Repeat("cd", 32), strings.Repeat("\x00", 80), self, "", "", ""},
	} {
		f.Add(s.method, s.path, []byte(s.body), s.host, s.origin, s.site, s.ctype)
	}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	methods := map[string]bool{"GET": true, "POST": true, "PUT": true, "DELETE": true, "HEAD": true, "OPTIONS": true}
	f.Fuzz(func(t *testing.T, method, path string, body []byte, host, origin, site, ctype string) {
		if !methods[method] || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") {
			return
		}
		req, err := http.NewRequest(method, "http://gateway"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Host = host
		for k, v := range map[string]string{"Origin": origin, "Sec-Fetch-Site": site, "Content-Type": ctype} {
			if v != "" {
				req.Header.Set(k, v)
			}
		}
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, local))
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 204, 301, 304, 307, 308, 400, 403, 404, 405, 408, 409, 412, 413, 415, 421, 429, 502, 503, 504:
		default:
			t.Fatalf("%s %s: status %d\n%s", method, path, rec.Code, rec.Body)
		}
		relay := strings.HasPrefix(req.URL.Path, "/pkarr/") // the crossOrigin routes
		for k := range rec.Header() {
			if !relay && strings.HasPrefix(k, "Access-Control-") {
				t.Fatalf("%s %s: answer carries %s", method, path, k)
			}
		}
		refused := rec.Code == 403 || rec.Code == 415 || rec.Code == 421
		if method != "GET" && method != "HEAD" && method != "OPTIONS" && !refused && rec.Code != 404 && rec.Code != 405 && !strings.HasPrefix(rec.Header().Get("Location"), "/") {
			h, _, _ := strings.Cut(strings.ToLower(strings.TrimSuffix(host, ".")), ":")
			json := strings.HasPrefix(strings.ToLower(strings.TrimSpace(ctype)), "application/json")
			if (h != "127.0.0.1" && h != "localhost") || (!relay && !json) {
				t.Fatalf("%s %s (Host %q, Content-Type %q): status %d, want it refused", method, path, host, ctype, rec.Code)
			}
		}
		redirect := rec.Code == 301 || rec.Code == 307 || rec.Code == 308 // ServeMux cleaning the path
		if relay && !redirect && rec.Code != 421 && rec.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s %s: status %d without the relay's CORS header", method, path, rec.Code)
		}
		if strings.HasPrefix(req.URL.Path, "/v1/") && !redirect && rec.Code != 405 && rec.Code != 404 && method != "HEAD" && rec.Body.Len() > 0 &&
			!strings.Contains(rec.Header().Get("Content-Type"), "json") {
			t.Fatalf("%s %s: status %d with Content-Type %q", method, path, rec.Code, rec.Header().Get("Content-Type"))
		}
		if rec.Code >= 400 && strings.Contains(rec.Header().Get("Content-Type"), "json") {
			var e map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("%s %s: error body is not JSON: %q", method, path, rec.Body)
			}
		}
	})
}
