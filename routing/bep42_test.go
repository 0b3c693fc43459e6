package routing

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"

	"github.com/dhtd/dhtd/krpc"
)

type bep42Vectors struct {
	Vectors []struct {
		Source       string `json:"source"`
		IP           string `json:"ip"`
		Rand         int    `json:"rand"`
		R            int    `json:"r"`
		CRCInput     string `json:"crc_input_hex"`
		CRC32C       string `json:"crc32c_hex"`
		Prefix       string `json:"expected_prefix_hex"`
		PrefixMask   string `json:"prefix_compare_mask_hex"`
		ExampleID    string `json:"example_node_id_hex"`
		ExampleValid bool   `json:"example_id_valid_for_ip"`
	} `json:"vectors"`
	VerifyCases []struct {
		IP     string `json:"ip"`
		NodeID string `json:"node_id_hex"`
		Note   string `json:"note"`
		Valid  bool   `json:"valid"`
	} `json:"verify_cases"`
}

func loadBEP42Vectors(t *testing.T) bep42Vectors {
	t.Helper()
	b, err := os.ReadFile("../testdata/test-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var all struct {
		BEP42 bep42Vectors `json:"bep42"`
	}
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatal(err)
	}
	if len(all.BEP42.Vectors) == 0 || len(all.BEP42.VerifyCases) == 0 {
		t.Fatal("no bep42 vectors in test-vectors.json")
	}
	return all.BEP42
}

func bep42Hex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestBEP42Vectors(t *testing.T) {
	v := loadBEP42Vectors(t)
	for _, tc := range v.Vectors {
		t.Run(tc.IP, func(t *testing.T) {
			ip := netip.MustParseAddr(tc.IP)
			if tc.R != tc.Rand&7 {
				t.Fatalf("vector inconsistent: r=%d rand=%d", tc.R, tc.Rand)
			}
			r := byte(tc.R)
			in, n := bep42Input(ip, r)
			if got := hex.EncodeToString(in[:n]); got != tc.CRCInput {
				t.Errorf("crc input = %s, want %s", got, tc.CRCInput)
			}
			crc, ok := bep42CRC(ip, r)
			if !ok {
				t.Fatal("bep42CRC refused the address")
			}
			if got := hex.EncodeToString([]byte{byte(crc >> 24), byte(crc >> 16), byte(crc >> 8), byte(crc)}); got != tc.CRC32C {
				t.Errorf("crc32c = %s, want %s", got, tc.CRC32C)
			}

			example, err := krpc.ParseID(tc.ExampleID)
			if err != nil {
				t.Fatal(err)
			}
			if got := VerifyID(example, ip); got != tc.ExampleValid {
				t.Errorf("VerifyID(example) = %v, want %v", got, tc.ExampleValid)
			}
			if got := idMatchesIP(example, ip); got != tc.ExampleValid {
				t.Errorf("idMatchesIP(example) = %v, want %v", got, tc.ExampleValid)
			}

			// The generator overwrites only constrained bits of the
			// random stream, so the example id as the stream reproduces it.
			gen := GenerateID(ip, r, bytes.NewReader(example[:]))
			if gen != example {
				t.Errorf("GenerateID with example as randomness = %s, want %s", gen, example)
			}
			if gen[krpc.IDLen-1] != byte(tc.Rand) {
				t.Errorf("last byte = %#x, want rand %#x", gen[krpc.IDLen-1], tc.Rand)
			}
			prefix, mask := bep42Hex(t, tc.Prefix), bep42Hex(t, tc.PrefixMask)
			for i := range prefix {
				if gen[i]&mask[i] != prefix[i] {
					t.Errorf("id[%d]&%#x = %#x, want %#x", i, mask[i], gen[i]&mask[i], prefix[i])
				}
			}

			// A fresh random id for this ip and r has the same prefix.
			fresh := GenerateID(ip, r, nil)
			if !VerifyID(fresh, ip) || fresh[krpc.IDLen-1]&7 != r {
				t.Errorf("fresh id %s does not verify for %s with r=%d", fresh, ip, r)
			}
			for i := range prefix {
				if fresh[i]&mask[i] != prefix[i] {
					t.Errorf("fresh id[%d]&%#x = %#x, want %#x", i, mask[i], fresh[i]&mask[i], prefix[i])
				}
			}

			// IPv4-mapped IPv6 is the same address.
			if ip.Is4() {
				mapped := netip.AddrFrom16(ip.As16())
				if !VerifyID(example, mapped) {
					t.Errorf("example does not verify for mapped %s", mapped)
				}
			}
		})
	}
}

