package storage

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/dhtd/dhtd/krpc"
)

// dbT0 is the reference time of the DB tests.
var dbT0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// dbOpen opens a DB in a fresh temporary directory, closed when t ends
// (unless the test closed it).
func dbOpen(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dhtd.db")
	d, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d, path
}

// dbReopen closes d and opens path again.
func dbReopen(t testing.TB, d *DB, path string) *DB {
	t.Helper()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := OpenDB(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = d2.Close() })
	return d2
}

type dbItem struct {
	it  Item
	exp time.Time
}

func dbLoadItems(t testing.TB, d *DB) map[krpc.ID]dbItem {
	t.Helper()
	out := map[krpc.ID]dbItem{}
	if err := d.LoadItems(func(it Item, _ netip.Addr, exp time.Time) { out[it.Target()] = dbItem{it, exp} }); err != nil {
		t.Fatal(err)
	}
	return out
}

type dbPeer struct {
	ih   krpc.ID
	addr netip.AddrPort
	seed bool
	exp  time.Time
}

func dbLoadPeers(t testing.TB, d *DB) []dbPeer {
	t.Helper()
	var out []dbPeer
	err := d.LoadPeers(func(ih krpc.ID, addr netip.AddrPort, seed bool, exp time.Time) {
		out = append(out, dbPeer{ih, addr, seed, exp})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDBNodeIDSurvivesReopen(t *testing.T) {
	d, path := dbOpen(t)
	if _, ok, err := d.NodeID(); err != nil || ok {
		t.Fatalf("fresh DB: NodeID ok=%v err=%v, want none", ok, err)
	}
	id := krpc.RandomID()
	if err := d.SetNodeID(id); err != nil {
		t.Fatal(err)
	}
	d = dbReopen(t, d, path)
	got, ok, err := d.NodeID()
	if err != nil || !ok || got != id {
		t.Fatalf("after reopen: NodeID = %s ok=%v err=%v, want %s", got, ok, err, id)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode: %v %v, want 0600", fi.Mode(), err)
	}
}

func TestDBNodeIDCorrupt(t *testing.T) {
	d, _ := dbOpen(t)
	err := d.bolt.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyNodeID, []byte("short")) })
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.NodeID(); !errors.Is(err, ErrDBCorrupt) {
		t.Fatalf("NodeID of a 5-byte record: %v, want ErrDBCorrupt", err)
	}
}

