package conformance

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/dhtd/dhtd/krpc"
)

// vectors is the part of testdata/test-vectors.json these tests use.
type vectors struct {
	BEP42 struct {
		Vectors []struct {
			IP string `json:"ip"`
			ID string `json:"example_node_id_hex"`
		} `json:"vectors"`
		VerifyCases []struct {
			IP    string `json:"ip"`
			ID    string `json:"node_id_hex"`
			Valid bool   `json:"valid"`
		} `json:"verify_cases"`
	} `json:"bep42"`
	BEP33 struct {
		Bloom string `json:"bloom_hex"`
	} `json:"bep33"`
	BEP44 struct {
		Mutable []struct {
			Name      string `json:"name"`
			PublicKey string `json:"public_key_hex"`
			Seed      string `json:"seed_hex"`
			Salt      string `json:"salt_hex"`
			Seq       int64  `json:"seq"`
			V         string `json:"v_bencoded"`
			Buffer    string `json:"signed_buffer_hex"`
			Target    string `json:"target_hex"`
			Signature string `json:"signature_hex"`
		} `json:"mutable"`
	} `json:"bep44"`
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "test-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSignVectors checks the suite's BEP 44 signing buffer, targets and
// embedded published vectors against the test vectors.
func TestSignVectors(t *testing.T) {
	v := loadVectors(t)
	if len(v.BEP44.Mutable) < 4 {
		t.Fatalf("%d mutable vectors", len(v.BEP44.Mutable))
	}
	for _, m := range v.BEP44.Mutable {
		t.Run(m.Name, func(t *testing.T) {
			k, salt, sig := unhex(m.PublicKey), unhex(m.Salt), unhex(m.Signature)
			buf := signBuffer(salt, m.Seq, []byte(m.V))
			if hex.EncodeToString(buf) != m.Buffer {
				t.Errorf("signBuffer = %q", buf)
			}
			if got := mutableTarget(k, salt); hex.EncodeToString(got[:]) != m.Target {
				t.Errorf("target %x, want %s", got, m.Target)
			}
			if !ed25519.Verify(k, buf, sig) {
				t.Errorf("signature does not verify")
			}
			if m.Seed != "" {
				if got := ed25519.Sign(ed25519.NewKeyFromSeed(unhex(m.Seed)), buf); !bytes.Equal(got, sig) {
					t.Errorf("signed %x, want %x", got, sig)
				}
			}
		})
	}
	for _, c := range []struct{ key, sig, target, salt string }{
		{vectorKey, vectorSig1, vectorTarget1, ""}, {vectorKey, vectorSig2, vectorTarget2, "foobar"},
	} {
		found := false
		for _, m := range v.BEP44.Mutable {
			found = found || m.PublicKey == c.key && m.Signature == c.sig && m.Target == c.target && string(unhex(m.Salt)) == c.salt && m.V == vectorV
		}
		if !found {
			t.Errorf("embedded vector (salt %q) not in test-vectors.json", c.salt)
		}
	}
}

// TestBEP42Vectors checks bep42Valid against BEP 42's table.
func TestBEP42Vectors(t *testing.T) {
	v := loadVectors(t)
	type tc struct {
		ip, id string
		valid  bool
	}
	var cases []tc
	for _, x := range v.BEP42.Vectors {
		cases = append(cases, tc{x.IP, x.ID, true})
	}
	for _, x := range v.BEP42.VerifyCases {
		cases = append(cases, tc{x.IP, x.ID, x.Valid})
	}
	if len(cases) < 8 {
		t.Fatalf("%d cases", len(cases))
	}
	for _, c := range cases {
		if got := bep42Valid(krpc.ID(unhex(c.id)), netip.MustParseAddr(c.ip)); got != c.valid {
			t.Errorf("bep42Valid(%s, %s) = %v, want %v", c.id, c.ip, got, c.valid)
		}
	}
}

// TestBEP42ID checks that generated ids verify for their address only.
func TestBEP42ID(t *testing.T) {
	for _, s := range []string{"124.31.75.21", "127.0.0.3", "2001:b829:2123:be84:e16c:d6ae:5290:49f1"} {
		ip := netip.MustParseAddr(s)
		for range 16 {
			id := bep42ID(ip)
			if !bep42Valid(id, ip) {
				t.Fatalf("bep42ID(%s) = %s does not verify", ip, id)
			}
			if other := netip.MustParseAddr("21.75.31.124"); bep42Valid(id, other) {
				t.Fatalf("bep42ID(%s) = %s verifies for %s too", ip, id, other)
			}
		}
	}
}

// TestBloomVector checks bloomHas against BEP 33's filter: every address
// inserted is found, and a filter without it does not claim it.
func TestBloomVector(t *testing.T) {
	f := string(unhex(loadVectors(t).BEP33.Bloom))
	a := netip.MustParseAddr("192.0.2.0")
	for range 256 {
		if !bloomHas(f, a) {
			t.Fatalf("%s missing", a)
		}
		a = a.Next()
	}
	a = netip.MustParseAddr("2001:db8::")
	for range 1000 {
		if !bloomHas(f, a) {
			t.Fatalf("%s missing", a)
		}
		a = a.Next()
	}
	if bloomHas(string(make([]byte, 256)), netip.MustParseAddr("192.0.2.1")) {
		t.Error("empty filter holds 192.0.2.1")
	}
	if bloomHas(f[:255], netip.MustParseAddr("192.0.2.1")) {
		t.Error("a 255-byte filter holds anything")
	}
}

// TestDecode checks the suite's decoder and the canonical-form verdict the
// suite gives a reply.
func TestDecode(t *testing.T) {
	for _, c := range []struct {
		in        string
		ok, canon bool
	}{
		{"d1:ai1e1:b1:xe", true, true},
		{"d1:bi1e1:a1:xe", true, false},
		{"d1:ai1e1:ai2ee", true, false},
		{"i-0e", true, false},
		{"i007e", true, false},
		{"02:ab", true, false},
		{"l1:ae", true, true},
		{"d1:ai1e", false, false},
		{"d1:ai1ee1", false, false},
		{"di1ei2ee", false, false},
		{"5:abc", false, false},
		{"x", false, false},
		{"", false, false},
	} {
		_, err := decode([]byte(c.in))
		canon := err == nil && krpc.CheckCanonical([]byte(c.in), krpc.Limits{}) == nil
		if (err == nil) != c.ok || canon != c.canon {
			t.Errorf("decode(%q) = canonical %v, err %v; want ok %v, canonical %v", c.in, canon, err, c.ok, c.canon)
		}
	}
	v, err := decode(encode(dict{"t": "aa", "r": dict{"id": "x", "n": 7}, "l": list{"a", 1}}))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := v.str("t"); s != "aa" {
		t.Errorf("t = %q", s)
	}
	if n, _ := v.d["r"].integer("n"); n != 7 {
		t.Errorf("r.n = %d", n)
	}
}

// FuzzDecode: the decoder never panics, and what it accepts as canonical
// re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe", "li1e3:abcd1:xi-2eee", "d1:bi1e1:ai2ee"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decode(b)
		if err != nil {
			return
		}
		canon := krpc.CheckCanonical(b, krpc.Limits{}) == nil
		if !bytes.Equal(v.raw, b) {
			t.Fatalf("raw %q of %q", v.raw, b)
		}
		if canon {
			if got := encode(toAny(v)); !bytes.Equal(got, b) {
				t.Fatalf("canonical %q re-encodes to %q", b, got)
			}
		}
	})
}

// toAny converts a decoded value back to encodable form.
func toAny(v value) any {
	switch v.kind {
	case 'i':
		return v.i
	case 's':
		return v.s
	case 'l':
		l := list{}
		for _, e := range v.l {
			l = append(l, toAny(e))
		}
		return l
	}
	d := dict{}
	for k, e := range v.d {
		d[k] = toAny(e)
	}
	return d
}
