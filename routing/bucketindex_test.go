package routing

import (
	"math/rand/v2"
	"testing"

	"github.com/dhtd/dhtd/krpc"
)

// TestBucketIndex: BucketIndex names the bucket Snapshot shows a node in,
// as the table splits.
func TestBucketIndex(t *testing.T) {
	self := krpc.RandomID()
	tb := NewTable(self, Config{})
	r := rand.New(rand.NewPCG(4, 2))
	for i := range 300 {
		// ids ever closer to ours, so the last bucket keeps splitting
		id := RandomIDInBucket(self, r.IntN(12), false)
		tb.Responded(ni(id, i), t0, 0)
	}
	if tb.NumBuckets() < 4 {
		t.Fatalf("only %d buckets", tb.NumBuckets())
	}
	checked := 0
	for _, b := range tb.Snapshot(t0) {
		for _, n := range b.Nodes {
			id, err := krpc.ParseID(n.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := tb.BucketIndex(id); got != b.Index {
				t.Errorf("BucketIndex(%s) = %d, Snapshot has it in %d", n.ID, got, b.Index)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no node in the table")
	}
	if got, want := tb.BucketIndex(self), tb.NumBuckets()-1; got != want {
		t.Errorf("BucketIndex(self) = %d, want the last bucket %d", got, want)
	}
}
