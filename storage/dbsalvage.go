package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"

	"go.etcd.io/bbolt"

	"github.com/dhtd/dhtd/krpc"
)

// Salvage defaults (SalvageLimits' zero fields).
const (
	DefaultSalvageNodes = 8192
	DefaultSalvageItems = 1 << 16
	DefaultSalvagePeers = 1 << 18
	// salvageBatch is the records written per transaction while salvaging.
	salvageBatch = 512
)

// SalvageLimits bound what SalvageDB copies of each kind; zero fields take
// the Default* values. Items and peers past the limit are left behind (the
// stores would evict most of them at load anyway).
type SalvageLimits struct {
	Nodes, Items, Peers int
}

// SalvageReport says what SalvageDB recovered.
type SalvageReport struct {
	// NodeID reports whether the node id was recovered.
	NodeID bool
	// Nodes, Items and Peers count the records copied.
	Nodes, Items, Peers int
	// Damaged counts the damaged pages and records passed over.
	Damaged int
	// Orphans counts the leaf pages read outside the tree (see
	// scanOrphans).
	Orphans int
	// Truncated reports whether a limit was reached.
	Truncated bool
}

// SalvageDB copies what can still be read from the damaged database file
// from into to (a new, empty DB): the node id first, then the routing
// table's nodes, then the items, then the peers, each within lim. It reads
// from without bbolt (see dbfile.go), a page at a time, visiting each page
// at most once, so a damaged file can make it neither panic, nor loop, nor
// grow its memory beyond a batch of records. Only records that decode are
// copied.
//
// The error is for a file that cannot be read at all (missing, or without
// a valid meta page), then nothing was copied, or for a failed write to to.
func SalvageDB(from string, to *DB, lim SalvageLimits) (SalvageReport, error) {
	if lim.Nodes <= 0 {
		lim.Nodes = DefaultSalvageNodes
	}
	if lim.Items <= 0 {
		lim.Items = DefaultSalvageItems
	}
	if lim.Peers <= 0 {
		lim.Peers = DefaultSalvagePeers
	}
	s := salvager{to: to, lim: lim, nodeSet: make(map[krpc.NodeInfo]bool)}
	// One walk per kind, in order of importance, so that damage met while
	// reading the items cannot cost the node id or the table.
	if err := salvageWalk(from, &s.rep, dbRecords{meta: s.meta}); err != nil {
		return s.rep, err
	}
	_ = salvageWalk(from, &s.rep, dbRecords{nodes: s.node})
	_ = salvageWalk(from, &s.rep, dbRecords{items: s.item})
	_ = salvageWalk(from, &s.rep, dbRecords{peers: s.peer})
	if s.rep.Damaged > 0 {
		// Records the damaged tree no longer reaches.
		_ = scanOrphans(from, &s.rep, dbRecords{meta: s.meta, nodes: s.node, items: s.item, peers: s.peer})
	}
	if s.id != nil {
		if err := to.SetNodeID(krpc.ID(s.id)); err != nil {
			return s.rep, fmt.Errorf("salvage: %w", err)
		}
		s.rep.NodeID = true
	}
	if len(s.nodes) > 0 {
		if err := to.SaveNodes(s.nodes); err != nil {
			return s.rep, fmt.Errorf("salvage: %w", err)
		}
		s.rep.Nodes = len(s.nodes)
	}
	s.flush(bucketItems, &s.items, &s.rep.Items)
	s.flush(bucketPeers, &s.peers, &s.rep.Peers)
	return s.rep, s.err
}

// salvager collects what SalvageDB copies; its methods are the record
// callbacks of the walks. Items and peers go to the DB in batches.
type salvager struct {
	to  *DB
	lim SalvageLimits
	rep SalvageReport
	err error // first failed write

	id           []byte
	nodes        []krpc.NodeInfo
	nodeSet      map[krpc.NodeInfo]bool
	items, peers [][2][]byte // batches not yet written
}

func (s *salvager) meta(k, v []byte) bool {
	if s.id == nil && bytes.Equal(k, keyNodeID) && len(v) == krpc.IDLen {
		s.id = bytes.Clone(v)
	}
	return true
}

func (s *salvager) node(k, v []byte) bool {
	n, ok := decodeNode(k, v)
	switch {
	case !ok:
		s.rep.Damaged++
	case s.nodeSet[n]:
	case len(s.nodes) == s.lim.Nodes:
		s.rep.Truncated = true
	default:
		s.nodeSet[n] = true
		s.nodes = append(s.nodes, n)
	}
	return true
}

func (s *salvager) item(k, v []byte) bool {
	if len(v) > maxItemRecordLen {
		s.rep.Damaged++
		return true
	}
	if _, _, err := decodeItem(k, v); err != nil {
		s.rep.Damaged++
		return true
	}
	return s.add(bucketItems, &s.items, &s.rep.Items, s.lim.Items, k, v)
}

func (s *salvager) peer(k, v []byte) bool {
	if _, _, _, _, ok := decodePeer(k, v); !ok {
		s.rep.Damaged++
		return true
	}
	return s.add(bucketPeers, &s.peers, &s.rep.Peers, s.lim.Peers, k, v)
}