func TestBEP42VerifyCases(t *testing.T) {
	v := loadBEP42Vectors(t)
	for _, tc := range v.VerifyCases {
		id, err := krpc.ParseID(tc.NodeID)
		if err != nil {
			t.Fatal(err)
		}
		ip := netip.MustParseAddr(tc.IP)
		if got := VerifyID(id, ip); got != tc.Valid {
			t.Errorf("VerifyID(%s, %s) = %v, want %v (%s)", id, ip, got, tc.Valid, tc.Note)
		}
	}
}

// bep42PublicIP returns a random address that is not exempt.
func bep42PublicIP(r *rand.Rand, v6 bool) netip.Addr {
	for {
		var ip netip.Addr
		if v6 {
			var b [16]byte
			for i := range b {
				b[i] = byte(r.UintN(256))
			}
			b[0] = 0x20 | b[0]&0x1f // 2000::/3, global unicast
			ip = netip.AddrFrom16(b)
		} else {
			var b [4]byte
			for i := range b {
				b[i] = byte(r.UintN(256))
			}
			ip = netip.AddrFrom4(b)
		}
		if ip.IsGlobalUnicast() && !ExemptIP(ip) {
			return ip
		}
	}
}

func TestBEP42GenerateVerifyMutate(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 42))
	seed := rand.NewChaCha8([32]byte{1, 2, 3})
	for i := range 400 {
		ip := bep42PublicIP(rng, i%2 == 1)
		r := byte(i % 8)
		id := GenerateID(ip, r, seed)
		if !VerifyID(id, ip) {
			t.Fatalf("GenerateID(%s, %d) = %s does not verify", ip, r, id)
		}
		if id[krpc.IDLen-1]&7 != r {
			t.Fatalf("id %s: r = %d, want %d", id, id[krpc.IDLen-1]&7, r)
		}
		// Each of the 21 constrained prefix bits matters.
		for bit := range 21 {
			m := id
			m[bit/8] ^= 0x80 >> (bit % 8)
			if VerifyID(m, ip) {
				t.Fatalf("id %s for %s: flipping constrained bit %d still verifies", id, ip, bit)
			}
		}
		// Changing r (the low 3 bits of the last byte) breaks it too
		// (except for a 2^-21 chance collision, absent for this seed).
		for bit := range 3 {
			m := id
			m[krpc.IDLen-1] ^= 1 << bit
			if VerifyID(m, ip) {
				t.Fatalf("id %s for %s: flipping r bit %d still verifies", id, ip, bit)
			}
		}
		// The other bits are free.
		for bit := 21; bit < 160-3; bit++ {
			m := id
			m[bit/8] ^= 0x80 >> (bit % 8)
			if !VerifyID(m, ip) {
				t.Fatalf("id %s for %s: flipping free bit %d breaks it", id, ip, bit)
			}
		}
	}
}

func TestBEP42IDTiedToAddress(t *testing.T) {
	a := netip.MustParseAddr("124.31.75.21")
	id := GenerateID(a, 1, nil)
	for _, s := range []string{"21.75.31.124", "65.23.51.170", "84.124.73.14", "43.213.53.83", "2001:b829:2123:be84::1"} {
		if VerifyID(id, netip.MustParseAddr(s)) {
			t.Errorf("id for %s verifies for %s", a, s)
		}
	}
	// The IPv6 id uses only the high 64 bits: the interface id is free.
	v6 := netip.MustParseAddr("2001:b829:2123:be84:e16c:d6ae:5290:49f1")
	id6 := GenerateID(v6, 4, nil)
	if !VerifyID(id6, netip.MustParseAddr("2001:b829:2123:be84::1")) {
		t.Error("IPv6 id does not verify for another address of the same /64")
	}
	// Masked-out bits do not matter either: the mask keeps only the low 2
	// bits of the first byte, so 252.31.75.21 hashes like 124.31.75.21.
	if !VerifyID(id, netip.AddrFrom4([4]byte{124 ^ 0x80, 31, 75, 21})) {
		t.Error("masked bit of the first byte changed the prefix")
	}
}

type bep42ErrReader struct{ n int }

func (r *bep42ErrReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("exhausted")
	}
	k := min(r.n, len(p))
	for i := range k {
		p[i] = 0xaa
	}
	r.n -= k
	return k, nil
}

