package storage

// Checking and salvaging a database file without bbolt.
//
// bbolt trusts its file: a damaged page makes it panic (an invalid freelist,
// a page freed twice), or read outside its memory map (a fault Go cannot
// recover from), or follow a cycle of pages for ever. So before bbolt opens
// a file, fileWalker reads it with bounds-checked reads (os.File.ReadAt, a
// page at a time, never the whole file) and checks what bbolt relies on:
// the meta pages (magic, version, checksum), that the high-water mark lies
// within the file, that each page of the tree is read once, has the right
// id, type and element bounds and keeps its keys in order, that the
// freelist lists each page once, and that every page is either reachable
// or free. It checks our records too (their checksums and shapes). Only a
// file that passes is given to bbolt.
//
// The same walker salvages a file that failed: it visits the pages it can
// read, each at most once, skips the rest, and hands back the records that
// decode, bounded in number.
//
// The layout read here is bbolt's file format (version 2), little-endian:
// a page is a 16-byte header (id u64, flags u16, count u16, overflow u32)
// followed by its elements; a meta page holds magic u32, version u32, page
// size u32, flags u32, the root bucket (root page u64, sequence u64),
// freelist page u64, high-water mark u64, txid u64 and an FNV-1a 64
// checksum of the bytes before it.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"

	"go.etcd.io/bbolt"

	"github.com/dhtd/dhtd/krpc"
)

// bbolt file format constants.
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	boltPageHeader   = 16
	boltElemSize     = 16 // branch and leaf elements alike
	boltBucketHeader = 16 // root page u64, sequence u64
	boltMetaLen      = 64 // meta fields, checksum included
	boltNoFreelist   = ^uint64(0)

	boltFlagBranch   = 0x01
	boltFlagLeaf     = 0x02
	boltFlagMeta     = 0x04
	boltFlagFreelist = 0x10
	boltLeafBucket   = 0x01 // leaf element flag: the value is a bucket
)

// Walker bounds.
const (
	// maxPageSpan bounds the bytes of one page with its overflow pages.
	// Our records are a few kilobytes at most, so a longer page is damage.
	maxPageSpan = 1 << 20
	// maxTreeDepth bounds the nesting of branch pages and buckets.
	maxTreeDepth = 64
)

// boltMeta is a decoded meta page.
type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) are in use or free
	txid     uint64
}

// parseBoltMeta decodes the meta page at the start of b and reports
// whether it is valid (magic, version, checksum, page size).
func parseBoltMeta(b []byte) (boltMeta, bool) {
	if len(b) < boltPageHeader+boltMetaLen {
		return boltMeta{}, false
	}
	flags := binary.LittleEndian.Uint16(b[8:])
	m := b[boltPageHeader : boltPageHeader+boltMetaLen]
	h := fnv.New64a()
	_, _ = h.Write(m[:56])
	if flags != boltFlagMeta || binary.LittleEndian.Uint32(m) != boltMagic ||
		binary.LittleEndian.Uint32(m[4:]) != boltVersion || binary.LittleEndian.Uint64(m[56:]) != h.Sum64() {
		return boltMeta{}, false
	}
	meta := boltMeta{
		pageSize: binary.LittleEndian.Uint32(m[8:]),
		root:     binary.LittleEndian.Uint64(m[16:]),
		freelist: binary.LittleEndian.Uint64(m[32:]),
		pgid:     binary.LittleEndian.Uint64(m[40:]),
		txid:     binary.LittleEndian.Uint64(m[48:]),
	}
	if ps := meta.pageSize; ps < 512 || ps > 1<<16 || ps&(ps-1) != 0 {
		return boltMeta{}, false
	}
	return meta, true
}

// fileWalker reads a bbolt file page by page. In strict mode it stops at
// the first problem (err); otherwise it counts problems and goes on.
type fileWalker struct {
	f      io.ReaderAt
	size   int64
	meta   boltMeta
	strict bool

	elems    int64                    // elements left to visit (see newFileWalker)
	err      error                    // first problem
	problems int                      // problems seen (lenient mode goes on after them)
	seen     []byte                   // bitset of the pages visited
	free     []byte                   // bitset of the pages the freelist names
	bufs     [maxTreeDepth + 2][]byte // leaf page buffers, by depth
}

