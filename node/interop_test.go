package node

// Interop tests against libtorrent 2.0.8 (python3-libtorrent), driven through
// package ltnode (testdata/interop/ltnode.py; protocol and pitfalls in
// testdata/interop/NOTES.md). They skip as ltnode.Require says: with -short,
// and without libtorrent unless DHTD_REQUIRE_INTEROP=1.
//
// Everything runs on loopback: dhtd nodes on 127.0.0.1, libtorrent on
// 127.0.0.2. No dead address ever enters libtorrent's view (it would wait 15 s
// per dead node): the dhtd nodes outlive the libtorrent process, whose
// cleanup runs first.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/ltnode"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// dhtdHost is the dhtd nodes' address (libtorrent is on ltnode.Host).
const dhtdHost = "127.0.0.1"

// startInteropNodes starts n dhtd nodes on 127.0.0.1: a seed and n-1 nodes
// bootstrapped from it (two rounds), and waits until every node has every
// other one in its table.
func startInteropNodes(t *testing.T, ctx context.Context, n int) []*Node {
	t.Helper()
	return startInteropNodesOn(t, ctx, n, dhtdHost)
}

// startInteropNodesOn is startInteropNodes on host (an IPv4 address or a
// bracketed IPv6 one).
func startInteropNodesOn(t *testing.T, ctx context.Context, n int, host string, mods ...func(*Config)) []*Node {
	t.Helper()
	listen := func(c *Config) {
		c.Listen = host + ":0"
		for _, m := range mods {
			m(c)
		}
	}
	seed := startNode(t, listen)
	nodes := []*Node{seed}
	for i := 1; i < n; i++ {
		nodes = append(nodes, startNode(t, func(c *Config) {
			listen(c)
			c.Bootstrap = []string{seed.Addr().String()}
		}))
	}
	for round := 0; round < 2; round++ {
		for _, x := range nodes[1:] {
			if err := x.Bootstrap(ctx); err != nil {
				t.Fatalf("bootstrap %s: %v", x.Addr(), err)
			}
		}
	}
	// The seed learns the others through their queries and its confirming
	// pings, which run in the background. A confirming ping that timed out
	// (a busy machine, a 500 ms query timeout) is not tried again, so a
	// node still missing from another's table is pinged by it: an answer
	// admits it.
	waitFor(t, 30*time.Second, func() bool {
		linked := true
		for _, a := range nodes {
			for _, b := range nodes {
				if a == b {
					continue
				}
				if _, ok := a.table.Get(b.ID()); !ok {
					linked = false
					_, _, _ = a.Ping(ctx, b.Addr())
				}
			}
		}
		return linked
	})
	return nodes
}

// linkLT makes l and every dhtd node know each other: l add_node's each node
// (libtorrent pings it and adds it once it answers) and each node pings l.
func linkLT(t *testing.T, ctx context.Context, l *ltnode.Node, nodes []*Node) {
	t.Helper()
	for _, n := range nodes {
		if !l.AddNode(t, ctx, n.Addr()) {
			t.Fatalf("libtorrent did not add dhtd node %s to its table", n.Addr())
		}
	}
	for _, n := range nodes {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		id, _, err := n.Ping(pctx, l.Addr)
		cancel()
		if err != nil {
			t.Fatalf("dhtd %s ping libtorrent: %v", n.Addr(), err)
		}
		if id != l.ID {
			t.Fatalf("libtorrent answered a ping with id %s, want %s", id, l.ID)
		}
		if _, ok := n.table.Get(l.ID); !ok {
			t.Fatalf("dhtd %s: libtorrent not in its table after answering a ping", n.Addr())
		}
	}
}

// bstr bencodes s as a byte string.
func bstr(s string) []byte { return krpc.AppendString(nil, s) }

func findFound(fs []Found, id krpc.ID) (Found, bool) {
	for _, f := range fs {
		if f.Node.ID == id {
			return f, true
		}
	}
	return Found{}, false
}

