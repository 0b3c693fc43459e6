package gateway

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/internal/pkarr"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

// pkarrCall sends one request with optional headers and returns the
// answer with its body read.
func pkarrCall(t *testing.T, method, url string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// checkCORS fails unless resp carries the relay's CORS headers.
func checkCORS(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("%s: Access-Control-Allow-Origin %q, want *", what, got)
	}
	if got := resp.Header.Get("Access-Control-Allow-Methods"); got != "GET, PUT, OPTIONS" {
		t.Errorf("%s: Access-Control-Allow-Methods %q, want GET, PUT, OPTIONS", what, got)
	}
}

// testPacket signs a packet of one TXT record under priv at seq.
func testPacket(t *testing.T, priv ed25519.PrivateKey, txt string, seq int64) pkarr.SignedPacket {
	t.Helper()
	r, err := pkarr.ParseRecord("_test TXT " + txt)
	if err != nil {
		t.Fatal(err)
	}
	pub := priv.Public().(ed25519.PublicKey)
	packet, err := pkarr.EncodePacket(pkarr.KeyString(pub), []pkarr.Record{r})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pkarr.Sign(priv, packet, seq)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPkarrRelay: a packet PUT through the relay is served by GET (from
// the network) with the same bytes and Last-Modified from its seq; every
// bad input gets its documented status, and every answer carries the CORS
// headers.
func TestPkarrRelay(t *testing.T) {
	nodes := startNet(t, 4)
	g, ts := serve(t, nodes[0], nil)
	_, ts2 := serve(t, nodes[2], nil) // a second relay, to read through
	priv, _ := testKey()
	pub := priv.Public().(ed25519.PublicKey)
	key := pkarr.KeyString(pub)
	url := ts.URL + "/pkarr/" + key
	t0 := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	p1 := testPacket(t, priv, "first", pkarr.SeqAt(t0))

	resp, b := pkarrCall(t, "PUT", url, p1.Body(), nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", resp.StatusCode, b)
	}
	checkCORS(t, "PUT", resp)
	for _, base := range []string{ts.URL, ts2.URL} {
		resp, b = pkarrCall(t, "GET", base+"/pkarr/"+key, nil, nil)
		if resp.StatusCode != http.StatusOK || string(b) != string(p1.Body()) {
			t.Fatalf("GET %s: %d, body equal %v: %s", base, resp.StatusCode, string(b) == string(p1.Body()), b)
		}
		checkCORS(t, "GET", resp)
		if lm := resp.Header.Get("Last-Modified"); lm != t0.Format(http.TimeFormat) {
			t.Errorf("Last-Modified %q, want %q", lm, t0.Format(http.TimeFormat))
		}
	}
	// the hex form of the key names the same packet.
	if resp, _ := pkarrCall(t, "GET", ts.URL+"/pkarr/"+hex.EncodeToString(pub), nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET by hex key: %d", resp.StatusCode)
	}
	for _, tt := range []struct {
		since time.Time
		want  int
	}{
		{t0, http.StatusNotModified},
		{t0.Add(time.Hour), http.StatusNotModified},
		{t0.Add(-time.Second), http.StatusOK},
	} {
		resp, _ := pkarrCall(t, "GET", url, nil, map[string]string{"If-Modified-Since": tt.since.Format(http.TimeFormat)})
		if resp.StatusCode != tt.want {
			t.Errorf("If-Modified-Since %v: %d, want %d", tt.since, resp.StatusCode, tt.want)
		}
		checkCORS(t, "conditional GET", resp)
	}

	p2 := testPacket(t, priv, "second", pkarr.SeqAt(t0.Add(time.Minute)))
	other := testPacket(t, priv, "other", p1.Seq)
	wrongSig := p2.Body()
	wrongSig[0] ^= 1
	bigPacket, _ := pkarr.Sign(priv, make([]byte, 900), p2.Seq) // fits
	tooBig := append(bigPacket.Body(), make([]byte, pkarr.MaxBodyLen)...)
	dhtTooBig := append(append([]byte(nil), p2.Body()[:pkarr.HeaderLen]...), make([]byte, 998)...)
	const badKey = "o4dksfbqk85ogzdb5osziw6befigbuxmuxkuxq8434q89uj56uyl" // 'l' is not z-base-32
	tests := []struct {
		name, method, path string
		body               []byte
		hdr                map[string]string
		want               int
	}{
		{"same packet again", "PUT", key, p1.Body(), nil, http.StatusNoContent},
		{"same seq, other packet", "PUT", key, other.Body(), nil, http.StatusConflict},
		{"older seq", "PUT", key, testPacket(t, priv, "old", p1.Seq-1).Body(), nil, http.StatusConflict},
		{"cas mismatch", "PUT", key, p2.Body(), map[string]string{"If-Match": "12345"}, http.StatusPreconditionFailed},
		{"cas not a number", "PUT", key, p2.Body(), map[string]string{"If-Match": "abc"}, http.StatusBadRequest},
		{"bad key", "PUT", badKey, p2.Body(), nil, http.StatusBadRequest},
		{"short key", "GET", key[:51], nil, nil, http.StatusBadRequest},
		{"bad key get", "GET", badKey, nil, nil, http.StatusBadRequest},
		{"bad signature", "PUT", key, wrongSig, nil, http.StatusBadRequest},
		{"other key's packet", "PUT", pkarr.KeyString(testPacket(t, ed25519.NewKeyFromSeed(make([]byte, 32)), "x", 1).PublicKey), p2.Body(), nil, http.StatusBadRequest},
		{"empty body", "PUT", key, []byte{}, nil, http.StatusBadRequest},
		{"short body", "PUT", key, p2.Body()[:71], nil, http.StatusBadRequest},
		{"body over 1072 bytes", "PUT", key, tooBig, nil, http.StatusRequestEntityTooLarge},
		{"packet over BEP 44's 1000 bytes", "PUT", key, dhtTooBig, nil, http.StatusRequestEntityTooLarge},
		{"options", "OPTIONS", key, nil, nil, http.StatusNoContent},
		{"options, bad key", "OPTIONS", badKey, nil, nil, http.StatusNoContent},
		{"delete", "DELETE", key, nil, nil, http.StatusMethodNotAllowed},
		{"no key", "GET", "", nil, nil, http.StatusNotFound},
		{"unknown key", "GET", pkarr.KeyString(ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)), nil, nil, http.StatusNotFound},
		{"cas match", "PUT", key, p2.Body(), map[string]string{"If-Match": `"` + strconv.FormatInt(p1.Seq, 10) + `"`}, http.StatusNoContent},
	}
	for _, tt := range tests {
		resp, b := pkarrCall(t, tt.method, ts.URL+"/pkarr/"+tt.path, tt.body, tt.hdr)
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %s /pkarr/%s: %d, want %d: %s", tt.name, tt.method, tt.path, resp.StatusCode, tt.want, b)
		}
		checkCORS(t, tt.name, resp)
	}
	resp, b = pkarrCall(t, "GET", ts2.URL+"/pkarr/"+key, nil, nil)
	if resp.StatusCode != http.StatusOK || string(b) != string(p2.Body()) {
		t.Errorf("GET after the cas put: %d, want the second packet: %x", resp.StatusCode, b)
	}
	for _, c := range []struct {
		route, code string
		min         float64
	}{{"pkarr_put", "204", 3}, {"pkarr_put", "409", 2}, {"pkarr_put", "400", 6}, {"pkarr_put", "413", 2}, {"pkarr_get", "200", 2}, {"pkarr_get", "304", 2}, {"pkarr_options", "204", 2}} {
		if got := testutil.ToFloat64(g.m.requests.WithLabelValues(c.route, c.code)); got < c.min {
			t.Errorf("dhtd_gateway_requests_total{route=%q,code=%q} = %v, want >= %v", c.route, c.code, got, c.min)
		}
	}
}

