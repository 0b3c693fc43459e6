package main

// Interop tests of the dhtd binary against libtorrent 2.0.8 (issues 2, 3
// and 4): `dhtd run` nodes on 127.0.0.1 and a libtorrent node on 127.0.0.2,
// driven through package ltnode; the short-lived commands (probe, table,
// peers, announce, get, put, keygen) run as the real binary. They skip with
// -short, and without libtorrent unless DHTD_REQUIRE_INTEROP=1.
//
// No dead address may stay in libtorrent's view: each lookup it runs would
// wait 15 s for it (testdata/interop/NOTES.md). A lookup command (peers,
// announce, get, put) is a short-lived read-only node (BEP 43): dhtd nodes
// do not add it, but libtorrent 2.0.8 still ends up querying its address
// (measured: get_peers left it unanswered after a `dhtd announce`), and it
// is dead once the command exits. lookups.run therefore leaves a stand-in
// on the command's address that answers every query at once with KRPC
// error 202.
// The probes do not need one: a probe answers no query, so no node adds it.

import (
	"context"
	"crypto/ed25519"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/ltnode"
	"github.com/dhtd/dhtd/krpc"
)

// lookupTimeout bounds each lookup command (--timeout); runDhtd's
// cmdTimeout bounds the process.
const lookupTimeout = "15s"

// requireInterop skips t with -short (dhtdBinary) or without libtorrent.
func requireInterop(t *testing.T) {
	t.Helper()
	dhtdBinary(t)
	ltnode.Require(t)
}

func parseID(t *testing.T, s string) krpc.ID {
	t.Helper()
	id, err := krpc.ParseID(s)
	if err != nil {
		t.Fatalf("node id %q: %v", s, err)
	}
	return id
}

func parseAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	return ap
}

// freeLoopbackUDP returns a 127.0.0.1 UDP address that was free a moment
// ago.
func freeLoopbackUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("reserve a loopback UDP port: %v", err)
	}
	addr := pc.LocalAddr().String()
	if err := pc.Close(); err != nil {
		t.Fatalf("release %s: %v", addr, err)
	}
	return addr
}

// standIn listens on addr (a lookup command's address, free again now that
// it exited) until t ends, answering every query with KRPC error 202, so
// that nodes which still list the command's node fail it at once instead of
// waiting for a timeout.
func standIn(t *testing.T, addr string) {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatalf("stand-in address %s: %v", addr, err)
	}
	pc, err := net.ListenUDP("udp4", ua)
	if err != nil {
		t.Fatalf("stand-in for the exited command on %s: %v", addr, err)
	}
	answerWithError(t, pc, 202, "dhtd command exited", nil)
}

// lookups runs lookup commands (peers, announce, get, put) for the test
// that made it: each as a short-lived node on a loopback address, after
// which a stand-in holds the address until that test (not a subtest) ends,
// as long as the nodes that may list it run.
type lookups struct{ owner *testing.T }