func TestDBNodesReplaceAndReopen(t *testing.T) {
	d, path := dbOpen(t)
	var ids [4]krpc.ID
	for i := range ids {
		ids[i][0] = byte(i + 1)
	}
	first := []krpc.NodeInfo{
		{ID: ids[0], Addr: netip.MustParseAddrPort("10.0.0.1:6881")},
		{ID: ids[1], Addr: netip.MustParseAddrPort("[2001:db8::1]:6882")},
		{ID: ids[1], Addr: netip.MustParseAddrPort("[2001:db8::1]:6882")}, // duplicate
		{ID: ids[2], Addr: netip.MustParseAddrPort("[::ffff:10.0.0.3]:6883")},
	}
	if err := d.SaveNodes(first); err != nil {
		t.Fatal(err)
	}
	got, err := d.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	want := []krpc.NodeInfo{
		first[0], first[1],
		{ID: ids[2], Addr: netip.MustParseAddrPort("10.0.0.3:6883")}, // unmapped
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Nodes = %v, want %v", got, want)
	}

	// A node with an invalid address refuses the whole set.
	bad := []krpc.NodeInfo{{ID: ids[3], Addr: netip.MustParseAddrPort("10.0.0.4:1")}, {ID: ids[3], Addr: netip.MustParseAddrPort("0.0.0.0:1")}}
	if err := d.SaveNodes(bad); err == nil {
		t.Fatal("SaveNodes with an unspecified address: no error")
	}
	if got, _ := d.Nodes(); !slices.Equal(got, want) {
		t.Fatalf("after a refused SaveNodes: %v, want the old set %v", got, want)
	}

	// SaveNodes replaces, it does not merge.
	second := []krpc.NodeInfo{{ID: ids[3], Addr: netip.MustParseAddrPort("10.0.0.4:6884")}}
	if err := d.SaveNodes(second); err != nil {
		t.Fatal(err)
	}
	d = dbReopen(t, d, path)
	if got, err := d.Nodes(); err != nil || !slices.Equal(got, second) {
		t.Fatalf("after reopen: Nodes = %v %v, want %v", got, err, second)
	}
	if err := d.SaveNodes(nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Nodes(); len(got) != 0 {
		t.Fatalf("after SaveNodes(nil): %v", got)
	}
}

func TestDBItemsRoundTripAndRules(t *testing.T) {
	d, path := dbOpen(t)
	priv := itemTestKey(7)
	imm := itemImmutable("5:hello")
	m1 := itemMutable(priv, "salt", 1, "3:one")
	m2 := itemMutable(priv, "salt", 2, "3:two")
	exp := dbT0.Add(2 * time.Hour)

	for _, c := range []struct {
		it  Item
		exp time.Time
	}{{imm, exp}, {m2, exp}} {
		if err := d.PutItem(c.it, netip.Addr{}, c.exp); err != nil {
			t.Fatal(err)
		}
	}
	// An older seq never rolls the record back, nor does an earlier expiry
	// of the same item; a later expiry of the same item is saved.
	if err := d.PutItem(m1, netip.Addr{}, exp.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := d.PutItem(imm, netip.Addr{}, exp.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := d.PutItem(imm, netip.Addr{}, exp.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Invalid shapes are refused.
	if err := d.PutItem(Item{V: []byte("2:hi"), Seq: 3}, netip.Addr{}, exp); err == nil {
		t.Error("PutItem of an immutable item with a seq: no error")
	}
	if err := d.PutItem(Item{}, netip.Addr{}, exp); err == nil {
		t.Error("PutItem of an empty item: no error")
	}

	d = dbReopen(t, d, path)
	got := dbLoadItems(t, d)
	if len(got) != 2 {
		t.Fatalf("LoadItems: %d items, want 2: %v", len(got), got)
	}
	if g := got[imm.Target()]; !itemEqual(g.it, imm) || !g.exp.Equal(exp.Add(time.Minute)) {
		t.Errorf("immutable: %+v expires %v, want %+v expiring %v", g.it, g.exp, imm, exp.Add(time.Minute))
	}
	if g := got[m2.Target()]; !itemEqual(g.it, m2) || !g.exp.Equal(exp) {
		t.Errorf("mutable: %+v (seq %d) expires %v, want seq 2 expiring %v", g.it, g.it.Seq, g.exp, exp)
	}

	// The loaded items restore into an ItemStore that serves them.
	s := NewItemStore(krpc.ID{}, ItemConfig{})
	for _, g := range got {
		if err := s.Restore(g.it, netip.Addr{}, g.exp, dbT0); err != nil {
			t.Fatal(err)
		}
	}
	if it, ok := s.Get(m2.Target(), dbT0); !ok || it.Seq != 2 {
		t.Errorf("restored store: mutable item %v %v", it, ok)
	}

	if err := d.DeleteItems([]krpc.ID{imm.Target(), {1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	if got := dbLoadItems(t, d); len(got) != 1 || got[m2.Target()].it.Seq != 2 {
		t.Errorf("after DeleteItems: %v", got)
	}
}

func TestDBPeersRoundTripAndRules(t *testing.T) {
	d, path := dbOpen(t)
	ih1, ih2 := krpc.ID{1}, krpc.ID{2}
	exp := dbT0.Add(30 * time.Minute)
	put := func(ih krpc.ID, addr string, seed bool, exp time.Time) {
		t.Helper()
		if err := d.PutPeer(ih, netip.MustParseAddrPort(addr), seed, exp); err != nil {
			t.Fatal(err)
		}
	}
	put(ih1, "10.0.0.1:1000", false, exp)
	put(ih1, "10.0.0.1:2000", true, exp.Add(time.Minute)) // same IP: replaces
	put(ih1, "10.0.0.1:3000", false, exp)                 // earlier expiry: kept out
	put(ih1, "[::ffff:10.0.0.2]:1000", false, exp)        // saved as IPv4
	put(ih1, "[2001:db8::2]:1000", true, exp)
	put(ih2, "10.0.0.3:1000", false, exp)
	if err := d.PutPeer(ih2, netip.MustParseAddrPort("10.0.0.4:0"), false, exp); err == nil {
		t.Error("PutPeer with port 0: no error")
	}

	d = dbReopen(t, d, path)
	got := dbLoadPeers(t, d)
	want := []dbPeer{
		{ih1, netip.MustParseAddrPort("10.0.0.1:2000"), true, exp.Add(time.Minute)},
		{ih1, netip.MustParseAddrPort("10.0.0.2:1000"), false, exp},
		{ih1, netip.MustParseAddrPort("[2001:db8::2]:1000"), true, exp},
		{ih2, netip.MustParseAddrPort("10.0.0.3:1000"), false, exp},
	}
	if len(got) != len(want) {
		t.Fatalf("LoadPeers = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].ih != want[i].ih || got[i].addr != want[i].addr || got[i].seed != want[i].seed || !got[i].exp.Equal(want[i].exp) {
			t.Errorf("peer %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	// By IP (the port is ignored), then a whole infohash.
	if err := d.DeletePeers([]PeerKey{{IH: ih1, Addr: netip.MustParseAddrPort("10.0.0.2:9")}}); err != nil {
		t.Fatal(err)
	}
	if got := dbLoadPeers(t, d); len(got) != 3 {
		t.Fatalf("after deleting one peer: %v", got)
	}
	if err := d.DeletePeers([]PeerKey{{IH: ih1}}); err != nil {
		t.Fatal(err)
	}
	if got := dbLoadPeers(t, d); len(got) != 1 || got[0].ih != ih2 {
		t.Fatalf("after deleting infohash 1: %v", got)
	}
}

func TestDBDeleteExpired(t *testing.T) {
	d, _ := dbOpen(t)
	now := dbT0
	for i := range 10 {
		exp := now.Add(time.Duration(i-5) * time.Minute) // 6 at or before now
		if err := d.PutItem(itemImmutable(fmt.Sprintf("i%de", i)), netip.Addr{}, exp); err != nil {
			t.Fatal(err)
		}
		if err := d.PutPeer(krpc.ID{byte(i)}, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 1), false, exp); err != nil {
			t.Fatal(err)
		}
	}
	items, peers, err := d.DeleteExpired(now)
	if err != nil || items != 6 || peers != 6 {
		t.Fatalf("DeleteExpired = %d items, %d peers, %v; want 6, 6", items, peers, err)
	}
	for _, it := range dbLoadItems(t, d) {
		if !it.exp.After(now) {
			t.Errorf("expired item left: %+v", it)
		}
	}
	if got := dbLoadPeers(t, d); len(got) != 4 {
		t.Errorf("%d peers left, want 4", len(got))
	}
	if items, peers, err = d.DeleteExpired(now); err != nil || items != 0 || peers != 0 {
		t.Errorf("second DeleteExpired = %d, %d, %v; want nothing", items, peers, err)
	}
}

// TestDBDeleteExpiredChunks crosses the scan chunk size, so several read
// transactions resume where the previous one stopped.
func TestDBDeleteExpiredChunks(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 10000 records")
	}
	d, _ := dbOpen(t)
	const n = dbScanChunk + 1808
	err := d.bolt.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketPeers)
		for i := range n {
			exp := dbT0.Add(-time.Minute)
			if i%2 == 1 {
				exp = dbT0.Add(time.Minute)
			}
			ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			if err := b.Put(peerKey(krpc.ID{byte(i % 7)}, ip), appendPeerRecord(nil, 1, false, exp)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, peers, err := d.DeleteExpired(dbT0)
	if err != nil || peers != n/2 {
		t.Fatalf("DeleteExpired: %d peers, %v; want %d", peers, err, n/2)
	}
	if got := len(dbLoadPeers(t, d)); got != n/2 {
		t.Fatalf("%d peers left, want %d", got, n/2)
	}
}

func TestDBCorruptRecordsSkipped(t *testing.T) {
	d, path := dbOpen(t)
	good := itemImmutable("4:good")
	exp := dbT0.Add(time.Hour)
	if err := d.PutItem(good, netip.Addr{}, exp); err != nil {
		t.Fatal(err)
	}
	if err := d.PutPeer(krpc.ID{1}, netip.MustParseAddrPort("10.0.0.1:1"), false, exp); err != nil {
		t.Fatal(err)
	}
	if err := d.SaveNodes([]krpc.NodeInfo{{ID: krpc.ID{9}, Addr: netip.MustParseAddrPort("10.0.0.9:9")}}); err != nil {
		t.Fatal(err)
	}
	flipped := appendItemRecord(nil, new(itemImmutable("4:flip")), 0, exp)
	flipped[len(flipped)-6] ^= 1 // inside v: the checksum no longer matches
	other := itemImmutable("5:other")
	otherT := other.Target()
	err := d.bolt.Update(func(tx *bbolt.Tx) error {
		items, peers, nodes := tx.Bucket(bucketItems), tx.Bucket(bucketPeers), tx.Bucket(bucketNodes)
		flipT := itemImmutable("4:flip").Target()
		for _, kv := range []struct {
			b    *bbolt.Bucket
			k, v []byte
		}{
			{items, flipT[:], flipped},
			{items, otherT[:], appendItemRecord(nil, new(itemImmutable("4:else")), 0, exp)}, // key is not the target
			{items, []byte("short key"), appendItemRecord(nil, new(itemImmutable("4:good")), 0, exp)},
			{items, bytes.Repeat([]byte{3}, 20), []byte{itemRecordV1}},
			{peers, peerKey(krpc.ID{2}, netip.MustParseAddr("10.0.0.2")), []byte{peerRecordV1, 0, 0}},
			{peers, peerKey(krpc.ID{3}, netip.MustParseAddr("10.0.0.3")), appendPeerRecord(nil, 0, false, exp)}, // port 0
			{peers, []byte("bad peer key"), appendPeerRecord(nil, 1, false, exp)},
			{nodes, []byte("bad node key"), []byte{}},
		} {
			if err := kv.b.Put(kv.k, kv.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The open DB skips what does not decode.
	items := dbLoadItems(t, d)
	if len(items) != 1 || !itemEqual(items[good.Target()].it, good) {
		t.Errorf("LoadItems = %v, want only the good item", items)
	}
	if peers := dbLoadPeers(t, d); len(peers) != 1 || peers[0].ih != (krpc.ID{1}) {
		t.Errorf("LoadPeers = %v, want only the good peer", peers)
	}
	if nodes, err := d.Nodes(); err != nil || len(nodes) != 1 {
		t.Errorf("Nodes = %v %v, want only the good node", nodes, err)
	}
	if c := d.Stats().Corrupt; c != 8 {
		t.Errorf("Stats().Corrupt = %d, want 8", c)
	}
	// DeleteExpired removes the corrupt items and peers, and nothing else.
	if i, p, err := d.DeleteExpired(dbT0); err != nil || i != 0 || p != 0 {
		t.Errorf("DeleteExpired = %d, %d, %v; want 0, 0 (corrupt records are not counted)", i, p, err)
	}
	if r := d.Stats().CorruptRemoved; r != 7 {
		t.Errorf("Stats().CorruptRemoved = %d, want 7", r)
	}
	if len(dbLoadItems(t, d)) != 1 || len(dbLoadPeers(t, d)) != 1 {
		t.Error("DeleteExpired removed a good record")
	}
	if _, err := d.Nodes(); err != nil {
		t.Fatal(err)
	}
	if c := d.Stats().Corrupt; c != 9 {
		t.Errorf("after another load: Corrupt = %d, want 9 (the node record is left)", c)
	}
	// A file holding a record that does not decode is not opened again;
	// SalvageDB copies what decodes.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d2, err := OpenDB(path); !errors.Is(err, ErrDBCorrupt) {
		if err == nil {
			_ = d2.Close()
		}
		t.Fatalf("reopen: %v, want ErrDBCorrupt", err)
	}
	to, _ := dbOpen(t)
	rep, err := SalvageDB(path, to, SalvageLimits{})
	if err != nil || rep.Nodes != 1 || rep.Damaged < 1 {
		t.Errorf("SalvageDB = %+v, %v; want the good node, and the bad one counted as damaged", rep, err)
	}
	if len(dbLoadItems(t, to)) != 1 || len(dbLoadPeers(t, to)) != 1 {
		t.Error("salvaged DB lacks the good records")
	}
}

func TestDBLocked(t *testing.T) {
	d, path := dbOpen(t)
	start := time.Now()
	d2, err := OpenDB(path)
	if err == nil {
		_ = d2.Close()
		t.Fatal("second OpenDB of an open database succeeded")
	}
	if !errors.Is(err, ErrDBLocked) {
		t.Fatalf("second OpenDB: %v, want ErrDBLocked", err)
	}
	if el := time.Since(start); el < dbLockTimeout/2 || el > 10*dbLockTimeout {
		t.Errorf("gave up after %v, want about %v", el, dbLockTimeout)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d3, err := OpenDB(path)
	if err != nil {
		t.Fatalf("OpenDB after the holder closed: %v", err)
	}
	_ = d3.Close()
}

func TestDBOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("not a database, and long enough to have a meta page?"), 0o600); err != nil {
		t.Fatal(err)
	}
	if d, err := OpenDB(file); err == nil {
		_ = d.Close()
		t.Error("OpenDB of a text file succeeded")
	}
	if d, err := OpenDB(filepath.Join(file, "dhtd.db")); err == nil {
		_ = d.Close()
		t.Error("OpenDB under a regular file succeeded")
	}

	// A schema from the future is refused.
	d, path := dbOpen(t)
	if err := d.bolt.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte{dbSchema + 1}) }); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	wantOpenError(t, path, ErrDBSchema, "a schema 2 database")

	// A bucket where the schema version belongs is a file dhtd did not
	// write: corrupt, not an unclassified error (the fuzz corpus holds a
	// file with a value where one of the buckets belongs).
	odd := filepath.Join(dir, "odd.db")
	bdb, err := bbolt.Open(odd, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		_, err = meta.CreateBucket(keySchema)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	wantOpenError(t, odd, ErrDBCorrupt, "a database with a bucket at the schema key")
}

// wantOpenError checks that OpenDB of path fails with an error matching
// target; what names the file in the failure.
func wantOpenError(t *testing.T, path string, target error, what string) {
	t.Helper()
	d, err := OpenDB(path)
	if err == nil {
		_ = d.Close()
	}
	if !errors.Is(err, target) {
		t.Errorf("OpenDB of %s: %v, want %v", what, err, target)
	}
}

// TestDBConcurrentPutsShareCommits runs many concurrent puts: all must be
// durable and readable after a reopen, and they must have shared commits
// (bbolt Batch), which the commit counter shows.
func TestDBConcurrentPutsShareCommits(t *testing.T) {
	d, path := dbOpen(t)
	const workers, per = 32, 16
	before := d.Stats()
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				it := itemImmutable(fmt.Sprintf("i%de", w*per+i))
				if err := d.PutItem(it, netip.Addr{}, dbT0.Add(time.Hour)); err != nil {
					errs <- err
				}
				if err := d.PutPeer(krpc.ID{byte(w)}, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(w), byte(i + 1)}), 1), false, dbT0.Add(time.Hour)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := d.Stats()
	writes, commits := st.Writes-before.Writes, st.Commits-before.Commits
	t.Logf("%d writes in %d commits", writes, commits)
	if writes != 2*workers*per {
		t.Errorf("Writes = %d, want %d", writes, 2*workers*per)
	}
	if commits == 0 || commits >= writes {
		t.Errorf("Commits = %d for %d concurrent writes: want fewer commits than writes", commits, writes)
	}
	if st.Size <= 0 || st.WriteErrors != 0 {
		t.Errorf("Stats = %+v", st)
	}
	d = dbReopen(t, d, path)
	if n := len(dbLoadItems(t, d)); n != workers*per {
		t.Errorf("%d items after reopen, want %d", n, workers*per)
	}
	if n := len(dbLoadPeers(t, d)); n != workers*per {
		t.Errorf("%d peers after reopen, want %d", n, workers*per)
	}
}

func TestDBClosed(t *testing.T) {
	d, _ := dbOpen(t)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.PutItem(itemImmutable("1:x"), netip.Addr{}, dbT0); err == nil {
		t.Error("PutItem after Close: no error")
	}
	if d.Stats().WriteErrors != 1 {
		t.Errorf("WriteErrors = %d, want 1", d.Stats().WriteErrors)
	}
}

// BenchmarkDBPutItem measures durable puts: one at a time (every put pays
// its own fsync) and from concurrent goroutines (puts share commits).
func BenchmarkDBPutItem(b *testing.B) {
	for _, par := range []int{1, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", par), func(b *testing.B) {
			d, _ := dbOpen(b)
			var wg sync.WaitGroup
			next := make(chan int)
			for range par {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						if err := d.PutItem(itemImmutable(fmt.Sprintf("i%de", i)), netip.Addr{}, dbT0.Add(time.Hour)); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			b.ResetTimer()
			for i := range b.N {
				next <- i
			}
			close(next)
			wg.Wait()
			b.StopTimer()
			st := d.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
			b.ReportMetric(float64(st.Writes)/float64(max(st.Commits, 1)), "puts/commit")
		})
	}
}

// TestDBItemSource: the network an item is charged to is saved with it and
// loaded back (IPv4 /24, IPv6 /48, or none for an item of unknown origin),
// and a restored item is charged to it again: the network's quota counts it.
// A record whose source is not a network sourceOf could give is corrupt.
func TestDBItemSource(t *testing.T) {
	d, path := dbOpen(t)
	exp := dbT0.Add(time.Hour)
	cases := []struct {
		v    string
		from netip.Addr
		want netip.Addr
	}{
		{"2:v4", netip.MustParseAddr("198.51.100.77"), netip.MustParseAddr("198.51.100.0")},
		{"2:v6", netip.MustParseAddr("2001:db8:1:2:3::9"), netip.MustParseAddr("2001:db8:1::")},
		{"2:no", netip.Addr{}, netip.Addr{}},
	}
	for _, c := range cases {
		if err := d.PutItem(itemImmutable(c.v), c.from, exp); err != nil {
			t.Fatal(err)
		}
	}
	d = dbReopen(t, d, path)
	bad := itemImmutable("3:bad")
	badT := bad.Target()
	rec := appendItemRecord(nil, &bad, sourceKey(5<<56|1), exp)
	if err := d.bolt.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketItems).Put(badT[:], rec) }); err != nil {
		t.Fatal(err)
	}
	got := map[krpc.ID]netip.Addr{}
	s := NewItemStore(krpc.ID{}, ItemConfig{MaxPerSource: 1, LimitLoopback: true})
	err := d.LoadItems(func(it Item, src netip.Addr, exp time.Time) {
		got[it.Target()] = src
		if err := s.Restore(it, src, exp, dbT0); err != nil {
			t.Errorf("restore %s: %v", it.V, err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if src, ok := got[itemImmutable(c.v).Target()]; !ok || src != c.want {
			t.Errorf("item %s: source %v (loaded %v), want %v", c.v, src, ok, c.want)
		}
	}
	if _, ok := got[badT]; ok || d.Stats().Corrupt != 1 {
		t.Errorf("record with an invalid source: loaded %v, corrupt %d", ok, d.Stats().Corrupt)
	}
	// Each restored network holds its quota of 1: a new item from another
	// host of the same /24 is refused; one from a new network is not.
	if err := s.PutFrom(itemImmutable("4:more"), nil, netip.MustParseAddr("198.51.100.1"), dbT0); !errors.Is(err, ErrQuota) {
		t.Errorf("put from the restored item's network: %v, want ErrQuota", err)
	}
	if err := s.PutFrom(itemImmutable("4:more"), nil, netip.MustParseAddr("203.0.113.1"), dbT0); err != nil {
		t.Errorf("put from another network: %v", err)
	}
	if src := s.Source(itemImmutable("2:v6").Target(), netip.Addr{}); src != cases[1].want {
		t.Errorf("Source of the restored IPv6 item = %v", src)
	}
	if src := s.Source(krpc.ID{7}, netip.MustParseAddr("192.0.2.200")); src != netip.MustParseAddr("192.0.2.0") {
		t.Errorf("Source of a new item = %v, want the putter's /24", src)
	}
}
