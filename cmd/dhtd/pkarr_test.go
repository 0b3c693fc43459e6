package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/pkarr"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

// pkarrNet starts size loopback nodes, the others bootstrapped from the
// first, and returns them.
func pkarrNet(t *testing.T, ctx context.Context, size int) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for i := range size {
		cfg := node.LoopbackConfig()
		if i > 0 {
			cfg.Bootstrap = []string{nodes[0].Addr().String()}
		}
		n, err := node.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	for _, n := range nodes[1:] {
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// runApp runs the dhtd command line in process and returns its stdout.
func runApp(ctx context.Context, args ...string) (string, error) {
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	err := app.RunContext(ctx, interspersed(app, append([]string{"dhtd"}, args...)))
	return out.String(), err
}

// writeKeyFile writes a key file for a fixed seed and returns its path and
// the public key.
func writeKeyFile(t *testing.T, seedByte byte) (string, ed25519.PublicKey) {
	t.Helper()
	seed := bytes.Repeat([]byte{seedByte}, ed25519.SeedSize)
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(seed)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
}

type resolveJSON struct {
	Key     string         `json:"key"`
	Seq     int64          `json:"seq"`
	Time    time.Time      `json:"time"`
	Records []pkarr.Record `json:"records"`
	Nodes   []struct {
		ID   string `json:"id"`
		Addr string `json:"addr"`
	} `json:"nodes"`
}

// TestPkarrPublishResolve: `dhtd pkarr publish` puts a signed packet of
// the records given; `dhtd pkarr resolve` finds it by the z-base-32 or the
// hex key, prints it like dig, and with --json gives the records, the seq
// as a time and the nodes that held it.
func TestPkarrPublishResolve(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes := pkarrNet(t, ctx, 5)
	boot := []string{"--bootstrap", nodes[0].Addr().String(), "--listen", "127.0.0.1:0", "--timeout", "20s"}
	keyFile, pub := writeKeyFile(t, 3)
	z := pkarr.KeyString(pub)

	before := time.Now()
	out, err := runApp(ctx, append(append([]string{"pkarr", "publish", "--key", keyFile, "--json"}, boot...),
		"@ A 192.0.2.1", `_hello TXT "hi there" 60`, "@ HTTPS 1 . alpn=h2,h3 port=443", "v6 AAAA 2001:db8::1", "www CNAME example.com")...)
	if err != nil {
		t.Fatalf("publish: %v\n%s", err, out)
	}
	var pubOut struct {
		Key    string `json:"key"`
		Seq    int64  `json:"seq"`
		Stored int    `json:"stored"`
	}
	if err := json.Unmarshal([]byte(out), &pubOut); err != nil || pubOut.Key != z || pubOut.Stored == 0 {
		t.Fatalf("publish --json: %v %+v\n%s", err, pubOut, out)
	}
	if seqT := time.UnixMicro(pubOut.Seq); seqT.Before(before.Add(-time.Second)) || seqT.After(time.Now()) {
		t.Errorf("seq %d (%v) is not the time of publishing", pubOut.Seq, seqT)
	}
	// the item on the network is the BEP 44 mutable item of the key.
	gr, err := nodes[2].Get(ctx, storage.MutableTarget(pub, nil), node.GetOptions{})
	if err != nil || gr.Item.Seq != pubOut.Seq {
		t.Fatalf("get the published item: %v, seq %d", err, gr.Item.Seq)
	}

	for _, key := range []string{z, "pk:" + z, hex.EncodeToString(pub)} {
		out, err := runApp(ctx, append([]string{"pkarr", "resolve", "--json", key}, boot...)...)
		if err != nil {
			t.Fatalf("resolve %s: %v", key, err)
		}
		var res resolveJSON
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("resolve --json: %v\n%s", err, out)
		}
		if res.Key != z || res.Seq != pubOut.Seq || !res.Time.Equal(time.UnixMicro(pubOut.Seq)) || len(res.Nodes) == 0 {
			t.Errorf("resolve %s: key %s seq %d time %v, %d nodes; want %s, %d", key, res.Key, res.Seq, res.Time, len(res.Nodes), z, pubOut.Seq)
		}
		want := []pkarr.Record{
			{Name: z + ".", Type: "A", TTL: 300, Value: "192.0.2.1"},
			{Name: "_hello." + z + ".", Type: "TXT", TTL: 60, Value: `"hi there"`},
			{Name: z + ".", Type: "HTTPS", TTL: 300, Value: "1 . alpn=h2,h3 port=443"},
			{Name: "v6." + z + ".", Type: "AAAA", TTL: 300, Value: "2001:db8::1"},
			{Name: "www." + z + ".", Type: "CNAME", TTL: 300, Value: "example.com."},
		}
		if len(res.Records) != len(want) {
			t.Fatalf("resolve: records %+v, want %+v", res.Records, want)
		}
		for i := range want {
			if res.Records[i] != want[i] {
				t.Errorf("record %d: %+v, want %+v", i, res.Records[i], want[i])
			}
		}
	}
	out, err = runApp(ctx, append([]string{"pkarr", "resolve", z}, boot...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{";; ANSWER SECTION:", z + ".\t300\tIN\tA\t192.0.2.1", "_hello." + z + ".\t60\tIN\tTXT\t\"hi there\""} {
		if !strings.Contains(out, want) {
			t.Errorf("resolve output lacks %q:\n%s", want, out)
		}
	}
}

// TestPkarrCommandErrors: bad records, keys and arguments are refused
// before any node starts.
func TestPkarrCommandErrors(t *testing.T) {
	keyFile, _ := writeKeyFile(t, 4)
	noNet := []string{"--bootstrap", "127.0.0.1:1", "--timeout", "2s"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"pkarr", "publish", "--key", keyFile}, "usage"},
		{[]string{"pkarr", "publish", "--key", keyFile, "@ MX 10 mail"}, "bad DNS record"},
		{[]string{"pkarr", "publish", "--key", keyFile, "@ A 2001:db8::1"}, "bad DNS record"},
		{[]string{"pkarr", "publish", "--key", keyFile, "@ TXT " + strings.Repeat("x", 1000)}, "oversized"},
		{[]string{"pkarr", "resolve", "notakey"}, "bad Pkarr public key"},
		{[]string{"pkarr", "resolve"}, "missing argument: want KEY"},
	} {
		out, err := runApp(context.Background(), append(tt.args, noNet...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("dhtd %q: %v (stdout %q), want an error with %q", tt.args, err, out, tt.want)
		}
	}
}

func TestReadPkarrKeep(t *testing.T) {
	_, pub := writeKeyFile(t, 5)
	_, pub2 := writeKeyFile(t, 6)
	dir := t.TempDir()
	good := filepath.Join(dir, "keys")
	os.WriteFile(good, []byte("# kept keys\n"+pkarr.KeyString(pub)+"  # alice\n\n"+hex.EncodeToString(pub2)+"\npk:"+pkarr.KeyString(pub)+"\n"), 0o600)
	keys, err := readPkarrKeep(good)
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], pub) || !bytes.Equal(keys[1], pub2) {
		t.Fatalf("readPkarrKeep: %d keys, %v; want the 2 distinct keys", len(keys), err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte(pkarr.KeyString(pub)+"\nnot-a-key\n"), 0o600)
	if _, err := readPkarrKeep(bad); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Errorf("bad line: %v, want an error naming line 2", err)
	}
	if _, err := readPkarrKeep(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

// TestRunPkarrKeep: `dhtd run --pkarr-keep FILE` fetches the packet of a
// listed key, which it never had, and re-puts it once it has bootstrapped;
// its metrics count the keys and the rounds. A bad FILE stops it at once.
func TestRunPkarrKeep(t *testing.T) {
	dhtdBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes := pkarrNet(t, ctx, 3)
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	rec, err := pkarr.ParseRecord("@ A 192.0.2.9")
	if err != nil {
		t.Fatal(err)
	}
	packet, err := pkarr.EncodePacket(pkarr.KeyString(priv.Public().(ed25519.PublicKey)), []pkarr.Record{rec})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pkarr.Sign(priv, packet, pkarr.SeqAt(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].PutSigned(ctx, node.SignedPut{Key: p.PublicKey, Value: p.Value(), Seq: p.Seq, Sig: p.Sig}); err != nil {
		t.Fatal(err)
	}
	_, unpublished := writeKeyFile(t, 8)
	file := filepath.Join(t.TempDir(), "keep")
	if err := os.WriteFile(file, []byte(pkarr.KeyString(p.PublicKey)+"\n# nobody published under this one yet\n"+hex.EncodeToString(unpublished)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	d := startNode(t, "--bootstrap", nodes[0].Addr().String(), "--pkarr-keep", file, "--log-level", "debug", "--storage", "memory")
	target := storage.MutableTarget(p.PublicKey, nil)
	d.waitLine("msg=republish target=" + target.String() + " outcome=put")
	d.waitLine("msg=republish target=" + storage.MutableTarget(unpublished, nil).String() + " outcome=failed")
	_, body := httpGet(t, d.Metrics, "/metrics")
	for _, m := range []struct {
		name string
		want float64
	}{{"dhtd_pkarr_keep_keys", 2}, {"dhtd_pkarr_keep_republished_total", 1}, {"dhtd_pkarr_keep_failed_total", 1}} {
		if v, ok := metricValue(t, body, m.name, nil); !ok || v != m.want {
			t.Errorf("%s = %v (found %v), want %v", m.name, v, ok, m.want)
		}
	}

	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("not-a-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runDhtd(t, "run", "--no-bootstrap", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--storage", "memory", "--pkarr-keep", bad)
	if r.code == 0 || !strings.Contains(r.stderr, bad+":1") {
		t.Errorf("run --pkarr-keep with a bad file: exit %d, stderr %q; want an error naming %s:1", r.code, r.stderr, bad)
	}
}

// TestPkarrPublishKeep: `dhtd pkarr publish --keep` puts the packet, then
// keeps running (republishing it) until SIGTERM.
func TestPkarrPublishKeep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nodes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes := pkarrNet(t, ctx, 2)
	keyFile, pub := writeKeyFile(t, 9)
	runKeep(t, ctx, "pkarr publish --keep", []string{"dhtd", "pkarr", "publish", "--keep", "--key", keyFile, "--bootstrap", nodes[0].Addr().String(), "--listen", "127.0.0.1:0", "--timeout", "10s", "@ TXT kept"}, func(stdout string, _ func(string) string) {
		if !strings.Contains(stdout, pkarr.KeyString(pub)) {
			t.Fatalf("stdout %q does not name the key", stdout)
		}
		gr, err := nodes[1].Get(ctx, storage.MutableTarget(pub, nil), node.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pkarr.FromItem(gr.Item); err != nil {
			t.Fatalf("the kept item is not a Pkarr packet: %v", err)
		}
	})
}
