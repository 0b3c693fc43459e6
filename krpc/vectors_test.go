package krpc

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

type packetVector struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	Hex    string `json:"hex"`
}

func loadPacketVectors(t testing.TB) []packetVector {
	t.Helper()
	raw, err := os.ReadFile("../testdata/test-vectors.json")
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	var doc struct {
		Packets []packetVector `json:"krpc_packets"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse vectors: %v", err)
	}
	if len(doc.Packets) == 0 {
		t.Fatal("no packet vectors")
	}
	return doc.Packets
}

// TestPacketVectors decodes every packet of test-vectors.json and re-encodes
// it to the same bytes; the placeholder packets marked invalid are refused.
func TestPacketVectors(t *testing.T) {
	for _, v := range loadPacketVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			pkt, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			var m Msg
			err = Decode(pkt, &m)
			if strings.Contains(v.Name, "placeholder") {
				var be *BodyError
				if !errors.As(err, &be) {
					t.Fatalf("invalid packet accepted: err=%v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			out, err := Encode(&m)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.Equal(out, pkt) {
				t.Fatalf("round trip differs:\n got %q\nwant %q", out, pkt)
			}
		})
	}
}
