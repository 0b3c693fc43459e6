package gateway

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/pkarr"
)

// FuzzGatewayRequest: whatever method, path and body a client sends, the
// gateway answers with a status it documents and, under /v1/, a JSON body;
// nothing panics. The node has no peers, so every lookup fails at once and
// the fuzzer exercises parsing and validation.
func FuzzGatewayRequest(f *testing.F) {
	n, err := node.New(node.TestConfig())
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
	for _, s := range []struct{ method, path, body string }{
		{"GET", "/v1/ping", ""},
		{"POST", "/v1/immutable", `{"value":"hello"}`},
		{"POST", "/v1/immutable", `{"v":"353a68656c6c6f"}`},
		{"GET", "/v1/immutable/" + hex40, ""},
		{"GET", "/v1/mutable/" + strings.Repeat("cd", 32) + "?salt=x", ""},
		{"PUT", "/v1/mutable/" + strings.Repeat("cd", 32), `{"value":"x","seq":1,"sig":"` + strings.Repeat("00", 64) + `"}`},
		{"GET", "/v1/peers/" + hex40 + "?stream=1", ""},
		{"POST", "/v1/announce/" + hex40 + "?port=6881", ""},
		{"GET", "/v1/nodes/" + hex40, ""},
		{"GET", "/v1/openapi.json", ""},
		{"GET", "/", ""},
		{"GET", "/pkarr/" + z32Key, ""},
		{"OPTIONS", "/pkarr/" + z32Key, ""},
		{"PUT", "/pkarr/" + z32Key, string(pkarrBody)},
		{"PUT", "/pkarr/" + strings.Repeat("cd", 32), strings.Repeat("\x00", 80)},
	} {
		f.Add(s.method, s.path, []byte(s.body))
	}
	methods := map[string]bool{"GET": true, "POST": true, "PUT": true, "DELETE": true, "HEAD": true, "OPTIONS": true}
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		if !methods[method] || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") {
			return
		}
		req, err := http.NewRequest(method, "http://gateway"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 204, 301, 304, 307, 308, 400, 404, 405, 409, 412, 413, 429, 502, 503, 504:
		default:
			t.Fatalf("%s %s: status %d\n%s", method, path, rec.Code, rec.Body)
		}
		redirect := rec.Code == 301 || rec.Code == 307 || rec.Code == 308 // ServeMux cleaning the path
		if strings.HasPrefix(req.URL.Path, "/pkarr/") && !redirect && rec.Header().Get("Access-Control-Allow-Origin") != "*" {
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
