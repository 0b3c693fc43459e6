package storage

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// FuzzDBRecords: the decoders of the on-disk records (items, peers, nodes)
// take any bytes a damaged database could hold without panicking, and what
// they accept is consistent: an item is stored under its own target with a
// valid shape and re-encodes to the same record; a peer's key and address
// agree and its record re-encodes unchanged.
func FuzzDBRecords(f *testing.F) {
	exp := time.Unix(1_800_000_000, 0)
	imm := Item{V: []byte("5:hello")}
	tgt := imm.Target()
	f.Add(tgt[:], appendItemRecord(nil, &imm, exp))
	ih := krpc.ID{1, 2, 3}
	f.Add(peerKey(ih, netip.MustParseAddr("192.0.2.7")), appendPeerRecord(nil, 6881, true, exp))
	f.Add(peerKey(ih, netip.MustParseAddr("2001:db8::7")), appendPeerRecord(nil, 1, false, exp))
	f.Add([]byte("key"), []byte{})

	f.Fuzz(func(t *testing.T, key, rec []byte) {
		if it, e, err := decodeItem(key, rec); err == nil {
			if tgt := it.Target(); !bytes.Equal(tgt[:], key) {
				t.Fatalf("item decoded under key %x has target %s", key, it.Target())
			}
			if msg := itemShapeError(&it, nil); msg != "" {
				t.Fatalf("decoded item of invalid shape: %s", msg)
			}
			if back := appendItemRecord(nil, &it, e); !bytes.Equal(back, rec) {
				t.Fatalf("item record does not re-encode:\n in %x\nout %x", rec, back)
			}
		}
		if gotIH, addr, seed, e, ok := decodePeer(key, rec); ok {
			if !bytes.Equal(peerKey(gotIH, addr.Addr()), key) {
				t.Fatalf("peer %s of %s decoded from key %x", addr, gotIH, key)
			}
			if back := appendPeerRecord(nil, addr.Port(), seed, e); !bytes.Equal(back, rec) {
				t.Fatalf("peer record does not re-encode:\n in %x\nout %x", rec, back)
			}
		}
		_, _ = decodeNode(key, rec)
	})
}
