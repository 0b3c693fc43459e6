package storage

// The node id and the nodes of the routing table in a DB (buckets meta
// and nodes).

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"

	"go.etcd.io/bbolt"

	"github.com/dhtd/dhtd/krpc"
)

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
