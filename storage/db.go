package storage

// DB keeps on disk what a node must not lose on a restart or a crash: the
// peers and BEP 44 items it stores for others, its node id and the nodes of
// its routing table.
//
// The embedded database is bbolt (go.etcd.io/bbolt), the etcd project's
// maintained fork of BoltDB: a well-kept, pure-Go (no cgo) B+tree in a
// single file. Its read-write transactions are atomic and crash-safe
// (copy-on-write pages, then a meta page written only after the data pages
// are fdatasync'ed, so a crash at any moment leaves the last committed state,
// which opens), a commit returns only once it is on stable storage, and
// DB.Batch groups the transactions of concurrent callers into one commit,
// so that under load the puts share an fsync instead of paying one each.
//
// Unlike the in-memory stores of this package, a DB does I/O, and bbolt's
// batching runs a timer; time is still passed in explicitly.
//
// Layout (schema 1), one bucket per kind of record, all integers
// big-endian:
//
//	meta   "schema"  -> 1 byte, dbSchema
//	       "node_id" -> 20 bytes
//	nodes  id ‖ compact addr (6 or 18 bytes, BEP 5 / BEP 32) -> empty
//	items  target (20 bytes) -> item record (see appendItemRecord)
//	peers  infohash ‖ IP (4 or 16 bytes) -> peer record (see appendPeerRecord)
//
// Peers are keyed by IP without the port, as the PeerStore keeps one entry
// per (infohash, IP) (BEP 33): a re-announce, even from another port,
// overwrites the record.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/dhtd/dhtd/krpc"
)

// DB tuning.
const (
	// dbLockTimeout is how long OpenDB waits for the file lock held by
	// another process (or another DB of this one) before failing with
	// ErrDBLocked.
	dbLockTimeout = time.Second
	// dbBatchDelay is how long the first caller of a batch waits for
	// others to join it before the commit (bbolt's default is 10 ms). The
	// commit's fsync already takes about a millisecond or more, and callers
	// arriving during a commit gather in the next batch, so a short delay
	// groups as well under load while keeping a lone put's latency low.
	dbBatchDelay = time.Millisecond
	// dbScanChunk bounds the records examined per read transaction by
	// DeleteExpired, so that it never holds one open for long (bbolt
	// writers that must grow the file wait for open readers).
	dbScanChunk = 8192
	// dbSchema is the layout version stored under meta/"schema".
	dbSchema = 1
)

// Record versions, the first byte of each value.
const (
	itemRecordV1 = 1
	peerRecordV1 = 1
)

var (
	bucketMeta  = []byte("meta")
	bucketNodes = []byte("nodes")
	bucketItems = []byte("items")
	bucketPeers = []byte("peers")

	keySchema = []byte("schema")
	keyNodeID = []byte("node_id")
)

// ErrDBLocked is returned (wrapped) by OpenDB when another process, or
// another open DB of this process, holds the database file. Test with
// errors.Is.
var ErrDBLocked = errors.New("database is locked by another process")

// ErrDBCorrupt is wrapped by the errors about records the DB cannot decode
// where it cannot just skip them (the node id). Test with errors.Is.
var ErrDBCorrupt = errors.New("corrupt database record")

// ErrDBSchema is wrapped by OpenDB's error for a database of a schema this
// dhtd does not read (written by a newer one). Such a file is not damaged:
// it is refused as it is. Test with errors.Is.
var ErrDBSchema = errors.New("unsupported database schema")

// DB is the node's on-disk store, a bbolt database. It is safe for
// concurrent use; writes from concurrent goroutines share commits. Every
// method that writes returns only once the write is durable (committed and
// fdatasync'ed) or has failed.
type DB struct {
	bolt *bbolt.DB
	path string

	corrupt        atomic.Uint64
	corruptRemoved atomic.Uint64
	commits        atomic.Uint64
	lastCommit     atomic.Uint64 // id of the last transaction counted in commits
	writes         atomic.Uint64
	writeErrors    atomic.Uint64
	failing        atomic.Bool // the last write failed
}

