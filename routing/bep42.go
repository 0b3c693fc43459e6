package routing

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"strings"

	"github.com/dhtd/dhtd/krpc"
)

// BEP 42 ("DHT security extension", BEP 42): the top 21 bits of a node id
// are a CRC32C of the node's external IP, so that an attacker cannot place
// many ids next to a chosen target without controlling many addresses.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Masks applied to the IP before hashing (docs/protocol.md, BEP 42).
var (
	bep42Mask4 = [4]byte{0x03, 0x0f, 0x3f, 0xff}
	bep42Mask6 = [8]byte{0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff}
)

// bep42Input returns the bytes BEP 42 hashes for ip and r: ip masked, with
// r<<5 OR-ed into the first byte; the 4 address bytes for IPv4 (the BEP
// prose says 8, but its vectors, its example code, libtorrent and anacrolix
// all hash 4; docs/protocol.md, BEP 42) and the high 8 bytes for IPv6. IPv4-mapped IPv6
// addresses count as IPv4. n is 0 for an invalid address.
func bep42Input(ip netip.Addr, r byte) (buf [8]byte, n int) {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		a := ip.As4()
		for i := range a {
			buf[i] = a[i] & bep42Mask4[i]
		}
		n = 4
	case ip.Is6():
		a := ip.As16()
		for i := range bep42Mask6 {
			buf[i] = a[i] & bep42Mask6[i]
		}
		n = 8
	default:
		return buf, 0
	}
	buf[0] |= (r & 7) << 5
	return buf, n
}

// bep42CRC returns the CRC32C of bep42Input(ip, r); ok is false for an
// invalid address.
func bep42CRC(ip netip.Addr, r byte) (crc uint32, ok bool) {
	buf, n := bep42Input(ip, r)
	if n == 0 {
		return 0, false
	}
	return crc32.Checksum(buf[:n], castagnoli), true
}

// GenerateID returns a node id that is BEP 42-valid for the external
// address ip with r (only its low 3 bits are used; 0..7). The top 21 bits
// come from the CRC32C of the masked ip and r, the low 3 bits of the last
// byte are r, and every other bit is read from rnd (crypto/rand if nil).
//
// The id is built by reading 20 bytes from rnd and then overwriting the
// constrained bits, so feeding a published example id as rnd reproduces it.
// If rnd fails, the missing bytes come from crypto/rand. For an invalid ip
// the id is random except for r in the last byte (it verifies for nothing).
func GenerateID(ip netip.Addr, r byte, rnd io.Reader) krpc.ID {
	var id krpc.ID
	n := 0
	if rnd != nil {
		n, _ = io.ReadFull(rnd, id[:])
	}
	if n < len(id) {
		_, _ = rand.Read(id[n:]) // never fails (crypto/rand, Go >= 1.24)
	}
	r &= 7
	id[krpc.IDLen-1] = id[krpc.IDLen-1]&^7 | r
	crc, ok := bep42CRC(ip, r)
	if !ok {
		return id
	}
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], crc)
	id[0] = c[0]
	id[1] = c[1]
	id[2] = c[2]&0xf8 | id[2]&0x07
	return id
}

// idMatchesIP reports whether the 21 constrained bits of id match ip for
// r = id[19] & 7, with no exemption for local addresses.
func idMatchesIP(id krpc.ID, ip netip.Addr) bool {
	crc, ok := bep42CRC(ip, id[krpc.IDLen-1]&7)
	if !ok {
		return false
	}
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], crc)
	return id[0] == c[0] && id[1] == c[1] && id[2]&0xf8 == c[2]&0xf8
}

// MatchesIP reports whether the 21 constrained bits of id match ip (BEP
// 42), with no exemption for local addresses: VerifyID without ExemptIP,
// for tests on loopback and for choosing our own id.
func MatchesIP(id krpc.ID, ip netip.Addr) bool {
	return ip.IsValid() && idMatchesIP(id, ip.Unmap())
}

// VerifyID reports whether id is acceptable for a node whose packets come
// from ip (BEP 42, docs/protocol.md, BEP 42): true if ip is exempt (ExemptIP: "exempt
// sources are always valid"), else true iff the top 21 bits of id equal the
// CRC32C prefix for ip and r = id[19] & 7. Only those bits are checked (as
// libtorrent and anacrolix do): the high 5 bits of id[19] and bytes 3..18
// are free. An invalid ip never verifies.
func VerifyID(id krpc.ID, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	if ExemptIP(ip) {
		return true
	}
	return idMatchesIP(id, ip)
}

// ExemptIP reports whether ip is exempt from BEP 42 id verification: a node
// there has no meaningful external address of its own.
//
// IPv4, as BEP 42 lists them: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
// 169.254.0.0/16 (link-local) and 127.0.0.0/8 (loopback). The BEP names no
// IPv6 ranges; the equivalents used in practice (anacrolix, and a subset of
// libtorrent's is_local, docs/protocol.md, BEP 42) are exempt too: ::1, fe80::/10
// (link-local) and fc00::/7 (unique local). IPv4-mapped IPv6 addresses are
// judged as IPv4. Not exempt: 100.64.0.0/10 (CGNAT, libtorrent only),
// deprecated fec0::/10, multicast, and the invalid address.
func ExemptIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	// netip's predicates are exactly these ranges: IsLoopback = 127/8, ::1;
	// IsPrivate = 10/8, 172.16/12, 192.168/16, fc00::/7;
	// IsLinkLocalUnicast = 169.254/16, fe80::/10.
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast()
}

// BEP42Mode says how a node uses BEP 42 verification (docs/protocol.md, BEP 42). The zero
// value is BEP42Off.
type BEP42Mode int

// BEP 42 modes.
const (
	// BEP42Off: ids are not checked (the BEP's transition period;
	// libtorrent's and anacrolix's default).
	BEP42Off BEP42Mode = iota
	// BEP42Prefer: every node is served and may be added, but verified
	// nodes win when filling buckets and choosing storage targets
	// (libtorrent dht_prefer_verified_node_ids).
	BEP42Prefer
	// BEP42Enforce: queries from non-verifying ids get error 203 and are not
	// added, their responses count as timeouts, non-verifying ids learned
	// from "nodes" are skipped, and they are never storage targets nor count
	// toward a lookup's termination (libtorrent dht_enforce_node_id).
	BEP42Enforce
)

// String returns "off", "prefer" or "enforce".
func (m BEP42Mode) String() string {
	switch m {
	case BEP42Off:
		return "off"
	case BEP42Prefer:
		return "prefer"
	case BEP42Enforce:
		return "enforce"
	}
	return fmt.Sprintf("BEP42Mode(%d)", int(m))
}

// ParseBEP42Mode parses "off", "prefer" or "enforce" (case-insensitive,
// surrounding space ignored).
func ParseBEP42Mode(s string) (BEP42Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "off":
		return BEP42Off, nil
	case "prefer":
		return BEP42Prefer, nil
	case "enforce":
		return BEP42Enforce, nil
	}
	return BEP42Off, fmt.Errorf("bep42 mode %q: want off, prefer or enforce", s)
}

// MarshalText implements encoding.TextMarshaler (for config files and JSON).
func (m BEP42Mode) MarshalText() ([]byte, error) {
	if m < BEP42Off || m > BEP42Enforce {
		return nil, fmt.Errorf("invalid %s", m)
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler via ParseBEP42Mode.
func (m *BEP42Mode) UnmarshalText(b []byte) error {
	v, err := ParseBEP42Mode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
