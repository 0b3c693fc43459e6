package node

import (
	"context"
	"crypto/ed25519"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/krpc/simnet"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/storage"
)

// roundLog collects a Republisher's round outcomes for a test.
func roundLog(t *testing.T, r *Republisher) <-chan string {
	ch := make(chan string, 100)
	r.onRound = func(target krpc.ID, outcome string, err error) {
		if err != nil {
			t.Logf("republish %s: %s: %v", target, outcome, err)
		}
		ch <- outcome
	}
	return ch
}

// waitRounds waits for n rounds and returns their outcomes.
func waitRounds(ctx context.Context, t *testing.T, ch <-chan string, n int) map[string]int {
	t.Helper()
	got := make(map[string]int)
	for range n {
		select {
		case o := <-ch:
			got[o]++
		case <-ctx.Done():
			t.Fatalf("only %v rounds of %d ran", got, n)
		}
	}
	return got
}

func testKey(b byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = b
	return ed25519.NewKeyFromSeed(seed)
}

// TestRepublishKeepsItemsPastTTL: items kept by a Republisher outlive the
// 2 h item TTL (three hours pass on the simulated clock); an item put
// without one expires everywhere. The mutable item is still the record
// first put: same seq, same signature. Likewise a kept announce outlives
// the 30 min peer TTL and one made without the Republisher does not.
func TestRepublishKeepsItemsPastTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	synctest.Test(t, testRepublishKeepsItemsPastTTL)
}

func testRepublishKeepsItemsPastTTL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Hour) // simulated
	defer cancel()
	s := newSim(t, 10, simnet.Config{})
	s.grow(ctx, 40)
	pub := s.live()[0]
	r := NewRepublisher(pub)
	defer r.Close()
	rounds := roundLog(t, r)
	if r.Interval() != time.Hour {
		t.Fatalf("default interval %v, want 1h", r.Interval())
	}

	imm := []byte("9:kept item")
	ir, err := r.PutImmutable(ctx, imm)
	if err != nil {
		t.Fatal(err)
	}
	priv := testKey(1)
	salt := []byte("s")
	mv := []byte("13:mutable value")
	mr, err := r.PutMutable(ctx, priv, mv, PutOptions{Salt: salt})
	if err != nil {
		t.Fatal(err)
	}
	firstSig := storage.SignMutable(priv, salt, mr.Seq, mv)
	control, err := pub.PutImmutable(ctx, []byte("12:not kept one"))
	if err != nil {
		t.Fatal(err)
	}
	keptIH, lostIH := s.newID(), s.newID()
	if _, err := r.Announce(ctx, keptIH, AnnounceOptions{Port: 7001}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Announce(ctx, lostIH, AnnounceOptions{Port: 7002}); err != nil {
		t.Fatal(err)
	}

	s.advance(3 * time.Hour)
	// Rounds come every 54-60 min (items) and 13.5-15 min (the
	// announce): in 3 hours at least 2 per item and 10 for the announce,
	// whatever the jitter.
	got := waitRounds(ctx, t, rounds, 2*2+10)
	st := r.Stats()
	t.Logf("rounds %v; stats %+v", got, st)
	if st.Kept != 2 || st.Announces != 1 || st.Republished < 4 || st.Reannounced < 10 || st.Failed != 0 {
		t.Errorf("stats %+v, want 2 items and 1 announce kept, >= 4 republished, >= 10 re-announced, none failed", st)
	}

	from := s.live()[len(s.live())-1]
	gr, err := from.Get(ctx, ir.Target, GetOptions{})
	if err != nil || string(gr.Item.V) != string(imm) {
		t.Errorf("kept immutable item after 3h: %v %q", err, gr.Item.V)
	}
	gr, err = from.Get(ctx, mr.Target, GetOptions{Salt: salt})
	if err != nil || string(gr.Item.V) != string(mv) || gr.Item.Seq != mr.Seq || string(gr.Item.Sig) != string(firstSig) {
		t.Errorf("kept mutable item after 3h: %v %q seq %d (want %d), same sig %v", err, gr.Item.V, gr.Item.Seq, mr.Seq, string(gr.Item.Sig) == string(firstSig))
	}
	if gr, err := from.Get(ctx, control.Target, GetOptions{}); err == nil || gr.Found {
		t.Errorf("an item nobody republished is still there after 3h (found %v, err %v)", gr.Found, err)
	}
	want := netip.AddrPortFrom(pub.Addr().Addr(), 7001)
	if pr, err := from.GetPeers(ctx, keptIH, nil); err != nil || !slices.Contains(pr.Peers, want) {
		t.Errorf("kept announce after 3h: %v, peers %v, want %s", err, pr.Peers, want)
	}
	if pr, _ := from.GetPeers(ctx, lostIH, nil); len(pr.Peers) != 0 {
		t.Errorf("an announce nobody repeated is still there after 3h: %v", pr.Peers)
	}
	if !r.ForgetAnnounce(keptIH) || r.ForgetAnnounce(keptIH) || r.Stats().Announces != 0 {
		t.Errorf("ForgetAnnounce: stats %+v", r.Stats())
	}
}

