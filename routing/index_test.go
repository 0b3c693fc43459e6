package routing

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/dhtd/dhtd/krpc"
)

// The index agrees with Go maps through a long run of random adds and
// removes (every removal shifts entries back into the hole), with
// addresses drawn from a few IPs and ports so that probe runs form and
// wrap around the end of the slots.
func TestIndexMatchesMaps(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	addrs, ids := newIndex(), newIndex()
	wantAddr := map[netip.AddrPort]*entry{}
	wantID := map[krpc.ID]*entry{}
	var held []*entry
	for step := range 20000 {
		if len(held) > 0 && (r.IntN(2) == 0 || len(held) > 300) {
			i := r.IntN(len(held))
			e := held[i]
			held[i] = held[len(held)-1]
			held = held[:len(held)-1]
			addrs.remove(addrs.hashAddr(e.info.Addr), e)
			ids.remove(ids.hashID(&e.info.ID), e)
			delete(wantAddr, e.info.Addr)
			delete(wantID, e.info.ID)
		} else {
			ip := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(8))})
			e := &entry{info: krpc.NodeInfo{ID: randID(r), Addr: netip.AddrPortFrom(ip, uint16(1+r.IntN(64)))}}
			if wantAddr[e.info.Addr] != nil {
				continue
			}
			addrs.add(addrs.hashAddr(e.info.Addr), e)
			ids.add(ids.hashID(&e.info.ID), e)
			wantAddr[e.info.Addr] = e
			wantID[e.info.ID] = e
			held = append(held, e)
		}
		if addrs.len() != len(wantAddr) || ids.len() != len(wantID) {
			t.Fatalf("step %d: index holds %d/%d, maps %d/%d", step, addrs.len(), ids.len(), len(wantAddr), len(wantID))
		}
		if step%50 == 0 {
			for _, e := range held {
				if addrs.addr(e.info.Addr) != e || ids.id(e.info.ID) != e {
					t.Fatalf("step %d: %s not found", step, e.info)
				}
			}
			probe := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(8))}), uint16(1+r.IntN(64)))
			if got := addrs.addr(probe); got != wantAddr[probe] {
				t.Fatalf("step %d: addr(%v) = %v, want %v", step, probe, got, wantAddr[probe])
			}
			if got := ids.id(randID(r)); got != nil {
				t.Fatalf("step %d: an unknown id was found", step)
			}
		}
	}
}