// DBStats are the counters of a DB since OpenDB.
type DBStats struct {
	// Corrupt counts records skipped by LoadItems, LoadPeers and Nodes
	// because they could not be decoded (bad length, version, checksum or
	// content). A corrupt record of the items or peers bucket is deleted by
	// the next DeleteExpired.
	Corrupt uint64
	// CorruptRemoved counts corrupt records deleted by DeleteExpired.
	CorruptRemoved uint64
	// Commits counts committed (and fdatasync'ed) write transactions.
	// Concurrent writes share commits, so Commits stays below Writes
	// under load.
	Commits uint64
	// Writes counts the write calls that succeeded (PutItem, PutPeer,
	// DeleteItems, DeletePeers, SetNodeID, SaveNodes and the deleting
	// commits of DeleteExpired).
	Writes uint64
	// WriteErrors counts the write calls that failed.
	WriteErrors uint64
	// Size is the size in bytes of the data file (its used pages), 0 if it
	// could not be read.
	Size int64
	// Failing reports whether the last write call failed (a full disk, an
	// I/O error); the next one that succeeds clears it.
	Failing bool
}

// OpenDB opens the database at path, creating it (mode 0600) and its
// buckets if needed. If another process holds the file, OpenDB fails after
// about a second with an error wrapping ErrDBLocked.
//
// An existing file is checked before bbolt reads it (see dbfile.go): one
// that is empty, truncated, or whose pages or records are damaged is not
// opened, and the error wraps ErrDBCorrupt; SalvageDB then recovers what
// it can. Checking reads the file a page at a time, so its memory does not
// grow with the file.
func OpenDB(path string) (*DB, error) {
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, fs.ErrNotExist)
	if !created {
		if err := verifyDBFile(path); err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:      dbLockTimeout,
		FreelistType: bbolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w (waited %s for its lock)", path, ErrDBLocked, dbLockTimeout)
	}
	if err != nil {
		if errors.Is(err, bolterrors.ErrInvalid) || errors.Is(err, bolterrors.ErrVersionMismatch) || errors.Is(err, bolterrors.ErrChecksum) {
			err = fmt.Errorf("%w: %w", err, ErrDBCorrupt)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	bdb.MaxBatchDelay = dbBatchDelay
	if !created {
		// bbolt's own consistency check, now that ours has passed.
		if err := boltCheck(bdb); err != nil {
			_ = bdb.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	if created {
		// bbolt syncs the file but not its directory entry: without this,
		// a power loss soon after creation could lose the whole file.
		if err := syncDir(filepath.Dir(path)); err != nil {
			_ = bdb.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	err = bdb.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketNodes, bucketItems, bucketPeers} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keySchema); {
		case v == nil:
			return meta.Put(keySchema, []byte{dbSchema})
		case len(v) != 1 || v[0] != dbSchema:
			return fmt.Errorf("%w: version %x (this dhtd reads %d)", ErrDBSchema, v, dbSchema)
		}
		return nil
	})
	if err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &DB{bolt: bdb, path: path}, nil
}

// syncDir fsyncs the directory dir, making the entries created in it
// durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Close closes the database, waiting for transactions in progress. Calls
// made after Close fail.
func (d *DB) Close() error {
	if err := d.bolt.Close(); err != nil {
		return fmt.Errorf("close %s: %w", d.path, err)
	}
	return nil
}

// Path returns the path the DB was opened at.
func (d *DB) Path() string { return d.path }

// Stats returns a snapshot of the DB's counters. It runs a short read
// transaction for Size.
func (d *DB) Stats() DBStats {
	st := DBStats{
		Corrupt:        d.corrupt.Load(),
		CorruptRemoved: d.corruptRemoved.Load(),
		Commits:        d.commits.Load(),
		Writes:         d.writes.Load(),
		WriteErrors:    d.writeErrors.Load(),
		Failing:        d.failing.Load(),
	}
	_ = d.bolt.View(func(tx *bbolt.Tx) error {
		st.Size = tx.Size()
		return nil
	})
	return st
}

// countCommit arranges for the commit of tx to be counted once in
// Stats().Commits, however many batched calls share tx. Call it from inside
// every write transaction.
func (d *DB) countCommit(tx *bbolt.Tx) {
	id := uint64(tx.ID())
	tx.OnCommit(func() {
		if d.lastCommit.Swap(id) != id {
			d.commits.Add(1)
		}
	})
}

// counted records the outcome of a write call in Stats and returns err.
func (d *DB) counted(err error) error {
	if err != nil {
		d.writeErrors.Add(1)
	} else {
		d.writes.Add(1)
	}
	d.failing.Store(err != nil)
	return err
}

// Failing reports whether the last write call failed; see DBStats.Failing.
func (d *DB) Failing() bool { return d.failing.Load() }

// bucket returns the bucket name of tx, or an error if the database lacks
// it (OpenDB creates them all, so the file was damaged or replaced).
func bucket(tx *bbolt.Tx, name []byte) (*bbolt.Bucket, error) {
	b := tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("bucket %q missing: %w", name, ErrDBCorrupt)
	}
	return b, nil
}