// newFileWalker reads the meta pages of f, size bytes long, and chooses
// the one bbolt would (the valid one with the higher txid). It fails,
// wrapping ErrDBCorrupt, if neither is valid or the chosen one claims more
// pages than the file holds (a truncated file).
func newFileWalker(f io.ReaderAt, size int64, strict bool) (*fileWalker, error) {
	read := func(off int64) (boltMeta, bool) {
		buf := make([]byte, boltPageHeader+boltMetaLen)
		if off+int64(len(buf)) > size {
			return boltMeta{}, false
		}
		if _, err := f.ReadAt(buf, off); err != nil {
			return boltMeta{}, false
		}
		return parseBoltMeta(buf)
	}
	m0, ok0 := read(0)
	ps := int64(os.Getpagesize())
	if ok0 {
		ps = int64(m0.pageSize)
	}
	m1, ok1 := read(ps)
	var meta boltMeta
	switch {
	case ok0 && ok1:
		meta = m0
		if m1.txid > m0.txid {
			meta = m1
		}
	case ok0:
		meta = m0
	case ok1:
		meta = m1
	default:
		return nil, fmt.Errorf("no valid meta page in %d bytes: %w", size, ErrDBCorrupt)
	}
	pages := size / int64(meta.pageSize)
	if !strict && meta.pgid > uint64(pages) {
		meta.pgid = uint64(pages) // salvage what the file still holds
	}
	if meta.pgid < 2 || meta.pgid > uint64(pages) {
		return nil, fmt.Errorf("meta claims %d pages of %d bytes, the file holds %d (%d bytes; truncated?): %w",
			meta.pgid, meta.pageSize, pages, size, ErrDBCorrupt)
	}
	return &fileWalker{
		f: f, size: size, meta: meta, strict: strict,
		// Each element of a sound file has its own 16-byte header in the
		// file; damaged inline buckets could make elements overlap and
		// be visited again and again.
		elems: size/boltElemSize + 1024,
		seen:  make([]byte, (meta.pgid+7)/8),
		free:  make([]byte, (meta.pgid+7)/8),
	}, nil
}

// problem records a problem and reports whether the walk must stop.
func (w *fileWalker) problem(format string, args ...any) bool {
	w.problems++
	if w.err == nil {
		w.err = fmt.Errorf(format+": %w", append(args, ErrDBCorrupt)...)
	}
	return w.strict
}

func bitGet(b []byte, i uint64) bool { return b[i/8]&(1<<(i%8)) != 0 }
func bitSet(b []byte, i uint64)      { b[i/8] |= 1 << (i % 8) }

// page reads page id with its overflow pages, checking its header, and
// marks them visited. It returns nil (after recording a problem) for a page
// out of range, already visited, unreadable, or not of a type in want. A
// leaf page is read into the walker's buffer for depth, valid until the
// next leaf page of that depth; other pages get their own.
func (w *fileWalker) page(id uint64, want uint16, depth int) []byte {
	if id < 2 || id >= w.meta.pgid {
		w.problem("page %d out of range [2, %d)", id, w.meta.pgid)
		return nil
	}
	if bitGet(w.seen, id) {
		w.problem("page %d referenced twice", id)
		return nil
	}
	ps := int64(w.meta.pageSize)
	var hdr [boltPageHeader]byte
	if _, err := w.f.ReadAt(hdr[:], int64(id)*ps); err != nil {
		w.problem("page %d: read: %v", id, err)
		return nil
	}
	flags := binary.LittleEndian.Uint16(hdr[8:])
	overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
	switch {
	case binary.LittleEndian.Uint64(hdr[:]) != id:
		w.problem("page %d: header names page %d", id, binary.LittleEndian.Uint64(hdr[:]))
		return nil
	case flags&want == 0 || flags&(flags-1) != 0:
		w.problem("page %d: unexpected type %#x", id, flags)
		return nil
	case overflow >= w.meta.pgid-id || (overflow+1)*uint64(ps) > maxPageSpan:
		w.problem("page %d: overflow of %d pages", id, overflow)
		return nil
	}
	for i := id; i <= id+overflow; i++ {
		if bitGet(w.seen, i) {
			w.problem("page %d: overflow page %d referenced twice", id, i)
			return nil
		}
	}
	span := (overflow + 1) * uint64(ps)
	var buf []byte
	if flags == boltFlagLeaf && depth < len(w.bufs) {
		if uint64(cap(w.bufs[depth])) < span {
			w.bufs[depth] = make([]byte, span)
		}
		buf = w.bufs[depth][:span]
	} else {
		buf = make([]byte, span)
	}
	if _, err := w.f.ReadAt(buf, int64(id)*ps); err != nil {
		w.problem("page %d: read: %v", id, err)
		return nil
	}
	for i := id; i <= id+overflow; i++ {
		bitSet(w.seen, i)
	}
	return buf
}

