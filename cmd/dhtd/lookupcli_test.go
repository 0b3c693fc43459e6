package main

// Tests of the lookup commands' options through the real binary: --id and
// --no-bootstrap on every lookup command, `dhtd find_node`, keygen --seed
// and --show, put/get --key, and the nodes --json lists (stored_at,
// refused_by, held_by).

import (
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dhtd/dhtd/internal/fakenode"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

// fakeNode is a DHT node on 127.0.0.1 that answers lookups (with a token
// for get and get_peers) with no nodes, refuses every put and
// announce_peer with KRPC error code/msg, and reports each query it gets.
func fakeNode(t *testing.T, id krpc.ID, code int64, msg string) (string, <-chan fakenode.Query) {
	t.Helper()
	f := fakenode.Refuser(t, id, code, msg)
	return f.Addr.String(), f.Queries
}

// drain returns what seen holds now. The command that sent the queries
// has exited, and the fake reports a query before it answers it.
func drain(seen <-chan fakenode.Query) []fakenode.Query {
	var out []fakenode.Query
	for {
		select {
		case q := <-seen:
			out = append(out, q)
		default:
			return out
		}
	}
}

// lookupCommands are the lookup commands with the arguments each needs.
func lookupCommands() [][]string {
	ih := krpc.RandomID().String()
	return [][]string{
		{"peers", ih},
		{"announce", ih, "--port", "6881"},
		{"put", "a value"},
		{"get", krpc.RandomID().String()},
		{"sample", "--max-nodes", "5"},
		{"scrape", ih},
		{"find_node", krpc.RandomID().String()},
	}
}

// TestLookupCommandsIDAndBootstrap: every lookup command sends the id
// given with --id in every query; with --no-bootstrap it contacts only the
// --bootstrap nodes, and with --no-bootstrap alone none at all (it fails at
// once, having sent nothing).
func TestLookupCommandsIDAndBootstrap(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	fakeID := krpc.ID{0xfa, 0xce}
	addr, seen := fakeNode(t, fakeID, 203, "refused by the test")
	for _, cmd := range lookupCommands() {
		t.Run(cmd[0], func(t *testing.T) {
			id := krpc.RandomID()
			drain(seen)
			args := append(slices.Clone(cmd), "--bootstrap", addr, "--no-bootstrap", "--id", id.String(),
				"--listen", "127.0.0.1:0", "--timeout", "10s")
			r := runDhtd(t, args...)
			qs := drain(seen)
			if len(qs) == 0 {
				t.Fatalf("dhtd %q: the --bootstrap node got no query (exit %d)\n%s", args, r.code, r.stderr)
			}
			for _, q := range qs {
				if q.ID != id {
					t.Fatalf("dhtd %q: %s query with id %s, want --id %s", args, q.Method, q.ID, id)
				}
			}

			// --no-bootstrap without --bootstrap: nothing to ask. A lookup
			// fails at once; a sample walk visits nothing.
			args = append(slices.Clone(cmd), "--no-bootstrap", "--listen", "127.0.0.1:0", "--timeout", "10s", "--verbose")
			r = runDhtd(t, args...)
			nothingAsked := r.code != 0 && strings.Contains(r.stderr, "no nodes known and no bootstrap addresses")
			if cmd[0] == "sample" {
				nothingAsked = r.code == exitNotFound && strings.Contains(r.stderr, "from 0 nodes (0 queries, 0 failed)")
			}
			if !nothingAsked {
				t.Fatalf("dhtd %q: exit %d, want no query sent\nstdout:\n%s\nstderr:\n%s",
					args, r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, `msg="lookup node"`) || !strings.Contains(r.stderr, "bootstrap=[]") {
				t.Fatalf("dhtd %q: --verbose does not show an empty bootstrap list:\n%s", args, r.stderr)
			}
			for _, router := range defaultRouters {
				host, _, _ := strings.Cut(router, ":")
				if strings.Contains(r.stderr, host) {
					t.Fatalf("dhtd %q: stderr mentions the public router %s:\n%s", args, host, r.stderr)
				}
			}
		})
	}
	if t.Failed() {
		return
	}
	t.Run("bad id", func(t *testing.T) {
		r := runDhtd(t, "find_node", krpc.RandomID().String(), "--bootstrap", addr, "--id", "abc", "--listen", "127.0.0.1:0")
		if r.code == 0 || !strings.Contains(r.stderr, "--id") {
			t.Fatalf("find_node --id abc: exit %d, stderr %q; want non-zero and an --id error", r.code, r.stderr)
		}
	})
}

// writeJSON is the part of put's and announce's --json the tests read.
type writeJSON struct {
	Target    string `json:"target"`
	PublicKey string `json:"public_key"`
	Salt      string `json:"salt"`
	Seq       *int64 `json:"seq"`
	Stored    int    `json:"stored"`
	Sent      int    `json:"sent"`
	Announced int    `json:"announced"`
	Accepted  int    `json:"accepted"`
	StoredAt  []struct {
		ID   string `json:"id"`
		Addr string `json:"addr"`
	} `json:"stored_at"`
	RefusedBy []struct {
		ID      string `json:"id"`
		Addr    string `json:"addr"`
		Code    int64  `json:"code"`
		Message string `json:"message"`
	} `json:"refused_by"`
	Error struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// TestWriteCommandsNameRefusals: a node that refuses a put or an announce
// is named, with its id, code and message, by --json (refused_by), by the
// plain output and by the error.
func TestWriteCommandsNameRefusals(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	fakeID := krpc.ID{0xbe, 0xef}
	const code, msg = 203, "seq without k"
	addr, _ := fakeNode(t, fakeID, code, msg)
	ih := krpc.RandomID().String()
	for _, cmd := range [][]string{{"put", "hello"}, {"announce", ih, "--port", "6881"}} {
		t.Run(cmd[0], func(t *testing.T) {
			base := append(slices.Clone(cmd), "--bootstrap", addr, "--listen", "127.0.0.1:0", "--timeout", "10s")
			r := runDhtd(t, append(slices.Clone(base), "--json")...)
			var out writeJSON
			decodeJSON(t, "dhtd "+cmd[0], r, &out)
			if r.code == 0 || len(out.StoredAt) != 0 || len(out.RefusedBy) != 1 {
				t.Fatalf("dhtd %s --json: exit %d, %+v; want non-zero, no stored_at, one refused_by", cmd[0], r.code, out)
			}
			rb := out.RefusedBy[0]
			if rb.ID != fakeID.String() || rb.Addr != addr || rb.Code != code || rb.Message != msg {
				t.Fatalf("refused_by %+v, want id %s addr %s code %d message %q", rb, fakeID, addr, code, msg)
			}
			line := fmt.Sprintf("refused by %s (id %s): %d %s", addr, fakeID, code, msg)
			if !strings.Contains(out.Error.Message, line) || !strings.Contains(r.stderr, line) {
				t.Fatalf("error %q / stderr %q: want %q in both", out.Error.Message, r.stderr, line)
			}
			// Plain: nothing on stdout (no fake result), the error on
			// stderr names the node, and the exit code says "refused".
			r = runDhtd(t, base...)
			if r.code != exitRefused || r.stdout != "" || !strings.Contains(r.stderr, line) {
				t.Fatalf("dhtd %s (plain): exit %d, stdout %q, stderr %q; want exit %d and the line %q on stderr", cmd[0], r.code, r.stdout, r.stderr, exitRefused, line)
			}
		})
	}
}

// TestFindNodeCommand: `dhtd find_node` over a 16-node network prints the
// K closest nodes to the target of the whole network, closest first, with
// their addresses and round trips.
func TestFindNodeCommand(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	seed, nodes := inProcessNetwork(t, 15)
	all := append([]*node.Node{seed}, nodes...)
	target := krpc.RandomID()
	slices.SortFunc(all, func(a, b *node.Node) int { return routing.CompareDistance(target, a.ID(), b.ID()) })
	want := all[:8]

	r := runDhtd(t, "find_node", target.String(), "--bootstrap", seed.Addr().String(), "--listen", "127.0.0.1:0", "--json")
	if r.code != 0 {
		t.Fatalf("find_node: exit %d\n%s", r.code, r.stderr)
	}
	var out struct {
		Target string `json:"target"`
		Nodes  []struct {
			ID        string  `json:"id"`
			Addr      string  `json:"addr"`
			RTTMillis float64 `json:"rtt_ms"`
		} `json:"nodes"`
		Queried int `json:"queried"`
	}
	decodeJSON(t, "find_node", r, &out)
	if out.Target != target.String() || len(out.Nodes) != len(want) {
		t.Fatalf("find_node --json: target %s, %d nodes; want %s and %d:\n%s", out.Target, len(out.Nodes), target, len(want), r.stdout)
	}
	for i, n := range out.Nodes {
		if n.ID != want[i].ID().String() || n.Addr != want[i].Addr().String() || n.RTTMillis <= 0 {
			t.Errorf("node %d: %+v; want %s@%s with a round trip", i, n, want[i].ID(), want[i].Addr())
		}
	}
	if out.Queried < len(want) {
		t.Errorf("find_node queried %d nodes, fewer than the %d it returns", out.Queried, len(want))
	}

	r = runDhtd(t, "find_node", target.String(), "--bootstrap", seed.Addr().String(), "--listen", "127.0.0.1:0")
	if r.code != 0 {
		t.Fatalf("find_node (plain): exit %d\n%s", r.code, r.stderr)
	}
	reLine := regexp.MustCompile(`(?m)^([0-9a-f]{40}) +(\S+) +([0-9.]+) ms$`)
	lines := reLine.FindAllStringSubmatch(r.stdout, -1)
	if len(lines) != len(want) {
		t.Fatalf("find_node (plain): %d node lines, want %d:\n%s", len(lines), len(want), r.stdout)
	}
	for i, m := range lines {
		if m[1] != want[i].ID().String() || m[2] != want[i].Addr().String() {
			t.Errorf("line %d: %s %s, want %s %s", i, m[1], m[2], want[i].ID(), want[i].Addr())
		}
	}
	if !strings.Contains(r.stdout, "8 closest nodes") {
		t.Errorf("find_node (plain): no summary line:\n%s", r.stdout)
	}
}

// TestKeygenSeedAndShow: keygen --seed writes a key file holding that seed
// and prints its public key; keygen --show prints a key file's public key.
func TestKeygenSeedAndShow(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	dir := t.TempDir()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(0x40 + i)
	}
	seedHex := hex.EncodeToString(seed)
	pubHex := hex.EncodeToString(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
	file := filepath.Join(dir, "imported.seed")

	r := runDhtd(t, "keygen", "--seed", seedHex, file)
	if r.code != 0 || !strings.Contains(r.stdout, "public key: "+pubHex+"\n") {
		t.Fatalf("keygen --seed: exit %d, stdout %q; want public key %s\n%s", r.code, r.stdout, pubHex, r.stderr)
	}
	b, err := os.ReadFile(file)
	if err != nil || string(b) != seedHex+"\n" {
		t.Fatalf("key file holds %q (%v), want the seed %s", b, err, seedHex)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode(), err)
	}

	for _, args := range [][]string{{"keygen", "--show", file}, {"keygen", "--show", file, "--json"}} {
		r = runDhtd(t, args...)
		if r.code != 0 {
			t.Fatalf("dhtd %q: exit %d\n%s", args, r.code, r.stderr)
		}
		if slices.Contains(args, "--json") {
			var out struct {
				KeyFile   string `json:"key_file"`
				PublicKey string `json:"public_key"`
			}
			decodeJSON(t, "keygen --show", r, &out)
			if out.KeyFile != file || out.PublicKey != pubHex {
				t.Fatalf("keygen --show --json: %+v, want %s %s", out, file, pubHex)
			}
		} else if !strings.Contains(r.stdout, "public key: "+pubHex+"\n") {
			t.Fatalf("keygen --show: %q, want public key %s", r.stdout, pubHex)
		}
	}

	// A generated key: --show agrees with what keygen printed.
	gen := filepath.Join(dir, "random.seed")
	r = runDhtd(t, "keygen", gen, "--json")
	var made struct {
		PublicKey string `json:"public_key"`
	}
	decodeJSON(t, "keygen", r, &made)
	if made.PublicKey == pubHex || len(made.PublicKey) != 64 {
		t.Fatalf("keygen: public key %q, want a fresh 64-hex key", made.PublicKey)
	}
	if r = runDhtd(t, "keygen", "--show", gen); !strings.Contains(r.stdout, made.PublicKey) {
		t.Fatalf("keygen --show %s: %q, want %s", gen, r.stdout, made.PublicKey)
	}

	bad := []struct {
		name string
		args []string
	}{
		{"seed too short", []string{"keygen", "--seed", seedHex[:62], filepath.Join(dir, "short")}},
		{"seed not hex", []string{"keygen", "--seed", strings.Repeat("zz", 32), filepath.Join(dir, "nothex")}},
		{"existing file", []string{"keygen", "--seed", seedHex, file}},
		{"show a missing file", []string{"keygen", "--show", filepath.Join(dir, "missing")}},
		{"show and a FILE", []string{"keygen", "--show", file, filepath.Join(dir, "other")}},
	}
	for _, tc := range bad {
		if r := runDhtd(t, tc.args...); r.code == 0 {
			t.Errorf("%s: dhtd %q exited 0, want an error", tc.name, tc.args)
		}
	}
	for _, name := range []string{"short", "nothex", "other"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("a refused keygen wrote %s", name)
		}
	}
}

// TestPutGetKeyCommands: put --key prints the public key, salt and target
// and, with --json, the nodes that stored it; get --key finds it without
// the public key being typed and lists the nodes that held it; a put with
// a stale seq lists the nodes that refused it (302).
func TestPutGetKeyCommands(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	seed, nodes := inProcessNetwork(t, 11)
	all := append([]*node.Node{seed}, nodes...)
	byID := make(map[string]*node.Node)
	for _, n := range all {
		byID[n.ID().String()] = n
	}
	boot := []string{"--bootstrap", seed.Addr().String(), "--listen", "127.0.0.1:0"}
	keyFile, pub, _ := keygen(t)
	pubHex := hex.EncodeToString(pub)
	const salt = "my salt"
	target := storage.MutableTarget(pub, []byte(salt)).String()

	r := runDhtd(t, append([]string{"put", "--key", keyFile, "--salt", salt, "first", "--seq", "5"}, boot...)...)
	if r.code != 0 {
		t.Fatalf("put --key: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"target:     " + target + "\n", "public key: " + pubHex + "\n", fmt.Sprintf("salt:       %q\n", salt), "seq:        5\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("put --key (plain): no %q in\n%s", want, r.stdout)
		}
	}

	r = runDhtd(t, append([]string{"put", "--key", keyFile, "--salt", salt, "second", "--json"}, boot...)...)
	var p writeJSON
	decodeJSON(t, "put --key", r, &p)
	if r.code != 0 || p.Target != target || p.PublicKey != pubHex || p.Salt != salt || p.Seq == nil || *p.Seq != 6 {
		t.Fatalf("put --key --json: exit %d %+v; want target %s key %s salt %q seq 6", r.code, p, target, pubHex, salt)
	}
	if len(p.StoredAt) != p.Stored || p.Stored == 0 || len(p.RefusedBy) != 0 {
		t.Fatalf("put --key --json: stored %d, stored_at %v, refused_by %v", p.Stored, p.StoredAt, p.RefusedBy)
	}
	storedAt := make(map[string]bool)
	for _, s := range p.StoredAt {
		n := byID[s.ID]
		if n == nil || n.Addr().String() != s.Addr {
			t.Fatalf("stored_at lists %s@%s, not a node of the network", s.ID, s.Addr)
		}
		storedAt[s.ID] = true
	}
	// Exactly the nodes listed hold an item.
	for id, n := range byID {
		items := n.Stats().Items
		if (items.Mutable > 0) != storedAt[id] {
			t.Errorf("node %s holds %d mutable items, listed in stored_at: %v", id, items.Mutable, storedAt[id])
		}
	}

	type getOut struct {
		Target string `json:"target"`
		Found  bool   `json:"found"`
		Value  string `json:"value"`
		Seq    *int64 `json:"seq"`
		PubKey string `json:"pubkey"`
		Count  int    `json:"count"`
		HeldBy []struct {
			ID   string `json:"id"`
			Addr string `json:"addr"`
		} `json:"held_by"`
	}
	r = runDhtd(t, append([]string{"get", "--key", keyFile, "--salt", salt, "--json"}, boot...)...)
	var g getOut
	decodeJSON(t, "get --key", r, &g)
	if r.code != 0 || !g.Found || g.Target != target || g.Value != "second" || g.Seq == nil || *g.Seq != 6 || g.PubKey != pubHex {
		t.Fatalf("get --key --json: exit %d %+v; want %q seq 6 at %s", r.code, g, "second", target)
	}
	if len(g.HeldBy) != g.Count || g.Count == 0 {
		t.Fatalf("get --key --json: count %d, held_by %v", g.Count, g.HeldBy)
	}
	for _, h := range g.HeldBy {
		if !storedAt[h.ID] || byID[h.ID].Addr().String() != h.Addr {
			t.Errorf("held_by lists %s@%s, which the put did not store at", h.ID, h.Addr)
		}
	}
	r = runDhtd(t, append([]string{"get", "--key", keyFile, "--salt", salt}, boot...)...)
	if r.code != 0 || r.stdout != "second\n" || !strings.Contains(r.stderr, "seq 6, returned by ") {
		t.Fatalf("get --key (plain): exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r = runDhtd(t, append([]string{"get", "--key", keyFile, "--pubkey", pubHex}, boot...)...); r.code == 0 {
		t.Errorf("get --key with --pubkey: exit 0, want a usage error")
	}

	// A seq below the stored one: every storer refuses with 302.
	r = runDhtd(t, append([]string{"put", "--key", keyFile, "--salt", salt, "stale", "--seq", "2", "--json"}, boot...)...)
	var st writeJSON
	decodeJSON(t, "put --seq 2", r, &st)
	if r.code == 0 || st.Stored != 0 || len(st.RefusedBy) == 0 {
		t.Fatalf("stale put: exit %d, %+v; want non-zero and refusals", r.code, st)
	}
	for _, rb := range st.RefusedBy {
		n := byID[rb.ID]
		if n == nil || n.Addr().String() != rb.Addr || rb.Code != krpc.ErrCodeSeqLessCurrent || rb.Message == "" {
			t.Errorf("refused_by %+v: want a node of the network, code 302 and a message", rb)
		}
	}
}

// TestAnnouncePeersNodes: announce --json lists the nodes that stored the
// peer (stored_at), and peers --json lists, per node that answered with
// peers, the peers it gave (held_by): the same nodes.
func TestAnnouncePeersNodes(t *testing.T) {
	dhtdBinary(t) // skips under -short
	t.Parallel()
	seed, nodes := inProcessNetwork(t, 11)
	byID := make(map[string]*node.Node)
	for _, n := range append([]*node.Node{seed}, nodes...) {
		byID[n.ID().String()] = n
	}
	boot := []string{"--bootstrap", seed.Addr().String(), "--listen", "127.0.0.1:0"}
	ih := krpc.RandomID().String()
	const peer = "127.0.0.1:4321"

	r := runDhtd(t, append([]string{"announce", ih, "--port", "4321", "--json"}, boot...)...)
	var a writeJSON
	decodeJSON(t, "announce", r, &a)
	if r.code != 0 || a.Accepted == 0 || len(a.StoredAt) != a.Accepted || len(a.RefusedBy) != 0 {
		t.Fatalf("announce --json: exit %d %+v; want stored_at listing every accepting node, no refusals", r.code, a)
	}
	storedAt := make(map[string]string)
	for _, s := range a.StoredAt {
		storedAt[s.ID] = s.Addr
	}
	// Exactly the nodes listed store a peer.
	for id, n := range byID {
		peers := n.Stats().Peers
		if _, listed := storedAt[id]; (peers.Peers > 0) != listed || (listed && storedAt[id] != n.Addr().String()) {
			t.Errorf("node %s@%s stores %d peers; stored_at lists it: %v (%s)", id, n.Addr(), peers.Peers, listed, storedAt[id])
		}
	}

	r = runDhtd(t, append([]string{"peers", ih, "--json"}, boot...)...)
	var out struct {
		Peers  []string `json:"peers"`
		HeldBy []struct {
			ID    string   `json:"id"`
			Addr  string   `json:"addr"`
			Peers []string `json:"peers"`
		} `json:"held_by"`
	}
	decodeJSON(t, "peers", r, &out)
	if r.code != 0 || !slices.Equal(out.Peers, []string{peer}) || len(out.HeldBy) == 0 {
		t.Fatalf("peers --json: exit %d %s; want [%s] and held_by", r.code, r.stdout, peer)
	}
	for _, h := range out.HeldBy {
		if addr, ok := storedAt[h.ID]; !ok || addr != h.Addr || !slices.Equal(h.Peers, []string{peer}) {
			t.Errorf("held_by %+v: want a node of stored_at (%v) giving [%s]", h, storedAt, peer)
		}
	}
}
