package storage

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
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
	f.Add(tgt[:], appendItemRecord(nil, &imm, 0, exp))
	f.Add(tgt[:], appendItemRecord(nil, &imm, sourceOf(netip.MustParseAddr("192.0.2.7")), exp))
	f.Add(tgt[:], appendItemRecord(nil, &imm, sourceOf(netip.MustParseAddr("2001:db8::7")), exp))
	ih := krpc.ID{1, 2, 3}
	f.Add(peerKey(ih, netip.MustParseAddr("192.0.2.7")), appendPeerRecord(nil, 6881, true, exp))
	f.Add(peerKey(ih, netip.MustParseAddr("2001:db8::7")), appendPeerRecord(nil, 1, false, exp))
	f.Add([]byte("key"), []byte{})

	f.Fuzz(func(t *testing.T, key, rec []byte) {
		if it, src, e, err := decodeItemRecord(key, rec); err == nil {
			if tgt := it.Target(); !bytes.Equal(tgt[:], key) {
				t.Fatalf("item decoded under key %x has target %s", key, it.Target())
			}
			if msg := itemShapeError(&it, nil); msg != "" {
				t.Fatalf("decoded item of invalid shape: %s", msg)
			}
			if !src.valid() || sourceOf(src.addr()) != src {
				t.Fatalf("decoded source %#x does not map back to itself", uint64(src))
			}
			if back := appendItemRecord(nil, &it, src, e); !bytes.Equal(back, rec) {
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

// dbFileSeeds returns a small real database file and damaged copies of
// it, plus the files under ../testdata/fuzz/FuzzDBFile/.
func dbFileSeeds(f *testing.F) [][]byte {
	path := filepath.Join(f.TempDir(), "seed.db")
	fillDB(f, path, 4, 6, 4)
	full, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	// Only the pages in use: bbolt grows the file ahead of them, and the
	// fuzzer is slow with large inputs.
	w, err := newFileWalker(bytes.NewReader(full), int64(len(full)), true)
	if err != nil {
		f.Fatal(err)
	}
	full = full[:w.meta.pgid*uint64(w.meta.pageSize)]
	seeds := [][]byte{full, nil, full[:1], full[:4096], full[:len(full)/2]}
	for _, seed := range []uint64{1, 2, 3} {
		b := bytes.Clone(full)
		r := rand.New(rand.NewPCG(seed, 0))
		for range 8 {
			i := r.IntN(len(b))
			b[i] ^= 1 << r.IntN(8)
		}
		seeds = append(seeds, b)
	}
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "fuzz", "FuzzDBFile", "*"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzDBFile: whatever bytes the database file holds (truncated,
// bit-flipped, or anything else), OpenDB and SalvageDB never panic, stay
// within 64 MiB of allocations, and give a clear outcome: either the file
// opens and every record in it loads (none is counted corrupt), or OpenDB
// fails with ErrDBCorrupt (or ErrDBSchema) and SalvageDB copies only
// records that load.
func FuzzDBFile(f *testing.F) {
	for _, s := range dbFileSeeds(f) {
		f.Add(s)
	}
	// On tmpfs where there is one: the fsyncs of a disk shared with other
	// jobs would leave the fuzzer a few executions a second.
	dir := f.TempDir()
	if shm, err := os.MkdirTemp("/dev/shm", "dhtd-fuzz-"); err == nil {
		dir = shm
		f.Cleanup(func() { _ = os.RemoveAll(shm) })
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		path := filepath.Join(dir, "dhtd.db")
		salvaged := filepath.Join(dir, "salvaged.db")
		_ = os.Remove(salvaged)
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		var outcome error
		alloc := allocDuring(func() {
			d, err := OpenDB(path)
			if err == nil {
				loadAll(t, d)
				if c := d.Stats().Corrupt; c != 0 {
					t.Errorf("file accepted by OpenDB has %d corrupt records", c)
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				return
			}
			outcome = err
			if !errors.Is(err, ErrDBCorrupt) && !errors.Is(err, ErrDBSchema) {
				t.Fatalf("OpenDB: %v, want nil, ErrDBCorrupt or ErrDBSchema", err)
			}
			to, err := OpenDB(salvaged)
			if err != nil {
				t.Fatal(err)
			}
			to.bolt.NoSync = true // what is written need not survive a crash
			defer to.Close()
			if _, err := SalvageDB(path, to, SalvageLimits{}); err != nil && !errors.Is(err, ErrDBCorrupt) {
				t.Fatalf("SalvageDB: %v", err)
			}
			loadAll(t, to)
			if c := to.Stats().Corrupt; c != 0 {
				t.Errorf("salvaged database has %d corrupt records", c)
			}
		})
		if alloc > 64<<20 {
			t.Errorf("%d-byte file (%v): allocated %d MiB", len(file), outcome, alloc>>20)
		}
	})
}

// loadAll reads every record of d.
func loadAll(t *testing.T, d *DB) {
	t.Helper()
	if err := d.LoadItems(func(Item, netip.Addr, time.Time) {}); err != nil {
		t.Fatal(err)
	}
	if err := d.LoadPeers(func(krpc.ID, netip.AddrPort, bool, time.Time) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Nodes(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.NodeID(); err != nil {
		t.Fatal(err)
	}
}