// TestInteropBootstrapAndProbe: libtorrent bootstraps from a dhtd
// node D; D answers it and adds it to its table; libtorrent's lookups walk
// dhtd's routing answers to a second dhtd node D2; dhtd pings and find_node's
// libtorrent and parses its answers.
func TestInteropBootstrapAndProbe(t *testing.T) {
	ltnode.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	nodes := startInteropNodes(t, ctx, 2)
	d, d2 := nodes[0], nodes[1]
	l := ltnode.Start(t, ctx, ltnode.Host)
	if _, ok := d.table.Get(l.ID); ok {
		t.Fatalf("D knows libtorrent before it sent anything")
	}

	// L bootstraps from D: its ping (a get_peers) must be answered by D.
	if !l.AddNode(t, ctx, d.Addr()) {
		t.Fatalf("libtorrent's ping of D got no usable answer: D not in its table")
	}
	rt := l.Routing(t, ctx)
	if !rt.Has(d.ID(), d.Addr()) {
		t.Fatalf("libtorrent's table %+v lacks D %s@%s", rt.Nodes, d.ID(), d.Addr())
	}

	// D heard L's query and pings it back; the answer puts L in D's table.
	waitFor(t, 10*time.Second, func() bool {
		e, ok := d.table.Get(l.ID)
		return ok && e.Confirmed()
	})
	e, _ := d.table.Get(l.ID)
	if e.Addr != l.Addr {
		t.Fatalf("D has libtorrent at %s, want %s", e.Addr, l.Addr)
	}
	if e.LastQuery.IsZero() {
		t.Fatalf("D's entry for libtorrent records no query from it: %+v", e)
	}
	ev := l.Events(t, ctx)
	if !slices.ContainsFunc(ev.Queries, func(q ltnode.QueryEvent) bool {
		return q.From == d.Addr().String() && q.Q == "ping"
	}) {
		t.Fatalf("libtorrent received no ping from D; queries: %+v", ev.Queries)
	}

	// A libtorrent lookup reaches D2, which only D's answers name.
	gp := ltnode.Do[ltnode.GetPeersReply](t, ctx, l, 20*time.Second, map[string]any{
		"cmd": "get_peers", "info_hash": krpc.RandomID().String(), "timeout": 15, "quiet": 3,
	})
	if !slices.Contains(gp.Responded, d.Addr().String()) || !slices.Contains(gp.Responded, d2.Addr().String()) {
		t.Fatalf("libtorrent's lookup responders %v lack D %s or D2 %s", gp.Responded, d.Addr(), d2.Addr())
	}
	if !gp.Complete || len(gp.Unanswered) > 0 || len(gp.Errors) > 0 {
		t.Fatalf("libtorrent's lookup: complete=%v unanswered=%v errors=%v", gp.Complete, gp.Unanswered, gp.Errors)
	}
	if len(gp.Peers) != 0 {
		t.Fatalf("peers %v for an infohash nobody announced", gp.Peers)
	}
	// D2 heard L's query too and confirms it.
	waitFor(t, 10*time.Second, func() bool {
		e, ok := d2.table.Get(l.ID)
		return ok && e.Confirmed() && e.Addr == l.Addr
	})
	// libtorrent adds the responder D2 to its table (no event: poll, bounded).
	l.WaitInTable(t, ctx, d2.ID(), d2.Addr(), 10*time.Second)

	// dhtd probes libtorrent: ping.
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	id, rtt, err := d.Ping(pctx, l.Addr)
	if err != nil {
		t.Fatalf("D ping libtorrent: %v", err)
	}
	if id != l.ID || rtt <= 0 {
		t.Fatalf("libtorrent answered ping with id %s rtt %v, want id %s", id, rtt, l.ID)
	}
	t.Logf("D ping libtorrent: rtt %v", rtt)

	// A raw find_node: libtorrent answers with its id, its version, our
	// address (BEP 42 "ip") and compact nodes that dhtd decodes.
	target := d2.ID()
	m, err := d.srv.Query(pctx, l.Addr, krpc.MethodFindNode, &krpc.Args{ID: d.ID(), Target: &target})
	if err != nil {
		t.Fatalf("find_node to libtorrent: %v", err)
	}
	if m.R == nil || m.R.ID != l.ID {
		t.Fatalf("find_node reply %+v, want id %s", m, l.ID)
	}
	if !strings.HasPrefix(m.V, "LT") {
		t.Fatalf("find_node reply version %q, want libtorrent's \"LT..\"", m.V)
	}
	if m.IP == nil || m.IP.AddrPort() != d.Addr() {
		t.Fatalf("find_node reply ip %v, want D's address %s", m.IP, d.Addr())
	}
	want := []krpc.NodeInfo{d.Info(), d2.Info()}
	for _, w := range want {
		if !slices.Contains(m.R.Nodes, w) {
			t.Fatalf("libtorrent's find_node nodes %v lack %v", m.R.Nodes, w)
		}
	}

	// An iterative find_node for libtorrent's id ends at libtorrent.
	res, err := d2.FindNode(ctx, l.ID)
	if err != nil {
		t.Fatalf("D2 FindNode(libtorrent's id): %v", err)
	}
	if len(res.Closest) == 0 || res.Closest[0].Node != (krpc.NodeInfo{ID: l.ID, Addr: l.Addr}) {
		t.Fatalf("D2 FindNode(libtorrent's id) closest %v, want libtorrent %s@%s first", res.Closest, l.ID, l.Addr)
	}
	if _, ok := findFound(res.Closest, d.ID()); !ok {
		t.Fatalf("D2 FindNode: D did not answer: %v", res.Closest)
	}
	t.Logf("D2 FindNode(libtorrent's id): %d queried, %v", res.Queried, res.Elapsed)
}