// TestPkarrRelayServesOwnStore: GET serves a packet that only the
// gateway's own node stores (a lookup never asks the node running it);
// the /v1 mutable route, which asks only the network, does not find it.
func TestPkarrRelayServesOwnStore(t *testing.T) {
	cfg := node.LoopbackConfig()
	a, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	cfg = node.LoopbackConfig()
	cfg.Bootstrap = []string{a.Addr().String()}
	b, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := b.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	priv, _ := testKey()
	p := testPacket(t, priv, "local", 42)
	if _, err := b.PutSigned(ctx, node.SignedPut{Key: p.PublicKey, Value: p.Value(), Seq: p.Seq, Sig: p.Sig}); err != nil {
		t.Fatalf("put through b, stored on a: %v", err)
	}
	if _, ok := a.Admin().StoredItem(storage.MutableTarget(p.PublicKey, nil)); !ok {
		t.Fatal("a does not hold the item b put")
	}
	_, ts := serve(t, a, nil)
	resp, body := pkarrCall(t, "GET", ts.URL+"/pkarr/"+pkarr.KeyString(p.PublicKey), nil, nil)
	if resp.StatusCode != http.StatusOK || string(body) != string(p.Body()) {
		t.Fatalf("GET from the gateway of the node holding it: %d %s", resp.StatusCode, body)
	}
	// The other routes share the lookup, own store included.
	if code, body := call(t, "GET", ts.URL+"/v1/mutable/"+hex.EncodeToString(p.PublicKey), ""); code != http.StatusOK {
		t.Errorf("GET /v1/mutable: %d %s; want 200 (the node's own store counts)", code, body)
	}
}

