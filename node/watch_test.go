package node

import (
	"context"
	"crypto/ed25519"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dhtd/dhtd/internal/pkarr"
	"github.com/dhtd/dhtd/krpc/simnet"
	"github.com/dhtd/dhtd/storage"
)

// TestRepublishWatchKeepsPkarrPacket: a node that watches a key (what
// `dhtd run --pkarr-keep` does), holding neither the packet nor the
// private key, keeps the key's Pkarr packet alive across two republish
// intervals and more on the simulated clock, past the 2 h item TTL; a packet of
// another key that nobody watches expires.
func TestRepublishWatchKeepsPkarrPacket(t *testing.T) {
	if testing.Short() {
		t.Skip("simulation")
	}
	synctest.Test(t, testRepublishWatchKeepsPkarrPacket)
}

func testRepublishWatchKeepsPkarrPacket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Hour) // simulated
	defer cancel()
	s := newSim(t, 11, simnet.Config{})
	s.grow(ctx, 40)
	live := s.live()
	owner, keeper, reader := live[0], live[1], live[len(live)-1]

	sign := func(b byte, txt string) pkarr.SignedPacket {
		priv := testKey(b)
		rec, err := pkarr.ParseRecord("@ TXT " + txt)
		if err != nil {
			t.Fatal(err)
		}
		packet, err := pkarr.EncodePacket(pkarr.KeyString(priv.Public().(ed25519.PublicKey)), []pkarr.Record{rec})
		if err != nil {
			t.Fatal(err)
		}
		p, err := pkarr.Sign(priv, packet, pkarr.SeqAt(time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := owner.PutSigned(ctx, SignedPut{Key: p.PublicKey, Value: p.Value(), Seq: p.Seq, Sig: p.Sig}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kept, lost := sign(7, "kept"), sign(8, "lost")

	r := NewRepublisher(keeper)
	defer r.Close()
	rounds := roundLog(t, r)
	if err := r.Watch(kept.PublicKey, nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.Watch(kept.PublicKey, nil, 0); err != nil || r.Stats().Kept != 1 {
		t.Fatalf("watching twice: %v, stats %+v", err, r.Stats())
	}
	s.advance(3 * time.Hour)
	// the first round at once, then one every 54-60 min: at
	// least 3 in 3 hours, so two whole intervals were bridged.
	got := waitRounds(ctx, t, rounds, 3)
	if got[republishFailed] != 0 || got[republishPut]+got[republishSkipped] != 3 {
		t.Errorf("rounds %v, want 3 put or skipped", got)
	}
	target := storage.MutableTarget(kept.PublicKey, nil)
	gr, err := reader.Get(ctx, target, GetOptions{})
	if err != nil {
		t.Fatalf("watched key after 3h: %v", err)
	}
	back, err := pkarr.FromItem(gr.Item)
	if err != nil || back.Seq != kept.Seq || string(back.Packet) != string(kept.Packet) || string(back.Sig) != string(kept.Sig) {
		t.Fatalf("watched key after 3h: %+v, %v; want the packet first put", back, err)
	}
	if gr, err := reader.Get(ctx, storage.MutableTarget(lost.PublicKey, nil), GetOptions{}); err == nil || gr.Found {
		t.Errorf("a packet nobody watched is still there after 3h (found %v, err %v)", gr.Found, err)
	}
	if it, ok := r.Item(target); !ok || it.Seq != kept.Seq {
		t.Errorf("Item: %+v %v", it, ok)
	}
}
