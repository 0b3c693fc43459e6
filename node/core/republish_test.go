package core

import (
	"crypto/ed25519"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// runFor steps every node's clock from start to end a minute at a time,
// calling HandleTimeout on each node whose wake-up has come and moving
// the packets; it returns end.
func runFor(t *testing.T, nodes map[netip.AddrPort]*Node, all []*Node, start, end time.Time) time.Time {
	t.Helper()
	for now := start; !now.After(end); now = now.Add(time.Minute) {
		for _, n := range all {
			if wake, ok := n.NextTimeout(); ok && !wake.After(now) {
				n.HandleTimeout(now)
			}
		}
		deliver(t, now, nodes)
	}
	return end
}

// holders counts the nodes that hold target at now.
func holders(all []*Node, target krpc.ID, now time.Time) int {
	k := 0
	for _, n := range all {
		if n.HasItem(target, now) {
			k++
		}
	}
	return k
}

// TestKeepRepublishes: the items and the announce a node keeps (Keep) are
// still on the network five hours later, past the 2 h item TTL (BEP 44,
// Expiration) and the 30 min peer TTL, and the mutable item is still the
// record first put; an item put without Keep is gone. An entry forgotten
// stops being republished.
func TestKeepRepublishes(t *testing.T) {
	nodes, all := newNetwork(t, 20, 12, nil)
	pub := all[5]
	now := t0
	imm := storage.Item{V: []byte("4:kept")}
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	mv := []byte("7:mutable")
	mut := storage.Item{V: mv, K: priv.Public().(ed25519.PublicKey), Salt: []byte("s"), Seq: 3,
		Sig: storage.SignMutable(priv, []byte("s"), 3, mv), Mutable: true}
	lost := []byte("4:lost")
	var ih, gone krpc.ID
	ih[3], gone[3] = 0x42, 0x43
	stored := 0
	count := func(r StoreResult) { stored += min(r.Stored, 1) }
	pub.PutItem(now, imm, count)
	pub.PutItem(now, mut, count)
	pub.Put(now, lost, count)
	pub.Announce(now, ih, 51413, count)
	pub.Announce(now, gone, 51414, count)
	deliver(t, now, nodes)
	if stored != 5 {
		t.Fatalf("%d of 5 first stores acknowledged", stored)
	}
	pub.Keep(now, Kept{Target: imm.Target(), Item: &imm})
	pub.Keep(now, Kept{Target: mut.Target(), Item: &mut})
	pub.Keep(now, Kept{Target: ih, Announce: true, Port: 51413})
	forgot := pub.Keep(now, Kept{Target: gone, Announce: true, Port: 51414})
	if pub.Keeping() != 4 {
		t.Fatalf("Keeping = %d, want 4", pub.Keeping())
	}
	if !pub.Forget(forgot) || pub.Forget(forgot) || pub.Keeping() != 3 {
		t.Fatalf("Forget: Keeping = %d, want 3", pub.Keeping())
	}
	puts := pub.Stats().QueriesSent
	now = runFor(t, nodes, all, now, now.Add(5*time.Hour))
	// Five hours: at least 4 rounds per item (every 54 to 60 min) and 18
	// for the announce (every 13.5 to 15 min), each a lookup and stores.
	if sent := pub.Stats().QueriesSent - puts; sent < 26*3 {
		t.Errorf("%d queries sent in 5 h of rounds, want at least %d", sent, 26*3)
	}
	for _, it := range []storage.Item{imm, mut} {
		if k := holders(all, it.Target(), now); k == 0 {
			t.Errorf("kept item %s: no node holds it after 5 h", it.Target())
		}
	}
	if k := holders(all, storage.ImmutableTarget(lost), now); k != 0 {
		t.Errorf("an item nobody kept is held by %d nodes after 5 h", k)
	}
	var got Result
	all[12].Get(now, mut.Target(), func(r Result) { got = r })
	deliver(t, now, nodes)
	if len(got.Closest) == 0 {
		t.Fatal("get of the mutable item found no node")
	}
	found := false
	for _, n := range all {
		if n.svc.Items == nil {
			continue
		}
		if it, ok := n.svc.Items.Get(mut.Target(), now); ok {
			found = true
			if it.Seq != mut.Seq || string(it.Sig) != string(mut.Sig) || string(it.V) != string(mv) {
				t.Errorf("mutable item held as seq %d %q, want the record put (seq %d %q)", it.Seq, it.V, mut.Seq, mv)
			}
		}
	}
	if !found {
		t.Error("no node holds the mutable item after 5 h")
	}
	peersOf := func(ih krpc.ID) []netip.AddrPort {
		var peers []netip.AddrPort
		all[12].GetPeers(now, ih, func(r Result) { peers = r.Peers })
		deliver(t, now, nodes)
		return peers
	}
	if p := peersOf(ih); !slices.Contains(p, netip.AddrPortFrom(addr(6).Addr(), 51413)) {
		t.Errorf("kept announce after 5 h: peers %v", p)
	}
	if p := peersOf(gone); len(p) != 0 {
		t.Errorf("forgotten announce after 5 h: peers %v", p)
	}
}

// TestKeepDriverRounds: with Config.Republish the node hands each due
// entry to the driver, on time and up to RepublishJitter percent early,
// sends nothing itself, and waits for Rearm; Forget during a round drops
// the entry, and Rearm then reports it gone.
func TestKeepDriverRounds(t *testing.T) {
	type call struct {
		at time.Time
		id KeepID
		k  Kept
	}
	var calls []call
	var id krpc.ID
	id[0] = 1
	n := New(Config{ID: id, Rand: newTestNode(1, 1, nil).rnd, NoUpkeep: true,
		Republish: func(now time.Time, id KeepID, k Kept) { calls = append(calls, call{now, id, k}) }}, t0)
	var target krpc.ID
	target[0] = 7
	item := n.Keep(t0, Kept{Target: target})
	ann := n.Keep(t0, Kept{Target: target, Announce: true, Port: 1})
	watch := n.KeepAfter(t0, Kept{Target: target}, 30*time.Second)
	step := func(until time.Time) {
		t.Helper()
		for range 100 {
			wake, ok := n.NextTimeout()
			if !ok || wake.After(until) {
				return
			}
			n.HandleTimeout(wake)
		}
		t.Fatal("still due after 100 wake-ups")
	}
	step(t0.Add(2 * time.Hour))
	// Without Rearm each entry is handed over once.
	if len(calls) != 3 {
		t.Fatalf("%d rounds handed over, want 3: %+v", len(calls), calls)
	}
	within := func(c call, from time.Time, d time.Duration) {
		t.Helper()
		if early := from.Add(d).Sub(c.at); early < 0 || early > d*RepublishJitter/100 {
			t.Errorf("round of %d at %v, want up to %d%% before %v", c.id, c.at.Sub(t0), RepublishJitter, from.Add(d).Sub(t0))
		}
	}
	if calls[0].id != watch || !calls[0].at.Equal(t0.Add(30*time.Second)) {
		t.Errorf("first round %+v, want the watched entry at 30 s", calls[0])
	}
	if calls[1].id != ann || !calls[1].k.Announce || calls[1].k.Port != 1 {
		t.Errorf("second round %+v, want the announce", calls[1])
	}
	within(calls[1], t0, DefaultAnnounceInterval)
	if calls[2].id != item || calls[2].k.Announce {
		t.Errorf("third round %+v, want the item", calls[2])
	}
	within(calls[2], t0, DefaultRepublishInterval)
	if s := n.Stats(); s.QueriesSent != 0 {
		t.Errorf("the node sent %d queries of its own", s.QueriesSent)
	}
	now := t0.Add(2 * time.Hour)
	if !n.Rearm(now, item, 10*time.Minute) || !n.Forget(ann) || n.Rearm(now, ann, time.Minute) {
		t.Fatal("Rearm of a kept entry failed, or of a forgotten one succeeded")
	}
	calls = nil
	step(now.Add(20 * time.Minute))
	if len(calls) != 1 || calls[0].id != item {
		t.Fatalf("rounds after Rearm: %+v, want the item once", calls)
	}
	within(calls[0], now, 10*time.Minute)
	if n.Keeping() != 2 {
		t.Errorf("Keeping = %d, want 2 (the item and the watched entry)", n.Keeping())
	}
}
