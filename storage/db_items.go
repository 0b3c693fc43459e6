package storage

// BEP 44 items in a DB (bucket items).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"time"

	"go.etcd.io/bbolt"

	"github.com/dhtd/dhtd/krpc"
)

// Item records, version 1:
//
//	offset  size  field
//	0       1     version, itemRecordV1
//	1       1     flags: bit 0 mutable, bit 1 source, other bits zero
//	2       8     seq (int64; 0 for immutable items)
//	10      8     expires, unix nanoseconds (int64)
//	18      ...   k, salt, sig, v: each a uvarint length then the bytes
//	        8     with the source flag: the network the item is charged
//	              to (the store's per-source quota): family 4 or 6 in the
//	              top byte, then the /24 or /48 prefix, right-aligned
//	end-4   4     CRC-32C (Castagnoli) of all the bytes before it
//
// Records written before the source was kept have no source flag; their
// items are restored as of unknown origin.
//
// The checksum catches damage that bbolt, which checksums only its meta
// pages, would not; decodeItem also checks that the item's target is the
// record's key and that the item has a valid shape.
const (
	itemHeaderLen = 18
	itemFlagMut   = 1
	itemFlagSrc   = 2
	itemFlags     = itemFlagMut | itemFlagSrc
	crcLen        = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendItemRecord appends the record of it, charged to src and expiring
// at expires, to dst.
func appendItemRecord(dst []byte, it *Item, src sourceKey, expires time.Time) []byte {
	start := len(dst)
	var flags byte
	if it.Mutable {
		flags |= itemFlagMut
	}
	if src != 0 {
		flags |= itemFlagSrc
	}
	dst = append(dst, itemRecordV1, flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(it.Seq))
	dst = binary.BigEndian.AppendUint64(dst, uint64(expires.UnixNano()))
	for _, f := range [][]byte{it.K, it.Salt, it.Sig, it.V} {
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	if src != 0 {
		dst = binary.BigEndian.AppendUint64(dst, uint64(src))
	}
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// itemRecordHeader checks the version, flags and checksum of the item
// record rec and returns its fixed fields and the rest of its body.
func itemRecordHeader(rec []byte) (flags byte, seq, expires int64, body []byte, err error) {
	if len(rec) < itemHeaderLen+crcLen {
		return 0, 0, 0, nil, fmt.Errorf("%d bytes, too short", len(rec))
	}
	n := len(rec) - crcLen
	if crc32.Checksum(rec[:n], castagnoli) != binary.BigEndian.Uint32(rec[n:]) {
		return 0, 0, 0, nil, errors.New("checksum mismatch")
	}
	if rec[0] != itemRecordV1 {
		return 0, 0, 0, nil, fmt.Errorf("unknown version %d", rec[0])
	}
	if rec[1]&^itemFlags != 0 {
		return 0, 0, 0, nil, fmt.Errorf("unknown flags %#x", rec[1])
	}
	seq = int64(binary.BigEndian.Uint64(rec[2:]))
	expires = int64(binary.BigEndian.Uint64(rec[10:]))
	return rec[1], seq, expires, rec[itemHeaderLen:n], nil
}

// decodeItem decodes the item record rec stored under key. The item's
// slices are copies (one allocation), not aliases of rec. It never panics:
// every length is checked.
func decodeItem(key, rec []byte) (Item, time.Time, error) {
	it, _, exp, err := decodeItemRecord(key, rec)
	return it, exp, err
}

// decodeItemRecord is decodeItem that also returns the network the item
// is charged to (the unknown key for a record without one).
func decodeItemRecord(key, rec []byte) (Item, sourceKey, time.Time, error) {
	if len(key) != krpc.IDLen {
		return Item{}, 0, time.Time{}, fmt.Errorf("key of %d bytes", len(key))
	}
	flags, seq, exp, body, err := itemRecordHeader(rec)
	if err != nil {
		return Item{}, 0, time.Time{}, err
	}
	var src sourceKey
	if flags&itemFlagSrc != 0 {
		if len(body) < 8 {
			return Item{}, 0, time.Time{}, errors.New("source missing")
		}
		src = sourceKey(binary.BigEndian.Uint64(body[len(body)-8:]))
		if src == 0 || !src.valid() {
			return Item{}, 0, time.Time{}, fmt.Errorf("invalid source %#x", uint64(src))
		}
		body = body[:len(body)-8]
	}
	mutable := flags&itemFlagMut != 0
	body = bytes.Clone(body)
	var fields [4][]byte // k, salt, sig, v
	for i := range fields {
		l, n := binary.Uvarint(body)
		if n <= 0 || l > uint64(len(body)-n) {
			return Item{}, 0, time.Time{}, fmt.Errorf("field %d: bad length", i)
		}
		body = body[n:]
		if l > 0 {
			fields[i] = body[:l:l]
		}
		body = body[l:]
	}
	if len(body) != 0 {
		return Item{}, 0, time.Time{}, fmt.Errorf("%d trailing bytes", len(body))
	}
	it := Item{K: fields[0], Salt: fields[1], Sig: fields[2], V: fields[3], Seq: seq, Mutable: mutable}
	if msg := itemShapeError(&it, nil); msg != "" {
		return Item{}, 0, time.Time{}, errors.New(msg)
	}
	if it.Target() != krpc.ID(key) {
		return Item{}, 0, time.Time{}, errors.New("target does not match key")
	}
	return it, src, time.Unix(0, exp), nil
}

// PutItem saves it, to expire at expires, under its target, replacing what
// is stored there unless that is newer: a mutable item with a higher seq,
// or the same seq (or an immutable item) with a later expiry, is kept and
// the call is a successful no-op. So a put that lost a race to a newer one
// cannot roll the record back.
//
// source is an address of the network the item is charged to (the store's
// per-source quota, ItemStore.Source), kept so that a restart charges it
// to the same network; the invalid address for an item of unknown origin.
//
// PutItem returns once the record is durable. Concurrent calls share one
// commit (bbolt DB.Batch): each waits up to about a millisecond for others
// to join, then for the fsync. An item of invalid shape is refused with an
// error.
func (d *DB) PutItem(it Item, source netip.Addr, expires time.Time) error {
	target := it.Target()
	if msg := itemShapeError(&it, nil); msg != "" {
		return fmt.Errorf("put item %s: %s", target, msg)
	}
	rec := appendItemRecord(nil, &it, sourceOf(source), expires)
	exp := expires.UnixNano()
	err := d.bolt.Batch(func(tx *bbolt.Tx) error {
		d.countCommit(tx)
		b, err := bucket(tx, bucketItems)
		if err != nil {
			return err
		}
		if old := b.Get(target[:]); old != nil {
			flags, seq, oldExp, _, err := itemRecordHeader(old)
			if err == nil && (flags&itemFlagMut != 0) == it.Mutable && (seq > it.Seq || (seq == it.Seq && oldExp >= exp)) {
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
// skips expired ones), in target order, with the first address of the
// network it is charged to (invalid if unknown). The item's slices belong
// to fn.
// Records that cannot be decoded are skipped and counted in
// Stats().Corrupt; the error is for a missing bucket or a failed read.
//
// LoadItems runs in one read transaction: fn must not call the DB (a write
// from fn could deadlock), and other writers that need to grow the file
// wait until it returns. It is meant for startup.
func (d *DB) LoadItems(fn func(it Item, source netip.Addr, expires time.Time)) error {
	err := d.bolt.View(func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketItems)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			it, src, exp, err := decodeItemRecord(k, v)
			if err != nil {
				d.corrupt.Add(1)
				return nil
			}
			fn(it, src.addr(), exp)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load items: %w", err)
	}
	return nil
}
