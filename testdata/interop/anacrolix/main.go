// Command anacrolix runs anacrolix/dht (the Go DHT of anacrolix/torrent)
// against dhtd, for node/interop_clients_test.go; it does what
// testdata/js/bittorrent-dht.mjs does, with the same job and the same
// output, so that one test checks both clients.
//
//	anacrolix HOST:PORT JOB_JSON
//
// Two servers on 127.0.0.4 bootstrap from the dhtd node at HOST:PORT only.
// The first reads what dhtd stored (the job's "peers_of" infohash and
// "get" items), then announces, puts an immutable string and a salted
// mutable one at seq 1, then seq 2 with cas 1; the second reads each back.
// It prints one JSON object on stdout.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/exts/getput"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

type job struct {
	PeersOf string `json:"peers_of"`
	Get     []struct {
		Target string `json:"target"`
		Salt   string `json:"salt"`
	} `json:"get"`
	Announce  string `json:"announce"`
	Port      int    `json:"port"`
	Immutable string `json:"immutable"`
	Mutable   string `json:"mutable"`
	Mutable2  string `json:"mutable2"`
	Seed      string `json:"seed"`
	Salt      string `json:"salt"`
}

type item struct {
	Target string `json:"target"`
	Found  bool   `json:"found"`
	V      string `json:"v"` // hex of the value's string
	Seq    *int64 `json:"seq"`
	Err    string `json:"err,omitempty"`
}

type output struct {
	Table           int      `json:"table"`
	PublicKey       string   `json:"public_key"`
	Peers           []string `json:"peers"`
	Got             []item   `json:"got"`
	ImmutableTarget string   `json:"immutable_target"`
	MutableTarget   string   `json:"mutable_target"`
	ReadBack        struct {
		Peers     []string `json:"peers"`
		Immutable item     `json:"immutable"`
		Mutable   item     `json:"mutable"`
	} `json:"read_back"`
}

func main() {
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "anacrolix:", err)
		os.Exit(1)
	}
}

func run(boot, jobJSON string) error {
	var j job
	if err := json.Unmarshal([]byte(jobJSON), &j); err != nil {
		return err
	}
	bootAddr, err := net.ResolveUDPAddr("udp4", boot)
	if err != nil {
		return err
	}
	seed, err := hex.DecodeString(j.Seed)
	if err != nil {
		return err
	}
	priv := ed25519.NewKeyFromSeed(seed)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	a, err := start(bootAddr)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := start(bootAddr)
	if err != nil {
		return err
	}
	defer b.Close()
	out := output{Table: a.NumNodes(), PublicKey: hex.EncodeToString(priv.Public().(ed25519.PublicKey))}

	if out.Peers, err = lookupPeers(a, j.PeersOf); err != nil {
		return err
	}
	for _, g := range j.Get {
		out.Got = append(out.Got, get(ctx, a, g.Target, []byte(g.Salt)))
	}

	ih, err := parseID(j.Announce)
	if err != nil {
		return err
	}
	ann, err := a.Announce(ih, j.Port, false)
	if err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	for range ann.Peers {
	}
	<-ann.Finished()

	imm, err := bep44.NewItem(j.Immutable, nil, 0, 0, nil)
	if err != nil {
		return err
	}
	if err := put(ctx, a, imm, nil); err != nil {
		return fmt.Errorf("immutable put: %w", err)
	}
	out.ImmutableTarget = fmt.Sprintf("%x", imm.Target())
	salt := []byte(j.Salt)
	for _, p := range []struct {
		v        string
		seq, cas int64
	}{{j.Mutable, 1, 0}, {j.Mutable2, 2, 1}} {
		m, err := bep44.NewItem(p.v, salt, p.seq, p.cas, priv)
		if err != nil {
			return err
		}
		if err := put(ctx, a, m, salt); err != nil {
			return fmt.Errorf("mutable put seq %d: %w", p.seq, err)
		}
		out.MutableTarget = fmt.Sprintf("%x", m.Target())
	}

	if out.ReadBack.Peers, err = lookupPeers(b, j.Announce); err != nil {
		return err
	}
	out.ReadBack.Immutable = get(ctx, b, out.ImmutableTarget, nil)
	out.ReadBack.Mutable = get(ctx, b, out.MutableTarget, salt)
	return json.NewEncoder(os.Stdout).Encode(out)
}

// start starts a server on 127.0.0.4 whose only starting node is boot,
// and bootstraps it.
func start(boot *net.UDPAddr) (*dht.Server, error) {
	conn, err := net.ListenPacket("udp4", "127.0.0.4:0")
	if err != nil {
		return nil, err
	}
	c := dht.NewDefaultServerConfig()
	c.Conn = conn
	c.NoSecurity = true // loopback ids cannot satisfy BEP 42
	c.StartingNodes = func() ([]dht.Addr, error) { return []dht.Addr{dht.NewAddr(boot)}, nil }
	c.Store = bep44.NewMemory()
	s, err := dht.NewServer(c)
	if err != nil {
		return nil, err
	}
	if _, err := s.Bootstrap(); err != nil {
		s.Close()
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return s, nil
}

func parseID(s string) (ih [20]byte, err error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 20 {
		return ih, fmt.Errorf("infohash %q: %v", s, err)
	}
	copy(ih[:], b)
	return ih, nil
}

// lookupPeers runs a get_peers traversal (no announce) and returns the
// distinct peers found, sorted.
func lookupPeers(s *dht.Server, ihHex string) ([]string, error) {
	ih, err := parseID(ihHex)
	if err != nil {
		return nil, err
	}
	a, err := s.AnnounceTraversal(ih)
	if err != nil {
		return nil, fmt.Errorf("get_peers: %w", err)
	}
	var peers []string
	for pv := range a.Peers {
		for _, p := range pv.Peers {
			if ps := p.String(); !slices.Contains(peers, ps) {
				peers = append(peers, ps)
			}
		}
	}
	slices.Sort(peers)
	return peers, nil
}

func get(ctx context.Context, s *dht.Server, target string, salt []byte) item {
	it := item{Target: target}
	t, err := parseID(target)
	if err != nil {
		it.Err = err.Error()
		return it
	}
	if len(salt) == 0 {
		salt = nil
	}
	r, _, err := getput.Get(ctx, bep44.Target(t), s, nil, salt)
	if err != nil {
		it.Err = err.Error()
		return it
	}
	var v string
	if err := bencode.Unmarshal(r.V, &v); err != nil {
		it.Err = fmt.Sprintf("value %q is not a string: %v", r.V, err)
		return it
	}
	it.Found, it.V = true, hex.EncodeToString([]byte(v))
	if r.Mutable {
		it.Seq = &r.Seq
	}
	return it
}

// put stores i on the K closest nodes to its target (getput.Put looks
// them up first).
func put(ctx context.Context, s *dht.Server, i *bep44.Item, salt []byte) error {
	_, err := getput.Put(ctx, krpc.ID(i.Target()), s, salt, func(int64) bep44.Put { return i.ToPut() })
	return err
}