// add queues a record for bucket name, writing the batch when full. It
// stops the walk only after a failed write.
func (s *salvager) add(name []byte, batch *[][2][]byte, count *int, limit int, k, v []byte) bool {
	if *count+len(*batch) >= limit {
		s.rep.Truncated = true
		return true
	}
	*batch = append(*batch, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
	if len(*batch) >= salvageBatch {
		s.flush(name, batch, count)
	}
	return s.err == nil
}

// flush writes a batch (see putRaw).
func (s *salvager) flush(name []byte, batch *[][2][]byte, count *int) {
	if len(*batch) == 0 || s.err != nil {
		return
	}
	if err := s.to.putRaw(name, *batch); err != nil {
		s.err = fmt.Errorf("salvage: %w", err)
		return
	}
	*count += len(*batch)
	*batch = (*batch)[:0]
}

// openLenientWalker opens the file at path for a lenient walk (damage is
// passed over, not refused); closeFile closes the file.
func openLenientWalker(path string) (w *fileWalker, closeFile func() error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("salvage: %w", err)
	}
	st, err := f.Stat()
	if err == nil {
		w, err = newFileWalker(f, st.Size(), false)
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("salvage: %w", err)
	}
	return w, f.Close, nil
}

// salvageWalk walks the file at path leniently with recs, adding the
// damaged pages it passed over to rep. A panic (there should be none: every
// read is bounds-checked) ends the walk as damage.
func salvageWalk(path string, rep *SalvageReport, recs dbRecords) (err error) {
	w, closeFile, err := openLenientWalker(path)
	if err != nil {
		return err
	}
	defer closeFile()
	defer func() {
		if r := recover(); r != nil {
			rep.Damaged++
			err = fmt.Errorf("salvage: panic: %v: %w", r, ErrDBCorrupt)
		}
	}()
	_ = w.walk(recs)
	rep.Damaged += w.problems
	return nil
}

// putRaw writes the key/value pairs kvs into the bucket name in one
// transaction, durably, except where the record stored under the key is
// newer (recordNewer). The values are records already checked to decode.
func (d *DB) putRaw(name []byte, kvs [][2][]byte) error {
	err := d.bolt.Update(func(tx *bbolt.Tx) error {
		d.countCommit(tx)
		b, err := bucket(tx, name)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			if old := b.Get(kv[0]); old != nil && recordNewer(name, old, kv[1]) {
				continue
			}
			if err := b.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return d.counted(fmt.Errorf("write %d %s records: %w", len(kvs), name, err))
	}
	return d.counted(nil)
}

// recordNewer reports whether the record old of bucket name is newer than
// rec, by the rules of PutItem and PutPeer, so that a stale copy found in a
// free page cannot replace it.
func recordNewer(name, old, rec []byte) bool {
	if bytes.Equal(name, bucketPeers) {
		o, ok1 := peerRecordExpires(old)
		n, ok2 := peerRecordExpires(rec)
		return ok1 && ok2 && o > n
	}
	om, oseq, oexp, _, err1 := itemRecordHeader(old)
	nm, nseq, nexp, _, err2 := itemRecordHeader(rec)
	return err1 == nil && err2 == nil && om == nm && (oseq > nseq || (oseq == nseq && oexp >= nexp))
}

// scanOrphans reads, in file order, the leaf pages of the file at path
// that the tree no longer reaches (after damage to a branch page, or a
// truncation that took the root), and calls recs with the records found
// there by their shape: the node id by its key, nodes, items and peers by
// what decodes. Records of free pages may be stale: the caller merges them
// keeping the newer (recordNewer).
func scanOrphans(path string, rep *SalvageReport, recs dbRecords) (err error) {
	w, closeFile, err := openLenientWalker(path)
	if err != nil {
		return err
	}
	defer closeFile()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("salvage: panic: %v: %w", r, ErrDBCorrupt)
		}
	}()
	_ = w.walk(dbRecords{}) // marks the reachable pages, already salvaged
	ps := uint64(w.meta.pageSize)
	var (
		hdr [boltPageHeader]byte
		buf []byte
	)
	for id := uint64(2); id < w.meta.pgid; id++ {
		if bitGet(w.seen, id) {
			continue
		}
		if _, err := w.f.ReadAt(hdr[:], int64(id*ps)); err != nil {
			continue
		}
		overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
		if binary.LittleEndian.Uint64(hdr[:]) != id || binary.LittleEndian.Uint16(hdr[8:]) != boltFlagLeaf ||
			overflow >= w.meta.pgid-id || (overflow+1)*ps > maxPageSpan {
			continue
		}
		if span := (overflow + 1) * ps; uint64(cap(buf)) < span {
			buf = make([]byte, span)
		}
		p := buf[:(overflow+1)*ps]
		if _, err := w.f.ReadAt(p, int64(id*ps)); err != nil {
			continue
		}
		keys, vals, flags, _ := elements(p, true)
		inPage := len(keys)
		for i := 0; i < len(keys); i++ {
			k, v := keys[i], vals[i]
			var fn leafFunc
			switch {
			case flags[i] == boltLeafBucket:
				// An inline bucket of the page (the meta bucket is
				// one): its records follow. Not those of buckets
				// inline in it, which our layout never has.
				if i < inPage && len(v) > boltBucketHeader+boltPageHeader && binary.LittleEndian.Uint64(v) == 0 {
					ik, iv, ifl, _ := elements(v[boltBucketHeader:], true)
					keys, vals, flags = append(keys, ik...), append(vals, iv...), append(flags, ifl...)
				}
				continue
			case flags[i] != 0:
				continue
			case bytes.Equal(k, keyNodeID):
				fn = recs.meta
			case len(v) == 0:
				fn = recs.nodes
			case len(v) == peerRecordLen:
				fn = recs.peers
			default:
				fn = recs.items
			}
			if fn != nil && !fn(k, v) {
				return nil
			}
		}
		rep.Orphans++
		id += overflow
	}
	return nil
}