// TestRepublishAdoptsNewerSeq: when the key's owner publishes a newer seq,
// the Republisher keeps that record instead of re-putting its old one.
func TestRepublishAdoptsNewerSeq(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	synctest.Test(t, testRepublishAdoptsNewerSeq)
}

func testRepublishAdoptsNewerSeq(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour) // simulated
	defer cancel()
	s := newSim(t, 11, simnet.Config{})
	s.grow(ctx, 30)
	nodes := s.live()
	r := NewRepublisher(nodes[0])
	defer r.Close()
	rounds := roundLog(t, r)
	priv := testKey(2)
	pr, err := r.PutMutable(ctx, priv, []byte("2:v1"), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pr2, err := nodes[5].PutMutable(ctx, priv, []byte("2:v2"), PutOptions{})
	if err != nil || pr2.Seq != pr.Seq+1 {
		t.Fatalf("update: %v, seq %d", err, pr2.Seq)
	}
	s.advance(time.Hour)
	got := waitRounds(ctx, t, rounds, 1)
	it, ok := r.Item(pr.Target)
	if got[republishSuperseded] != 1 || !ok || it.Seq != pr2.Seq || string(it.V) != "2:v2" || r.Stats().Superseded != 1 {
		t.Fatalf("rounds %v, kept seq %d %q, stats %+v; want the newer seq %d adopted", got, it.Seq, it.V, r.Stats(), pr2.Seq)
	}
	gr, err := nodes[9].Get(ctx, pr.Target, GetOptions{})
	if err != nil || gr.Item.Seq != pr2.Seq {
		t.Fatalf("get after the round: %v seq %d", err, gr.Item.Seq)
	}
}