// TestPkarrRelayOlderSeqPartlyStored: a PUT whose seq is older than a
// copy on the network answers 409 even when a storer that lacked the key
// took it.
func TestPkarrRelayOlderSeqPartlyStored(t *testing.T) {
	start := func(boot ...string) *node.Node {
		cfg := node.LoopbackConfig()
		cfg.Bootstrap = boot
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	a := start()
	b := start(a.Addr().String())
	if err := b.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	priv, _ := testKey()
	newer := testPacket(t, priv, "newer", 42)
	if res, err := b.PutSigned(ctx, node.SignedPut{Key: newer.PublicKey, Value: newer.Value(), Seq: newer.Seq, Sig: newer.Sig}); err != nil || res.Stored != 1 {
		t.Fatalf("put seq 42 (stored on a only): %+v %v", res.StoredAt, err)
	}
	c := start(a.Addr().String()) // joins after: holds nothing
	if err := c.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	_, ts := serve(t, b, nil)
	older := testPacket(t, priv, "older", 41)
	resp, body := pkarrCall(t, "PUT", ts.URL+"/pkarr/"+pkarr.KeyString(older.PublicKey), older.Body(), nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "seq 42") {
		t.Fatalf("PUT seq 41 over seq 42: %d %s, want 409 naming seq 42", resp.StatusCode, body)
	}
	if it, ok := c.Admin().StoredItem(storage.MutableTarget(older.PublicKey, nil)); !ok || it.Seq != 41 {
		t.Fatalf("c holds seq %d (%v): want it to have taken the older packet, the case this test is about", it.Seq, ok)
	}
	resp, body = pkarrCall(t, "GET", ts.URL+"/pkarr/"+pkarr.KeyString(older.PublicKey), nil, nil)
	if resp.StatusCode != http.StatusOK || string(body) != string(newer.Body()) {
		t.Fatalf("GET after: %d, want the seq 42 packet", resp.StatusCode)
	}
}

// TestPkarrRateLimitCORS: a refusal by the rate limit carries the CORS
// headers, so a browser can read it.
func TestPkarrRateLimitCORS(t *testing.T) {
	nodes := startNet(t, 1)
	now := time.Unix(1e9, 0)
	_, ts := serve(t, nodes[0], func(c *Config) { c.RatePerSecond, c.RateBurst, c.Now = 1, 1, func() time.Time { return now } })
	url := ts.URL + "/pkarr/" + pkarr.KeyString(make([]byte, 32))
	if resp, _ := pkarrCall(t, "OPTIONS", url, nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	resp, b := pkarrCall(t, "OPTIONS", url, nil, nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second request: %d, want 429: %s", resp.StatusCode, b)
	}
	checkCORS(t, "429", resp)
}
