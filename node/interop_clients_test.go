package node

// Interop with two more real clients besides libtorrent (interop_test.go):
//
//   - webtorrent's DHT, npm bittorrent-dht 11 (also the DHT of the Pkarr JS
//     client), through testdata/js/bittorrent-dht.mjs, which `make deps`
//     installs;
//   - anacrolix/dht, the DHT of anacrolix/torrent, through the program in
//     testdata/interop/anacrolix (a module of its own, so that dhtd's
//     go.mod does not carry it), whose modules `make deps` downloads; the
//     test builds it with the module proxy off.
//
// Both run the same job and print the same JSON. Skipped with -short, and
// without the client, unless DHTD_REQUIRE_INTEROP=1.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

const (
	// jsDir is the npm project of the JavaScript clients.
	jsDir = "../testdata/js"
	// anacrolixDir is the module of the anacrolix/dht client program.
	anacrolixDir = "../testdata/interop/anacrolix"
)

// requireClient skips t with -short or when err says the client is
// missing; with DHTD_REQUIRE_INTEROP=1 a missing client fails t.
func requireClient(t *testing.T, name string, err error) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s interop test (-short)", name)
	}
	if err != nil {
		if os.Getenv("DHTD_REQUIRE_INTEROP") == "1" {
			t.Fatalf("DHTD_REQUIRE_INTEROP=1 but %s is missing (run make deps): %v", name, err)
		}
		t.Skipf("%s missing (run make deps): %v", name, err)
	}
}

