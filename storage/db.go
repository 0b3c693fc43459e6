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
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
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
				return fmt.Errorf("create bucket %s: %w", name, incompatible(err))
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keySchema); {
		case v == nil:
			if err := meta.Put(keySchema, []byte{dbSchema}); err != nil {
				return fmt.Errorf("write schema version: %w", incompatible(err))
			}
			return nil
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

// incompatible marks bbolt's ErrIncompatibleValue as corruption: one of
// our keys holds a value where a bucket belongs, or a bucket where a
// value belongs, which no file dhtd wrote has. Other errors pass as they
// are.
func incompatible(err error) error {
	if errors.Is(err, bolterrors.ErrIncompatibleValue) {
		return fmt.Errorf("%w: %w", err, ErrDBCorrupt)
	}
	return err
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
