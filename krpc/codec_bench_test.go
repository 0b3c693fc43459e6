package krpc

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/anacrolix/torrent/bencode"
)

// benchMessages returns one message of each kind the node sends or
// receives on its hot path: the four queries the load tool sends, and the
// replies a node gives them.
func benchMessages() []struct {
	name string
	msg  *Msg
} {
	var id, target ID
	for i := range id {
		id[i], target[i] = byte(i), byte(255-i)
	}
	nodes := make(CompactNodes, 8)
	for i := range nodes {
		nodes[i] = NodeInfo{ID: target, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 1}), 6881)}
	}
	peers := make(Peers, 20)
	for i := range peers {
		peers[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 1}), 51413)
	}
	ip := CompactAddr(netip.MustParseAddrPort("127.0.0.1:40000"))
	seq := int64(7)
	return []struct {
		name string
		msg  *Msg
	}{
		{"query/ping", &Msg{T: "aa", Y: KindQuery, Q: MethodPing, A: &Args{ID: id}, V: "LT\x02\x00"}},
		{"query/find_node", &Msg{T: "aa", Y: KindQuery, Q: MethodFindNode, A: &Args{ID: id, Target: &target}, V: "LT\x02\x00"}},
		{"query/get_peers", &Msg{T: "aa", Y: KindQuery, Q: MethodGetPeers, A: &Args{ID: id, InfoHash: &target}, V: "LT\x02\x00"}},
		{"query/get", &Msg{T: "aa", Y: KindQuery, Q: MethodGet, A: &Args{ID: id, Target: &target, Seq: &seq}, V: "LT\x02\x00"}},
		{"reply/ping", &Msg{T: "aa", Y: KindResponse, R: &Return{ID: id}, V: "DH\x00\x01", IP: &ip}},
		{"reply/find_node", &Msg{T: "aa", Y: KindResponse, R: &Return{ID: id, Nodes: nodes}, V: "DH\x00\x01", IP: &ip}},
		{"reply/get_peers", &Msg{T: "aa", Y: KindResponse, R: &Return{ID: id, Nodes: nodes, Token: "12345678", Values: peers}, V: "DH\x00\x01", IP: &ip}},
		{"reply/get", &Msg{T: "aa", Y: KindResponse, R: &Return{ID: id, Nodes: nodes, Token: "12345678", V: []byte("12:Hello World!")}, V: "DH\x00\x01", IP: &ip}},
		{"error", &Msg{T: "aa", Y: KindError, E: &Error{Code: ErrCodeProtocol, Msg: "invalid token"}, V: "DH\x00\x01", IP: &ip}},
	}
}

