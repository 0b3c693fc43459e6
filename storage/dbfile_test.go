package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/dhtd/dhtd/krpc"
)

// fillDB writes a database like one a busy node leaves behind: a node id,
// nodes routing-table nodes, items immutable items of about 900 bytes and
// peers peers, in large transactions. It returns the items by target.
func fillDB(t testing.TB, path string, nodes, items, peers int) map[krpc.ID]Item {
	t.Helper()
	d, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rnd := rand.New(rand.NewPCG(1, 2))
	if err := d.SetNodeID(krpc.ID{0xd1, 0x7d}); err != nil {
		t.Fatal(err)
	}
	var ns []krpc.NodeInfo
	for i := range nodes {
		var id krpc.ID
		for j := range id {
			id[j] = byte(rnd.Uint32())
		}
		ns = append(ns, krpc.NodeInfo{ID: id, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), 6881)})
	}
	if err := d.SaveNodes(ns); err != nil {
		t.Fatal(err)
	}
	exp := dbT0.Add(2 * time.Hour)
	want := make(map[krpc.ID]Item, items)
	var batch [][2][]byte
	flush := func(name []byte) {
		if err := d.putRaw(name, batch); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range items {
		v := make([]byte, 880+rnd.IntN(40))
		for j := range v {
			v[j] = 'a' + byte(rnd.IntN(26))
		}
		it := itemImmutable(fmt.Sprintf("%d:%s", len(v), v))
		tg := it.Target()
		want[tg] = it
		batch = append(batch, [2][]byte{tg[:], appendItemRecord(nil, &it, 0, exp)})
		if len(batch) == 500 || i == items-1 {
			flush(bucketItems)
		}
	}
	for i := range peers {
		ih := krpc.ID{byte(i >> 8), byte(i)}
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)}), uint16(1+i))
		batch = append(batch, [2][]byte{peerKey(ih, addr.Addr()), appendPeerRecord(nil, addr.Port(), i%2 == 0, exp)})
		if len(batch) == 500 || i == peers-1 {
			flush(bucketPeers)
		}
	}
	return want
}

// allocDuring returns the bytes allocated on the heap while fn ran, an
// upper bound of how much fn grew the heap at its peak.
func allocDuring(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// corruptOutcome opens the damaged file at path; if that fails with
// ErrDBCorrupt it salvages it into a new file. It checks that nothing
// panics, that at most maxAlloc bytes are allocated, and that every item
// salvaged is one of want, unchanged. It returns a one-line outcome.
func corruptOutcome(t *testing.T, path string, want map[krpc.ID]Item, maxAlloc uint64) string {
	t.Helper()
	var (
		outcome string
		items   map[krpc.ID]dbItem
	)
	alloc := allocDuring(func() {
		d, err := OpenDB(path)
		if err == nil {
			outcome = "opened intact"
			items = dbLoadItems(t, d)
			_ = d.Close()
			return
		}
		if !errors.Is(err, ErrDBCorrupt) {
			t.Fatalf("OpenDB: %v, want an error wrapping ErrDBCorrupt", err)
		}
		to, err := OpenDB(path + ".salvaged")
		if err != nil {
			t.Fatal(err)
		}
		defer to.Close()
		rep, err := SalvageDB(path, to, SalvageLimits{})
		outcome = fmt.Sprintf("corrupt; salvaged id=%v nodes=%d items=%d peers=%d damaged=%d orphan_pages=%d err=%v",
			rep.NodeID, rep.Nodes, rep.Items, rep.Peers, rep.Damaged, rep.Orphans, err)
		if err != nil && !errors.Is(err, ErrDBCorrupt) {
			t.Fatalf("SalvageDB: %v", err)
		}
		items = dbLoadItems(t, to)
	})
	for tg, got := range items {
		if w, ok := want[tg]; !ok || !itemEqual(w, got.it) {
			t.Errorf("item %s came out changed or from nowhere", tg)
		}
	}
	if alloc > maxAlloc {
		t.Errorf("allocated %d MiB, want under %d MiB", alloc>>20, maxAlloc>>20)
	}
	return fmt.Sprintf("%s (read %d of %d items, allocated %.1f MiB)", outcome, len(items), len(want), float64(alloc)/(1<<20))
}

// TestDBCorruptFiles damages a realistically filled database, by
// truncation at several sizes and by bit flips with fixed seeds, and
// checks for each one clear outcome: either the file is intact, or OpenDB
// refuses it (ErrDBCorrupt) and SalvageDB recovers the records that still
// decode; no panic, and at most 64 MiB allocated.
func TestDBCorruptFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a 6 MB database")
	}
	src := filepath.Join(t.TempDir(), "full.db")
	want := fillDB(t, src, 500, 6000, 3000)
	full, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("database of %d bytes, %d items", len(full), len(want))
	const maxAlloc = 64 << 20
	type damage struct {
		name string
		fn   func([]byte) []byte
	}
	var cases []damage
	for _, size := range []int{0, 1, 4096, 16 << 10, 1 << 20, 4 << 20, len(full) - 4096} {
		cases = append(cases, damage{fmt.Sprintf("truncated to %d", size), func(b []byte) []byte { return b[:min(size, len(b))] }})
	}
	for _, seed := range []uint64{1, 2, 3, 4} {
		for _, flips := range []int{1, 16, 256} {
			cases = append(cases, damage{fmt.Sprintf("seed %d, %d bit flips", seed, flips), func(b []byte) []byte {
				r := rand.New(rand.NewPCG(seed, uint64(flips)))
				for range flips {
					i := r.IntN(len(b))
					b[i] ^= 1 << r.IntN(8)
				}
				return b
			}})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dhtd.db")
			if err := os.WriteFile(path, c.fn(append([]byte(nil), full...)), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Log(corruptOutcome(t, path, want, maxAlloc))
		})
	}
}
