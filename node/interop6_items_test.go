package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"testing"
	"time"

	"github.com/dhtd/dhtd/internal/ltnode"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// TestInteropIPv6Items (BEP 44 over BEP 32): on IPv6 loopback, libtorrent
// reads the immutable and mutable items dhtd puts, and dhtd reads and
// stores the ones libtorrent puts, salted and not.
func TestInteropIPv6Items(t *testing.T) {
	ltnode.Require(t)
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	nodes := startInteropNodesOn(t, ctx, 3, "[::1]")
	d := nodes[0]
	l := ltnode.Start(t, ctx, "::1")
	if !l.Addr.Addr().Is6() {
		t.Fatalf("libtorrent listens on %s, want IPv6", l.Addr)
	}
	linkLT(t, ctx, l, nodes)

	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(0x60 + i)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	seedHex := hex.EncodeToString(seed)
	// unquote is the string a bencoded byte string holds.
	unquote := func(v []byte) string { s, _ := krpc.ParseString(v); return string(s) }

	// storedEverywhere checks each dhtd node's own store for the item.
	storedEverywhere := func(t *testing.T, target krpc.ID, v []byte, seq int64) {
		t.Helper()
		for _, n := range nodes {
			it, ok := n.items.Get(target, n.clock.Now())
			if !ok || !bytes.Equal(it.V, v) || it.Seq != seq {
				t.Fatalf("dhtd %s store at %s: present %v v %q seq %d; want %q seq %d", n.Addr(), target, ok, it.V, it.Seq, v, seq)
			}
		}
	}
	// storedAtLT checks that libtorrent, over IPv6, was among the storers.
	storedAtLT := func(t *testing.T, what string, res PutResult) {
		t.Helper()
		for _, s := range res.StoredAt {
			if s.ID == l.ID && s.Addr == l.Addr {
				if len(res.RefusedBy) > 0 {
					t.Fatalf("%s: refused by %v", what, res.RefusedBy)
				}
				return
			}
		}
		t.Fatalf("%s: stored at %v, refused by %v; want libtorrent %s@%s among the storers", what, res.StoredAt, res.RefusedBy, l.ID, l.Addr)
	}

	t.Run("DhtdImmutable", func(t *testing.T) {
		v := bstr("immutable from dhtd over IPv6")
		res, err := d.PutImmutable(ctx, v)
		if err != nil {
			t.Fatalf("dhtd PutImmutable: %v", err)
		}
		storedAtLT(t, "dhtd PutImmutable", res)
		g := ltnode.Do[ltnode.GetReply](t, ctx, l, 30*time.Second, map[string]any{
			"cmd": "get_immutable", "target": res.Target.String(), "timeout": 20,
		})
		if !g.Found || g.Value == nil || *g.Value != unquote(v) {
			t.Fatalf("libtorrent get_immutable(%s): found %v value %v, want %q", res.Target, g.Found, g.Value, unquote(v))
		}
	})

	t.Run("LibtorrentImmutable", func(t *testing.T) {
		const val = "immutable from libtorrent over IPv6"
		v := bstr(val)
		target := storage.ImmutableTarget(v)
		p := ltnode.Do[ltnode.PutReply](t, ctx, l, 50*time.Second, map[string]any{"cmd": "put_immutable", "value": val})
		if p.Target != target.String() || p.NumSuccess < len(nodes) {
			t.Fatalf("libtorrent put_immutable: target %s num_success %d; want %s and >= %d", p.Target, p.NumSuccess, target, len(nodes))
		}
		storedEverywhere(t, target, v, 0)
		gr, err := nodes[2].Get(ctx, target, GetOptions{})
		if err != nil || gr.Item.Mutable || !bytes.Equal(gr.Item.V, v) {
			t.Fatalf("dhtd Get(%s): mutable %v v %q (%v), want immutable %q", target, gr.Item.Mutable, gr.Item.V, err, v)
		}
	})

	for _, salt := range []string{"", "v6"} {
		t.Run("Mutable/salt="+salt, func(t *testing.T) {
			target := storage.MutableTarget(pub, []byte(salt))

			// libtorrent puts first (seq 1); dhtd reads it.
			ltVal := "mutable from libtorrent over IPv6, salt " + salt
			p := ltnode.Do[ltnode.PutReply](t, ctx, l, 50*time.Second, map[string]any{
				"cmd": "put_mutable", "seed": seedHex, "value": ltVal, "salt": salt,
			})
			if p.PublicKey != hex.EncodeToString(pub) || p.Target != target.String() || p.Seq < 1 || p.NumSuccess < len(nodes) {
				t.Fatalf("libtorrent put_mutable: key %s target %s seq %d num_success %d; want %x %s, seq >= 1, >= %d stored",
					p.PublicKey, p.Target, p.Seq, p.NumSuccess, pub, target, len(nodes))
			}
			storedEverywhere(t, target, bstr(ltVal), p.Seq)
			gr, err := nodes[1].Get(ctx, target, GetOptions{Salt: []byte(salt)})
			if err != nil || !gr.Item.Mutable || !bytes.Equal(gr.Item.V, bstr(ltVal)) || gr.Item.Seq != p.Seq ||
				hex.EncodeToString(gr.Item.Sig) != p.Signature {
				t.Fatalf("dhtd Get(%s): v %q seq %d sig %x (%v); want %q seq %d sig %s",
					target, gr.Item.V, gr.Item.Seq, gr.Item.Sig, err, ltVal, p.Seq, p.Signature)
			}

			// dhtd puts the next seq; libtorrent reads it.
			v := bstr("mutable from dhtd over IPv6, salt " + salt)
			res, err := d.PutMutable(ctx, priv, v, PutOptions{Salt: []byte(salt)})
			if err != nil {
				t.Fatalf("dhtd PutMutable: %v", err)
			}
			if res.Seq != p.Seq+1 {
				t.Fatalf("dhtd PutMutable seq %d, want libtorrent's %d + 1", res.Seq, p.Seq)
			}
			storedAtLT(t, "dhtd PutMutable", res)
			g := ltnode.Do[ltnode.GetReply](t, ctx, l, 30*time.Second, map[string]any{
				"cmd": "get_mutable", "public_key": hex.EncodeToString(pub), "salt": salt, "timeout": 20,
			})
			if !g.Found || g.Value == nil || *g.Value != unquote(v) || g.Seq != res.Seq || g.Target != target.String() {
				t.Fatalf("libtorrent get_mutable(salt %q): found %v value %v seq %d target %s; want %q seq %d target %s",
					salt, g.Found, g.Value, g.Seq, g.Target, unquote(v), res.Seq, target)
			}
			if want := hex.EncodeToString(storage.SignMutable(priv, []byte(salt), res.Seq, v)); g.Signature != want {
				t.Fatalf("libtorrent get_mutable(salt %q): signature %s, want dhtd's %s", salt, g.Signature, want)
			}
		})
	}
}
