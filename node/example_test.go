package node_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/dhtd/dhtd/node"
)

// ExampleNode_PutImmutable embeds two nodes on loopback: the second joins
// the network through the first, stores a BEP 44 immutable item on it and
// reads it back by its target, SHA-1 of the value.
func ExampleNode_PutImmutable() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A first node: the network to join. LoopbackConfig listens on
	// 127.0.0.1:0 with short timers.
	seed, err := node.New(node.LoopbackConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer seed.Close()

	// The embedded node, bootstrapping through the first.
	cfg := node.LoopbackConfig()
	cfg.Bootstrap = []string{seed.Addr().String()}
	n, err := node.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	if err := n.Bootstrap(ctx); err != nil {
		log.Fatal(err)
	}

	// Values are bencoded (BEP 44): an 11-byte string.
	put, err := n.PutImmutable(ctx, []byte("11:Hello, DHT!"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored on", put.Stored, "node")

	got, err := n.Get(ctx, put.Target, node.GetOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, mutable: %v\n", got.Item.V, got.Item.Mutable)

	st := n.Stats()
	fmt.Println("good nodes:", st.Good, "family:", st.Family)
	// Output:
	// stored on 1 node
	// 11:Hello, DHT!, mutable: false
	// good nodes: 1 family: ipv4
}
