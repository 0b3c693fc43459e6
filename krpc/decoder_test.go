package krpc

import (
	"encoding/hex"
	"reflect"
	"testing"
)

// decoderPackets returns the benchmark messages' wire forms and every
// packet test vector.
func decoderPackets(t testing.TB) [][]byte {
	var pkts [][]byte
	for _, c := range benchMessages() {
		b, err := Encode(c.msg)
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, b)
	}
	for _, v := range loadPacketVectors(t) {
		pkt, err := hex.DecodeString(v.Hex)
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, pkt)
	}
	return pkts
}

// checkDecoder decodes prev and then pkt with one Decoder and compares
// the second result with Decode's: nothing of prev may show through.
func checkDecoder(t *testing.T, d *Decoder, prev, pkt []byte) {
	t.Helper()
	var m Msg
	_ = d.Decode(prev, &m)
	errGot := d.Decode(pkt, &m)
	var want Msg
	errWant := Decode(pkt, &want)
	if (errGot == nil) != (errWant == nil) || (errGot != nil && errGot.Error() != errWant.Error()) {
		t.Fatalf("%q after %q: Decoder error %v, Decode error %v", pkt, prev, errGot, errWant)
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("%q after %q: Decoder gives\n%+v\nDecode gives\n%+v", pkt, prev, m, want)
	}
}

// A reused Decoder decodes every packet as Decode does, whatever it
// decoded before.
func TestDecoderMatchesDecode(t *testing.T) {
	pkts := decoderPackets(t)
	var d Decoder
	for _, prev := range pkts {
		for _, pkt := range pkts {
			checkDecoder(t, &d, prev, pkt)
		}
	}
}

// FuzzDecoderMatchesDecode fuzzes checkDecoder, each input decoded after
// a reply carrying nodes, values and a token, and after a query.
func FuzzDecoderMatchesDecode(f *testing.F) {
	addCorpus(f, "FuzzDecode")
	var prevs [][]byte
	for _, c := range benchMessages() {
		b, _ := Encode(c.msg)
		f.Add(b)
		if c.name == "reply/get_peers" || c.name == "query/get" {
			prevs = append(prevs, b)
		}
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var d Decoder
		for _, prev := range prevs {
			checkDecoder(t, &d, prev, pkt)
		}
	})
}

// TestMsgClone: a clone of a Decoder's message keeps what was decoded
// when the Decoder decodes every other packet over it.
func TestMsgClone(t *testing.T) {
	pkts := decoderPackets(t)
	var d Decoder
	for i, pkt := range pkts {
		var m, want Msg
		if d.Decode(pkt, &m) != nil {
			continue
		}
		if err := Decode(pkt, &want); err != nil {
			t.Fatal(err)
		}
		c := m.Clone()
		for j, other := range pkts {
			if j != i {
				_ = d.Decode(other, &m)
			}
		}
		if !reflect.DeepEqual(*c, want) {
			t.Fatalf("%q: clone after other decodes\n%+v\nwant\n%+v", pkt, *c, want)
		}
	}
}
