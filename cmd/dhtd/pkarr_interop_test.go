package main

// Interop with the real Pkarr JavaScript client (npm pkarr 1.3.0, in
// testdata/js, installed by `make deps`) and libtorrent 2.0.8: the
// client publishes through dhtd's relay and reads back; libtorrent finds
// the same BEP 44 item; the client's own DHT code, bootstrapped only from a
// dhtd loopback node, puts a packet that dhtd's relay and `dhtd pkarr
// resolve` then serve. Skipped with -short, and without node, the client
// or libtorrent unless DHTD_REQUIRE_INTEROP=1.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dhtd/dhtd/gateway"
	"github.com/dhtd/dhtd/internal/ltnode"
	"github.com/dhtd/dhtd/internal/pkarr"
	"github.com/dhtd/dhtd/storage"
)

// pkarrJSDir is the npm project holding the Pkarr client.
const pkarrJSDir = "../../testdata/js"

// requirePkarrJS skips t with -short or without node and the installed
// client; with DHTD_REQUIRE_INTEROP=1 a missing one fails t.
func requirePkarrJS(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("Pkarr JS interop test (-short)")
	}
	nodeBin, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(pkarrJSDir, "node_modules", "pkarr", "package.json"))
	}
	if err != nil {
		if os.Getenv("DHTD_REQUIRE_INTEROP") == "1" {
			t.Fatalf("DHTD_REQUIRE_INTEROP=1 but Node.js or the Pkarr client is missing (run make deps): %v", err)
		}
		t.Skipf("Node.js or the Pkarr client missing (run make deps): %v", err)
	}
	return nodeBin
}

// pkarrJSOut is interop.mjs's output.
type pkarrJSOut struct {
	PublicKey  string `json:"public_key"`
	Z32        string `json:"z32"`
	Seq        int64  `json:"seq"`
	Sig        string `json:"sig"`
	Packet     string `json:"packet"`
	PutStatus  int    `json:"put_status"`
	PutCORS    string `json:"put_cors"`
	GetSeq     int64  `json:"get_seq"`
	GetSame    bool   `json:"get_same_bytes"`
	GetAnswers []struct {
		Name, Type, Data string
	} `json:"get_answers"`
	PutTo []string `json:"put_to"` // the nodes the client's DHT put to
	Table []string `json:"table"`  // its routing table after the put
}

// runPkarrJS runs interop.mjs with args, bounded by 60 s.
func runPkarrJS(t *testing.T, ctx context.Context, nodeBin string, args ...string) pkarrJSOut {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, append([]string{"interop.mjs"}, args...)...)
	cmd.Dir = pkarrJSDir
	cmd.Env = append(hermeticEnv(), "PATH="+os.Getenv("PATH"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("node interop.mjs %q: %v\nstdout:\n%s\nstderr:\n%s", args[0], err, stdout.String(), stderr.String())
	}
	var out pkarrJSOut
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("interop.mjs %s: output is not JSON: %v\n%s", args[0], err, stdout.String())
	}
	t.Logf("interop.mjs %s: %v; %s", args[0], time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout.String()))
	return out
}

// checkJSPacket checks the key, seq, signature and packet the client
// reported against one another and returns the signed packet.
func checkJSPacket(t *testing.T, o pkarrJSOut, seed []byte) pkarr.SignedPacket {
	t.Helper()
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	if o.PublicKey != hex.EncodeToString(pub) || o.Z32 != pkarr.KeyString(pub) {
		t.Fatalf("client key %s (%s), want %x (%s)", o.PublicKey, o.Z32, pub, pkarr.KeyString(pub))
	}
	sig, err1 := hex.DecodeString(o.Sig)
	packet, err2 := hex.DecodeString(o.Packet)
	if err1 != nil || err2 != nil {
		t.Fatalf("client output: %v %v", err1, err2)
	}
	p := pkarr.SignedPacket{PublicKey: pub, Sig: sig, Seq: o.Seq, Packet: packet}
	if err := p.Verify(); err != nil {
		t.Fatalf("the client's packet does not verify in dhtd: %v", err)
	}
	return p
}