// BenchmarkDecode decodes each message kind from its wire form.
func BenchmarkDecode(b *testing.B) {
	for _, c := range benchMessages() {
		pkt, err := Encode(c.msg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			var m Msg
			for b.Loop() {
				if err := Decode(pkt, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncode encodes each message kind.
func BenchmarkEncode(b *testing.B) {
	for _, c := range benchMessages() {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				pkt, err := Encode(c.msg)
				if err != nil {
					b.Fatal(err)
				}
				n = len(pkt)
			}
			b.SetBytes(int64(n))
		})
	}
}

// BenchmarkDecodeAnacrolix decodes the same packets as BenchmarkDecode
// with anacrolix's reflective bencode, the library the hand-written codec
// replaces on the hot path: compare the two to see what it buys.
func BenchmarkDecodeAnacrolix(b *testing.B) {
	for _, c := range benchMessages() {
		pkt, err := Encode(c.msg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				var m Msg
				if err := bencode.Unmarshal(pkt, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeAnacrolix encodes the messages of BenchmarkEncode with
// anacrolix's reflective bencode.
func BenchmarkEncodeAnacrolix(b *testing.B) {
	for _, c := range benchMessages() {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				pkt, err := bencode.Marshal(c.msg)
				if err != nil {
					b.Fatal(err)
				}
				n = len(pkt)
			}
			b.SetBytes(int64(n))
		})
	}
}

// BenchmarkScanner runs the scanner alone, with the limits every
// packet is checked against, on each message's wire form.
func BenchmarkScanner(b *testing.B) {
	for _, c := range benchMessages() {
		pkt, err := Encode(c.msg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				if err := CheckCanonical(pkt, packetLimits); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// checkAgainstReflect compares the hand-written codec with anacrolix's
// reflective bencode on pkt: the query arguments decode to the same values
// (or both fail), and every message that decodes encodes to the same bytes.
func checkAgainstReflect(t *testing.T, pkt []byte) {
	t.Helper()
	if CheckCanonical(pkt, packetLimits) != nil {
		return
	}
	var rawA []byte
	_ = eachEntry(pkt, func(k, v []byte) error {
		if string(k) == "a" {
			rawA = v
		}
		return nil
	})
	if len(rawA) > 0 && rawA[0] == 'd' {
		got, errGot := decodeArgs(rawA)
		var want Args
		errWant := bencode.Unmarshal(rawA, &want)
		if (errGot == nil) != (errWant == nil) {
			t.Fatalf("args %q: hand-written error %v, reflective error %v", rawA, errGot, errWant)
		}
		if errGot == nil {
			g, err1 := bencode.Marshal(got)
			w, err2 := bencode.Marshal(&want)
			if (err1 == nil) != (err2 == nil) || !bytes.Equal(g, w) {
				t.Fatalf("args %q decode differently:\n got %q (%v)\nwant %q (%v)", rawA, g, err1, w, err2)
			}
		}
	}
	var rawR []byte
	_ = eachEntry(pkt, func(k, v []byte) error {
		if string(k) == "r" {
			rawR = v
		}
		return nil
	})
	if len(rawR) > 0 && rawR[0] == 'd' {
		got, errGot := decodeReturn(rawR)
		var want Return
		errWant := bencode.Unmarshal(rawR, &want)
		if (errGot == nil) != (errWant == nil) {
			t.Fatalf("return %q: hand-written error %v, reflective error %v", rawR, errGot, errWant)
		}
		if errGot == nil {
			g, err1 := bencode.Marshal(got)
			w, err2 := bencode.Marshal(&want)
			if (err1 == nil) != (err2 == nil) || !bytes.Equal(g, w) {
				t.Fatalf("return %q decodes differently:\n got %q (%v)\nwant %q (%v)", rawR, g, err1, w, err2)
			}
		}
	}
	var m Msg
	if err := Decode(pkt, &m); err != nil {
		return
	}
	got, errGot := Encode(&m)
	want, errWant := bencode.Marshal(&m)
	if (errGot == nil) != (errWant == nil) || (errGot == nil && !bytes.Equal(got, want)) {
		t.Fatalf("encode differs:\n got %q (%v)\nwant %q (%v)", got, errGot, want, errWant)
	}
}

// TestCodecMatchesReflect runs checkAgainstReflect on the benchmark
// messages and every test vector.
func TestCodecMatchesReflect(t *testing.T) {
	for _, c := range benchMessages() {
		want, err := bencode.Marshal(c.msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Encode(c.msg)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: encode %q (%v), want %q", c.name, got, err, want)
		}
		checkAgainstReflect(t, got)
	}
	for _, v := range loadPacketVectors(t) {
		pkt, err := hex.DecodeString(v.Hex)
		if err != nil {
			t.Fatal(err)
		}
		checkAgainstReflect(t, pkt)
	}
}

// FuzzCodecMatchesReflect fuzzes checkAgainstReflect.
func FuzzCodecMatchesReflect(f *testing.F) {
	addCorpus(f, "FuzzDecode")
	for _, c := range benchMessages() {
		b, _ := Encode(c.msg)
		f.Add(b)
	}
	f.Fuzz(checkAgainstReflect)
}