// TestInteropPeers: libtorrent announces and dhtd finds it; dhtd
// announces and libtorrent finds it, both when only dhtd nodes hold the
// peer and when libtorrent itself accepted dhtd's announce_peer.
func TestInteropPeers(t *testing.T) {
	ltnode.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	nodes := startInteropNodes(t, ctx, 3)

	// Before libtorrent joins: a peer that only dhtd nodes store.
	ihPre := krpc.RandomID()
	pre, err := nodes[1].Announce(ctx, ihPre, AnnounceOptions{Port: 4566})
	if err != nil {
		t.Fatalf("dhtd announce before libtorrent joined: %v", err)
	}
	if pre.Accepted != len(nodes)-1 {
		t.Fatalf("announce before libtorrent joined: accepted by %d of %d, want %d", pre.Accepted, pre.Announced, len(nodes)-1)
	}

	l := ltnode.Start(t, ctx, ltnode.Host)
	linkLT(t, ctx, l, nodes)
	lPeer := l.Addr // libtorrent announces its listen port, implied_port=1

	t.Run("LibtorrentAnnouncesDhtdFinds", func(t *testing.T) {
		ih := krpc.RandomID()
		an := ltnode.Do[ltnode.AnnounceReply](t, ctx, l, 40*time.Second, map[string]any{
			"cmd": "announce", "info_hash": ih.String(), "timeout": 30,
		})
		if an.Error != "" {
			t.Fatalf("libtorrent announce: %s", an.Error)
		}
		// No dhtd node listed libtorrent to itself, so it never announced
		// to its own address (it queries itself when told about itself).
		if slices.ContainsFunc(an.AnnouncedTo, func(a ltnode.AnnouncedTo) bool { return a.Addr == l.Addr.String() }) {
			t.Fatalf("libtorrent announced to itself: some node listed it in its own lookup: %+v", an.AnnouncedTo)
		}
		for _, n := range nodes {
			i := slices.IndexFunc(an.AnnouncedTo, func(a ltnode.AnnouncedTo) bool {
				return a.Addr == n.Addr().String()
			})
			if i < 0 {
				t.Fatalf("libtorrent did not announce to dhtd %s: %+v", n.Addr(), an.AnnouncedTo)
			}
			a := an.AnnouncedTo[i]
			if a.Reply != "r" {
				t.Fatalf("dhtd %s answered libtorrent's announce_peer with %v", n.Addr(), a.Reply)
			}
			if a.ImpliedPort != 1 || a.Port != int(lPeer.Port()) {
				t.Fatalf("libtorrent announced port %d implied_port %d, want %d and 1", a.Port, a.ImpliedPort, lPeer.Port())
			}
			// The store holds libtorrent at its source IP and UDP port.
			var got []netip.AddrPort
			n.peers.Each(ih, n.clock.Now(), func(p netip.AddrPort, _ bool) { got = append(got, p) })
			if !slices.Equal(got, []netip.AddrPort{lPeer}) {
				t.Fatalf("dhtd %s stores peers %v for the infohash, want [%s]", n.Addr(), got, lPeer)
			}
		}
		for _, n := range nodes {
			pr, err := n.GetPeers(ctx, ih, nil)
			if err != nil {
				t.Fatalf("dhtd %s GetPeers: %v", n.Addr(), err)
			}
			if !slices.Contains(pr.Peers, lPeer) {
				t.Fatalf("dhtd %s GetPeers found %v, want %s", n.Addr(), pr.Peers, lPeer)
			}
			if _, ok := findFound(pr.Lookup.Closest, l.ID); !ok {
				t.Fatalf("dhtd %s GetPeers: libtorrent did not answer", n.Addr())
			}
		}
	})

	t.Run("DhtdAnnouncesLibtorrentFinds", func(t *testing.T) {
		// Only dhtd nodes hold ihPre: libtorrent finds it through their
		// get_peers values.
		want := netip.AddrPortFrom(nodes[1].Addr().Addr(), 4566).String()
		gp := ltnode.Do[ltnode.GetPeersReply](t, ctx, l, 20*time.Second, map[string]any{
			"cmd": "get_peers", "info_hash": ihPre.String(), "timeout": 15, "quiet": 3,
		})
		if !slices.Contains(gp.Peers, want) {
			t.Fatalf("libtorrent get_peers(%s) found %v, want %s", ihPre, gp.Peers, want)
		}
		for _, n := range nodes {
			if !slices.Contains(gp.Responded, n.Addr().String()) {
				t.Fatalf("dhtd %s did not answer libtorrent's get_peers: responded %v", n.Addr(), gp.Responded)
			}
		}

		// Now libtorrent is among the closest: it must accept dhtd's
		// announce_peer (its own token, sent back by dhtd).
		l.Events(t, ctx) // clear
		ih2 := krpc.RandomID()
		ar, err := nodes[0].Announce(ctx, ih2, AnnounceOptions{Port: 4567})
		if err != nil {
			t.Fatalf("dhtd announce: %v", err)
		}
		f, ok := findFound(ar.Peers.Lookup.Closest, l.ID)
		if !ok || f.Reply.R.Token == "" {
			t.Fatalf("dhtd announce lookup: libtorrent not among the closest with a token: %v", ar.Peers.Lookup.Closest)
		}
		if ar.Accepted != ar.Announced || len(ar.Errors) > 0 || ar.Announced != len(nodes) {
			t.Fatalf("dhtd announce: %d sent, %d accepted, errors %v; want %d sent, all accepted",
				ar.Announced, ar.Accepted, ar.Errors, len(nodes))
		}
		ev := l.Events(t, ctx)
		if !slices.ContainsFunc(ev.Announces, func(a ltnode.AnnounceEvent) bool {
			return a.InfoHash == ih2.String() && a.IP == dhtdHost && a.Port == 4567
		}) {
			t.Fatalf("libtorrent saw no announce of %s from %s port 4567: %+v", ih2, dhtdHost, ev.Announces)
		}
		gp = ltnode.Do[ltnode.GetPeersReply](t, ctx, l, 20*time.Second, map[string]any{
			"cmd": "get_peers", "info_hash": ih2.String(), "timeout": 15, "quiet": 3,
		})
		if !slices.Contains(gp.Peers, dhtdHost+":4567") {
			t.Fatalf("libtorrent get_peers(%s) found %v, want %s:4567", ih2, gp.Peers, dhtdHost)
		}
		// libtorrent's get_peers answer carries the peer in values that
		// dhtd decodes.
		pr, err := nodes[1].GetPeers(ctx, ih2, nil)
		if err != nil {
			t.Fatalf("dhtd GetPeers(%s): %v", ih2, err)
		}
		want2 := netip.MustParseAddrPort(dhtdHost + ":4567")
		f, ok = findFound(pr.Lookup.Closest, l.ID)
		if !ok || !slices.Contains([]netip.AddrPort(f.Reply.R.Values), want2) {
			t.Fatalf("dhtd GetPeers(%s): libtorrent's reply (present %v) lacks value %s", ih2, ok, want2)
		}
	})
}

