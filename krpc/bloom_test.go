package krpc

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// TestBloomVector: the BEP 33 test vector of test-vectors.json, bit for bit.
func TestBloomVector(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "test-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		BEP33 struct {
			BloomHex string  `json:"bloom_hex"`
			Estimate float64 `json:"estimate"`
			ZeroBits int     `json:"zero_bits"`
			SingleIP struct {
				IP     string `json:"ip"`
				Index1 int    `json:"index1"`
				Index2 int    `json:"index2"`
			} `json:"derived_single_ip"`
		} `json:"bep33"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	v := doc.BEP33
	if v.BloomHex == "" {
		t.Fatal("no bep33 vector")
	}
	var f Bloom
	for i := range 256 {
		f.Add(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	base := netip.MustParseAddr("2001:db8::").As16()
	for i := range 1000 {
		a := base
		a[14], a[15] = byte(i>>8), byte(i)
		f.Add(netip.AddrFrom16(a))
	}
	if got := hex.EncodeToString(f[:]); got != v.BloomHex {
		t.Fatalf("filter\n got %s\nwant %s", got, v.BloomHex)
	}
	if got := f.ZeroBits(); got != v.ZeroBits {
		t.Fatalf("zero bits %d, want %d", got, v.ZeroBits)
	}
	if got := f.Estimate(); math.Abs(got-v.Estimate) > 0.001 {
		t.Fatalf("estimate %v, want %v", got, v.Estimate)
	}

	var one Bloom
	one.Add(netip.MustParseAddr(v.SingleIP.IP))
	for _, i := range []int{v.SingleIP.Index1, v.SingleIP.Index2} {
		if one[i/8]&(1<<(i%8)) == 0 {
			t.Fatalf("bit %d not set for %s", i, v.SingleIP.IP)
		}
	}
	if one.ZeroBits() != BloomBits-2 {
		t.Fatalf("%d zero bits after one insert, want %d", one.ZeroBits(), BloomBits-2)
	}
}

func TestBloomUnionAndEstimate(t *testing.T) {
	var a, b, all Bloom
	if a.Estimate() != 0 {
		t.Fatalf("empty filter estimate %v", a.Estimate())
	}
	for i := range 300 {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if i%2 == 0 {
			a.Add(ip)
		} else {
			b.Add(ip)
		}
		all.Add(ip)
	}
	a.Union(&b)
	if a != all {
		t.Fatal("union of two filters differs from the filter of the union")
	}
	if e := a.Estimate(); e < 270 || e > 330 {
		t.Fatalf("estimate %v for 300 IPs", e)
	}
	// IPv4-mapped IPv6 is the IPv4 address.
	var m, p Bloom
	m.Add(netip.MustParseAddr("::ffff:192.0.2.1"))
	p.Add(netip.MustParseAddr("192.0.2.1"))
	if m != p {
		t.Fatal("IPv4-mapped address hashed as 16 bytes")
	}
}
