package main

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// fillerCommand runs --count live DHT nodes that stay up and keep
// answering, the shared routing table of a fair measurement: each has a
// random id and its own socket on 127.0.4.x, answers ping with its id and
// find_node, get_peers and get with a token and the 8 fillers closest to
// the target (BEP 5), so a node that looks them up learns all of them.
//
// It prints "fillers ADDR,ADDR,... pid PID" once bound, then reads
// commands from stdin: "offer IP:PORT" makes every filler ping that node
// (which then confirms and adds it, BEP 5) and prints "offered IP:PORT".
// It runs until stdin reaches EOF or it is sent SIGTERM/SIGINT.
func fillerCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("filler", flag.ContinueOnError)
	fs.SetOutput(stderr)
	count := fs.Int("count", 16, "filler nodes (at most 250)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *count < 1 || *count > 250 {
		return fmt.Errorf("--count %d: want 1..250", *count)
	}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	nodes := make([]krpc.NodeInfo, *count)
	conns := make([]*net.UDPConn, *count)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	for i := range nodes {
		src := netip.AddrFrom4([4]byte{127, 0, 4, byte(1 + i)})
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		if err != nil {
			return fmt.Errorf("filler: socket on %s: %w", src, err)
		}
		conns[i] = c
		nodes[i] = krpc.NodeInfo{ID: randomID(rnd), Addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); fillerLoop(c, nodes[i].ID, nodes) }()
	}
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr.String()
	}
	fmt.Fprintf(stdout, "fillers %s pid %d\n", strings.Join(addrs, ","), os.Getpid())
	return serveLines(stdin, func(line string) {
		f := strings.Fields(line)
		if len(f) != 2 || f[0] != "offer" {
			fmt.Fprintf(stdout, "error: want \"offer IP:PORT\", got %q\n", line)
			return
		}
		ap, err := loopbackTarget(f[1])
		if err != nil {
			fmt.Fprintf(stdout, "error: %v\n", err)
			return
		}
		for i, c := range conns {
			q := krpc.Msg{T: "of", Y: krpc.KindQuery, Q: krpc.MethodPing, A: &krpc.Args{ID: nodes[i].ID}}
			b, _ := krpc.Encode(&q)
			_, _ = c.WriteToUDPAddrPort(b, ap)
			if i%8 == 7 {
				time.Sleep(20 * time.Millisecond) // under the target's confirmations in flight
			}
		}
		fmt.Fprintf(stdout, "offered %s\n", ap)
	})
}

// fillerLoop answers every query that arrives on c as filler id:
// find_node, get_peers and get carry the 8 fillers closest to the target.
func fillerLoop(c *net.UDPConn, id krpc.ID, all []krpc.NodeInfo) {
	buf := make([]byte, 4096)
	out := make([]byte, 0, 512)
	var m krpc.Msg
	near := make([]krpc.NodeInfo, len(all))
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if krpc.Decode(buf[:n], &m) != nil || m.Y != krpc.KindQuery || m.A == nil {
			continue
		}
		r := krpc.Msg{T: m.T, Y: krpc.KindResponse, R: &krpc.Return{ID: id}}
		tgt := m.A.Target
		if tgt == nil {
			tgt = m.A.InfoHash
		}
		if m.Q != krpc.MethodPing && tgt != nil {
			copy(near, all)
			t := *tgt
			slices.SortFunc(near, func(a, b krpc.NodeInfo) int { return cmpDistance(a.ID, b.ID, t) })
			r.R.Nodes = near[:min(8, len(near))]
			r.R.Token = "bench"
		}
		if out, err = krpc.AppendEncode(out[:0], &r); err == nil {
			_, _ = c.WriteToUDPAddrPort(out, from)
		}
	}
}

// cmpDistance orders a and b by XOR distance to t (BEP 5, Routing Table).
func cmpDistance(a, b, t krpc.ID) int {
	for i := range t {
		da, db := a[i]^t[i], b[i]^t[i]
		if da != db {
			if da < db {
				return -1
			}
			return 1
		}
	}
	return 0
}

// seedInfohash is the infohash seed announces its peers on.
var seedInfohash = krpc.ID(sha1.Sum([]byte("dhtd-bench seed infohash")))

