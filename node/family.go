package node

import (
	"net/netip"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node/core"
	"github.com/dhtd/dhtd/routing"
)

// canReach reports whether our socket can send to ip (BEP 32): a socket
// bound to an IPv4 address reaches IPv4 only, one bound to an IPv6 address
// (New binds them IPv6-only, "[::]" included) IPv6 only. A socket given in
// Config.Conn and bound to the IPv6 wildcard may be dual-stack: it is
// taken to reach both.
func (n *Node) canReach(ip netip.Addr) bool {
	local := n.Addr().Addr()
	switch {
	case local.Unmap().Is4():
		return ip.Unmap().Is4()
	case local.IsUnspecified() && n.cfg.Conn != nil:
		return true
	default:
		return ip.Is6() && !ip.Is4In6()
	}
}

// Link makes a and b, nodes of different address families in one process
// (BEP 32 dual stack: one node, socket and routing table per family),
// answer for each other: a query asking with "want" for the other family's
// nodes gets them from the other node's table.
func Link(a, b *Node) {
	a.sibling.Store(b)
	b.sibling.Store(a)
}

// familyTable returns the routing table to take nodes of the family of v6
// from: ours if our socket reaches that family, else the linked node's,
// else nil.
func (n *Node) familyTable(v6 bool) *routing.Table {
	probe := netip.IPv4Unspecified()
	if v6 {
		probe = netip.IPv6Loopback()
	}
	if n.canReach(probe) {
		return n.table
	}
	if o := n.sibling.Load(); o != nil && o.canReach(probe) {
		return o.table
	}
	return nil
}

// linkedNodes fills r's "nodes" and "nodes6", as asked, from the table of
// each family: ours and the linked node's (BEP 32 "want"), never the
// querier (id, from).
func (n *Node) linkedNodes(r *krpc.Return, target krpc.ID, want4, want6 bool, id krpc.ID, from netip.AddrPort) {
	if t := n.familyTable(false); want4 && t != nil {
		for _, c := range core.NotQuerier(t.Closest(target, n.cfg.K+2), id, from, n.cfg.K) {
			if c.Addr.Addr().Unmap().Is4() {
				r.Nodes = append(r.Nodes, c)
			}
		}
	}
	if t := n.familyTable(true); want6 && t != nil {
		for _, c := range core.NotQuerier(t.Closest(target, n.cfg.K+2), id, from, n.cfg.K) {
			if !c.Addr.Addr().Unmap().Is4() {
				r.Nodes6 = append(r.Nodes6, c)
			}
		}
	}
}