// NodeID returns the saved node id, and false if none was saved. A saved
// value of the wrong length is an error wrapping ErrDBCorrupt.
func (d *DB) NodeID() (krpc.ID, bool, error) {
	var (
		id krpc.ID
		ok bool
	)
	err := d.bolt.View(func(tx *bbolt.Tx) error {
		meta, err := bucket(tx, bucketMeta)
		if err != nil {
			return err
		}
		v := meta.Get(keyNodeID)
		switch {
		case v == nil:
			return nil
		case len(v) != krpc.IDLen:
			return fmt.Errorf("%d bytes, want %d: %w", len(v), krpc.IDLen, ErrDBCorrupt)
		}
		copy(id[:], v)
		ok = true
		return nil
	})
	if err != nil {
		return krpc.ID{}, false, fmt.Errorf("load node id: %w", err)
	}
	return id, ok, nil
}

// SetNodeID saves id as the node id, durably.
func (d *DB) SetNodeID(id krpc.ID) error {
	err := d.bolt.Update(func(tx *bbolt.Tx) error {
		d.countCommit(tx)
		meta, err := bucket(tx, bucketMeta)
		if err != nil {
			return err
		}
		return meta.Put(keyNodeID, bytes.Clone(id[:]))
	})
	if err != nil {
		return d.counted(fmt.Errorf("save node id: %w", err))
	}
	return d.counted(nil)
}

// validAddr reports whether a is an address the stores accept: a specified
// IP and a non-zero port.
func validAddr(a netip.AddrPort) bool {
	ip := a.Addr().Unmap()
	return ip.IsValid() && !ip.IsUnspecified() && a.Port() != 0
}

