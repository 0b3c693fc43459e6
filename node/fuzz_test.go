package node

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// fuzzMagicToken in a fuzz input is replaced by a valid write token.
const fuzzMagicToken = "aoeusnth"

// fuzzErrorCodes are the KRPC error codes a reply may carry (docs/protocol.md, Errors).
var fuzzErrorCodes = map[int64]bool{
	krpc.ErrCodeGeneric: true, krpc.ErrCodeServer: true, krpc.ErrCodeProtocol: true,
	krpc.ErrCodeMethodUnknown: true, krpc.ErrCodeValueTooBig: true, krpc.ErrCodeInvalidSig: true,
	krpc.ErrCodeSaltTooBig: true, krpc.ErrCodeCASMismatch: true, krpc.ErrCodeSeqLessCurrent: true,
}

// fuzzSeeds adds every packet of test-vectors.json and every raw packet
// under ../testdata/fuzz/<name>/ to f.
func fuzzSeeds(f *testing.F, name string) {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "test-vectors.json"))
	if err != nil {
		f.Fatal(err)
	}
	var doc struct {
		Packets []struct {
			Hex string `json:"hex"`
		} `json:"krpc_packets"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		f.Fatal(err)
	}
	if len(doc.Packets) == 0 {
		f.Fatal("no packet vectors")
	}
	for _, p := range doc.Packets {
		b, err := hex.DecodeString(p.Hex)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	files, err := filepath.Glob(filepath.Join("..", "testdata", "fuzz", name, "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzHandleQuery: whatever query decodes, handleQuery answers it with
// exactly one of a response carrying our id and an error with a defined
// code, and the reply encodes, as the server would send it, to a packet our
// own strict decoder accepts. One node serves the whole run (its table and
// stores accumulate state across inputs, as on the network).
func FuzzHandleQuery(f *testing.F) {
	fuzzSeeds(f, "FuzzHandleQuery")

	// The fixed source is a socket we own, so the node's confirmation
	// pings to new senders go somewhere harmless.
	src, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	from := src.LocalAddr().(*net.UDPAddr).AddrPort()
	n, err := New(LoopbackConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		n.Close()
		src.Close()
	})
	// Some IPv4 and IPv6 nodes, so replies carry "nodes" and "nodes6".
	rnd := rand.New(rand.NewPCG(9, 9))
	now := time.Now()
	for i := range 64 {
		var id krpc.ID
		for j := range id {
			id[j] = byte(rnd.UintN(256))
		}
		a4 := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 1}), 6881)
		a6 := netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)}), 6881)
		n.table.Responded(krpc.NodeInfo{ID: id, Addr: a4}, now, 0)
		id[19] ^= 0xff
		n.table.Responded(krpc.NodeInfo{ID: id, Addr: a6}, now, 0)
	}

	f.Fuzz(func(t *testing.T, pkt []byte) {
		var q krpc.Msg
		if err := krpc.Decode(pkt, &q); err != nil || q.Y != krpc.KindQuery {
			return // dropped or answered 203 by the server, or not a query
		}
		if q.A == nil {
			t.Fatalf("Decode returned a query without arguments: %q", pkt)
		}
		// The write token is a MAC under a random secret, which no fuzzer
		// can guess. The token of the BEP 5 examples, "aoeusnth", stands
		// for a valid one, so puts and announces get past the token check
		// to the signature and store rules.
		if q.A.Token == fuzzMagicToken {
			switch {
			case q.Q == krpc.MethodAnnouncePeer && q.A.InfoHash != nil:
				q.A.Token = n.tokens.Issue(from.Addr(), *q.A.InfoHash, time.Now())
			case q.Q == krpc.MethodPut:
				p := storage.NewPutArgs(q.A)
				q.A.Token = n.tokens.Issue(from.Addr(), p.Target(), time.Now())
			}
		}
		r := hqAnswer(t, n, from, &q)
		if r == nil {
			t.Fatalf("no reply to %q", pkt)
		}
		if (r.R == nil) == (r.E == nil) {
			t.Fatalf("reply has R=%v E=%v, want exactly one\n%q", r.R, r.E, pkt)
		}
		if r.R != nil && r.R.ID != n.ID() {
			t.Fatalf("reply id %s, want %s", r.R.ID, n.ID())
		}
		if r.E != nil && !fuzzErrorCodes[r.E.Code] {
			t.Fatalf("error code %d (%q) not defined by BEP 5/44\n%q", r.E.Code, r.E.Msg, pkt)
		}
		// Fill in the envelope as krpc.Server.reply does, then encode.
		r.T, r.Y, r.V = q.T, krpc.KindResponse, ClientVersion
		if r.E != nil {
			r.Y = krpc.KindError
		}
		ip := krpc.CompactAddr(from)
		r.IP = &ip
		out, err := krpc.Encode(r)
		if err != nil {
			t.Fatalf("reply does not encode: %v\n%q", err, pkt)
		}
		var back krpc.Msg
		if err := krpc.Decode(out, &back); err != nil {
			t.Fatalf("reply does not decode: %v\n in %q\nout %q", err, pkt, out)
		}
		if back.T != q.T || back.Y != r.Y {
			t.Fatalf("reply envelope t=%q y=%q, want t=%q y=%q", back.T, back.Y, q.T, r.Y)
		}
		// BEP 32: 1024 bytes of payload, except a BEP 44 value; "t" is the
		// querier's choice.
		if r.R != nil && len(r.R.V) == 0 && len(out)-len(q.T) > 1024 {
			t.Fatalf("reply of %d bytes (t %d)\n%q", len(out), len(q.T), out)
		}
	})
}

// FuzzHandleResponse: whatever response decodes, the node's response
// parsers take it without panicking and keep their invariants: the routing
// table stays within its bounds and never holds the responder under an id
// other than the one it gave, and verifyItem accepts a value only if it
// hashes to the target (immutable) or its signature checks out (mutable).
func FuzzHandleResponse(f *testing.F) {
	fuzzSeeds(f, "FuzzHandleResponse")
	n, err := New(LoopbackConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	from := netip.MustParseAddrPort("10.9.8.7:6881") // never contacted: pings to it go nowhere
	bound := n.cfg.K * 161                           // K per bucket, at most 161 buckets

	f.Fuzz(func(t *testing.T, pkt []byte) {
		var m krpc.Msg
		if err := krpc.Decode(pkt, &m); err != nil || m.Y != krpc.KindResponse || m.R == nil {
			return
		}
		for _, method := range []string{krpc.MethodFindNode, krpc.MethodGet} {
			n.onResponse(from, method, &m, time.Millisecond)
		}
		good, questionable, bad := n.table.Counts(time.Now())
		if total := good + questionable + bad; total > bound {
			t.Fatalf("table holds %d nodes, bound %d", total, bound)
		}
		if e, ok := n.table.Get(m.R.ID); ok && e.Addr == from && e.ID != m.R.ID {
			t.Fatalf("table entry %v for responder id %s", e, m.R.ID)
		}

		r := m.R
		targets := []krpc.ID{krpc.RandomID()}
		if len(r.V) > 0 {
			targets = append(targets, storage.ImmutableTarget(r.V))
		}
		if len(r.K) == 32 {
			targets = append(targets, storage.MutableTarget([]byte(r.K), nil))
		}
		for _, target := range targets {
			it, ok := verifyItem(target, nil, r)
			if !ok {
				continue
			}
			if !bytes.Equal(it.V, r.V) {
				t.Fatalf("verified item v %q, reply v %q", it.V, r.V)
			}
			if it.Mutable {
				if storage.MutableTarget(it.K, nil) != target || !storage.VerifyMutable(it.K, nil, it.Seq, it.V, it.Sig) {
					t.Fatalf("mutable item accepted for %s without a valid target and signature: %q", target, pkt)
				}
			} else if storage.ImmutableTarget(it.V) != target {
				t.Fatalf("immutable item accepted for %s, hashes to %s", target, storage.ImmutableTarget(it.V))
			}
		}
	})
}