func TestBEP42GenerateIDFallbacks(t *testing.T) {
	ip := netip.MustParseAddr("65.23.51.170")
	id := GenerateID(ip, 6, &bep42ErrReader{n: 5})
	if !VerifyID(id, ip) || id[krpc.IDLen-1]&7 != 6 {
		t.Fatalf("id from a failing reader does not verify: %s", id)
	}
	if !bytes.Equal(id[3:5], []byte{0xaa, 0xaa}) {
		t.Errorf("bytes read before the failure were not used: %s", id)
	}
	// r is taken mod 8.
	if got := GenerateID(ip, 6+8, nil); got[krpc.IDLen-1]&7 != 6 || !VerifyID(got, ip) {
		t.Errorf("GenerateID with r=14: %s", got)
	}
	// An invalid address gives a random id that verifies for nothing.
	inv := GenerateID(netip.Addr{}, 3, nil)
	if inv[krpc.IDLen-1]&7 != 3 {
		t.Errorf("invalid-address id: r = %d", inv[krpc.IDLen-1]&7)
	}
	if VerifyID(inv, netip.Addr{}) {
		t.Error("VerifyID accepted the invalid address")
	}
}

func TestExemptIP(t *testing.T) {
	cases := map[string]bool{
		// BEP 42's IPv4 list.
		"10.0.0.0": true, "10.255.255.255": true, "9.255.255.255": false, "11.0.0.0": false,
		"172.16.0.0": true, "172.31.255.255": true, "172.15.255.255": false, "172.32.0.0": false,
		"192.168.0.1": true, "192.168.255.255": true, "192.167.255.255": false, "192.169.0.0": false,
		"169.254.0.1": true, "169.254.255.255": true, "169.253.255.255": false, "169.255.0.0": false,
		"127.0.0.1": true, "127.255.255.254": true, "128.0.0.1": false,
		// Not in the BEP.
		"100.64.0.1": false, "8.8.8.8": false, "124.31.75.21": false, "0.0.0.0": false,
		"224.0.0.1": false, "255.255.255.255": false,
		// IPv6 equivalents.
		"::1": true, "fe80::1": true, "febf:ffff::1": true, "fe80::1%eth0": true,
		"fc00::1": true, "fdff:ffff::1": true, "fe00::1": false, "fec0::1": false,
		"::": false, "::2": false, "2001:db8::1": false, "2001:b829:2123:be84::1": false,
		"ff02::1": false,
		// IPv4-mapped addresses are judged as IPv4.
		"::ffff:10.1.2.3": true, "::ffff:127.0.0.1": true, "::ffff:8.8.8.8": false,
	}
	for s, want := range cases {
		ip := netip.MustParseAddr(s)
		if got := ExemptIP(ip); got != want {
			t.Errorf("ExemptIP(%s) = %v, want %v", s, got, want)
		}
		// Exempt sources are always valid, whatever the id.
		if want && !VerifyID(krpc.ID{}, ip) {
			t.Errorf("VerifyID(zero id, exempt %s) = false", s)
		}
	}
	if ExemptIP(netip.Addr{}) {
		t.Error("ExemptIP(invalid) = true")
	}
}

func TestBEP42Mode(t *testing.T) {
	for _, m := range []BEP42Mode{BEP42Off, BEP42Prefer, BEP42Enforce} {
		got, err := ParseBEP42Mode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseBEP42Mode(%q) = %v, %v", m.String(), got, err)
		}
		txt, err := m.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back BEP42Mode
		if err := back.UnmarshalText(txt); err != nil || back != m {
			t.Errorf("text round trip of %v: %v, %v", m, back, err)
		}
	}
	if m, err := ParseBEP42Mode(" Enforce "); err != nil || m != BEP42Enforce {
		t.Errorf("ParseBEP42Mode(\" Enforce \") = %v, %v", m, err)
	}
	for _, s := range []string{"", "on", "strict", "1"} {
		if _, err := ParseBEP42Mode(s); err == nil {
			t.Errorf("ParseBEP42Mode(%q) accepted", s)
		}
	}
	if _, err := BEP42Mode(7).MarshalText(); err == nil {
		t.Error("MarshalText accepted an invalid mode")
	}
	if BEP42Mode(0) != BEP42Off {
		t.Error("zero mode is not off")
	}
	var cfg struct{ Mode BEP42Mode }
	if err := json.Unmarshal([]byte(`{"Mode":"prefer"}`), &cfg); err != nil || cfg.Mode != BEP42Prefer {
		t.Errorf("json: %v, %v", cfg.Mode, err)
	}
}
