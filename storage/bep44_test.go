package storage

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/dhtd/dhtd/krpc"
)

// bep44VectorFile is the BEP 44 part of testdata/test-vectors.json.
type bep44VectorFile struct {
	BEP44 struct {
		Immutable []struct {
			Source    string `json:"source"`
			TargetHex string `json:"target_hex"`
			VHex      string `json:"v_bencoded_hex"`
		} `json:"immutable"`
		Mutable []struct {
			Name            string `json:"name"`
			PublicKeyHex    string `json:"public_key_hex"`
			ExpandedPrivHex string `json:"private_key_expanded_hex"`
			SeedHex         string `json:"seed_hex"`
			GoPrivHex       string `json:"go_ed25519_private_key_hex"`
			SaltHex         string `json:"salt_hex"`
			Seq             int64  `json:"seq"`
			VBencoded       string `json:"v_bencoded"`
			BufferHex       string `json:"signed_buffer_hex"`
			TargetHex       string `json:"target_hex"`
			SignatureHex    string `json:"signature_hex"`
		} `json:"mutable"`
		Negative []struct {
			Note         string `json:"note"`
			PublicKeyHex string `json:"public_key_hex"`
			SignatureHex string `json:"signature_hex"`
			Buffer       string `json:"signed_buffer"`
			Valid        bool   `json:"valid"`
		} `json:"negative"`
	} `json:"bep44"`
	Packets []struct {
		Name string `json:"name"`
		Hex  string `json:"hex"`
	} `json:"krpc_packets"`
}

// loadBEP44Vectors reads ../testdata/test-vectors.json.
func loadBEP44Vectors(t testing.TB) *bep44VectorFile {
	t.Helper()
	raw, err := os.ReadFile("../testdata/test-vectors.json")
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	var f bep44VectorFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("parse vectors: %v", err)
	}
	if len(f.BEP44.Immutable) == 0 || len(f.BEP44.Mutable) == 0 || len(f.BEP44.Negative) == 0 {
		t.Fatal("BEP 44 vectors missing")
	}
	return &f
}

// bep44Hex decodes a hex string or fails the test.
func bep44Hex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func TestBEP44ImmutableTargetVectors(t *testing.T) {
	for _, v := range loadBEP44Vectors(t).BEP44.Immutable {
		t.Run(v.Source, func(t *testing.T) {
			val := bep44Hex(t, v.VHex)
			if got := ImmutableTarget(val).String(); got != v.TargetHex {
				t.Errorf("ImmutableTarget = %s, want %s", got, v.TargetHex)
			}
			if err := CheckBencode(val); err != nil {
				t.Errorf("CheckBencode(%q) = %v, want nil", val, err)
			}
			it := Item{V: val}
			if got := it.Target().String(); got != v.TargetHex {
				t.Errorf("Item.Target = %s, want %s", got, v.TargetHex)
			}
		})
	}
}

func TestBEP44MutableVectors(t *testing.T) {
	for _, v := range loadBEP44Vectors(t).BEP44.Mutable {
		t.Run(v.Name, func(t *testing.T) {
			pub := bep44Hex(t, v.PublicKeyHex)
			salt := bep44Hex(t, v.SaltHex)
			val := []byte(v.VBencoded)
			sig := bep44Hex(t, v.SignatureHex)
			buf := bep44Hex(t, v.BufferHex)

			if got := SignBuffer(salt, v.Seq, val); !bytes.Equal(got, buf) {
				t.Errorf("SignBuffer = %q, want %q", got, buf)
			}
			if got := MutableTarget(pub, salt).String(); got != v.TargetHex {
				t.Errorf("MutableTarget = %s, want %s", got, v.TargetHex)
			}
			it := Item{V: val, K: pub, Salt: salt, Seq: v.Seq, Sig: sig, Mutable: true}
			if got := it.Target().String(); got != v.TargetHex {
				t.Errorf("Item.Target = %s, want %s", got, v.TargetHex)
			}
			if !VerifyMutable(pub, salt, v.Seq, val, sig) {
				t.Error("VerifyMutable = false for the published signature")
			}
			if !ed25519.Verify(pub, buf, sig) {
				t.Error("ed25519.Verify over signed_buffer = false")
			}
			if v.SeedHex == "" {
				// Published vector: the key is the ref10 expanded form,
				// which the standard library cannot sign with (docs/protocol.md, BEP 44 items);
				// verification above is all a stdlib program can check.
				if v.ExpandedPrivHex == "" {
					t.Fatal("vector has neither seed nor expanded key")
				}
				return
			}
			priv := ed25519.NewKeyFromSeed(bep44Hex(t, v.SeedHex))
			if want := bep44Hex(t, v.GoPrivHex); !bytes.Equal(priv, want) {
				t.Fatalf("NewKeyFromSeed = %x, want %x", []byte(priv), want)
			}
			if got := priv.Public().(ed25519.PublicKey); !bytes.Equal(got, pub) {
				t.Fatalf("public key = %x, want %x", []byte(got), pub)
			}
			if got := SignMutable(priv, salt, v.Seq, val); !bytes.Equal(got, sig) {
				t.Errorf("SignMutable = %x, want %x (byte for byte)", got, sig)
			}
		})
	}
}

