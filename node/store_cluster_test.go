package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

func randomID(rnd *rand.Rand) krpc.ID {
	var id krpc.ID
	for i := range id {
		id[i] = byte(rnd.UintN(256))
	}
	return id
}

// TestClusterPeers: 128 nodes; 20 random infohashes, each announced from a
// random node; GetPeers from a different random node finds the announcer.
func TestClusterPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	synctest.Test(t, testClusterPeers)
}

func testClusterPeers(t *testing.T) {
	_, nodes := startCluster(t, 128, nil)
	rnd := rand.New(rand.NewPCG(3, 4))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // simulated
	defer cancel()
	var queries []int
	for i := 0; i < 20; i++ {
		ih := randomID(rnd)
		a := rnd.IntN(len(nodes))
		b := (a + 1 + rnd.IntN(len(nodes)-1)) % len(nodes)
		port := 10000 + i
		ar, err := nodes[a].Announce(ctx, ih, AnnounceOptions{Port: port})
		if err != nil {
			t.Fatalf("announce %d: %v", i, err)
		}
		queries = append(queries, ar.Peers.Lookup.Queried)
		want := netip.AddrPortFrom(nodes[a].Addr().Addr(), uint16(port))
		var early netip.AddrPort
		pr, err := nodes[b].GetPeers(ctx, ih, func(p netip.AddrPort) {
			if !early.IsValid() {
				early = p
			}
		})
		if err != nil {
			t.Fatalf("get_peers %d: %v", i, err)
		}
		queries = append(queries, pr.Lookup.Queried)
		found := false
		for _, p := range pr.Peers {
			found = found || p == want
		}
		if !found || !early.IsValid() {
			t.Fatalf("infohash %d: announced %s (accepted by %d/%d), get_peers found %v", i, want, ar.Accepted, ar.Announced, pr.Peers)
		}
	}
	sort.Ints(queries)
	t.Logf("get_peers lookups: median %d queries, worst %d", queries[len(queries)/2], queries[len(queries)-1])
}

// TestClusterItems: 128 nodes; 50 immutable and 50 mutable items (half
// salted) put from random nodes are each returned by Get from another
// random node; seq+1 updates are seen; stale seq and cas conflicts refused.
func TestClusterItems(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	synctest.Test(t, testClusterItems)
}

func testClusterItems(t *testing.T) {
	_, nodes := startCluster(t, 128, nil)
	rnd := rand.New(rand.NewPCG(5, 6))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // simulated
	defer cancel()
	pick := func() (*Node, *Node) {
		a := rnd.IntN(len(nodes))
		b := (a + 1 + rnd.IntN(len(nodes)-1)) % len(nodes)
		return nodes[a], nodes[b]
	}
	for i := 0; i < 50; i++ {
		v := []byte(fmt.Sprintf("%d:immutable item %03d", len(fmt.Sprintf("immutable item %03d", i)), i))
		a, b := pick()
		pr, err := a.PutImmutable(ctx, v)
		if err != nil {
			t.Fatalf("put immutable %d: %v", i, err)
		}
		gr, err := b.Get(ctx, pr.Target, GetOptions{})
		if err != nil || string(gr.Item.V) != string(v) {
			t.Fatalf("get immutable %d: %v %q", i, err, gr.Item.V)
		}
	}
	for i := 0; i < 50; i++ {
		seed := make([]byte, ed25519.SeedSize)
		for j := range seed {
			seed[j] = byte(rnd.UintN(256))
		}
		priv := ed25519.NewKeyFromSeed(seed)
		var salt []byte
		if i%2 == 1 {
			salt = []byte(fmt.Sprintf("salt-%d", i))
		}
		a, b := pick()
		v1 := []byte(fmt.Sprintf("i%de", i))
		pr, err := a.PutMutable(ctx, priv, v1, PutOptions{Salt: salt})
		if err != nil {
			t.Fatalf("put mutable %d: %v", i, err)
		}
		gr, err := b.Get(ctx, pr.Target, GetOptions{Salt: salt})
		if err != nil || string(gr.Item.V) != string(v1) || gr.Item.Seq != pr.Seq {
			t.Fatalf("get mutable %d: %v %q seq %d", i, err, gr.Item.V, gr.Item.Seq)
		}
		if i%10 != 0 {
			continue
		}
		// update with seq+1 (the default), seen by a third node
		v2 := []byte(fmt.Sprintf("i%de", 1000+i))
		pr2, err := a.PutMutable(ctx, priv, v2, PutOptions{Salt: salt})
		if err != nil || pr2.Seq != pr.Seq+1 {
			t.Fatalf("update mutable %d: %v seq %d", i, err, pr2.Seq)
		}
		c, _ := pick()
		gr, err = c.Get(ctx, pr.Target, GetOptions{Salt: salt})
		if err != nil || string(gr.Item.V) != string(v2) || gr.Item.Seq != pr2.Seq {
			t.Fatalf("get updated %d: %v %q seq %d", i, err, gr.Item.V, gr.Item.Seq)
		}
		// a stale seq is refused by every storer
		stale := pr.Seq
		if res, err := a.PutMutable(ctx, priv, []byte("i7e"), PutOptions{Salt: salt, Seq: &stale}); !errors.Is(err, ErrSeqNotNewer) || res.Errors[krpc.ErrCodeSeqLessCurrent] == 0 {
			t.Fatalf("stale put %d: want ErrSeqNotNewer and 302 replies, got %v %v", i, err, res.Errors)
		}
		// cas conflict: cas names an old seq
		next, cas := pr2.Seq+1, pr.Seq
		res, err := a.PutMutable(ctx, priv, []byte("i8e"), PutOptions{Salt: salt, Seq: &next, Cas: &cas})
		if err == nil || res.Stored != 0 || res.Errors[krpc.ErrCodeCASMismatch] == 0 {
			t.Fatalf("cas conflict %d: stored on %d nodes, errors %v, err %v", i, res.Stored, res.Errors, err)
		}
		gr, _ = c.Get(ctx, pr.Target, GetOptions{Salt: salt})
		if string(gr.Item.V) != string(v2) {
			t.Fatalf("after refused puts %d: value %q", i, gr.Item.V)
		}
	}
	_ = storage.MaxValueLen
}