// TestInteropItems: BEP 44 immutable and mutable items (with and
// without salt) put by libtorrent are stored and verified by dhtd, and put
// by dhtd are accepted, found and verified by libtorrent; seq numbers carry
// across implementations.
func TestInteropItems(t *testing.T) {
	ltnode.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	nodes := startInteropNodes(t, ctx, 3)
	d := nodes[0]

	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(0x40 + i)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	seedHex := hex.EncodeToString(seed)

	// Before libtorrent joins: items only dhtd nodes hold.
	preImm := bstr("before libtorrent joined")
	pi, err := nodes[1].PutImmutable(ctx, preImm)
	if err != nil || pi.Stored != len(nodes)-1 {
		t.Fatalf("dhtd PutImmutable before libtorrent joined: stored %d/%d: %v", pi.Stored, pi.Sent, err)
	}
	preMut := bstr("mutable before libtorrent joined")
	pm, err := nodes[1].PutMutable(ctx, priv, preMut, PutOptions{Salt: []byte("pre")})
	if err != nil || pm.Stored != len(nodes)-1 || pm.Seq != 1 {
		t.Fatalf("dhtd PutMutable before libtorrent joined: seq %d stored %d/%d: %v", pm.Seq, pm.Stored, pm.Sent, err)
	}

	l := ltnode.Start(t, ctx, ltnode.Host)
	linkLT(t, ctx, l, nodes)

	// ltGetImm / ltGetMut run libtorrent's get and check the found value,
	// which must be a byte string (v is its bencoding).
	ltGetImm := func(t *testing.T, target krpc.ID, v []byte) {
		t.Helper()
		g := ltnode.Do[ltnode.GetReply](t, ctx, l, 30*time.Second, map[string]any{
			"cmd": "get_immutable", "target": target.String(), "timeout": 20,
		})
		want, _ := krpc.ParseString(v)
		if !g.Found || g.Value == nil || *g.Value != string(want) {
			t.Fatalf("libtorrent get_immutable(%s): found %v value %v, want %q", target, g.Found, g.Value, want)
		}
	}
	ltGetMut := func(t *testing.T, salt string, v []byte, seq int64) {
		t.Helper()
		g := ltnode.Do[ltnode.GetReply](t, ctx, l, 30*time.Second, map[string]any{
			"cmd": "get_mutable", "public_key": hex.EncodeToString(pub), "salt": salt, "timeout": 20,
		})
		want, _ := krpc.ParseString(v)
		if !g.Found || g.Value == nil || *g.Value != string(want) || g.Seq != seq {
			t.Fatalf("libtorrent get_mutable(salt %q): found %v value %v seq %d, want %q seq %d",
				salt, g.Found, g.Value, g.Seq, want, seq)
		}
		if wantSig := hex.EncodeToString(storage.SignMutable(priv, []byte(salt), seq, v)); g.Signature != wantSig {
			t.Fatalf("libtorrent get_mutable(salt %q): signature %s, want dhtd's %s", salt, g.Signature, wantSig)
		}
		if g.Target != storage.MutableTarget(pub, []byte(salt)).String() {
			t.Fatalf("libtorrent get_mutable target %s, want %s", g.Target, storage.MutableTarget(pub, []byte(salt)))
		}
	}
	// dhtdGet runs a dhtd Get from d and checks the item.
	dhtdGet := func(t *testing.T, target krpc.ID, salt []byte, v []byte, seq int64, sigHex string) {
		t.Helper()
		gr, err := d.Get(ctx, target, GetOptions{Salt: salt})
		if err != nil {
			t.Fatalf("dhtd Get(%s): %v", target, err)
		}
		it := gr.Item
		if !bytes.Equal(it.V, v) {
			t.Fatalf("dhtd Get(%s): v %q, want %q", target, it.V, v)
		}
		if sigHex == "" {
			if it.Mutable {
				t.Fatalf("dhtd Get(%s): got a mutable item, want immutable", target)
			}
			return
		}
		if !it.Mutable || !bytes.Equal(it.K, pub) || it.Seq != seq || hex.EncodeToString(it.Sig) != sigHex {
			t.Fatalf("dhtd Get(%s): mutable %v k %x seq %d sig %x; want k %x seq %d sig %s",
				target, it.Mutable, it.K, it.Seq, it.Sig, pub, seq, sigHex)
		}
		t.Logf("dhtd Get(%s): seq %d from %d nodes, %d queried, %v", target, it.Seq, gr.Count, gr.Lookup.Queried, gr.Lookup.Elapsed)
	}
	// storedEverywhere checks every dhtd node's own store for the item.
	storedEverywhere := func(t *testing.T, target krpc.ID, v []byte, seq int64) {
		t.Helper()
		for _, n := range nodes {
			it, ok := n.items.Get(target, n.clock.Now())
			if !ok || !bytes.Equal(it.V, v) || it.Seq != seq {
				t.Fatalf("dhtd %s store at %s: present %v v %q seq %d; want %q seq %d", n.Addr(), target, ok, it.V, it.Seq, v, seq)
			}
		}
	}
	// acceptedByLT checks that libtorrent was sent a dhtd put and stored it.
	acceptedByLT := func(t *testing.T, what string, res PutResult) {
		t.Helper()
		f, ok := findFound(res.Lookup.Closest, l.ID)
		if !ok || f.Reply.R.Token == "" {
			t.Fatalf("%s: libtorrent not among the closest with a token: %v", what, res.Lookup.Closest)
		}
		if res.Stored != res.Sent || len(res.Errors) > 0 || res.Sent != len(nodes) {
			t.Fatalf("%s: sent %d, stored %d, errors %v; want %d sent, all stored", what, res.Sent, res.Stored, res.Errors, len(nodes))
		}
	}

	t.Run("DhtdItemsBeforeLibtorrentJoined", func(t *testing.T) {
		ltGetImm(t, pi.Target, preImm)
		ltGetMut(t, "pre", preMut, 1)
	})

	t.Run("LibtorrentImmutable", func(t *testing.T) {
		v := []byte("21:hello from libtorrent")
		target := storage.ImmutableTarget(v)
		p := ltnode.Do[ltnode.PutReply](t, ctx, l, 50*time.Second, map[string]any{
			"cmd": "put_immutable", "value": "hello from libtorrent",
		})
		if p.Target != target.String() {
			t.Fatalf("libtorrent immutable target %s, want SHA-1(%q) = %s", p.Target, v, target)
		}
		if p.NumSuccess < len(nodes) {
			t.Fatalf("libtorrent put_immutable: num_success %d, want >= %d", p.NumSuccess, len(nodes))
		}
		storedEverywhere(t, target, v, 0)
		dhtdGet(t, target, nil, v, 0, "")
	})

	var ltSeq = map[string]int64{}
	for _, salt := range []string{"", "s1"} {
		t.Run("LibtorrentMutable/salt="+salt, func(t *testing.T) {
			val := "mutable from libtorrent, salt " + salt
			v := bstr(val)
			target := storage.MutableTarget(pub, []byte(salt))
			p := ltnode.Do[ltnode.PutReply](t, ctx, l, 50*time.Second, map[string]any{
				"cmd": "put_mutable", "seed": seedHex, "value": val, "salt": salt,
			})
			if p.PublicKey != hex.EncodeToString(pub) || p.Target != target.String() {
				t.Fatalf("libtorrent put_mutable: key %s target %s, want %x %s", p.PublicKey, p.Target, pub, target)
			}
			if p.Seq != 1 || p.NumSuccess < len(nodes) {
				t.Fatalf("libtorrent put_mutable: seq %d num_success %d, want 1 and >= %d", p.Seq, p.NumSuccess, len(nodes))
			}
			// Ed25519 is deterministic: libtorrent's signature is Go's.
			if want := hex.EncodeToString(storage.SignMutable(priv, []byte(salt), p.Seq, v)); p.Signature != want {
				t.Fatalf("libtorrent signature %s, want %s", p.Signature, want)
			}
			storedEverywhere(t, target, v, p.Seq)
			dhtdGet(t, target, []byte(salt), v, p.Seq, p.Signature)
			ltSeq[salt] = p.Seq
		})
	}

	t.Run("DhtdImmutable", func(t *testing.T) {
		v := []byte("12:from dhtd!!!")
		res, err := d.PutImmutable(ctx, v)
		if err != nil {
			t.Fatalf("dhtd PutImmutable: %v", err)
		}
		acceptedByLT(t, "dhtd PutImmutable", res)
		ltGetImm(t, res.Target, v)
	})

	for _, salt := range []string{"", "s1"} {
		t.Run("DhtdMutable/salt="+salt, func(t *testing.T) {
			if ltSeq[salt] == 0 {
				t.Skip("libtorrent's put failed")
			}
			v := bstr("mutable from dhtd, salt " + salt)
			res, err := d.PutMutable(ctx, priv, v, PutOptions{Salt: []byte(salt)})
			if err != nil {
				t.Fatalf("dhtd PutMutable: %v", err)
			}
			// dhtd read libtorrent's seq and went one above.
			if res.Seq != ltSeq[salt]+1 {
				t.Fatalf("dhtd PutMutable seq %d, want libtorrent's %d + 1", res.Seq, ltSeq[salt])
			}
			acceptedByLT(t, "dhtd PutMutable", res)
			ltGetMut(t, salt, v, res.Seq)

			// libtorrent reads dhtd's seq and goes one above; dhtd sees it.
			val := "libtorrent again, salt " + salt
			p := ltnode.Do[ltnode.PutReply](t, ctx, l, 50*time.Second, map[string]any{
				"cmd": "put_mutable", "seed": seedHex, "value": val, "salt": salt,
			})
			if p.Seq != res.Seq+1 {
				t.Fatalf("libtorrent put_mutable after dhtd's seq %d: seq %d, want %d", res.Seq, p.Seq, res.Seq+1)
			}
			storedEverywhere(t, res.Target, bstr(val), p.Seq)
			dhtdGet(t, res.Target, []byte(salt), bstr(val), p.Seq, p.Signature)
		})
	}
}