// TestRepublishEnoughCopies is the BEP 44 skip rule: more than K copies,
// and the K closest storers (with a token) all hold it, only copies of the
// newest seq counting.
func TestRepublishEnoughCopies(t *testing.T) {
	n := startNode(t, nil)
	r := NewRepublisher(n)
	defer r.Close()
	v := []byte("3:abc")
	imm := storage.Item{V: v}
	target := storage.ImmutableTarget(v)
	priv := testKey(3)
	pub := priv.Public().(ed25519.PublicKey)
	mut := storage.Item{V: v, K: pub, Seq: 5, Sig: storage.SignMutable(priv, nil, 5, v), Mutable: true}
	mtarget := storage.MutableTarget(pub, nil)

	reply := func(tok string, it *storage.Item, seq int64) Found {
		r := &krpc.Return{Token: tok}
		if it != nil {
			r.V = it.V
			if it.Mutable {
				r.K, r.Sig = string(it.K), string(it.Sig)
			}
		}
		if seq > 0 {
			r.Seq = &seq
		}
		return Found{Reply: &krpc.Msg{R: r}}
	}
	result := func(target krpc.ID, it storage.Item, count int, closest ...Found) GetResult {
		return GetResult{Target: target, Found: true, Item: it, Count: count, Lookup: LookupResult{Target: target, Closest: closest}}
	}
	all := func(f Found) []Found {
		out := make([]Found, 8)
		for i := range out {
			out[i] = f
		}
		return out
	}
	holds := reply("t", &imm, 0)
	for _, tc := range []struct {
		name string
		gr   GetResult
		it   storage.Item
		want bool
	}{
		{"9 copies, 8 closest hold it", result(target, imm, 9, all(holds)...), imm, true},
		{"8 copies only", result(target, imm, 8, all(holds)...), imm, false},
		{"one of the 8 closest lacks it", result(target, imm, 12, append(all(holds)[:7], reply("t", nil, 0))...), imm, false},
		{"a tokenless node is not eligible", result(target, imm, 12, append([]Found{reply("", nil, 0)}, all(holds)...)...), imm, true},
		{"fewer than 8 eligible", result(target, imm, 12, all(holds)[:7]...), imm, false},
		{"not found", GetResult{Target: target}, imm, false},
		{"mutable, seq returned without v", result(mtarget, mut, 9, all(reply("t", nil, 5))...), mut, true},
		{"mutable, one holds an older seq", result(mtarget, mut, 9, append(all(reply("t", &mut, 5))[:7], reply("t", nil, 4))...), mut, false},
		{"mutable, the network has a newer seq", result(mtarget, storage.Item{Seq: 6, Mutable: true}, 9, all(reply("t", nil, 6))...), mut, false},
	} {
		if got := r.enoughCopies(tc.gr, tc.it); got != tc.want {
			t.Errorf("%s: enoughCopies = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRepublisherKeepAndClose: Keep refuses what a storer would refuse;
// Forget and Close stop the rounds; nothing is kept after Close.
func TestRepublisherKeepAndClose(t *testing.T) { synctest.Test(t, testRepublisherKeepAndClose) }

func testRepublisherKeepAndClose(t *testing.T) {
	s := newSim(t, 12, simnet.Config{})
	n := s.start(s.newID(), s.newAddr(), nil)
	r := NewRepublisher(n)
	rounds := roundLog(t, r)
	priv := testKey(4)
	pub := priv.Public().(ed25519.PublicKey)
	good := storage.Item{V: []byte("1:x"), K: pub, Seq: 1, Sig: storage.SignMutable(priv, nil, 1, []byte("1:x")), Mutable: true}
	bad := good
	bad.Seq = 2 // the signature is over seq 1
	if err := r.Keep(bad); err == nil {
		t.Error("Keep accepted a mutable item whose signature does not check")
	}
	if err := r.Keep(storage.Item{V: []byte("not bencode")}); err == nil {
		t.Error("Keep accepted a value that is not bencode")
	}
	if err := r.Keep(good); err != nil {
		t.Fatal(err)
	}
	if err := r.Keep(storage.Item{V: []byte("1:y")}); err != nil {
		t.Fatal(err)
	}
	if !r.Forget(storage.ImmutableTarget([]byte("1:y"))) || r.Stats().Kept != 1 {
		t.Fatalf("Forget: stats %+v", r.Stats())
	}
	// The rounds are on the core's republish schedule, one entry per item.
	scheduled := func() (k int) {
		n.srv.Do(func(cn *core.Node, _ time.Time) { k = cn.Keeping() })
		return k
	}
	if k := scheduled(); k != 1 {
		t.Fatalf("the core's schedule holds %d entries, want 1", k)
	}
	// The node knows no other node: the round, due within the hour, fails
	// (and is counted). Waiting for it lets virtual time run up to it; a
	// failed round is retried 5 min later, after the count is checked.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // simulated
	defer cancel()
	if got := waitRounds(ctx, t, rounds, 1); got[republishFailed] != 1 || r.Stats().Failed != 1 {
		t.Fatalf("round with no nodes: %v, stats %+v", got, r.Stats())
	}
	r.Close()
	r.Close() // idempotent
	if k := scheduled(); k != 0 {
		t.Errorf("the core's schedule holds %d entries after Close, want 0", k)
	}
	if err := r.Keep(good); err == nil {
		t.Error("Keep after Close succeeded")
	}
	s.advance(2 * time.Hour)
	select {
	case o := <-rounds:
		t.Fatalf("a round (%s) ran after Close", o)
	default:
	}
}