func TestBEP44NegativeVectors(t *testing.T) {
	for _, v := range loadBEP44Vectors(t).BEP44.Negative {
		t.Run(v.Note, func(t *testing.T) {
			pub := bep44Hex(t, v.PublicKeyHex)
			sig := bep44Hex(t, v.SignatureHex)
			if got := ed25519.Verify(pub, []byte(v.Buffer), sig); got != v.Valid {
				t.Errorf("ed25519.Verify = %v, want %v", got, v.Valid)
			}
		})
	}
	// The same two mismatches through VerifyMutable.
	f := loadBEP44Vectors(t)
	t1, t2 := f.BEP44.Mutable[0], f.BEP44.Mutable[1]
	pub := bep44Hex(t, t1.PublicKeyHex)
	hello := []byte("12:Hello World!")
	if VerifyMutable(pub, nil, 2, hello, bep44Hex(t, t1.SignatureHex)) {
		t.Error("test 1 signature accepted for seq 2")
	}
	if VerifyMutable(pub, nil, 1, hello, bep44Hex(t, t2.SignatureHex)) {
		t.Error("test 2 signature accepted without its salt")
	}
}

func TestBEP44VerifyMutableTampering(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := []byte(priv.Public().(ed25519.PublicKey))
	salt, v, seq := []byte("salt"), []byte("l1:ai1ee"), int64(9)
	sig := SignMutable(priv, salt, seq, v)
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 1
		return c
	}
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	tests := []struct {
		name string
		k    []byte
		salt []byte
		seq  int64
		v    []byte
		sig  []byte
		want bool
	}{
		{"valid", pub, salt, seq, v, sig, true},
		{"other seq", pub, salt, seq + 1, v, sig, false},
		{"other salt", pub, []byte("salu"), seq, v, sig, false},
		{"no salt", pub, nil, seq, v, sig, false},
		{"other v", pub, salt, seq, []byte("l1:ai2ee"), sig, false},
		{"other key", other, salt, seq, v, sig, false},
		{"flipped sig", pub, salt, seq, v, flip(sig, 10), false},
		{"short key", pub[:31], salt, seq, v, sig, false},
		{"long sig", pub, salt, seq, v, append(bytes.Clone(sig), 0), false},
		{"nil sig", pub, salt, seq, v, nil, false},
		{"nil key", nil, salt, seq, v, sig, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifyMutable(tt.k, tt.salt, tt.seq, tt.v, tt.sig); got != tt.want {
				t.Errorf("VerifyMutable = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBEP44SignBuffer(t *testing.T) {
	tests := []struct {
		name string
		salt []byte
		seq  int64
		v    string
		want string
	}{
		{"spec no salt", nil, 1, "12:Hello World!", "3:seqi1e1:v12:Hello World!"},
		{"spec salt", []byte("foobar"), 1, "12:Hello World!", "4:salt6:foobar3:seqi1e1:v12:Hello World!"},
		{"empty salt is no salt", []byte{}, 1, "12:Hello World!", "3:seqi1e1:v12:Hello World!"},
		{"seq 0", nil, 0, "i42e", "3:seqi0e1:vi42e"},
		{"max seq", nil, 1<<63 - 1, "0:", "3:seqi9223372036854775807e1:v0:"},
		{"binary salt", []byte("\x00:e"), 12, "le", "4:salt3:\x00:e3:seqi12e1:vle"},
		{"64-byte salt", bytes.Repeat([]byte("s"), 64), 3, "de", "4:salt64:" + strings.Repeat("s", 64) + "3:seqi3e1:vde"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(SignBuffer(tt.salt, tt.seq, []byte(tt.v))); got != tt.want {
				t.Errorf("SignBuffer = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBEP44MutableTargetSalt(t *testing.T) {
	k := bytes.Repeat([]byte{0xab}, 32)
	if MutableTarget(k, nil) != MutableTarget(k, []byte{}) {
		t.Error("nil and empty salt give different targets")
	}
	if MutableTarget(k, nil) != ImmutableTarget(k) {
		t.Error("unsalted target is not SHA-1(k)")
	}
	if MutableTarget(k, []byte("x")) != ImmutableTarget(append(bytes.Clone(k), 'x')) {
		t.Error("salted target is not SHA-1(k ‖ salt)")
	}
	// Oversized inputs must not panic even though they are never valid.
	long := bytes.Repeat([]byte{1}, 200)
	if MutableTarget(long, long) != ImmutableTarget(append(bytes.Clone(long), long...)) {
		t.Error("oversized k ‖ salt hashed wrongly")
	}
}

func TestBEP44CheckBencode(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"0:", true},
		{"12:Hello World!", true},
		{"i0e", true},
		{"i-1e", true},
		{"i42e", true},
		{"i123456789012345678901234567890e", true},
		{"le", true},
		{"de", true},
		{"l5:helloi42ee", true},
		{"d1:a1:b1:ni1ee", true},
		{"d1:ad1:bl0:i0eee1:clee", true},
		{"d1:ad1:bl0:i0eee1:cle", false},
		{"d0:i1e1:ai2ee", true},
		{"d1:a0:2:aai0ee", true}, // "a" < "aa"
		{"llllleeeee", true},
		{strings.Repeat("l", 500) + strings.Repeat("e", 500), true},

		{"", false},
		{"e", false},
		{"x", false},
		{"i", false},
		{"ie", false},
		{"i-e", false},
		{"i-0e", false},
		{"i01e", false},
		{"i-01e", false},
		{"i00e", false},
		{"i1", false},
		{"i1.5e", false},
		{"i+1e", false},
		{"01:a", false},
		{"00:", false},
		{"1:", false},
		{"5:abc", false},
		{"1a", false},
		{":", false},
		{"99999999999999999999999:x", false},
		{"l", false},
		{"li1e", false},
		{"d", false},
		{"d1:ae", false},        // key without value
		{"di1ei2ee", false},     // integer key
		{"dlei1ee", false},      // list key
		{"d1:b0:1:a0:e", false}, // unsorted
		{"d1:a0:1:a0:e", false}, // duplicate
		{"d2:aa0:1:a0:e", false},
		{"i1ei2e", false}, // two values
		{"0:0:", false},
		{"lee", false},
		{"12:Hello World!x", false},
		{strings.Repeat("l", 500) + strings.Repeat("e", 499), false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := CheckBencode([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("CheckBencode(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, krpc.ErrNotCanonical) {
				t.Errorf("error %v does not wrap ErrNotCanonical", err)
			}
		})
	}
}

// bep44TestPut returns a valid mutable put signed with a fixed seed key.
func bep44TestPut(t testing.TB, salt string, seq int64, v string) PutArgs {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	var s []byte
	if salt != "" {
		s = []byte(salt)
	}
	sq := seq
	return PutArgs{
		Token: []byte("tok"),
		V:     []byte(v),
		K:     []byte(priv.Public().(ed25519.PublicKey)),
		Salt:  s,
		Sig:   SignMutable(priv, s, seq, []byte(v)),
		Seq:   &sq,
	}
}

func bep44Int(n int64) *int64 { return &n }

func TestBEP44ValidatePut(t *testing.T) {
	bigV := "1000:" + strings.Repeat("x", 1000) // 1005 bytes
	maxV := "995:" + strings.Repeat("x", 995)   // exactly 1000 bytes
	longSalt := strings.Repeat("s", 65)
	okSalt := strings.Repeat("s", 64)
	imm := PutArgs{Token: []byte("tok"), V: []byte("12:Hello World!")}

	tests := []struct {
		name    string
		args    PutArgs
		tokenOK bool
		want    int64 // 0: accepted
	}{
		{"immutable ok", imm, true, 0},
		{"immutable max size", PutArgs{Token: []byte("t"), V: []byte(maxV)}, true, 0},
		{"mutable ok", bep44TestPut(t, "", 1, "i1e"), true, 0},
		{"mutable max salt", bep44TestPut(t, okSalt, 1, "i1e"), true, 0},
		{"mutable seq 0", bep44TestPut(t, "", 0, "le"), true, 0},
		{"mutable with cas", func() PutArgs { a := bep44TestPut(t, "", 2, "i1e"); a.Cas = bep44Int(1); return a }(), true, 0},

		{"missing v", PutArgs{Token: []byte("t")}, true, 203},
		{"missing token", PutArgs{V: []byte("i1e")}, true, 203},
		{"k 31 bytes", func() PutArgs { a := bep44TestPut(t, "", 1, "i1e"); a.K = a.K[:31]; return a }(), true, 203},
		{"k 33 bytes", func() PutArgs { a := bep44TestPut(t, "", 1, "i1e"); a.K = append(a.K, 0); return a }(), true, 203},
		{"sig 63 bytes", func() PutArgs { a := bep44TestPut(t, "", 1, "i1e"); a.Sig = a.Sig[:63]; return a }(), true, 203},
		{"sig missing", func() PutArgs { a := bep44TestPut(t, "", 1, "i1e"); a.Sig = nil; return a }(), true, 203},
		{"seq missing", func() PutArgs { a := bep44TestPut(t, "", 1, "i1e"); a.Seq = nil; return a }(), true, 203},
		{"sig without k", PutArgs{Token: []byte("t"), V: []byte("i1e"), Sig: make([]byte, 64)}, true, 203},
		{"immutable with seq 0 (anacrolix/dht)", PutArgs{Token: []byte("t"), V: []byte("i1e"), Seq: bep44Int(0)}, true, 0},
		{"immutable with seq 7", PutArgs{Token: []byte("t"), V: []byte("i1e"), Seq: bep44Int(7)}, true, 0},
		{"immutable with negative seq", PutArgs{Token: []byte("t"), V: []byte("i1e"), Seq: bep44Int(-1)}, true, 0},
		{"seq and sig without k", PutArgs{Token: []byte("t"), V: []byte("i1e"), Seq: bep44Int(1), Sig: make([]byte, 64)}, true, 203},
		{"salt without k", PutArgs{Token: []byte("t"), V: []byte("i1e"), Salt: []byte("s")}, true, 203},
		{"cas without k", PutArgs{Token: []byte("t"), V: []byte("i1e"), Cas: bep44Int(0)}, true, 203},
		{"non-canonical v", PutArgs{Token: []byte("t"), V: []byte("d1:b0:1:a0:e")}, true, 203},
		{"trailing bytes in v", PutArgs{Token: []byte("t"), V: []byte("i1ei2e")}, true, 203},
		{"v too big", PutArgs{Token: []byte("t"), V: []byte(bigV)}, true, 205},
		{"salt too big", bep44TestPut(t, longSalt, 1, "i1e"), true, 207},
		{"negative seq", bep44TestPut(t, "", -1, "i1e"), true, 203},
		{"bad token", imm, false, 203},
		{"bad signature", func() PutArgs { a := bep44TestPut(t, "", 1, "i1e"); a.Sig[0] ^= 1; return a }(), true, 206},
		{"seq changed after signing", func() PutArgs { a := bep44TestPut(t, "", 1, "i1e"); a.Seq = bep44Int(2); return a }(), true, 206},

		// Order of docs/protocol.md, BEP 44 items: 203 shape < 205 < 207 < token 203 < 206.
		{"non-canonical and too big: 203", PutArgs{Token: []byte("t"), V: []byte(bigV + "x")}, true, 203},
		{"too big and salt too big: 205", bep44TestPut(t, longSalt, 1, bigV), true, 205},
		{"salt too big and bad token: 207", bep44TestPut(t, longSalt, 1, "i1e"), false, 207},
		{"salt too big and bad sig: 207", func() PutArgs { a := bep44TestPut(t, longSalt, 1, "i1e"); a.Sig[0] ^= 1; return a }(), true, 207},
		{"bad token and bad sig: 203", func() PutArgs { a := bep44TestPut(t, "", 1, "i1e"); a.Sig[0] ^= 1; return a }(), false, 203},
		{"salt too big and negative seq: 207", bep44TestPut(t, longSalt, -1, "i1e"), true, 207},
		{"too big and negative seq: 205", bep44TestPut(t, "", -1, bigV), true, 205},
		{"bad k length and too big: 203", func() PutArgs { a := bep44TestPut(t, "", 1, bigV); a.K = a.K[:5]; return a }(), true, 203},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			var asked krpc.ID
			e := ValidatePut(&args, func(target krpc.ID) bool { asked = target; return tt.tokenOK })
			if tt.want == 0 {
				if e != nil {
					t.Fatalf("ValidatePut = %v, want nil", e)
				}
				if asked != args.Target() {
					t.Errorf("token checked for %s, want target %s", asked, args.Target())
				}
				return
			}
			if e == nil {
				t.Fatalf("ValidatePut = nil, want %d", tt.want)
			}
			if w := wireError(e); w == nil || w.Code != tt.want {
				t.Errorf("ValidatePut = %v (%v), want %d", e, w, tt.want)
			}
		})
	}
}

// TestBEP44ValidatePutSplit checks that the two halves around the token
// check agree with ValidatePut.
func TestBEP44ValidatePutSplit(t *testing.T) {
	good := bep44TestPut(t, "x", 5, "d1:ai1ee")
	if e := ValidatePutShape(&good); e != nil {
		t.Fatalf("ValidatePutShape = %v", e)
	}
	if e := VerifyPutSignature(&good); e != nil {
		t.Fatalf("VerifyPutSignature = %v", e)
	}
	bad := bep44TestPut(t, "x", 5, "d1:ai1ee")
	bad.V = []byte("d1:ai2ee")
	if e := ValidatePutShape(&bad); e != nil {
		t.Fatalf("ValidatePutShape = %v, want nil (signature is not its job)", e)
	}
	if e := wireError(VerifyPutSignature(&bad)); e == nil || e.Code != krpc.ErrCodeInvalidSig || e.Msg != "invalid signature" {
		t.Fatalf("VerifyPutSignature = %v, want 206 invalid signature", e)
	}
	imm := PutArgs{Token: []byte("t"), V: []byte("i1e")}
	if e := VerifyPutSignature(&imm); e != nil {
		t.Fatalf("VerifyPutSignature(immutable) = %v, want nil", e)
	}
}

// TestBEP44ErrorMessages checks the wire messages against the error packets
// of test-vectors.json.
func TestBEP44ErrorMessages(t *testing.T) {
	f := loadBEP44Vectors(t)
	want := map[string]*krpc.Error{}
	for _, p := range f.Packets {
		if !strings.HasPrefix(p.Name, "bep44_error_") {
			continue
		}
		var m krpc.Msg
		if err := krpc.Decode(bep44Hex(t, p.Hex), &m); err != nil || m.E == nil {
			t.Fatalf("%s: decode: %v", p.Name, err)
		}
		want[p.Name] = m.E
	}
	bigV := PutArgs{Token: []byte("t"), V: []byte("1000:" + strings.Repeat("x", 1000))}
	salt := bep44TestPut(t, strings.Repeat("s", 65), 1, "i1e")
	sig := bep44TestPut(t, "", 1, "i1e")
	sig.Sig[5] ^= 1
	got := map[string]*krpc.Error{
		"bep44_error_v_too_big":    wireError(ValidatePutShape(&bigV)),
		"bep44_error_salt_too_big": wireError(ValidatePutShape(&salt)),
		"bep44_error_bad_sig":      wireError(VerifyPutSignature(&sig)),
	}
	for name, g := range got {
		w, ok := want[name]
		if !ok {
			t.Fatalf("vector %s missing", name)
		}
		if g == nil || *g != *w {
			t.Errorf("%s: got %v, want %v", name, g, w)
		}
	}
	if len(want) != 5 {
		t.Errorf("found %d bep44_error_ vectors, want 5", len(want))
	}
	if w := want["bep44_error_cas_mismatch"]; w == nil || w.Msg != bep44MsgCASMismatch || w.Code != krpc.ErrCodeCASMismatch {
		t.Errorf("cas vector %v does not match %d %q", w, krpc.ErrCodeCASMismatch, bep44MsgCASMismatch)
	}
	if w := want["bep44_error_seq_less"]; w == nil || w.Msg != bep44MsgSeqLess || w.Code != krpc.ErrCodeSeqLessCurrent {
		t.Errorf("seq vector %v does not match %d %q", w, krpc.ErrCodeSeqLessCurrent, bep44MsgSeqLess)
	}
}

// TestBEP44PutPackets runs the put queries of test-vectors.json through
// krpc.Decode, NewPutArgs and ValidatePut.
func TestBEP44PutPackets(t *testing.T) {
	f := loadBEP44Vectors(t)
	tests := []struct {
		name    string
		target  string
		mutable bool
		cas     *int64
	}{
		{"bep44_put_query_immutable", "e5f96f6f38320f0f33959cb4d3d656452117aadb", false, nil},
		{"bep44_put_query_mutable", "4a533d47ec9c7d95b1ad75f576cffc641853b750", true, nil},
		{"bep44_put_query_mutable_salt_cas", "411eba73b6f087ca51a3795d9c8c938d365e32c1", true, bep44Int(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pkt []byte
			for _, p := range f.Packets {
				if p.Name == tt.name {
					pkt = bep44Hex(t, p.Hex)
				}
			}
			if pkt == nil {
				t.Fatalf("packet %s not found", tt.name)
			}
			var m krpc.Msg
			if err := krpc.Decode(pkt, &m); err != nil || m.A == nil {
				t.Fatalf("decode: %v", err)
			}
			args := NewPutArgs(m.A)
			if e := ValidatePut(&args, func(krpc.ID) bool { return true }); e != nil {
				t.Fatalf("ValidatePut = %v", e)
			}
			if got := args.Target().String(); got != tt.target {
				t.Errorf("Target = %s, want %s", got, tt.target)
			}
			if args.Mutable() != tt.mutable {
				t.Errorf("Mutable = %v, want %v", args.Mutable(), tt.mutable)
			}
			if (args.Cas == nil) != (tt.cas == nil) || (args.Cas != nil && *args.Cas != *tt.cas) {
				t.Errorf("Cas = %v, want %v", args.Cas, tt.cas)
			}
			it := args.Item()
			if it.Target() != args.Target() || it.Mutable != tt.mutable || string(it.V) != "12:Hello World!" {
				t.Errorf("Item = %+v", it)
			}
		})
	}
}

func BenchmarkBEP44VerifyMutable(b *testing.B) {
	p := bep44TestPut(b, "salt", 1, "12:Hello World!")
	b.ReportAllocs()
	for b.Loop() {
		if !VerifyMutable(p.K, p.Salt, *p.Seq, p.V, p.Sig) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkBEP44CheckBencode(b *testing.B) {
	v := []byte("d1:ad1:bl0:i0eee1:cl5:helloi42ee1:d" + "900:" + strings.Repeat("x", 900) + "e")
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckBencode(v); err != nil {
			b.Fatal(err)
		}
	}
}
