package main

import (
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dhtd/dhtd/storage"
)

// TestGatewayRunAndClient starts `dhtd run --http` with two more nodes on
// loopback and drives it with `dhtd put/get/peers --gateway`; SIGTERM then
// stops the gateway before the node.
func TestGatewayRunAndClient(t *testing.T) {
	a := startNode(t, "--no-bootstrap", "--storage", "memory", "--http", "127.0.0.1:0")
	gl := a.waitLine(`msg="gateway listening"`)
	m := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(gl)
	if m == nil {
		t.Fatalf("no loopback addr= in %q", gl)
	}
	gw := m[1]
	b := startNode(t, "--bootstrap", a.Addr, "--storage", "memory")
	c := startNode(t, "--bootstrap", a.Addr, "--storage", "memory")
	a.waitKnows(t, b)
	a.waitKnows(t, c)

	code, body := httpGet(t, gw, "/v1/ping")
	if code != 200 || !strings.Contains(body, a.ID) {
		t.Fatalf("GET /v1/ping: %d %s", code, body)
	}
	code, body = httpGet(t, gw, "/")
	if code != 200 || !strings.Contains(body, `id="keyspace"`) {
		t.Fatalf("GET /: %d, want the status page", code)
	}

	decode := func(r cmdResult, what string) map[string]any {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.stdout, r.stderr)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("%s: --json output: %v\n%s", what, err, r.stdout)
		}
		return out
	}
	// immutable
	put := decode(runDhtd(t, "put", "--gateway", gw, "--json", "hello cli"), "put")
	target := storage.ImmutableTarget([]byte("9:hello cli")).String()
	if put["target"] != target || put["stored"].(float64) < 1 {
		t.Fatalf("put: %v, want target %s stored >= 1", put, target)
	}
	got := decode(runDhtd(t, "get", "--gateway", gw, "--json", target), "get")
	if got["found"] != true || got["value"] != "hello cli" {
		t.Fatalf("get: %v, want \"hello cli\"", got)
	}
	// mutable: signed by the CLI with its key file, seq picked from the gateway.
	keyFile := filepath.Join(t.TempDir(), "key")
	kg := runDhtd(t, "keygen", "--json", keyFile)
	var key struct {
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal([]byte(kg.stdout), &key); err != nil || len(key.PublicKey) != 64 {
		t.Fatalf("keygen: %v %q", err, kg.stdout)
	}
	for i, val := range []string{"first", "second"} {
		p := decode(runDhtd(t, "put", "--gateway", gw, "--json", "--key", keyFile, "--salt", "s", val), "put --key")
		if p["seq"] != float64(i+1) || p["stored"].(float64) < 1 {
			t.Fatalf("mutable put %d: %v, want seq %d", i+1, p, i+1)
		}
	}
	mg := decode(runDhtd(t, "get", "--gateway", gw, "--json", "--pubkey", key.PublicKey, "--salt", "s"), "get --pubkey")
	if mg["value"] != "second" || mg["seq"] != float64(2) || mg["pubkey"] != key.PublicKey {
		t.Fatalf("mutable get: %v, want seq 2 \"second\"", mg)
	}
	// a seq below the stored one is refused by the network: exit non-zero, 409.
	if r := runDhtd(t, "put", "--gateway", gw, "--key", keyFile, "--salt", "s", "--seq", "1", "old"); r.code == 0 || !strings.Contains(r.stderr, "409") {
		t.Fatalf("put --seq 1 over seq 2: exit %d, stderr %q: want a 409 failure", r.code, r.stderr)
	}
	// peers (none announced): an empty answer, exit 3 (nothing found).
	r := runDhtd(t, "peers", "--gateway", gw, "--json", hex.EncodeToString(make([]byte, 20)))
	var pr struct {
		Peers []string   `json:"peers"`
		Error *jsonError `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &pr); err != nil || r.code != exitNotFound || pr.Peers == nil || len(pr.Peers) != 0 || pr.Error == nil {
		t.Fatalf("peers: exit %d, %s (%v); want exit 3, an empty list and an error", r.code, r.stdout, err)
	}
	// a gateway that is not there: a clear error.
	if r := runDhtd(t, "get", "--gateway", "127.0.0.1:1", "--timeout", "2s", target); r.code == 0 || !strings.Contains(r.stderr, "gateway") {
		t.Fatalf("get via a closed port: exit %d, stderr %q", r.code, r.stderr)
	}

	a.stop()
	if !a.exited(e2eWait) || a.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("dhtd run exited with %v after SIGTERM", a.cmd.ProcessState)
	}
	log := a.stderr.String()
	down, stopped := strings.Index(log, `msg="shutting down"`), strings.Index(log, `msg="gateway stopped"`)
	if down < 0 || stopped < down {
		t.Fatalf("want \"gateway stopped\" after \"shutting down\":\n%s", log)
	}
}

func TestGatewayRunBadHTTPAddr(t *testing.T) {
	r := runDhtd(t, "run", "--no-bootstrap", "--storage", "memory", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--http", "127.0.0.1:notaport")
	if r.code == 0 || !strings.Contains(r.stderr, "--http") {
		t.Fatalf("run --http 127.0.0.1:notaport: exit %d, stderr %q: want an --http error", r.code, r.stderr)
	}
}