// elements returns the count elements of page p (a branch or leaf page
// image, header included), as the key, the value (leaf) and the flags or
// child page id, checking that each lies within p and that keys ascend.
// ok is false if the page is damaged (elements up to the damage are still
// returned).
func elements(p []byte, leaf bool) (keys, vals [][]byte, extra []uint64, ok bool) {
	count := int(binary.LittleEndian.Uint16(p[10:]))
	if boltPageHeader+count*boltElemSize > len(p) {
		return nil, nil, nil, false
	}
	for i := range count {
		e := p[boltPageHeader+i*boltElemSize:]
		base := uint64(boltPageHeader + i*boltElemSize)
		var pos, ksize, vsize, x uint64
		if leaf {
			x = uint64(binary.LittleEndian.Uint32(e))
			pos = uint64(binary.LittleEndian.Uint32(e[4:]))
			ksize = uint64(binary.LittleEndian.Uint32(e[8:]))
			vsize = uint64(binary.LittleEndian.Uint32(e[12:]))
		} else {
			pos = uint64(binary.LittleEndian.Uint32(e))
			ksize = uint64(binary.LittleEndian.Uint32(e[4:]))
			x = binary.LittleEndian.Uint64(e[8:])
		}
		start := base + pos
		end := start + ksize + vsize
		if pos == 0 || end > uint64(len(p)) {
			return keys, vals, extra, false
		}
		k := p[start : start+ksize]
		if len(keys) > 0 && bytes.Compare(keys[len(keys)-1], k) >= 0 {
			return keys, vals, extra, false
		}
		keys = append(keys, k)
		vals = append(vals, p[start+ksize:end])
		extra = append(extra, x)
	}
	return keys, vals, extra, true
}

// leafFunc is called with each key and value of a bucket's leaves (not
// nested buckets); it returns false to stop the walk of that bucket.
type leafFunc func(k, v []byte) bool

// walkBucket walks the bucket whose header is hdr (its root page, or an
// inline page after the header). nested is called for each nested bucket
// with its header; leaf for each key and value. It returns false if the
// walk must stop (strict mode after a problem, or leaf asked to stop).
func (w *fileWalker) walkBucket(hdr []byte, depth int, nested func(name, hdr []byte, depth int) bool, leaf leafFunc) bool {
	if len(hdr) < boltBucketHeader {
		return !w.problem("bucket header of %d bytes", len(hdr))
	}
	root := binary.LittleEndian.Uint64(hdr)
	if root == 0 { // inline bucket: a leaf page stored in the value
		inline := hdr[boltBucketHeader:]
		if len(inline) < boltPageHeader || binary.LittleEndian.Uint16(inline[8:]) != boltFlagLeaf {
			return !w.problem("inline bucket: bad page")
		}
		return w.walkLeaf(inline, depth, nested, leaf)
	}
	return w.walkPage(root, depth, nested, leaf)
}

// walkPage walks the subtree of page id.
func (w *fileWalker) walkPage(id uint64, depth int, nested func(name, hdr []byte, depth int) bool, leaf leafFunc) bool {
	if depth > maxTreeDepth {
		return !w.problem("page %d: tree deeper than %d", id, maxTreeDepth)
	}
	p := w.page(id, boltFlagBranch|boltFlagLeaf, depth)
	if p == nil {
		return !w.strict
	}
	if binary.LittleEndian.Uint16(p[8:]) == boltFlagLeaf {
		return w.walkLeaf(p, depth, nested, leaf)
	}
	_, _, children, ok := elements(p, false)
	if !ok && w.problem("branch page %d: bad elements", id) {
		return false
	}
	if w.elems -= int64(len(children)); w.elems < 0 {
		w.problem("more elements than the file can hold")
		return false
	}
	for _, c := range children {
		if !w.walkPage(c, depth+1, nested, leaf) {
			return false
		}
	}
	return true
}

