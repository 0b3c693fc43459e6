package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dhtd/dhtd/krpc"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// closed Node must leave no read loop, timer loop, ping or lookup behind.
// Nothing is ignored.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNodeCloseLeavesNoGoroutine: three nodes join through each other, run
// a find_node lookup, and once closed leave no goroutine behind.
func TestNodeCloseLeavesNoGoroutine(t *testing.T) {
	// Goroutines of earlier tests (still winding down, or leaked: TestMain
	// reports those) are not this test's business.
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	start := func(boot ...*Node) *Node {
		cfg := LoopbackConfig()
		for _, b := range boot {
			cfg.Bootstrap = append(cfg.Bootstrap, b.Addr().String())
		}
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() }) // safety net; closed below
		return n
	}
	a := start()
	b := start(a)
	c := start(a, b)
	for _, n := range []*Node{b, c} {
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
	}
	// a has no bootstrap address: it learns b and c from their queries
	// (it pings them back to confirm), then joins through its table.
	waitFor(t, 10*time.Second, func() bool { return a.table.Len() >= 2 })
	if err := a.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap through the table: %v", err)
	}

	target := krpc.RandomID()
	res, err := c.FindNode(ctx, target)
	if err != nil {
		t.Fatalf("find_node: %v", err)
	}
	var got []krpc.ID
	for _, f := range res.Closest {
		got = append(got, f.Node.ID)
	}
	for _, want := range []krpc.ID{a.ID(), b.ID()} {
		if !slices.Contains(got, want) {
			t.Errorf("find_node from c found %v, missing %s", got, want)
		}
	}

	for _, n := range []*Node{a, b, c} {
		if err := n.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	goleak.VerifyNone(t, before)
}
