package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

// testWait bounds every wait of these tests.
const testWait = 20 * time.Second

// startNet starts a seed and size nodes on 127.0.0.1 that bootstrap from
// it (twice, so the tables settle) and returns them, seed first.
func startNet(t *testing.T, size int) []*node.Node {
	t.Helper()
	start := func(boot []string) *node.Node {
		cfg := node.LoopbackConfig()
		cfg.Bootstrap = boot
		n, err := node.New(cfg)
		if err != nil {
			t.Fatalf("start node: %v", err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	seed := start(nil)
	nodes := []*node.Node{seed}
	for i := 0; i < size; i++ {
		nodes = append(nodes, start([]string{seed.Addr().String()}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	for round := 0; round < 2; round++ {
		var wg sync.WaitGroup
		for _, n := range nodes[1:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := n.Bootstrap(ctx); err != nil {
					t.Errorf("bootstrap: %v", err)
				}
			}()
		}
		wg.Wait()
	}
	// The seed learns the others from their queries, through confirmation
	// pings of its own that may still be out when the bootstraps end (on a
	// busy machine, its table was found empty). An answer reaches the
	// table before Ping returns, so once each is pinged the seed knows
	// them all.
	for _, n := range nodes[1:] {
		if _, _, err := seed.Ping(ctx, n.Addr()); err != nil {
			t.Fatalf("seed ping %s: %v", n.Addr(), err)
		}
	}
	if good := seed.Stats().Good; good < size {
		t.Fatalf("seed knows %d good nodes after pinging %d", good, size)
	}
	return nodes
}

// serve starts a gateway for n on an httptest server; mod adjusts its
// config (the rate limit is off unless mod sets one).
func serve(t *testing.T, n *node.Node, mod func(*Config)) (*Gateway, *httptest.Server) {
	t.Helper()
	cfg := Config{Registry: prometheus.NewRegistry(), RatePerSecond: 1e9, RateBurst: 1e9}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(n, cfg)
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	ts := httptest.NewServer(g)
	t.Cleanup(ts.Close)
	return g, ts
}

var testClient = &http.Client{Timeout: testWait}

// call sends one request, as a client that is not a browser does (writes
// say Content-Type: application/json), and returns the status and body.
func call(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if method != http.MethodGet && method != http.MethodHead {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// callJSON is call, checking the status and decoding the JSON answer.
func callJSON(t *testing.T, method, url, body string, want int, out any) {
	t.Helper()
	code, b := call(t, method, url, body)
	if code != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, code, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v\n%s", method, url, err, b)
		}
	}
}

// testKey is a fixed Ed25519 key for mutable items.
func testKey() (ed25519.PrivateKey, string) {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return priv, hex.EncodeToString(priv.Public().(ed25519.PublicKey))
}

// signed returns the JSON body of a mutable put of the string value.
func signed(priv ed25519.PrivateKey, salt, value string, seq int64, cas *int64) string {
	v := []byte(fmt.Sprintf("%d:%s", len(value), value))
	m := map[string]any{"v": hex.EncodeToString(v), "seq": seq, "sig": hex.EncodeToString(storage.SignMutable(priv, []byte(salt), seq, v))}
	if cas != nil {
		m["cas"] = *cas
	}
	b, _ := json.Marshal(m)
	return string(b)
}

type itemAnswer struct {
	Target string  `json:"target"`
	V      string  `json:"v"`
	Value  *string `json:"value"`
	PubKey string  `json:"pubkey"`
	Seq    *int64  `json:"seq"`
	Sig    string  `json:"sig"`
	Count  int     `json:"count"`
}

type putAnswer struct {
	Target   string    `json:"target"`
	Seq      *int64    `json:"seq"`
	StoredAt []NodeRef `json:"stored_at"`
	Sent     int       `json:"sent"`
}

func TestGatewayImmutable(t *testing.T) {
	nodes := startNet(t, 4)
	_, ts := serve(t, nodes[0], nil)

	tests := []struct {
		name, body string
		wantV      string // bencoding
	}{
		{"value", `{"value": "hello gateway"}`, "13:hello gateway"},
		{"v hex", fmt.Sprintf(`{"v": %q}`, hex.EncodeToString([]byte("li1ei2ee"))), "li1ei2ee"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var put putAnswer
			callJSON(t, "POST", ts.URL+"/v1/immutable", tt.body, http.StatusOK, &put)
			want := storage.ImmutableTarget([]byte(tt.wantV)).String()
			if put.Target != want {
				t.Fatalf("target %s, want SHA-1(%q) = %s", put.Target, tt.wantV, want)
			}
			if len(put.StoredAt) == 0 || put.Sent < len(put.StoredAt) {
				t.Fatalf("stored_at %v of %d sent: want at least one storer", put.StoredAt, put.Sent)
			}
			// the storers really hold it: ask each one directly.
			for _, s := range put.StoredAt {
				if _, err := krpc.ParseID(s.ID); err != nil || s.Addr == "" {
					t.Fatalf("stored_at entry %+v: bad id or addr", s)
				}
			}
			var got itemAnswer
			callJSON(t, "GET", ts.URL+"/v1/immutable/"+put.Target, "", http.StatusOK, &got)
			v, err := hex.DecodeString(got.V)
			if err != nil || string(v) != tt.wantV {
				t.Fatalf("got v %q (%v), want %q", v, err, tt.wantV)
			}
			if got.Seq != nil || got.Sig != "" || got.Count < 1 {
				t.Fatalf("immutable answer %+v: want no seq or sig and count >= 1", got)
			}
		})
	}
	var got itemAnswer
	callJSON(t, "GET", ts.URL+"/v1/immutable/"+storage.ImmutableTarget([]byte("13:hello gateway")).String(), "", http.StatusOK, &got)
	if got.Value == nil || *got.Value != "hello gateway" {
		t.Fatalf("value %v, want \"hello gateway\"", got.Value)
	}
	code, b := call(t, "GET", ts.URL+"/v1/immutable/"+strings.Repeat("ab", 20), "")
	if code != http.StatusNotFound {
		t.Fatalf("unknown target: status %d, want 404: %s", code, b)
	}
}

func TestGatewayMutable(t *testing.T) {
	nodes := startNet(t, 4)
	_, ts := serve(t, nodes[0], nil)
	priv, pub := testKey()
	url := ts.URL + "/v1/mutable/" + pub + "?salt=s1"

	code, b := call(t, "GET", url, "")
	if code != http.StatusNotFound {
		t.Fatalf("before any put: status %d, want 404: %s", code, b)
	}
	var put putAnswer
	callJSON(t, "PUT", url, signed(priv, "s1", "one", 1, nil), http.StatusOK, &put)
	if want := storage.MutableTarget(priv.Public().(ed25519.PublicKey), []byte("s1")).String(); put.Target != want || put.Seq == nil || *put.Seq != 1 || len(put.StoredAt) == 0 {
		t.Fatalf("put answer %+v: want target %s, seq 1, storers", put, want)
	}
	cas1 := int64(1)
	callJSON(t, "PUT", url, signed(priv, "s1", "two", 2, &cas1), http.StatusOK, &put)

	conflicts := []struct {
		name string
		body string
		want int
	}{
		{"seq lower than stored", signed(priv, "s1", "zero", 0, nil), http.StatusConflict},
		{"cas mismatch", signed(priv, "s1", "three", 3, &cas1), http.StatusConflict}, // stored seq is 2, cas 1
		{"bad signature", strings.Replace(signed(priv, "s1", "four", 4, nil), `"seq":4`, `"seq":5`, 1), http.StatusBadRequest},
		{"value too large", signed(priv, "s1", strings.Repeat("x", storage.MaxValueLen), 6, nil), http.StatusRequestEntityTooLarge},
		{"signed for another salt", signed(priv, "other", "seven", 7, nil), http.StatusBadRequest},
	}
	for _, tt := range conflicts {
		t.Run(tt.name, func(t *testing.T) {
			code, b := call(t, "PUT", url, tt.body)
			if code != tt.want {
				t.Fatalf("status %d, want %d: %s", code, tt.want, b)
			}
			var e APIError
			if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" || e.Status != code {
				t.Fatalf("error body %s: want {error, status}", b)
			}
		})
	}
	// none of the refused records reached the network: seq 2 is still the newest.
	var got itemAnswer
	callJSON(t, "GET", url, "", http.StatusOK, &got)
	v, _ := hex.DecodeString(got.V)
	sig, _ := hex.DecodeString(got.Sig)
	if got.Seq == nil || *got.Seq != 2 || string(v) != "3:two" || got.PubKey != pub {
		t.Fatalf("after the refused puts: %+v, want seq 2 value \"two\"", got)
	}
	if !storage.VerifyMutable(priv.Public().(ed25519.PublicKey), []byte("s1"), 2, v, sig) {
		t.Fatalf("answered signature does not verify")
	}
	// without the salt it is another item.
	if code, b := call(t, "GET", ts.URL+"/v1/mutable/"+pub, ""); code != http.StatusNotFound {
		t.Fatalf("no salt: status %d, want 404: %s", code, b)
	}
}

func TestGatewayBadInput(t *testing.T) {
	nodes := startNet(t, 2)
	_, ts := serve(t, nodes[0], func(c *Config) { c.MaxBodyBytes = 4096 })
	priv, pub := testKey()
	good := signed(priv, "", "x", 1, nil)
	id39 := strings.Repeat("a", 39)
	tests := []struct {
		name, method, path, body string
		want                     int
		errHas                   string
	}{
		{"immutable target short", "GET", "/v1/immutable/" + id39, "", 400, "target: want 40 hex characters, got 39"},
		{"immutable target not hex", "GET", "/v1/immutable/" + strings.Repeat("zz", 20), "", 400, "target: not hex"},
		{"immutable empty body", "POST", "/v1/immutable", "", 400, "empty"},
		{"immutable not JSON", "POST", "/v1/immutable", "hello", 400, "request body"},
		{"immutable missing value", "POST", "/v1/immutable", `{}`, 400, "missing field: v"},
		{"immutable both v and value", "POST", "/v1/immutable", `{"v":"313a61","value":"a"}`, 400, "not both"},
		{"immutable v not hex", "POST", "/v1/immutable", `{"v":"xyz"}`, 400, "v: not hex"},
		{"immutable v not bencode", "POST", "/v1/immutable", `{"v":"` + hex.EncodeToString([]byte("i03e")) + `"}`, 400, "non-canonical"},
		{"immutable v trailing bytes", "POST", "/v1/immutable", `{"v":"` + hex.EncodeToString([]byte("1:ax")) + `"}`, 400, "trailing"},
		{"immutable unknown field", "POST", "/v1/immutable", `{"value":"a","vv":1}`, 400, "unknown field"},
		{"immutable with seq", "POST", "/v1/immutable", `{"value":"a","seq":1}`, 400, "mutable"},
		{"immutable trailing JSON", "POST", "/v1/immutable", `{"value":"a"} {}`, 400, "trailing data"},
		{"immutable body too large", "POST", "/v1/immutable", `{"value":"` + strings.Repeat("a", 5000) + `"}`, 400, "larger than 4096 bytes"},
		{"immutable value too large", "POST", "/v1/immutable", `{"value":"` + strings.Repeat("a", 1000) + `"}`, 413, "at most 1000"},
		{"mutable pubkey short", "GET", "/v1/mutable/" + pub[:62], "", 400, "pubkey: want 64 hex characters, got 62"},
		{"mutable pubkey not hex", "PUT", "/v1/mutable/" + strings.Repeat("g", 64), good, 400, "pubkey: not hex"},
		{"mutable salt too long", "GET", "/v1/mutable/" + pub + "?salt=" + strings.Repeat("s", 65), "", 400, "salt: 65 bytes"},
		{"mutable missing seq", "PUT", "/v1/mutable/" + pub, `{"value":"x","sig":"` + strings.Repeat("00", 64) + `"}`, 400, "missing field: seq"},
		{"mutable missing sig", "PUT", "/v1/mutable/" + pub, `{"value":"x","seq":1}`, 400, "missing field: sig"},
		{"mutable missing value", "PUT", "/v1/mutable/" + pub, `{"seq":1,"sig":"` + strings.Repeat("00", 64) + `"}`, 400, "missing field: v"},
		{"mutable sig short", "PUT", "/v1/mutable/" + pub, `{"value":"x","seq":1,"sig":"abcd"}`, 400, "sig: want 128 hex characters, got 4"},
		{"mutable negative seq", "PUT", "/v1/mutable/" + pub, `{"value":"x","seq":-1,"sig":"` + strings.Repeat("00", 64) + `"}`, 400, "negative"},
		{"mutable bad signature", "PUT", "/v1/mutable/" + pub, `{"value":"x","seq":1,"sig":"` + strings.Repeat("00", 64) + `"}`, 400, "not a valid signature"},
		{"mutable body too large", "PUT", "/v1/mutable/" + pub, `{"value":"` + strings.Repeat("a", 5000) + `","seq":1,"sig":"00"}`, 400, "larger than 4096 bytes"},
		{"mutable seq not a number", "PUT", "/v1/mutable/" + pub, `{"value":"x","seq":"1","sig":"00"}`, 400, "seq"},
		{"peers infohash short", "GET", "/v1/peers/" + id39, "", 400, "infohash: want 40 hex characters"},
		{"peers bad stream", "GET", "/v1/peers/" + strings.Repeat("ab", 20) + "?stream=yes", "", 400, "stream"},
		{"announce infohash long", "POST", "/v1/announce/" + id39 + "aa", "", 400, "infohash: want 40 hex characters, got 41"},
		{"announce missing port", "POST", "/v1/announce/" + strings.Repeat("ab", 20), "", 400, "port: want 1..65535"},
		{"announce port zero", "POST", "/v1/announce/" + strings.Repeat("ab", 20) + "?port=0", "", 400, "port"},
		{"announce port too big", "POST", "/v1/announce/" + strings.Repeat("ab", 20) + "?port=65536", "", 400, "port"},
		{"nodes target not hex", "GET", "/v1/nodes/" + strings.Repeat("x", 40), "", 400, "target: not hex"},
		{"unknown endpoint", "GET", "/v1/nope", "", 404, "no endpoint"},
		{"wrong method", "DELETE", "/v1/immutable/" + strings.Repeat("ab", 20), "", 405, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, b := call(t, tt.method, ts.URL+tt.path, tt.body)
			if code != tt.want {
				t.Fatalf("status %d, want %d: %s", code, tt.want, b)
			}
			var e APIError
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("error body is not JSON: %v: %s", err, b)
			}
			if e.Status != tt.want || !strings.Contains(e.Error.Message, tt.errHas) {
				t.Fatalf("error %q (status %d), want one containing %q", e.Error.Message, e.Status, tt.errHas)
			}
		})
	}
	// nothing a bad request sent was stored anywhere.
	for _, n := range nodes {
		if is := n.Stats().Items; is.Immutable+is.Mutable != 0 {
			t.Fatalf("node %s stored %d items after bad requests only", n.ID(), is.Immutable+is.Mutable)
		}
	}
}

func TestGatewayPeersAndAnnounce(t *testing.T) {
	nodes := startNet(t, 4)
	_, ts := serve(t, nodes[0], nil)
	ih := strings.Repeat("5a", 20)

	var ann announceOut
	callJSON(t, "POST", ts.URL+"/v1/announce/"+ih+"?port=6999", "", http.StatusOK, &ann)
	if ann.Accepted == 0 || ann.Port != 6999 || ann.InfoHash != ih {
		t.Fatalf("announce answer %+v: want accepted > 0 on port 6999", ann)
	}
	want := "127.0.0.1:6999"
	var peers peersOut
	callJSON(t, "GET", ts.URL+"/v1/peers/"+ih, "", http.StatusOK, &peers)
	if !contains(peers.Peers, want) {
		t.Fatalf("peers %v: want %s", peers.Peers, want)
	}

	resp, err := testClient.Get(ts.URL + "/v1/peers/" + ih + "?stream=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("stream: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var streamed []string
	var end StreamEnd
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Peer string `json:"peer"`
			Done bool   `json:"done"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("stream line %q: %v", sc.Text(), err)
		}
		if line.Done {
			_ = json.Unmarshal(sc.Bytes(), &end)
			break
		}
		streamed = append(streamed, line.Peer)
	}
	if !contains(streamed, want) || !end.Done || end.Peers != len(streamed) || end.Error != nil {
		t.Fatalf("stream: peers %v, end %+v: want %s and a clean end line counting them", streamed, end, want)
	}
	if sc.Scan() {
		t.Fatalf("data after the end line: %q", sc.Text())
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestGatewayNodesAndPing(t *testing.T) {
	nodes := startNet(t, 4)
	_, ts := serve(t, nodes[0], nil)
	var ping pingOut
	callJSON(t, "GET", ts.URL+"/v1/ping", "", http.StatusOK, &ping)
	if ping.ID != nodes[0].ID().String() || ping.Addr != nodes[0].Addr().String() || ping.Version != node.Version {
		t.Fatalf("ping %+v: want node %s at %s", ping, nodes[0].ID(), nodes[0].Addr())
	}
	target := nodes[3].ID()
	var ans nodesAnswer
	callJSON(t, "GET", ts.URL+"/v1/nodes/"+target.String(), "", http.StatusOK, &ans)
	if len(ans.Nodes) == 0 || ans.Nodes[0].ID != target.String() || ans.Nodes[0].Addr != nodes[3].Addr().String() {
		t.Fatalf("closest to node 3's id: %+v, want node 3 (%s) first", ans.Nodes, nodes[3].Addr())
	}
	if ans.Queried == 0 {
		t.Fatalf("queried 0")
	}
}

// blackhole is a UDP socket that reads queries and never answers; packets
// delivers what it reads.
func blackhole(t *testing.T) (net.PacketConn, <-chan []byte) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	packets := make(chan []byte, 64)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				close(packets)
				return
			}
			select {
			case packets <- append([]byte(nil), buf[:n]...):
			default:
			}
		}
	}()
	return pc, packets
}

// silentNode starts a node whose only contact is a blackhole, so every
// lookup it runs waits for queries that are never answered.
func silentNode(t *testing.T, queryTimeout time.Duration) (*node.Node, <-chan []byte) {
	t.Helper()
	bh, packets := blackhole(t)
	cfg := node.LoopbackConfig()
	cfg.QueryTimeout = queryTimeout
	cfg.Bootstrap = []string{bh.LocalAddr().String()}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	// Bootstrap records the bootstrap address for later lookups; it cannot
	// succeed.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := n.Bootstrap(ctx); err == nil {
		t.Fatal("bootstrap through a blackhole succeeded")
	}
	return n, packets
}

func TestGatewayBusy(t *testing.T) {
	n, packets := silentNode(t, 2*time.Second)
	g, ts := serve(t, n, func(c *Config) { c.MaxLookups = 1 })
	target := strings.Repeat("7e", 20)
	first := make(chan int, 1)
	go func() {
		resp, err := testClient.Get(ts.URL + "/v1/nodes/" + target)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	// the first request holds the only slot once its query reaches the blackhole.
	raw, _ := hex.DecodeString(target)
	timeout := time.After(testWait)
	for seen := false; !seen; {
		select {
		case p := <-packets:
			seen = bytes.Contains(p, raw)
		case <-timeout:
			t.Fatal("the first lookup never queried the blackhole")
		}
	}
	for _, path := range []string{"/v1/immutable/" + target, "/v1/nodes/" + target, "/v1/peers/" + target} {
		code, b := call(t, "GET", ts.URL+path, "")
		if code != http.StatusServiceUnavailable || !bytes.Contains(b, []byte("busy")) {
			t.Fatalf("%s while the slot is held: status %d, want 503: %s", path, code, b)
		}
	}
	// a request that needs no lookup is still served.
	if code, b := call(t, "GET", ts.URL+"/v1/ping", ""); code != http.StatusOK {
		t.Fatalf("ping while busy: %d %s", code, b)
	}
	if got := testutil.ToFloat64(g.m.lookupsRejected); got != 3 {
		t.Fatalf("lookups_rejected_total %v, want 3", got)
	}
	select {
	case code := <-first:
		if code != http.StatusBadGateway {
			t.Fatalf("first lookup (nobody answers): status %d, want 502", code)
		}
	case <-time.After(testWait):
		t.Fatal("first lookup did not end")
	}
}

func TestGatewayTimeout(t *testing.T) {
	n, _ := silentNode(t, 10*time.Second)
	g, ts := serve(t, n, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	priv, pub := testKey()
	id := strings.Repeat("7e", 20)
	tests := []struct{ method, path, body string }{
		{"POST", "/v1/immutable", `{"value":"t"}`},
		{"GET", "/v1/immutable/" + id, ""},
		{"GET", "/v1/mutable/" + pub, ""},
		{"PUT", "/v1/mutable/" + pub, signed(priv, "", "t", 1, nil)},
		{"GET", "/v1/peers/" + id, ""},
		{"GET", "/v1/peers/" + id + "?stream=1", ""},
		{"POST", "/v1/announce/" + id + "?port=1", ""},
		{"GET", "/v1/nodes/" + id, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			start := time.Now()
			code, b := call(t, tt.method, ts.URL+tt.path, tt.body)
			if code != http.StatusGatewayTimeout || !bytes.Contains(b, []byte("timed out")) {
				t.Fatalf("status %d, want 504: %s", code, b)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("took %v with a 300ms request timeout", el)
			}
		})
	}
	if got := testutil.ToFloat64(g.m.timeouts); got != float64(len(tests)) {
		t.Fatalf("timeouts_total %v, want %d", got, len(tests))
	}
}

func TestGatewayRateLimit(t *testing.T) {
	nodes := startNet(t, 1)
	now := time.Unix(1e9, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	g, ts := serve(t, nodes[0], func(c *Config) { c.RatePerSecond, c.RateBurst, c.Now = 1, 3, clock })
	for i := 0; i < 3; i++ {
		if code, b := call(t, "GET", ts.URL+"/v1/ping", ""); code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i, code, b)
		}
	}
	code, b := call(t, "GET", ts.URL+"/v1/ping", "")
	if code != http.StatusTooManyRequests || !bytes.Contains(b, []byte("rate limit")) {
		t.Fatalf("request over the burst: status %d, want 429: %s", code, b)
	}
	if got := testutil.ToFloat64(g.m.rateLimited); got != 1 {
		t.Fatalf("rate_limited_total %v, want 1", got)
	}
	mu.Lock()
	now = now.Add(time.Second) // one token back
	mu.Unlock()
	if code, _ := call(t, "GET", ts.URL+"/v1/ping", ""); code != http.StatusOK {
		t.Fatalf("after a second: status %d, want 200", code)
	}
}

func TestGatewayLimiterBounded(t *testing.T) {
	l := newLimiter(1, 2, 3)
	t0 := time.Unix(1e9, 0)
	key := func(i int) netip.Prefix { return clientKey(fmt.Sprintf("10.0.0.%d:1234", i)) }
	for i := 0; i < 10; i++ {
		l.allow(key(i), t0.Add(time.Duration(i)*time.Millisecond))
		if l.len() > 3 {
			t.Fatalf("after %d clients the table holds %d, bound 3", i+1, l.len())
		}
	}
	// the most recent clients are kept: client 9 has used one of two tokens.
	if !l.allow(key(9), t0.Add(10*time.Millisecond)) || l.allow(key(9), t0.Add(10*time.Millisecond)) {
		t.Fatal("client 9's bucket was not kept")
	}
	// IPv6 clients share a bucket per /64.
	a, b := clientKey("[2001:db8::1]:1"), clientKey("[2001:db8::2]:2")
	if a != b || clientKey("[2001:db8:0:1::1]:1") == a {
		t.Fatalf("IPv6 keys %v %v: want one per /64", a, b)
	}
}

func TestGatewayOpenAPI(t *testing.T) {
	nodes := startNet(t, 1)
	_, ts := serve(t, nodes[0], nil)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	callJSON(t, "GET", ts.URL+"/v1/openapi.json", "", http.StatusOK, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q, want 3.x", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	served := map[string]bool{}
	for _, rt := range append(slices.Clone(routes), pkarrRoutes...) {
		// Every API route: a method, and a /v1/ path (not a CORS
		// preflight) or the Pkarr relay's path (its own OPTIONS included).
		method, path, ok := strings.Cut(rt.pattern, " ")
		api := strings.HasPrefix(path, "/v1/") && method != "OPTIONS" || strings.HasPrefix(path, "/pkarr/")
		if ok && api {
			served[rt.pattern] = true
		}
	}
	for p := range served {
		if !documented[p] {
			t.Errorf("route %s is not in openapi.json", p)
		}
	}
	for p := range documented {
		if !served[p] {
			t.Errorf("openapi.json documents %s, which is not served", p)
		}
	}
}

func TestGatewayMetrics(t *testing.T) {
	nodes := startNet(t, 1)
	reg := prometheus.NewRegistry()
	g, ts := serve(t, nodes[0], func(c *Config) { c.Registry = reg })
	if _, err := New(nodes[0], Config{Registry: reg}); err == nil {
		t.Fatal("a second gateway on the same registry: want an error")
	}
	call(t, "GET", ts.URL+"/v1/ping", "")
	call(t, "GET", ts.URL+"/v1/immutable/abc", "")
	if got := testutil.ToFloat64(g.m.requests.WithLabelValues("ping", "200")); got != 1 {
		t.Fatalf("requests{ping,200} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(g.m.requests.WithLabelValues("immutable_get", "400")); got != 1 {
		t.Fatalf("requests{immutable_get,400} = %v, want 1", got)
	}
	names := map[string]bool{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"dhtd_gateway_lookups_in_flight", "dhtd_gateway_rate_limit_clients", "dhtd_recent_lookups", "dhtd_gateway_timeouts_total"} {
		if !names[want] {
			t.Errorf("metric %s not registered", want)
		}
	}
}