// walkLeaf walks the elements of the leaf page image p.
func (w *fileWalker) walkLeaf(p []byte, depth int, nested func(name, hdr []byte, depth int) bool, leaf leafFunc) bool {
	keys, vals, flags, ok := elements(p, true)
	if !ok && w.problem("leaf page %d: bad elements", binary.LittleEndian.Uint64(p)) {
		return false
	}
	if w.elems -= int64(len(keys)); w.elems < 0 {
		w.problem("more elements than the file can hold")
		return false
	}
	for i, k := range keys {
		switch {
		case flags[i]&boltLeafBucket != 0:
			if !nested(k, vals[i], depth+1) {
				return false
			}
		case flags[i] != 0:
			if w.problem("leaf element flags %#x", flags[i]) {
				return false
			}
		default:
			if !leaf(k, vals[i]) {
				return false
			}
		}
	}
	return true
}

// readFreelist reads the freelist page and marks the pages it lists.
func (w *fileWalker) readFreelist() bool {
	if w.meta.freelist == boltNoFreelist {
		return true // bbolt rebuilds it from the tree
	}
	p := w.page(w.meta.freelist, boltFlagFreelist, 0)
	if p == nil {
		return !w.strict
	}
	count := uint64(binary.LittleEndian.Uint16(p[10:]))
	ids := p[boltPageHeader:]
	if count == 0xFFFF { // the real count is the first id slot
		if len(ids) < 8 {
			return !w.problem("freelist page: too short")
		}
		count, ids = binary.LittleEndian.Uint64(ids), ids[8:]
	}
	if count > uint64(len(ids)/8) {
		return !w.problem("freelist of %d pages in %d bytes", count, len(ids))
	}
	for i := range count {
		id := binary.LittleEndian.Uint64(ids[i*8:])
		switch {
		case id < 2 || id >= w.meta.pgid:
			if w.problem("freelist: page %d out of range", id) {
				return false
			}
		case bitGet(w.free, id):
			if w.problem("freelist: page %d listed twice", id) {
				return false
			}
		default:
			bitSet(w.free, id)
		}
	}
	return true
}

// dbRecords are the callbacks of a walk of our buckets; a nil one skips
// its bucket.
type dbRecords struct {
	meta, nodes, items, peers leafFunc
}

// walk reads the freelist and then the tree from the root bucket, calling
// recs for the records of our buckets. Unknown buckets are walked (their
// pages count as reachable) but not reported. In strict mode it also checks
// that every page is reachable or free, as bbolt's Tx.Check does.
func (w *fileWalker) walk(recs dbRecords) error {
	bitSet(w.seen, 0)
	bitSet(w.seen, 1)
	if !w.readFreelist() {
		return w.err
	}
	skip := func(k, v []byte) bool { return true }
	var nested func(name, hdr []byte, depth int) bool
	nested = func(name, hdr []byte, depth int) bool {
		if depth > maxTreeDepth {
			return !w.problem("buckets nested deeper than %d", maxTreeDepth)
		}
		fn := skip
		if depth == 1 {
			for _, b := range []struct {
				name []byte
				fn   leafFunc
			}{{bucketMeta, recs.meta}, {bucketNodes, recs.nodes}, {bucketItems, recs.items}, {bucketPeers, recs.peers}} {
				if bytes.Equal(name, b.name) && b.fn != nil {
					fn = b.fn
				}
			}
		}
		return w.walkBucket(hdr, depth, nested, fn)
	}
	var root [boltBucketHeader]byte
	binary.LittleEndian.PutUint64(root[:], w.meta.root)
	if !w.walkBucket(root[:], 0, nested, skip) || !w.strict {
		return w.err
	}
	for id := range w.meta.pgid {
		reached, free := bitGet(w.seen, id), bitGet(w.free, id)
		switch {
		case reached && free:
			w.problem("page %d: both in use and free", id)
			return w.err
		case !reached && !free:
			w.problem("page %d: neither in use nor free", id)
			return w.err
		}
	}
	return w.err
}

