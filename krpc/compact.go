package krpc

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Compact encodings (BEP 5, BEP 32); all integers big-endian.
const (
	CompactPeerLen4 = 6  // IPv4 address + port
	CompactPeerLen6 = 18 // IPv6 address + port (BEP 32)
	CompactNodeLen4 = IDLen + CompactPeerLen4
	CompactNodeLen6 = IDLen + CompactPeerLen6
)

// NodeInfo is a node id with the UDP address it is reached at.
type NodeInfo struct {
	ID   ID
	Addr netip.AddrPort
}

// String formats the node as "id@addr".
func (n NodeInfo) String() string { return n.ID.String() + "@" + n.Addr.String() }

// AppendCompactPeer appends the 6- or 18-byte compact form of a.
func AppendCompactPeer(dst []byte, a netip.AddrPort) []byte {
	ip := a.Addr().Unmap()
	if ip.Is4() {
		b := ip.As4()
		dst = append(dst, b[:]...)
	} else {
		b := ip.As16()
		dst = append(dst, b[:]...)
	}
	return binary.BigEndian.AppendUint16(dst, a.Port())
}

// ParseCompactPeer decodes a 6-byte (IPv4) or 18-byte (IPv6) compact peer.
func ParseCompactPeer(b []byte) (netip.AddrPort, error) {
	switch len(b) {
	case CompactPeerLen4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), binary.BigEndian.Uint16(b[4:])), nil
	case CompactPeerLen6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])), binary.BigEndian.Uint16(b[16:])), nil
	}
	return netip.AddrPort{}, fmt.Errorf("compact peer: want 6 or 18 bytes, got %d", len(b))
}

// CompactAddr is a compact peer address: the BEP 42 top-level "ip" key.
type CompactAddr netip.AddrPort

// AddrPort returns the address.
func (c CompactAddr) AddrPort() netip.AddrPort { return netip.AddrPort(c) }

// MarshalBencode encodes the 6- or 18-byte compact form.
func (c CompactAddr) MarshalBencode() ([]byte, error) {
	return AppendString(nil, AppendCompactPeer(nil, netip.AddrPort(c))), nil
}

// UnmarshalBencode decodes a 6- or 18-byte string.
func (c *CompactAddr) UnmarshalBencode(b []byte) error {
	s, rest, err := readString(b)
	if err != nil || len(rest) != 0 {
		return fmt.Errorf("ip: not a byte string")
	}
	a, err := ParseCompactPeer(s)
	if err != nil {
		return fmt.Errorf("ip: %w", err)
	}
	*c = CompactAddr(a)
	return nil
}

// CompactNodes is the "nodes" value: 26-byte IPv4 entries (BEP 5).
type CompactNodes []NodeInfo

// CompactNodes6 is the "nodes6" value: 38-byte IPv6 entries (BEP 32).
type CompactNodes6 []NodeInfo

// parseNodes decodes concatenated compact node infos of size per. A length
// that is not a multiple of per is malformed (the BEP 5 "def456..."
// placeholder is refused).
func parseNodes(b []byte, per int, what string) ([]NodeInfo, error) {
	return appendParsedNodes(nil, b, per, what)
}

// appendParsedNodes is parseNodes appending to ns; with a nil ns the
// result is a new slice of exactly the nodes' number.
func appendParsedNodes(ns []NodeInfo, b []byte, per int, what string) ([]NodeInfo, error) {
	s, rest, err := readString(b)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%s: not a byte string", what)
	}
	if len(s)%per != 0 {
		return nil, fmt.Errorf("%s: length %d is not a multiple of %d", what, len(s), per)
	}
	if ns == nil {
		ns = make([]NodeInfo, 0, len(s)/per)
	}
	for ; len(s) > 0; s = s[per:] {
		var n NodeInfo
		copy(n.ID[:], s)
		n.Addr, _ = ParseCompactPeer(s[IDLen:per])
		ns = append(ns, n)
	}
	return ns, nil
}

// MarshalBencode encodes the nodes as one string of 26-byte entries.
func (c CompactNodes) MarshalBencode() ([]byte, error) {
	return appendNodes(make([]byte, 0, 6+len(c)*CompactNodeLen4), c, false)
}

// UnmarshalBencode decodes 26-byte entries strictly.
func (c *CompactNodes) UnmarshalBencode(b []byte) error {
	ns, err := parseNodes(b, CompactNodeLen4, "nodes")
	*c = ns
	return err
}

// MarshalBencode encodes the nodes as one string of 38-byte entries.
func (c CompactNodes6) MarshalBencode() ([]byte, error) {
	return appendNodes(make([]byte, 0, 6+len(c)*CompactNodeLen6), c, true)
}

// UnmarshalBencode decodes 38-byte entries strictly.
func (c *CompactNodes6) UnmarshalBencode(b []byte) error {
	ns, err := parseNodes(b, CompactNodeLen6, "nodes6")
	*c = ns
	return err
}

// Peers is the get_peers "values" list: one compact peer per string. On
// decode, strings that are neither 6 nor 18 bytes are skipped (BEP 32 says
// to accept mixed lists and the other lengths carry nothing usable).
type Peers []netip.AddrPort

// MarshalBencode encodes a list of compact peer strings.
func (p Peers) MarshalBencode() ([]byte, error) {
	buf := make([]byte, 0, 2+len(p)*21)
	buf = append(buf, 'l')
	var tmp [CompactPeerLen6]byte
	for _, a := range p {
		buf = AppendString(buf, AppendCompactPeer(tmp[:0], a))
	}
	return append(buf, 'e'), nil
}

// UnmarshalBencode decodes a list of strings.
func (p *Peers) UnmarshalBencode(b []byte) error {
	if len(b) < 2 || b[0] != 'l' {
		return fmt.Errorf("values: not a list")
	}
	b = b[1:]
	var out Peers
	for len(b) > 0 && b[0] != 'e' {
		s, rest, err := readString(b)
		if err != nil {
			return fmt.Errorf("values: entry is not a byte string")
		}
		if a, err := ParseCompactPeer(s); err == nil {
			out = append(out, a)
		}
		b = rest
	}
	if len(b) != 1 {
		return fmt.Errorf("values: malformed list")
	}
	*p = out
	return nil
}