// bittorrentDHTCommand returns the command that runs bittorrent-dht.mjs.
func bittorrentDHTCommand(t *testing.T) []string {
	nodeBin, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(jsDir, "node_modules", "bittorrent-dht", "package.json"))
	}
	requireClient(t, "Node.js with bittorrent-dht", err)
	script, err := filepath.Abs(filepath.Join(jsDir, "bittorrent-dht.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	return []string{nodeBin, script}
}

// anacrolixCommand builds the anacrolix/dht client program from the module
// cache alone (GOPROXY=off: a test never reaches the network) and returns
// its path.
func anacrolixCommand(t *testing.T) []string {
	goBin, err := exec.LookPath("go")
	var out []byte
	bin := filepath.Join(t.TempDir(), "anacrolix")
	if err == nil {
		cmd := exec.Command(goBin, "build", "-o", bin, ".")
		cmd.Dir = anacrolixDir
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=readonly", "GOWORK=off", "CGO_ENABLED=0")
		out, err = cmd.CombinedOutput()
	}
	if err != nil {
		err = &buildError{err: err, out: strings.TrimSpace(string(out))}
	}
	requireClient(t, "anacrolix/dht (its modules)", err)
	return []string{bin}
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + ": " + e.out }

// clientJob is what a client program reads (see bittorrent-dht.mjs).
type clientJob struct {
	PeersOf   string      `json:"peers_of"`
	Get       []clientGet `json:"get"`
	Announce  string      `json:"announce"`
	Port      int         `json:"port"`
	Immutable string      `json:"immutable"`
	Mutable   string      `json:"mutable"`
	Mutable2  string      `json:"mutable2"`
	Seed      string      `json:"seed"`
	Salt      string      `json:"salt"`
}

type clientGet struct {
	Target string `json:"target"`
	Salt   string `json:"salt,omitempty"`
}

// clientItem is one get of a client: V is the hex of the value's string.
type clientItem struct {
	Target string `json:"target"`
	Found  bool   `json:"found"`
	V      string `json:"v"`
	Seq    *int64 `json:"seq"`
	Err    string `json:"err"`
}

// clientOut is what a client program prints.
type clientOut struct {
	Table           int          `json:"table"`
	PublicKey       string       `json:"public_key"`
	Peers           []string     `json:"peers"`
	Got             []clientItem `json:"got"`
	ImmutableTarget string       `json:"immutable_target"`
	MutableTarget   string       `json:"mutable_target"`
	ReadBack        struct {
		Peers     []string   `json:"peers"`
		Immutable clientItem `json:"immutable"`
		Mutable   clientItem `json:"mutable"`
	} `json:"read_back"`
}

// TestInteropClients has two servers of each client join three dhtd nodes
// and read the peers and items dhtd stored (an immutable item and a salted
// mutable one); the first then announces and puts (immutable, mutable, and
// a second mutable version with cas) and the second reads them back; dhtd
// then reads what the client wrote.
func TestInteropClients(t *testing.T) {
	for _, c := range []struct {
		name    string
		host    string // where the client program listens
		command func(*testing.T) []string
	}{
		{"bittorrent-dht", "127.0.0.3", bittorrentDHTCommand},
		{"anacrolix", "127.0.0.4", anacrolixCommand},
	} {
		t.Run(c.name, func(t *testing.T) {
			testInteropClient(t, c.command(t), c.host)
		})
	}
}

func testInteropClient(t *testing.T, command []string, host string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodes := startInteropNodes(t, ctx, 3)

	// What dhtd stores for the client to read.
	var ih krpc.ID
	copy(ih[:], "dhtd-to-the-client..")
	if _, err := nodes[1].Announce(ctx, ih, AnnounceOptions{Port: 6881}); err != nil {
		t.Fatalf("dhtd announce: %v", err)
	}
	imm := krpc.AppendString(nil, "immutable from dhtd")
	ires, err := nodes[1].PutImmutable(ctx, imm)
	if err != nil {
		t.Fatalf("dhtd immutable put: %v", err)
	}
	dhtdKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x33}, 32))
	mres, err := nodes[2].PutMutable(ctx, dhtdKey, krpc.AppendString(nil, "mutable from dhtd"), PutOptions{Salt: []byte("dhtd-salt")})
	if err != nil {
		t.Fatalf("dhtd mutable put: %v", err)
	}

	seed := bytes.Repeat([]byte{0x44}, 32)
	job := clientJob{
		PeersOf:   ih.String(),
		Get:       []clientGet{{Target: ires.Target.String()}, {Target: mres.Target.String(), Salt: "dhtd-salt"}},
		Announce:  strings.Repeat("ab", 20),
		Port:      6999,
		Immutable: "immutable from the client",
		Mutable:   "mutable from the client",
		Mutable2:  "mutable from the client, seq 2",
		Seed:      hex.EncodeToString(seed),
		Salt:      "client-salt",
	}
	out := runClient(t, ctx, command, nodes[0].Addr(), job)
	clientPeer := netip.AddrPortFrom(netip.MustParseAddr(host), uint16(job.Port))

	t.Run("the client reads what dhtd stored", func(t *testing.T) {
		if out.Table == 0 {
			t.Errorf("the client's table is empty after joining through dhtd")
		}
		if want := []string{dhtdHost + ":6881"}; !slices.Equal(out.Peers, want) {
			t.Errorf("client lookup of %s: peers %v, want %v", ih, out.Peers, want)
		}
		want := []struct {
			v   string
			seq *int64
		}{{"immutable from dhtd", nil}, {"mutable from dhtd", &mres.Seq}}
		if len(out.Got) != len(want) {
			t.Fatalf("client got %d items, want %d", len(out.Got), len(want))
		}
		for i, g := range out.Got {
			v, _ := hex.DecodeString(g.V)
			switch {
			case !g.Found:
				t.Errorf("client get %s: not found (%s)", g.Target, g.Err)
			case string(v) != want[i].v:
				t.Errorf("client get %s: %q, want %q", g.Target, v, want[i].v)
			case want[i].seq != nil && (g.Seq == nil || *g.Seq != *want[i].seq):
				t.Errorf("client get %s: seq %v, want %d", g.Target, g.Seq, *want[i].seq)
			}
		}
	})

	t.Run("dhtd reads what the client stored", func(t *testing.T) {
		wih, err := krpc.ParseID(job.Announce)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := nodes[2].GetPeers(ctx, wih, nil)
		if err != nil {
			t.Fatalf("dhtd get_peers: %v", err)
		}
		if !slices.Contains(pr.Peers, clientPeer) {
			t.Errorf("dhtd get_peers of the client's infohash: %v, want %v among them", pr.Peers, clientPeer)
		}

		wantImm := krpc.AppendString(nil, job.Immutable)
		if got := out.ImmutableTarget; got != storage.ImmutableTarget(wantImm).String() {
			t.Errorf("client's immutable target %s, want SHA-1 of %q", got, wantImm)
		}
		g, err := nodes[2].Get(ctx, storage.ImmutableTarget(wantImm), GetOptions{})
		if err != nil || !bytes.Equal(g.Item.V, wantImm) {
			t.Errorf("dhtd get of the client's immutable item: %q, %v; want %q", g.Item.V, err, wantImm)
		}

		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		if out.PublicKey != hex.EncodeToString(pub) {
			t.Fatalf("client public key %s, want %x", out.PublicKey, pub)
		}
		target := storage.MutableTarget(pub, []byte(job.Salt))
		if out.MutableTarget != target.String() {
			t.Errorf("client's mutable target %s, want %s", out.MutableTarget, target)
		}
		g, err = nodes[0].Get(ctx, target, GetOptions{Salt: []byte(job.Salt)})
		wantMut := krpc.AppendString(nil, job.Mutable2)
		if err != nil || !bytes.Equal(g.Item.V, wantMut) || g.Item.Seq != 2 {
			t.Errorf("dhtd get of the client's mutable item: %q seq %d, %v; want %q seq 2 (the cas put)", g.Item.V, g.Item.Seq, err, wantMut)
		}
	})

	t.Run("a second client server reads what the first wrote", func(t *testing.T) {
		rb := out.ReadBack
		if !slices.Contains(rb.Peers, clientPeer.String()) {
			t.Errorf("peers %v, want %s among them", rb.Peers, clientPeer)
		}
		for _, c := range []struct {
			item clientItem
			want string
		}{{rb.Immutable, job.Immutable}, {rb.Mutable, job.Mutable2}} {
			v, _ := hex.DecodeString(c.item.V)
			if !c.item.Found || string(v) != c.want {
				t.Errorf("get %s: found %v, %q (%s); want %q", c.item.Target, c.item.Found, v, c.item.Err, c.want)
			}
		}
	})
}

// runClient runs a client program with boot as its only bootstrap node
// and job, bounded by 90 s.
func runClient(t *testing.T, ctx context.Context, command []string, boot netip.AddrPort, job clientJob) clientOut {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	arg, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, command[0], append(command[1:], boot.String(), string(arg))...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(command[len(command)-1]), err, stdout.String(), stderr.String())
	}
	var out clientOut
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("%s: output is not JSON: %v\n%s", filepath.Base(command[len(command)-1]), err, stdout.String())
	}
	t.Logf("%s: %v; %s", filepath.Base(command[len(command)-1]), time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout.String()))
	return out
}
