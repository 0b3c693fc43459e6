package routing

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"

	"github.com/dhtd/dhtd/krpc"
)

// index finds the table's entries by address or by id: an open-addressing
// hash table with linear probing that stores each entry's hash beside its
// pointer, so a probe compares hashes without loading entries, and that
// deletes by shifting the entries after the hole back (no tombstones).
// The table takes and drops an entry for every unknown node that queries
// it (the replacement cache turns over); a Go map under that churn fills
// with tombstones and rebuilds itself, which cost the simulator of many
// nodes a twentieth of its time. An index is not safe for concurrent use
// (the Table's mutex guards it); its zero value is empty and usable.
type index struct {
	slots []slot // nil, or a power of two in length
	n     int    // entries held
	seed  uint64 // per-table hash seed: crafted addresses or ids cannot pile up in a probe run
}

type slot struct {
	h uint64
	e *entry // nil: empty
}

// maxLoad is the share of slots an index fills before it doubles, in
// eighths.
const maxLoad = 6

func newIndex() index { return index{seed: rand.Uint64() | 1} }

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

const (
	mixA = 0xa0761d6478bd642f
	mixB = 0xe7037ed1a0b428db
	mixC = 0x8ebc6af09c88c6e3
)

func (x *index) hashAddr(a netip.AddrPort) uint64 {
	b := a.Addr().As16() // the zone is left out of the hash; lookups compare it
	lo := binary.LittleEndian.Uint64(b[8:])
	hi := binary.LittleEndian.Uint64(b[:8])
	return mix(mix(lo^x.seed, hi^mixA)^uint64(a.Port()), mixB)
}

func (x *index) hashID(id *krpc.ID) uint64 {
	w0 := binary.LittleEndian.Uint64(id[0:8])
	w1 := binary.LittleEndian.Uint64(id[8:16])
	w2 := uint64(binary.LittleEndian.Uint32(id[16:20]))
	return mix(mix(w0^x.seed, w1^mixA)^w2, mixC)
}

// addr returns the entry at addr, or nil.
func (x *index) addr(addr netip.AddrPort) *entry {
	if x.n == 0 {
		return nil
	}
	h := x.hashAddr(addr)
	mask := len(x.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.e == nil {
			return nil
		}
		if s.h == h && s.e.info.Addr == addr {
			return s.e
		}
	}
}

// id returns the entry with id, or nil.
func (x *index) id(id krpc.ID) *entry {
	if x.n == 0 {
		return nil
	}
	h := x.hashID(&id)
	mask := len(x.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.e == nil {
			return nil
		}
		if s.h == h && s.e.info.ID == id {
			return s.e
		}
	}
}

// add inserts e under hash h; the caller has checked that its key is not
// held.
func (x *index) add(h uint64, e *entry) {
	if (x.n+1)*8 > len(x.slots)*maxLoad {
		x.grow()
	}
	x.put(h, e)
	x.n++
}

func (x *index) put(h uint64, e *entry) {
	mask := len(x.slots) - 1
	i := int(h) & mask
	for x.slots[i].e != nil {
		i = (i + 1) & mask
	}
	x.slots[i] = slot{h, e}
}

func (x *index) grow() {
	old := x.slots
	x.slots = make([]slot, max(16, 2*len(old)))
	for _, s := range old {
		if s.e != nil {
			x.put(s.h, s.e)
		}
	}
}

// remove deletes e, held under hash h, if it is held.
func (x *index) remove(h uint64, e *entry) {
	if x.n == 0 {
		return
	}
	mask := len(x.slots) - 1
	i := int(h) & mask
	for x.slots[i].e != e {
		if x.slots[i].e == nil {
			return
		}
		i = (i + 1) & mask
	}
	x.n--
	// Shift back each later entry of the probe run that may move into the
	// hole: one whose home slot is not cyclically in (hole, its slot].
	for j := i; ; {
		j = (j + 1) & mask
		s := x.slots[j]
		if s.e == nil {
			break
		}
		home := int(s.h) & mask
		if (j-home)&mask >= (j-i)&mask {
			x.slots[i] = s
			i = j
		}
	}
	x.slots[i] = slot{}
}

// len returns the number of entries held.
func (x *index) len() int { return x.n }
