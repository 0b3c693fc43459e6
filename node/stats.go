package node

import (
	"net/netip"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/routing"
	"github.com/dhtd/dhtd/storage"
)

// Stats is a read-only view of a node's state, copied out by Node.Stats:
// a plain value that later changes of the node do not touch, and whose
// changes do not reach the node.
type Stats struct {
	ID     krpc.ID
	Addr   netip.AddrPort // the local UDP address
	Family string         // "ipv4" or "ipv6": the family of the node's socket (BEP 32)
	Uptime time.Duration  // since New, by the node's clock
	// Ready is true once the routing table holds at least two good nodes
	// and the storage works (StorageHealthy); the daemon serves it as
	// /readyz.
	Ready bool
	// ReadOnly is Config.ReadOnly: the node answers no queries (BEP 43).
	ReadOnly bool

	// The routing table (BEP 5): its nodes by state, and its buckets.
	K            int // bucket size
	Good         int // nodes that answered recently
	Questionable int // nodes silent for a while, being pinged
	Bad          int // nodes that failed to answer, about to be replaced
	Buckets      int

	// BEP42 is how node ids are checked against their addresses (BEP 42).
	BEP42 routing.BEP42Mode
	// ExternalIP is our address as the network sees it, decided by a vote
	// of the BEP 42 "ip" field of responses from distinct subnets; the
	// zero Addr (not IsValid) until at least two subnets agree.
	ExternalIP netip.Addr

	// Peers and Items are the counters of what this node stores for
	// others: announced peers (BEP 5) and BEP 44 items.
	Peers storage.PeerStats
	Items storage.ItemStats
	// StorageHealthy is true without a Config.DataDir, else whether the
	// last write to the database succeeded.
	StorageHealthy bool
}

// Stats returns a snapshot of the node's state.
func (n *Node) Stats() Stats {
	now := n.clock.Now()
	good, q, bad := n.table.Counts(now)
	ip, _ := n.votedIP()
	healthy := n.storageHealthy()
	return Stats{
		ID: n.id, Addr: n.Addr(), Family: n.family(), Uptime: now.Sub(n.started),
		Ready:    good >= readyGoodNodes && healthy,
		ReadOnly: n.cfg.ReadOnly,
		K:        n.table.Config().K, Good: good, Questionable: q, Bad: bad, Buckets: n.table.NumBuckets(),
		BEP42: n.cfg.BEP42, ExternalIP: ip,
		Peers: n.peers.Stats(), Items: n.items.Stats(),
		StorageHealthy: healthy,
	}
}