// checkRecords returns the record callbacks of a strict walk: every record
// of our buckets must decode. A schema other than ours is not damage: it
// is saved in *schema for the caller to refuse the file as it is.
func checkRecords(w *fileWalker, schema *[]byte) dbRecords {
	bad := func(what string, k []byte) bool { return !w.problem("%s record %x does not decode", what, k) }
	return dbRecords{
		meta: func(k, v []byte) bool {
			switch {
			case bytes.Equal(k, keySchema):
				*schema = bytes.Clone(v)
			case bytes.Equal(k, keyNodeID) && len(v) != krpc.IDLen:
				return !w.problem("node id of %d bytes", len(v))
			}
			return true
		},
		nodes: func(k, v []byte) bool {
			if _, ok := decodeNode(k, v); !ok {
				return bad("node", k)
			}
			return true
		},
		items: func(k, v []byte) bool {
			if len(v) > maxItemRecordLen {
				return bad("item", k)
			}
			if _, _, err := decodeItem(k, v); err != nil {
				return bad("item", k)
			}
			return true
		},
		peers: func(k, v []byte) bool {
			if _, _, _, _, ok := decodePeer(k, v); !ok {
				return bad("peer", k)
			}
			return true
		},
	}
}

// maxItemRecordLen bounds an item record: the largest valid item (v of
// MaxValueLen, salt of MaxSaltLen, k and sig) with its header, length
// prefixes and checksum.
const maxItemRecordLen = itemHeaderLen + MaxValueLen + MaxSaltLen + 32 + 64 + 4*binary.MaxVarintLen64 + crcLen

// verifyDBFile checks the file at path strictly (see fileWalker), holding
// its lock meanwhile so that no other process writes it under us. The
// error wraps ErrDBCorrupt for a damaged or empty file, ErrDBLocked if
// another process holds it.
func verifyDBFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	ok, err := lockFile(f, dbLockTimeout)
	switch {
	case err != nil:
		return fmt.Errorf("lock: %w", err)
	case !ok:
		return fmt.Errorf("%w (waited %s for its lock)", ErrDBLocked, dbLockTimeout)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	switch {
	case st.IsDir():
		return errors.New("is a directory")
	case !st.Mode().IsRegular():
		return fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	if st.Size() == 0 {
		return fmt.Errorf("empty file: %w", ErrDBCorrupt)
	}
	w, err := newFileWalker(f, st.Size(), true)
	if err != nil {
		return err
	}
	var schema []byte
	err = w.walk(checkRecords(w, &schema))
	if schema != nil && (len(schema) != 1 || schema[0] != dbSchema) {
		// Records of another schema need not decode as ours.
		return fmt.Errorf("%w: version %x (this dhtd reads %d)", ErrDBSchema, schema, dbSchema)
	}
	return err
}

// boltCheck runs bbolt's consistency check (Tx.Check) and returns its
// first finding, wrapping ErrDBCorrupt. A panic inside bbolt is turned
// into such an error too.
func boltCheck(bdb *bbolt.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt check: panic: %v: %w", r, ErrDBCorrupt)
		}
	}()
	return bdb.View(func(tx *bbolt.Tx) error {
		var first error
		for e := range tx.Check() {
			if first == nil {
				first = fmt.Errorf("bbolt check: %v: %w", e, ErrDBCorrupt)
			}
		}
		return first
	})
}

// RemoveEmptyDB removes the database file at path if it is empty (zero
// bytes), holding its lock meanwhile, so that the file of another process
// that is just creating it is never removed: that fails with ErrDBLocked.
// It reports whether it removed the file.
func RemoveEmptyDB(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	ok, err := lockFile(f, dbLockTimeout)
	switch {
	case err != nil:
		return false, fmt.Errorf("lock %s: %w", path, err)
	case !ok:
		return false, fmt.Errorf("%s: %w (waited %s for its lock)", path, ErrDBLocked, dbLockTimeout)
	}
	st, err := f.Stat()
	if err != nil || st.Size() != 0 {
		return false, err
	}
	return true, os.Remove(path)
}
