// Package node is a Mainline DHT node: query handlers, iterative lookups,
// bootstrap, liveness and refresh timers, persistence, and the Go API for
// embedding it.
//
// # Embedding
//
// An application that wants to find peers or publish items uses Node and
// nothing else:
//
//   - New starts a node from a Config (zero values are the defaults;
//     LoopbackConfig is a profile with short timers for loopback tests),
//     Close stops it, Bootstrap joins the network (BEP 5).
//   - Lookups: FindNode, GetPeers, Announce (with AnnounceOptions), Scrape
//     (BEP 33), Sample (BEP 51, walking the network) and SampleInfohashes
//     (one node).
//   - BEP 44 items: Get, PutImmutable, PutMutable (the node signs) and
//     PutSigned (the caller signed: a SignedPut). NewRepublisher keeps
//     items and announces alive by repeating them.
//   - Ping asks one node; ID, Addr and Info say who the node is.
//   - Stats is a read-only view of the node's state, copied out: routing
//     table counts, stored peers and items, uptime, readiness, storage
//     health, BEP 42 mode and external address, address family.
//
// Errors match the sentinels of errors.go with errors.Is: ErrNotFound,
// ErrNoNodes, ErrNoAnswer, ErrRefused (and ErrNotStored for writes, and
// PutSigned's ErrBadItem, ErrValueTooLarge, ErrInvalidSignature,
// ErrCASMismatch, ErrSeqNotNewer).
//
// A dual-stack node (BEP 32: one Node per address family, linked so each
// answers "want" for the other) is a Stack: NewStack, NewDualStack or
// StackOf.
//
// # Running as a daemon
//
// What the dhtd daemon, its HTTP gateway and its status page need beyond
// that is on the handle Node.Admin returns, so that it does not crowd the
// embedding API: the Prometheus registry and collectors, the live routing
// table, the routing dump and its /debug/routing handler, the status
// page's history and recent lookups, the items this node itself stores,
// the data directory, and the settings a configuration reload changes
// (SetLimits, SetBootstrap). An embedder can use it too, for example to
// serve the node's metrics, but needs none of it to use the DHT.
package node