// seedValue returns the bencoded byte string of exactly size bytes
// (BEP 44 caps a bencoded v at 1000 bytes) that seed stores.
func seedValue(size int) []byte {
	for digits := 1; digits < 8; digits++ {
		n := size - digits - 1
		if n >= 0 && len(fmt.Sprint(n)) == digits {
			v := fmt.Appendf(nil, "%d:", n)
			for i := range n {
				v = append(v, 'a'+byte(i%26))
			}
			return v
		}
	}
	return []byte("0:")
}

// seedResult is what seed prints (JSON).
type seedResult struct {
	Infohash  string `json:"infohash"`   // announced on by Peers addresses
	Peers     int    `json:"peers"`      // announces acknowledged
	Values    int    `json:"values"`     // peers one get_peers for Infohash returns
	Item      string `json:"item"`       // immutable item target (BEP 44)
	ItemBytes int    `json:"item_bytes"` // bencoded v of the item a get returns
}

// seedCommand stores what the get_peers and get measurements read on a
// node: --peers peers on one infohash (announced from 127.1.0.x, one
// address each) and one immutable item of --item-size bencoded bytes
// (BEP 44). It checks that both come back and prints a JSON seedResult.
func seedCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "127.0.0.1:6881", "node to seed (loopback only)")
	peers := fs.Int("peers", 50, "peers to announce on the infohash (at most 250)")
	size := fs.Int("item-size", 1000, "bencoded size of the immutable item (BEP 44: at most 1000)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ap, err := loopbackTarget(*target)
	if err != nil {
		return err
	}
	if *peers < 1 || *peers > 250 || *size < 3 || *size > 1000 {
		return fmt.Errorf("need 1 <= --peers <= 250 and 3 <= --item-size <= 1000")
	}
	ctx := context.Background()
	res := seedResult{Infohash: hex.EncodeToString(seedInfohash[:])}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range *peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := netip.AddrFrom4([4]byte{127, 1, 0, byte(1 + i)})
			ok, _, err := announceFrom(ctx, netip.AddrPortFrom(src, 0), ap, []krpc.ID{seedInfohash}, 1)
			mu.Lock()
			defer mu.Unlock()
			res.Peers += ok
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("seed: %w", errs[0])
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer c.Close()
	var self krpc.ID
	self[0], self[19] = 0x5e, 0xed
	v := seedValue(*size)
	item := krpc.ID(sha1.Sum(v))
	res.Item = hex.EncodeToString(item[:])
	ask := func(q *krpc.Msg) (*krpc.Return, error) {
		b, err := krpc.Encode(q)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, 4096)
		for try := 0; try < 3; try++ {
			if _, err := c.WriteToUDPAddrPort(b, ap); err != nil {
				return nil, err
			}
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			for {
				n, _, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				var r krpc.Msg
				if krpc.Decode(buf[:n], &r) == nil && r.T == q.T {
					if r.E != nil {
						return nil, r.E
					}
					if r.R != nil {
						return r.R, nil
					}
				}
			}
		}
		return nil, fmt.Errorf("%s to %s: no answer", q.Q, ap)
	}
	g, err := ask(&krpc.Msg{T: "g1", Y: krpc.KindQuery, Q: krpc.MethodGet, A: &krpc.Args{ID: self, Target: &item}})
	if err != nil {
		return fmt.Errorf("seed: get: %w", err)
	}
	if _, err := ask(&krpc.Msg{T: "p1", Y: krpc.KindQuery, Q: krpc.MethodPut, A: &krpc.Args{ID: self, Token: g.Token, V: v}}); err != nil {
		return fmt.Errorf("seed: put: %w", err)
	}
	g, err = ask(&krpc.Msg{T: "g2", Y: krpc.KindQuery, Q: krpc.MethodGet, A: &krpc.Args{ID: self, Target: &item}})
	if err != nil {
		return fmt.Errorf("seed: get after put: %w", err)
	}
	res.ItemBytes = len(g.V)
	p, err := ask(&krpc.Msg{T: "gp", Y: krpc.KindQuery, Q: krpc.MethodGetPeers, A: &krpc.Args{ID: self, InfoHash: &seedInfohash}})
	if err != nil {
		return fmt.Errorf("seed: get_peers: %w", err)
	}
	res.Values = len(p.Values)
	if res.ItemBytes != len(v) || res.Values == 0 {
		return fmt.Errorf("seed: %s keeps %d of %d item bytes and returns %d peers", ap, res.ItemBytes, len(v), res.Values)
	}
	return json.NewEncoder(stdout).Encode(res)
}