// SaveNodes replaces the saved routing table nodes by nodes, atomically (one
// transaction: a crash leaves either the old set or the new one) and
// durably. IPv4 and IPv6 nodes may be mixed; duplicates are stored once. A
// node with an invalid address (no IP, unspecified IP or port 0) is an
// error and nothing is changed.
func (d *DB) SaveNodes(nodes []krpc.NodeInfo) error {
	keys := make([][]byte, len(nodes))
	for i, n := range nodes {
		if !validAddr(n.Addr) {
			return fmt.Errorf("save nodes: node %s: invalid address", n)
		}
		keys[i] = krpc.AppendCompactPeer(append(make([]byte, 0, krpc.CompactNodeLen6), n.ID[:]...), n.Addr)
	}
	err := d.bolt.Update(func(tx *bbolt.Tx) error {
		d.countCommit(tx)
		if err := tx.DeleteBucket(bucketNodes); err != nil {
			return fmt.Errorf("clear: %w", err)
		}
		b, err := tx.CreateBucket(bucketNodes)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := b.Put(k, []byte{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return d.counted(fmt.Errorf("save %d nodes: %w", len(nodes), err))
	}
	return d.counted(nil)
}

// MaxLoadNodes bounds the nodes Nodes returns, far above what a routing
// table holds, so that memory stays bounded whatever the file holds.
const MaxLoadNodes = DefaultSalvageNodes

// errEnough stops a bucket scan early.
var errEnough = errors.New("enough")

// Nodes returns the nodes saved by the last SaveNodes, ordered by id, at
// most MaxLoadNodes. Undecodable entries are skipped and counted in
// Stats().Corrupt.
func (d *DB) Nodes() ([]krpc.NodeInfo, error) {
	var out []krpc.NodeInfo
	err := d.bolt.View(func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketNodes)
		if err != nil {
			return err
		}
		err = b.ForEach(func(k, v []byte) error {
			if len(out) == MaxLoadNodes {
				return errEnough
			}
			n, ok := decodeNode(k, v)
			if !ok {
				d.corrupt.Add(1)
				return nil
			}
			out = append(out, n)
			return nil
		})
		if errors.Is(err, errEnough) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load nodes: %w", err)
	}
	return out, nil
}

func decodeNode(k, v []byte) (krpc.NodeInfo, bool) {
	var n krpc.NodeInfo
	if len(v) != 0 || (len(k) != krpc.CompactNodeLen4 && len(k) != krpc.CompactNodeLen6) {
		return n, false
	}
	copy(n.ID[:], k)
	addr, err := krpc.ParseCompactPeer(k[krpc.IDLen:])
	if err != nil || !validAddr(addr) {
		return n, false
	}
	n.Addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return n, true
}

// Item records, version 1:
//
//	offset  size  field
//	0       1     version, itemRecordV1
//	1       1     flags: bit 0 mutable, other bits zero
//	2       8     seq (int64; 0 for immutable items)
//	10      8     expires, unix nanoseconds (int64)
//	18      ...   k, salt, sig, v: each a uvarint length then the bytes
//	end-4   4     CRC-32C (Castagnoli) of all the bytes before it
//
// The checksum catches damage that bbolt, which checksums only its meta
// pages, would not; decodeItem also checks that the item's target is the
// record's key and that the item has a valid shape.
const (
	itemHeaderLen = 18
	itemFlagMut   = 1
	crcLen        = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendItemRecord appends the record of it, expiring at expires, to dst.
func appendItemRecord(dst []byte, it *Item, expires time.Time) []byte {
	start := len(dst)
	var flags byte
	if it.Mutable {
		flags |= itemFlagMut
	}
	dst = append(dst, itemRecordV1, flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(it.Seq))
	dst = binary.BigEndian.AppendUint64(dst, uint64(expires.UnixNano()))
	for _, f := range [][]byte{it.K, it.Salt, it.Sig, it.V} {
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// itemRecordHeader checks the version, flags and checksum of the item
// record rec and returns its fixed fields and the rest of its body.
func itemRecordHeader(rec []byte) (mutable bool, seq, expires int64, body []byte, err error) {
	if len(rec) < itemHeaderLen+crcLen {
		return false, 0, 0, nil, fmt.Errorf("%d bytes, too short", len(rec))
	}
	n := len(rec) - crcLen
	if crc32.Checksum(rec[:n], castagnoli) != binary.BigEndian.Uint32(rec[n:]) {
		return false, 0, 0, nil, errors.New("checksum mismatch")
	}
	if rec[0] != itemRecordV1 {
		return false, 0, 0, nil, fmt.Errorf("unknown version %d", rec[0])
	}
	if rec[1]&^itemFlagMut != 0 {
		return false, 0, 0, nil, fmt.Errorf("unknown flags %#x", rec[1])
	}
	seq = int64(binary.BigEndian.Uint64(rec[2:]))
	expires = int64(binary.BigEndian.Uint64(rec[10:]))
	return rec[1]&itemFlagMut != 0, seq, expires, rec[itemHeaderLen:n], nil
}

// decodeItem decodes the item record rec stored under key. The item's
// slices are copies (one allocation), not aliases of rec. It never panics:
// every length is checked.
func decodeItem(key, rec []byte) (Item, time.Time, error) {
	if len(key) != krpc.IDLen {
		return Item{}, time.Time{}, fmt.Errorf("key of %d bytes", len(key))
	}
	mutable, seq, exp, body, err := itemRecordHeader(rec)
	if err != nil {
		return Item{}, time.Time{}, err
	}
	body = bytes.Clone(body)
	var fields [4][]byte // k, salt, sig, v
	for i := range fields {
		l, n := binary.Uvarint(body)
		if n <= 0 || l > uint64(len(body)-n) {
			return Item{}, time.Time{}, fmt.Errorf("field %d: bad length", i)
		}
		body = body[n:]
		if l > 0 {
			fields[i] = body[:l:l]
		}
		body = body[l:]
	}
	if len(body) != 0 {
		return Item{}, time.Time{}, fmt.Errorf("%d trailing bytes", len(body))
	}
	it := Item{K: fields[0], Salt: fields[1], Sig: fields[2], V: fields[3], Seq: seq, Mutable: mutable}
	if msg := itemShapeError(&it, nil); msg != "" {
		return Item{}, time.Time{}, errors.New(msg)
	}
	if it.Target() != krpc.ID(key) {
		return Item{}, time.Time{}, errors.New("target does not match key")
	}
	return it, time.Unix(0, exp), nil
}

// PutItem saves it, to expire at expires, under its target, replacing what
// is stored there unless that is newer: a mutable item with a higher seq,
// or the same seq (or an immutable item) with a later expiry, is kept and
// the call is a successful no-op. So a put that lost a race to a newer one
// cannot roll the record back.
//
// PutItem returns once the record is durable. Concurrent calls share one
// commit (bbolt DB.Batch): each waits up to about a millisecond for others
// to join, then for the fsync. An item of invalid shape is refused with an
// error.
func (d *DB) PutItem(it Item, expires time.Time) error {
	target := it.Target()
	if msg := itemShapeError(&it, nil); msg != "" {
		return fmt.Errorf("put item %s: %s", target, msg)
	}
	rec := appendItemRecord(nil, &it, expires)
	exp := expires.UnixNano()
	err := d.bolt.Batch(func(tx *bbolt.Tx) error {
		d.countCommit(tx)
		b, err := bucket(tx, bucketItems)
		if err != nil {
			return err
		}
		if old := b.Get(target[:]); old != nil {
			mut, seq, oldExp, _, err := itemRecordHeader(old)
			if err == nil && mut == it.Mutable && (seq > it.Seq || (seq == it.Seq && oldExp >= exp)) {
				return nil
			}
		}
		return b.Put(bytes.Clone(target[:]), rec)
	})
	if err != nil {
		return d.counted(fmt.Errorf("put item %s: %w", target, err))
	}
	return d.counted(nil)
}

// DeleteItems deletes the items stored at targets (absent ones are
// ignored), durably; concurrent calls share commits with each other and
// with PutItem and PutPeer.
func (d *DB) DeleteItems(targets []krpc.ID) error {
	if len(targets) == 0 {
		return nil
	}
	err := d.bolt.Batch(func(tx *bbolt.Tx) error {
		d.countCommit(tx)
		b, err := bucket(tx, bucketItems)
		if err != nil {
			return err
		}
		for _, t := range targets {
			if err := b.Delete(bytes.Clone(t[:])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return d.counted(fmt.Errorf("delete %d items: %w", len(targets), err))
	}
	return d.counted(nil)
}

// LoadItems calls fn for every saved item, expired or not (ItemStore.Restore
// skips expired ones), in target order. The item's slices belong to fn.
// Records that cannot be decoded are skipped and counted in
// Stats().Corrupt; the error is for a missing bucket or a failed read.
//
// LoadItems runs in one read transaction: fn must not call the DB (a write
// from fn could deadlock), and other writers that need to grow the file
// wait until it returns. It is meant for startup.
func (d *DB) LoadItems(fn func(it Item, expires time.Time)) error {
	err := d.bolt.View(func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketItems)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			it, exp, err := decodeItem(k, v)
			if err != nil {
				d.corrupt.Add(1)
				return nil
			}
			fn(it, exp)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load items: %w", err)
	}
	return nil
}

// Peer records, version 1, 12 bytes:
//
//	offset  size  field
//	0       1     version, peerRecordV1
//	1       1     flags: bit 0 seed (BEP 33), other bits zero
//	2       2     port
//	4       8     expires, unix nanoseconds (int64)
const (
	peerRecordLen = 12
	peerFlagSeed  = 1
)

// appendPeerRecord appends the record of a peer to dst.
func appendPeerRecord(dst []byte, port uint16, seed bool, expires time.Time) []byte {
	var flags byte
	if seed {
		flags |= peerFlagSeed
	}
	dst = append(dst, peerRecordV1, flags)
	dst = binary.BigEndian.AppendUint16(dst, port)
	return binary.BigEndian.AppendUint64(dst, uint64(expires.UnixNano()))
}

// peerKey returns the key of the peer at ip for ih: ih ‖ IP (4 bytes for
// IPv4 and IPv4-mapped IPv6, else 16).
func peerKey(ih krpc.ID, ip netip.Addr) []byte {
	k := append(make([]byte, 0, krpc.IDLen+16), ih[:]...)
	if ip = ip.Unmap(); ip.Is4() {
		b := ip.As4()
		return append(k, b[:]...)
	}
	b := ip.As16()
	return append(k, b[:]...)
}

// peerRecordExpires returns the expiry of the peer record rec.
func peerRecordExpires(rec []byte) (int64, bool) {
	if len(rec) != peerRecordLen || rec[0] != peerRecordV1 || rec[1]&^peerFlagSeed != 0 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(rec[4:])), true
}

// decodePeer decodes the peer record rec stored under key. It never panics.
func decodePeer(key, rec []byte) (ih krpc.ID, addr netip.AddrPort, seed bool, expires time.Time, ok bool) {
	exp, ok := peerRecordExpires(rec)
	if !ok {
		return
	}
	var ip netip.Addr
	switch len(key) {
	case krpc.IDLen + 4:
		ip = netip.AddrFrom4([4]byte(key[krpc.IDLen:]))
	case krpc.IDLen + 16:
		ip = netip.AddrFrom16([16]byte(key[krpc.IDLen:]))
		if ip.Is4In6() {
			return ih, addr, false, expires, false // never written: keys are unmapped
		}
	default:
		return ih, addr, false, expires, false
	}
	addr = netip.AddrPortFrom(ip, binary.BigEndian.Uint16(rec[2:]))
	if !validAddr(addr) {
		return ih, netip.AddrPort{}, false, expires, false
	}
	copy(ih[:], key)
	return ih, addr, rec[1]&peerFlagSeed != 0, time.Unix(0, exp), true
}

// PutPeer saves that the peer at addr announced for ih, with its BEP 33 seed
// flag, and expires at expires. Peers are unique per (ih, IP), like in the
// PeerStore: the record replaces one for the same IP, whatever its port,
// unless that one expires later (then the call is a successful no-op, so a
// delayed save cannot roll back a newer one). IPv4-mapped IPv6 addresses
// are saved as IPv4.
//
// PutPeer returns once the record is durable; concurrent calls share one
// commit (see PutItem). An invalid address (no IP, unspecified IP or port
// 0) is an error.
func (d *DB) PutPeer(ih krpc.ID, addr netip.AddrPort, seed bool, expires time.Time) error {
	if !validAddr(addr) {
		return fmt.Errorf("put peer %s for %s: invalid address", addr, ih)
	}
	key := peerKey(ih, addr.Addr())
	rec := appendPeerRecord(make([]byte, 0, peerRecordLen), addr.Port(), seed, expires)
	exp := expires.UnixNano()
	err := d.bolt.Batch(func(tx *bbolt.Tx) error {
		d.countCommit(tx)
		b, err := bucket(tx, bucketPeers)
		if err != nil {
			return err
		}
		if oldExp, ok := peerRecordExpires(b.Get(key)); ok && oldExp > exp {
			return nil
		}
		return b.Put(key, rec)
	})
	if err != nil {
		return d.counted(fmt.Errorf("put peer %s for %s: %w", addr, ih, err))
	}
	return d.counted(nil)
}

// PeerKey names saved peers for DeletePeers: the peer of IH at Addr's IP
// (the port is ignored), or, if Addr is the zero netip.AddrPort, every peer
// of IH. It matches what PeerStore.SetOnRemove's hook is given.
type PeerKey struct {
	IH   krpc.ID
	Addr netip.AddrPort
}

// DeletePeers deletes the peers named by keys (absent ones are ignored),
// durably; concurrent calls share commits (see DeleteItems).
func (d *DB) DeletePeers(keys []PeerKey) error {
	if len(keys) == 0 {
		return nil
	}
	err := d.bolt.Batch(func(tx *bbolt.Tx) error {
		d.countCommit(tx)
		b, err := bucket(tx, bucketPeers)
		if err != nil {
			return err
		}
		for _, pk := range keys {
			if pk.Addr.Addr().IsValid() {
				if err := b.Delete(peerKey(pk.IH, pk.Addr.Addr())); err != nil {
					return err
				}
				continue
			}
			// The whole infohash: collect, then delete (deleting while a
			// cursor iterates may skip keys).
			var dead [][]byte
			c := b.Cursor()
			for k, _ := c.Seek(pk.IH[:]); k != nil && bytes.HasPrefix(k, pk.IH[:]); k, _ = c.Next() {
				dead = append(dead, bytes.Clone(k))
			}
			for _, k := range dead {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return d.counted(fmt.Errorf("delete %d peer keys: %w", len(keys), err))
	}
	return d.counted(nil)
}

// LoadPeers calls fn for every saved peer, expired or not
// (PeerStore.Restore skips expired ones), ordered by infohash. Records that
// cannot be decoded are skipped and counted in Stats().Corrupt; the error
// is for a missing bucket or a failed read. As for LoadItems, fn must not
// call the DB.
func (d *DB) LoadPeers(fn func(ih krpc.ID, addr netip.AddrPort, seed bool, expires time.Time)) error {
	err := d.bolt.View(func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketPeers)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			ih, addr, seed, exp, ok := decodePeer(k, v)
			if !ok {
				d.corrupt.Add(1)
				return nil
			}
			fn(ih, addr, seed, exp)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load peers: %w", err)
	}
	return nil
}

// DeleteExpired deletes the items and peers whose expiry is at or before
// now, and the records of those buckets that cannot be decoded (counted in
// Stats().CorruptRemoved, not in the results). The node calls it
// periodically; the in-memory stores expire on their own.
//
// It scans in read transactions of at most a few thousand records and
// deletes through batched commits, re-checking each record inside the
// write so that one refreshed meanwhile is kept. It is not atomic as a
// whole, and need not be: each deletion is.
func (d *DB) DeleteExpired(now time.Time) (items, peers int, err error) {
	t := now.UnixNano()
	itemExpiry := func(k, v []byte) (int64, bool) {
		if _, _, err := decodeItem(k, v); err != nil {
			return 0, false
		}
		_, _, exp, _, _ := itemRecordHeader(v)
		return exp, true
	}
	peerExpiry := func(k, v []byte) (int64, bool) {
		_, _, _, _, ok := decodePeer(k, v)
		exp, _ := peerRecordExpires(v)
		return exp, ok
	}
	if items, err = d.deleteExpired(bucketItems, t, itemExpiry); err != nil {
		return items, 0, err
	}
	peers, err = d.deleteExpired(bucketPeers, t, peerExpiry)
	return items, peers, err
}

// deleteExpired is DeleteExpired for the bucket name, with expiry giving
// the expiry of a record or false if it is corrupt.
func (d *DB) deleteExpired(name []byte, now int64, expiry func(k, v []byte) (int64, bool)) (int, error) {
	dead := func(k, v []byte) (expired, corrupt bool) {
		exp, ok := expiry(k, v)
		return ok && exp <= now, !ok
	}
	var start []byte // first key of the next chunk, nil for the first chunk
	total := 0
	for {
		var (
			doomed [][]byte
			next   []byte
		)
		err := d.bolt.View(func(tx *bbolt.Tx) error {
			b, err := bucket(tx, name)
			if err != nil {
				return err
			}
			c := b.Cursor()
			k, v := c.First()
			if start != nil {
				k, v = c.Seek(start)
			}
			for n := 0; k != nil; k, v = c.Next() {
				if n == dbScanChunk {
					next = bytes.Clone(k)
					break
				}
				n++
				if expired, corrupt := dead(k, v); expired || corrupt {
					doomed = append(doomed, bytes.Clone(k))
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("delete expired %s: %w", name, err)
		}
		if len(doomed) > 0 {
			var expired, corrupt int
			err = d.bolt.Batch(func(tx *bbolt.Tx) error {
				d.countCommit(tx)
				expired, corrupt = 0, 0 // Batch may run fn more than once
				b, err := bucket(tx, name)
				if err != nil {
					return err
				}
				for _, k := range doomed {
					v := b.Get(k)
					if v == nil {
						continue
					}
					e, c := dead(k, v)
					if !e && !c {
						continue // refreshed since the scan
					}
					if err := b.Delete(k); err != nil {
						return err
					}
					if e {
						expired++
					} else {
						corrupt++
					}
				}
				return nil
			})
			if err != nil {
				return total, d.counted(fmt.Errorf("delete expired %s: %w", name, err))
			}
			_ = d.counted(nil)
			total += expired
			d.corruptRemoved.Add(uint64(corrupt))
		}
		if next == nil {
			return total, nil
		}
		start = next
	}
}