// run runs one lookup command and fails t unless it exits 0.
func (lk lookups) run(t *testing.T, args ...string) cmdResult {
	t.Helper()
	addr := freeLoopbackUDP(t)
	args = append(slices.Clone(args), "--listen", addr, "--timeout", lookupTimeout)
	r := runDhtd(t, args...)
	standIn(lk.owner, addr)
	if r.code != 0 {
		t.Fatalf("dhtd %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	t.Logf("dhtd %s: %v", args[0], r.elapsed.Round(time.Millisecond))
	return r
}

// decodeJSON decodes a command's one-line JSON output into v.
func decodeJSON(t *testing.T, what string, r cmdResult, v any) {
	t.Helper()
	out := strings.TrimSpace(r.stdout)
	if strings.Count(out, "\n") != 0 {
		t.Fatalf("%s --json: want one line, got:\n%s", what, r.stdout)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s --json: %v\n%s", what, err, r.stdout)
	}
}

// tableDump is the part of `dhtd table --json` these tests read.
type tableDump struct {
	ID      string `json:"id"`
	Addr    string `json:"addr"`
	Buckets []struct {
		Nodes []struct {
			ID        string `json:"id"`
			Addr      string `json:"addr"`
			State     string `json:"state"`
			Confirmed bool   `json:"confirmed"`
		} `json:"nodes"`
	} `json:"buckets"`
}

func (d tableDump) has(id, addr string) bool {
	for _, b := range d.Buckets {
		for _, e := range b.Nodes {
			if e.ID == id && e.Addr == addr && e.Confirmed && e.State != "bad" {
				return true
			}
		}
	}
	return false
}

// table runs `dhtd table --admin n.Metrics --json`.
func table(t *testing.T, n *dhtdNode) tableDump {
	t.Helper()
	r := runDhtd(t, "table", "--admin", n.Metrics, "--json")
	if r.code != 0 {
		t.Fatalf("dhtd table --admin %s: exit %d\nstdout:\n%s\nstderr:\n%s", n.Metrics, r.code, r.stdout, r.stderr)
	}
	var d tableDump
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("dhtd table --json: %v\n%s", err, r.stdout)
	}
	if d.ID != n.ID || d.Addr != n.Addr {
		t.Fatalf("dhtd table --admin %s: node %s at %s, want %s at %s", n.Metrics, d.ID, d.Addr, n.ID, n.Addr)
	}
	return d
}

// waitTableHas polls `dhtd table` (there is no event for a table change)
// until n holds a confirmed, not bad entry for l.
func waitTableHas(t *testing.T, n *dhtdNode, l *ltnode.Node) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for {
		d := table(t, n)
		if d.has(l.ID.String(), l.Addr.String()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dhtd %s: libtorrent %s@%s not a confirmed node of its table within %v: %+v", n.Addr, l.ID, l.Addr, e2eWait, d.Buckets)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
}

// interopNet starts two `dhtd run` nodes that know each other and a
// libtorrent node, and links them: libtorrent adds both (its add_node
// ping is a get_peers, which makes each dhtd node ping it back and add it).
func interopNet(t *testing.T, ctx context.Context) (d, d2 *dhtdNode, l *ltnode.Node) {
	t.Helper()
	d = startNode(t, "--no-bootstrap")
	d2 = startNode(t, "--bootstrap", d.Addr)
	d.waitKnows(t, d2)
	d2.waitKnows(t, d)
	l = ltnode.Start(t, ctx, ltnode.Host) // stopped before the dhtd nodes
	for _, n := range []*dhtdNode{d, d2} {
		if !l.AddNode(t, ctx, parseAddrPort(t, n.Addr)) {
			t.Fatalf("libtorrent did not add dhtd %s to its table", n.Addr)
		}
	}
	for _, n := range []*dhtdNode{d, d2} {
		waitTableHas(t, n, l)
	}
	return d, d2, l
}

// TestInteropCLIBootstrapAndProbe: libtorrent bootstraps from a
// `dhtd run` node D, which adds it to its table (`dhtd table`); libtorrent's
// lookup walks D's answers to D2; `dhtd probe ping` and `dhtd probe
// find_node` get libtorrent's answers.
func TestInteropCLIBootstrapAndProbe(t *testing.T) {
	requireInterop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d := startNode(t, "--no-bootstrap")
	d2 := startNode(t, "--bootstrap", d.Addr)
	d.waitKnows(t, d2)
	d2.waitKnows(t, d)
	dID, dAddr := parseID(t, d.ID), parseAddrPort(t, d.Addr)
	d2ID, d2Addr := parseID(t, d2.ID), parseAddrPort(t, d2.Addr)
	l := ltnode.Start(t, ctx, ltnode.Host)
	if table(t, d).has(l.ID.String(), l.Addr.String()) {
		t.Fatalf("D lists libtorrent before libtorrent sent it anything")
	}

	// libtorrent bootstraps from D: D answers its ping (a get_peers).
	if !l.AddNode(t, ctx, dAddr) {
		t.Fatalf("libtorrent's ping of D got no usable answer: D not in its table")
	}
	if rt := l.Routing(t, ctx); !rt.Has(dID, dAddr) {
		t.Fatalf("libtorrent's table %+v lacks D %s@%s", rt.Nodes, d.ID, d.Addr)
	}
	// D heard libtorrent's query, pings it back and adds it.
	waitTableHas(t, d, l)
	r := runDhtd(t, "table", "--admin", d.Metrics)
	if r.code != 0 {
		t.Fatalf("dhtd table: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^  ` + l.ID.String() + ` ` + regexp.QuoteMeta(l.Addr.String()) + ` +good `).MatchString(r.stdout) {
		t.Errorf("dhtd table: no line \"  %s %s good ...\":\n%s", l.ID, l.Addr, r.stdout)
	}

	// libtorrent's lookup reaches D2, which only D's answers name.
	gp := ltnode.Do[ltnode.GetPeersReply](t, ctx, l, 20*time.Second, map[string]any{
		"cmd": "get_peers", "info_hash": krpc.RandomID().String(), "timeout": 15, "quiet": 3,
	})
	if !slices.Contains(gp.Responded, d.Addr) || !slices.Contains(gp.Responded, d2.Addr) {
		t.Fatalf("libtorrent's lookup responders %v lack D %s or D2 %s", gp.Responded, d.Addr, d2.Addr)
	}
	if !gp.Complete || len(gp.Unanswered) > 0 || len(gp.Errors) > 0 {
		t.Fatalf("libtorrent's lookup: complete=%v unanswered=%v errors=%v", gp.Complete, gp.Unanswered, gp.Errors)
	}
	l.WaitInTable(t, ctx, d2ID, d2Addr, 10*time.Second)

	// dhtd probe ping libtorrent, plain and --json.
	r = runDhtd(t, "probe", "ping", "--bind", "127.0.0.1:0", l.Addr.String())
	if r.code != 0 {
		t.Fatalf("probe ping libtorrent: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if m := reAnswered.FindStringSubmatch(r.stdout); m == nil || m[1] != l.Addr.String() {
		t.Errorf("probe ping libtorrent: no \"ping %s: answered in ... ms\" line:\n%s", l.Addr, r.stdout)
	}
	if m := reIDLine.FindStringSubmatch(r.stdout); m == nil || m[1] != l.ID.String() {
		t.Errorf("probe ping libtorrent: id line %q, want libtorrent's id %s:\n%s", m, l.ID, r.stdout)
	}
	if !regexp.MustCompile(`(?m)^  client: +LT `).MatchString(r.stdout) {
		t.Errorf("probe ping libtorrent: no \"client: LT ...\" line:\n%s", r.stdout)
	}
	r = runDhtd(t, "probe", "ping", "--bind", "127.0.0.1:0", l.Addr.String(), "--json")
	if r.code != 0 {
		t.Fatalf("probe ping --json libtorrent: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	p := parseProbeJSON(t, r)
	if p.ID != l.ID.String() || p.RTTMillis <= 0 || !strings.HasPrefix(p.ClientVersion, "LT ") {
		t.Errorf("probe ping --json libtorrent: id %q rtt %v client %q; want id %s, rtt > 0, client LT ...", p.ID, p.RTTMillis, p.ClientVersion, l.ID)
	}
	if ip, err := netip.ParseAddrPort(p.YourIP); err != nil || ip.Addr() != netip.MustParseAddr("127.0.0.1") || ip.Port() == 0 {
		t.Errorf("probe ping --json libtorrent: your_ip %q, want 127.0.0.1:PORT (BEP 42 ip)", p.YourIP)
	}
	if p.Method != "ping" || p.Addr != l.Addr.String() || p.Error != nil {
		t.Errorf("probe ping --json libtorrent: %+v", p)
	}

	// dhtd probe find_node libtorrent for D2's id: libtorrent answers with
	// both dhtd nodes from its table.
	r = runDhtd(t, "probe", "find_node", "--bind", "127.0.0.1:0", l.Addr.String(), d2.ID)
	if r.code != 0 {
		t.Fatalf("probe find_node libtorrent: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if m := reIDLine.FindStringSubmatch(r.stdout); m == nil || m[1] != l.ID.String() {
		t.Errorf("probe find_node libtorrent: id line %q, want libtorrent's id %s:\n%s", m, l.ID, r.stdout)
	}
	for _, n := range []*dhtdNode{d, d2} {
		if !regexp.MustCompile(`(?m)^ +` + n.ID + ` ` + regexp.QuoteMeta(n.Addr) + `$`).MatchString(r.stdout) {
			t.Errorf("probe find_node libtorrent: no node line \"%s %s\":\n%s", n.ID, n.Addr, r.stdout)
		}
	}
	r = runDhtd(t, "probe", "find_node", "--json", "--bind", "127.0.0.1:0", l.Addr.String(), d2.ID)
	if r.code != 0 {
		t.Fatalf("probe find_node --json libtorrent: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	p = parseProbeJSON(t, r)
	if p.ID != l.ID.String() || p.Method != "find_node" {
		t.Errorf("probe find_node --json libtorrent: id %q method %q, want id %s", p.ID, p.Method, l.ID)
	}
	for _, n := range []*dhtdNode{d, d2} {
		if !slices.ContainsFunc(p.Nodes, func(x struct {
			ID   string `json:"id"`
			Addr string `json:"addr"`
		}) bool {
			return x.ID == n.ID && x.Addr == n.Addr
		}) {
			t.Errorf("probe find_node --json libtorrent: nodes %+v lack %s@%s", p.Nodes, n.ID, n.Addr)
		}
	}
}

// TestInteropCLIPeers: libtorrent announces and `dhtd peers`
// finds it; `dhtd announce` announces and libtorrent's get_peers finds the
// announced port.
func TestInteropCLIPeers(t *testing.T) {
	requireInterop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	d, d2, l := interopNet(t, ctx)
	lk := lookups{owner: t}

	t.Run("LibtorrentAnnouncesDhtdPeersFinds", func(t *testing.T) {
		ih := krpc.RandomID().String()
		an := ltnode.Do[ltnode.AnnounceReply](t, ctx, l, 40*time.Second, map[string]any{
			"cmd": "announce", "info_hash": ih, "timeout": 30,
		})
		if an.Error != "" {
			t.Fatalf("libtorrent announce: %s", an.Error)
		}
		for _, n := range []*dhtdNode{d, d2} {
			i := slices.IndexFunc(an.AnnouncedTo, func(a ltnode.AnnouncedTo) bool { return a.Addr == n.Addr })
			if i < 0 || an.AnnouncedTo[i].Reply != "r" {
				t.Fatalf("libtorrent's announce_peer to dhtd %s not accepted: %+v", n.Addr, an.AnnouncedTo)
			}
		}
		// libtorrent announces its listen port with implied_port=1: the
		// peer is its UDP address.
		want := l.Addr.String()

		r := lk.run(t, "peers", ih, "--bootstrap", d.Addr)
		if !slices.Contains(strings.Split(r.stdout, "\n"), want) {
			t.Errorf("dhtd peers %s: no line %q:\n%s", ih, want, r.stdout)
		}
		if m := regexp.MustCompile(`(?m)^(\d+) peers found, `).FindStringSubmatch(r.stderr); m == nil || m[1] == "0" {
			t.Errorf("dhtd peers: no \"N peers found\" line with N > 0 on stderr:\n%s", r.stderr)
		}

		r = lk.run(t, "peers", ih, "--bootstrap", d2.Addr, "--json")
		var out struct {
			InfoHash string     `json:"info_hash"`
			Peers    []string   `json:"peers"`
			Queried  int        `json:"queried"`
			Error    *jsonError `json:"error"`
		}
		decodeJSON(t, "dhtd peers", r, &out)
		if !slices.Contains(out.Peers, want) || out.InfoHash != ih || out.Error != nil {
			t.Errorf("dhtd peers --json: %+v, want %s among the peers", out, want)
		}
	})

	t.Run("DhtdAnnounceLibtorrentFinds", func(t *testing.T) {
		l.Events(t, ctx) // clear
		ih := krpc.RandomID().String()
		const port = 4567
		r := lk.run(t, "announce", ih, "--port", fmt.Sprint(port), "--bootstrap", d.Addr, "--json")
		var out struct {
			Announced int        `json:"announced"`
			Accepted  int        `json:"accepted"`
			LocalAddr string     `json:"local_addr"`
			Error     *jsonError `json:"error"`
		}
		decodeJSON(t, "dhtd announce", r, &out)
		// D, D2 and libtorrent gave tokens; every one accepts.
		if out.Announced < 3 || out.Accepted != out.Announced || out.Error != nil {
			t.Fatalf("dhtd announce: %+v, want >= 3 announced (D, D2, libtorrent), all accepted", out)
		}
		ev := l.Events(t, ctx)
		if !slices.ContainsFunc(ev.Announces, func(a ltnode.AnnounceEvent) bool {
			return a.InfoHash == ih && a.IP == "127.0.0.1" && a.Port == port
		}) {
			t.Fatalf("libtorrent received no announce_peer of %s for 127.0.0.1 port %d: %+v", ih, port, ev.Announces)
		}
		gp := ltnode.Do[ltnode.GetPeersReply](t, ctx, l, 20*time.Second, map[string]any{
			"cmd": "get_peers", "info_hash": ih, "timeout": 15, "quiet": 3,
		})
		if want := fmt.Sprintf("127.0.0.1:%d", port); !slices.Contains(gp.Peers, want) {
			t.Fatalf("libtorrent get_peers(%s) found %v, want %s", ih, gp.Peers, want)
		}
		for _, n := range []*dhtdNode{d, d2} {
			if !slices.Contains(gp.Responded, n.Addr) {
				t.Errorf("dhtd %s did not answer libtorrent's get_peers: responded %v", n.Addr, gp.Responded)
			}
		}
		if len(gp.Unanswered) > 0 {
			t.Errorf("libtorrent's get_peers: unanswered %v (a dead node in its view)", gp.Unanswered)
		}

		// Plain output.
		r = lk.run(t, "announce", krpc.RandomID().String(), "--port", fmt.Sprint(port), "--bootstrap", d.Addr)
		if m := regexp.MustCompile(`(?m)^announced to (\d+) nodes, (\d+) accepted$`).FindStringSubmatch(r.stdout); m == nil || m[1] != m[2] || m[1] == "0" {
			t.Errorf("dhtd announce: no \"announced to N nodes, N accepted\" line with N > 0:\n%s", r.stdout)
		}
	})
}

// TestInteropCLIItems: BEP 44 items that libtorrent puts
// (immutable, mutable with and without salt) are returned by `dhtd get`;
// items that `dhtd put` stores (immutable, and mutable with a key from `dhtd
// keygen`) are returned by libtorrent's get.
func TestInteropCLIItems(t *testing.T) {
	requireInterop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	d, d2, l := interopNet(t, ctx)
	lk := lookups{owner: t}
	keyFile, pub, _ := keygen(t)
	seed, err := os.ReadFile(keyFile) // the 32-byte seed in hex, as ltnode.py takes it
	if err != nil {
		t.Fatalf("read the key file: %v", err)
	}
	seedHex := strings.TrimSpace(string(seed))
	pubHex := hex.EncodeToString(pub)

	type getJSON struct {
		Target string     `json:"target"`
		Found  bool       `json:"found"`
		Value  string     `json:"value"`
		V      string     `json:"v"` // hex
		Seq    *int64     `json:"seq"`
		PubKey string     `json:"pubkey"`
		Sig    string     `json:"sig"`
		Error  *jsonError `json:"error"`
	}
	type putJSON struct {
		Target string         `json:"target"`
		Stored int            `json:"stored"`
		Sent   int            `json:"sent"`
		Seq    *int64         `json:"seq"`
		Errors map[string]int `json:"errors"`
		Error  *jsonError     `json:"error"`
	}
	// bstr is a string's bencoding.
	bstr := func(s string) string { return fmt.Sprintf("%d:%s", len(s), s) }
	ltSeq := map[string]int64{}

	t.Run("LibtorrentImmutable", func(t *testing.T) {
		const val = "hello from libtorrent"
		h := sha1.Sum([]byte(bstr(val)))
		target := hex.EncodeToString(h[:])
		p := ltnode.Do[ltnode.PutReply](t, ctx, l, 50*time.Second, map[string]any{"cmd": "put_immutable", "value": val})
		if p.Target != target || p.NumSuccess < 2 {
			t.Fatalf("libtorrent put_immutable: target %s num_success %d; want %s and >= 2", p.Target, p.NumSuccess, target)
		}
		r := lk.run(t, "get", target, "--bootstrap", d.Addr, "--json")
		var g getJSON
		decodeJSON(t, "dhtd get", r, &g)
		if !g.Found || g.Value != val || g.V != hex.EncodeToString([]byte(bstr(val))) || g.Target != target || g.Seq != nil || g.Error != nil {
			t.Fatalf("dhtd get %s: %+v, want the immutable %q", target, g, val)
		}
		r = lk.run(t, "get", target, "--bootstrap", d2.Addr)
		if first, _, _ := strings.Cut(r.stdout, "\n"); first != val {
			t.Errorf("dhtd get %s (plain): first line %q, want %q", target, first, val)
		}
	})

	for _, salt := range []string{"", "s1"} {
		t.Run("LibtorrentMutable/salt="+salt, func(t *testing.T) {
			val := "mutable from libtorrent, salt " + salt
			p := ltnode.Do[ltnode.PutReply](t, ctx, l, 50*time.Second, map[string]any{
				"cmd": "put_mutable", "seed": seedHex, "value": val, "salt": salt,
			})
			if p.PublicKey != pubHex || p.Target != mutableTarget(pub, salt) || p.Seq < 1 || p.NumSuccess < 2 {
				t.Fatalf("libtorrent put_mutable: key %s target %s seq %d num_success %d; want key %s target %s, seq >= 1, >= 2 stored",
					p.PublicKey, p.Target, p.Seq, p.NumSuccess, pubHex, mutableTarget(pub, salt))
			}
			args := []string{"get", "--pubkey", pubHex, "--bootstrap", d.Addr}
			if salt != "" {
				args = append(args, "--salt", salt)
			}
			var g getJSON
			decodeJSON(t, "dhtd get", lk.run(t, append(slices.Clone(args), "--json")...), &g)
			if !g.Found || g.Value != val || g.Seq == nil || *g.Seq != p.Seq || g.PubKey != pubHex || g.Sig != p.Signature || g.Target != p.Target {
				t.Fatalf("dhtd get --pubkey %s --salt %q: %+v; want %q seq %d sig %s target %s", pubHex, salt, g, val, p.Seq, p.Signature, p.Target)
			}
			r := lk.run(t, args...) // plain
			if r.stdout != val+"\n" || !strings.HasPrefix(r.stderr, fmt.Sprintf("seq %d, returned by ", p.Seq)) {
				t.Errorf("dhtd get --pubkey (plain): stdout %q, want %q; stderr %q, want \"seq %d, returned by ...\"", r.stdout, val+"\n", r.stderr, p.Seq)
			}
			ltSeq[salt] = p.Seq
		})
	}

	t.Run("DhtdImmutable", func(t *testing.T) {
		const val = "from the dhtd cli"
		h := sha1.Sum([]byte(bstr(val)))
		target := hex.EncodeToString(h[:])
		var p putJSON
		decodeJSON(t, "dhtd put", lk.run(t, "put", val, "--bootstrap", d.Addr, "--json"), &p)
		// D, D2 and libtorrent gave tokens; every one stores.
		if p.Target != target || p.Sent < 3 || p.Stored != p.Sent || len(p.Errors) > 0 || p.Error != nil {
			t.Fatalf("dhtd put: %+v; want target %s, >= 3 sent (D, D2, libtorrent), all stored", p, target)
		}
		g := ltnode.Do[ltnode.GetReply](t, ctx, l, 30*time.Second, map[string]any{
			"cmd": "get_immutable", "target": target, "timeout": 20,
		})
		if !g.Found || g.Value == nil || *g.Value != val {
			t.Fatalf("libtorrent get_immutable(%s): found %v value %v, want %q", target, g.Found, g.Value, val)
		}
	})

	for _, salt := range []string{"", "s1"} {
		t.Run("DhtdMutable/salt="+salt, func(t *testing.T) {
			if ltSeq[salt] == 0 {
				t.Skip("libtorrent's put failed")
			}
			val := "mutable from the dhtd cli, salt " + salt
			args := []string{"put", val, "--key", keyFile, "--bootstrap", d2.Addr, "--json"}
			if salt != "" {
				args = append(args, "--salt", salt)
			}
			var p putJSON
			decodeJSON(t, "dhtd put", lk.run(t, args...), &p)
			// dhtd read libtorrent's seq and went one above.
			if p.Target != mutableTarget(pub, salt) || p.Seq == nil || *p.Seq != ltSeq[salt]+1 ||
				p.Sent < 3 || p.Stored != p.Sent || len(p.Errors) > 0 || p.Error != nil {
				t.Fatalf("dhtd put --key --salt %q: %+v; want target %s, seq %d, >= 3 sent, all stored",
					salt, p, mutableTarget(pub, salt), ltSeq[salt]+1)
			}
			g := ltnode.Do[ltnode.GetReply](t, ctx, l, 30*time.Second, map[string]any{
				"cmd": "get_mutable", "public_key": pubHex, "salt": salt, "timeout": 20,
			})
			if !g.Found || g.Value == nil || *g.Value != val || g.Seq != *p.Seq || g.Target != p.Target {
				t.Fatalf("libtorrent get_mutable(salt %q): found %v value %v seq %d target %s; want %q seq %d target %s",
					salt, g.Found, g.Value, g.Seq, g.Target, val, *p.Seq, p.Target)
			}
			sig, err := hex.DecodeString(g.Signature)
			if err != nil || !ed25519.Verify(pub, bep44SignBuffer(salt, g.Seq, bstr(val)), sig) {
				t.Fatalf("libtorrent get_mutable(salt %q): signature %q does not verify", salt, g.Signature)
			}
		})
	}
}
