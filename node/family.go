package node

import "net/netip"

// canReach reports whether our socket can send to ip (BEP 32): a socket
// bound to an IPv4 address reaches IPv4 only, one bound to a specific IPv6
// address IPv6 only, and one bound to the IPv6 wildcard ("[::]", a dual-stack
// socket) both.
func (n *Node) canReach(ip netip.Addr) bool {
	local := n.Addr().Addr()
	switch {
	case local.Is4() || local.Is4In6() && !local.Unmap().IsUnspecified():
		return ip.Unmap().Is4()
	case local.IsUnspecified():
		return true
	default:
		return ip.Is6() && !ip.Is4In6()
	}
}
