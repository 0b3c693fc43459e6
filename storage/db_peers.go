package storage

// Peers in a DB (bucket peers).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/bbolt"

	"github.com/dhtd/dhtd/krpc"
)

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