func TestPkarrInteropJS(t *testing.T) {
	nodeBin := requirePkarrJS(t)
	ltnode.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	nodes := pkarrNet(t, ctx, 3)
	g, err := gateway.New(nodes[0], gateway.Config{Registry: prometheus.NewRegistry(), RatePerSecond: 1e6, RateBurst: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(g)
	t.Cleanup(ts.Close)

	t.Run("relay put and get, libtorrent finds it", func(t *testing.T) {
		seed := bytes.Repeat([]byte{0x51}, 32)
		o := runPkarrJS(t, ctx, nodeBin, "relay", ts.URL, hex.EncodeToString(seed))
		if o.PutStatus != http.StatusNoContent || o.PutCORS != "*" {
			t.Fatalf("Pkarr.relayPut: status %d, CORS %q; want 204 and *", o.PutStatus, o.PutCORS)
		}
		p := checkJSPacket(t, o, seed)
		if o.GetSeq != o.Seq || !o.GetSame {
			t.Fatalf("Pkarr.relayGet: seq %d (want %d), same bytes %v", o.GetSeq, o.Seq, o.GetSame)
		}
		found := false
		for _, a := range o.GetAnswers {
			found = found || (a.Type == "TXT" && a.Name == "_interop."+o.Z32 && strings.Contains(a.Data, "via relay"))
		}
		if !found {
			t.Errorf("Pkarr.relayGet answers %+v lack the TXT record", o.GetAnswers)
		}
		// libtorrent joins only now, so it holds no copy: its own lookup
		// finds the item the relay put on the dhtd nodes, and the signature
		// is the client's, valid over 3:seqi<seq>e1:v<len>:<packet>.
		l := ltnode.Start(t, ctx, ltnode.Host) // stopped before the dhtd nodes
		for _, n := range nodes {
			if !l.AddNode(t, ctx, n.Addr()) {
				t.Fatalf("libtorrent did not add dhtd %s", n.Addr())
			}
		}
		lg := ltnode.Do[ltnode.GetReply](t, ctx, l, 40*time.Second, map[string]any{
			"cmd": "get_mutable", "public_key": o.PublicKey, "salt": "", "timeout": 25,
		})
		if !lg.Found || lg.Seq != o.Seq || lg.Signature != o.Sig || lg.ValueHex != o.Packet {
			t.Fatalf("libtorrent get_mutable: found %v seq %d sig %s value %s; want seq %d sig %s value %s",
				lg.Found, lg.Seq, lg.Signature, lg.ValueHex, o.Seq, o.Sig, o.Packet)
		}
		if lg.Target != storage.MutableTarget(p.PublicKey, nil).String() {
			t.Fatalf("libtorrent target %s, want %s", lg.Target, storage.MutableTarget(p.PublicKey, nil))
		}
		lsig, _ := hex.DecodeString(lg.Signature)
		if !storage.VerifyMutable(p.PublicKey, nil, lg.Seq, p.Value(), lsig) {
			t.Fatal("the signature libtorrent returned does not verify")
		}
	})

	t.Run("client DHT put, served by the relay and dhtd pkarr resolve", func(t *testing.T) {
		seed := bytes.Repeat([]byte{0x52}, 32)
		// the client's only bootstrap node is a dhtd loopback node.
		o := runPkarrJS(t, ctx, nodeBin, "dht", nodes[1].Addr().String(), hex.EncodeToString(seed), t.TempDir())
		p := checkJSPacket(t, o, seed)
		if len(o.PutTo) == 0 {
			t.Fatal("the client's put reached no node")
		}
		if len(o.Table) == 0 {
			t.Fatal("the client's routing table is empty")
		}
		for _, a := range append(o.PutTo, o.Table...) {
			if !strings.HasPrefix(a, "127.") {
				t.Fatalf("the client's DHT reached %s: not loopback (put to %v, table %v)", a, o.PutTo, o.Table)
			}
		}
		resp, err := http.Get(ts.URL + "/pkarr/" + o.Z32)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, p.Body()) {
			t.Fatalf("GET /pkarr/%s: %d, body equal %v", o.Z32, resp.StatusCode, bytes.Equal(body, p.Body()))
		}
		if lm := resp.Header.Get("Last-Modified"); lm != p.Time().Truncate(time.Second).Format(http.TimeFormat) {
			t.Errorf("Last-Modified %q, want the seq's time %v", lm, p.Time())
		}
		out, err := runApp(ctx, "pkarr", "resolve", "--json", "--bootstrap", nodes[0].Addr().String(), "--listen", "127.0.0.1:0", "--timeout", "20s", o.Z32)
		if err != nil {
			t.Fatalf("dhtd pkarr resolve: %v", err)
		}
		var res resolveJSON
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("resolve --json: %v\n%s", err, out)
		}
		want := map[string]pkarr.Record{
			"A":   {Name: o.Z32 + ".", Type: "A", TTL: 300, Value: "192.0.2.7"},
			"TXT": {Name: "_interop." + o.Z32 + ".", Type: "TXT", TTL: 60, Value: strconv.Quote("from the pkarr js client via dht")},
		}
		if res.Seq != o.Seq || len(res.Records) != len(want) || len(res.Nodes) == 0 {
			t.Fatalf("resolve: seq %d (want %d), %d records, %d nodes: %s", res.Seq, o.Seq, len(res.Records), len(res.Nodes), out)
		}
		for _, r := range res.Records {
			if r != want[r.Type] {
				t.Errorf("resolved %+v, want %+v", r, want[r.Type])
			}
		}
	})
}
