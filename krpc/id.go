// Package krpc is the wire layer of dhtd: the KRPC message model (BEP 5 and
// the extensions of BEP 32, 33, 42, 43, 44 and 51), strict bencode decoding
// and encoding, compact node and peer encodings, the UDP transport and the
// transaction manager that matches responses to queries.
package krpc

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// IDLen is the length in bytes of node ids, infohashes and BEP 44 targets.
const IDLen = 20

// ID is a 160-bit node id, infohash or BEP 44 target (BEP 5).
type ID [IDLen]byte

// ParseID parses a 40-character hex string.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDLen {
		return id, fmt.Errorf("parse id %q: want %d hex characters, got %d", s, 2*IDLen, len(s))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("parse id %q: %w", s, err)
	}
	return id, nil
}

// RandomID returns an id drawn from crypto/rand.
func RandomID() ID {
	var id ID
	_, _ = rand.Read(id[:])
	return id
}

// String returns the id as 40 lowercase hex characters.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether every byte is zero.
func (id ID) IsZero() bool { return id == ID{} }

// Xor returns id XOR o, the Kademlia distance between them (BEP 5).
func (id ID) Xor(o ID) ID {
	var d ID
	for i := range d {
		d[i] = id[i] ^ o[i]
	}
	return d
}

// Less reports whether id < o as unsigned big-endian integers.
func (id ID) Less(o ID) bool {
	for i := range id {
		if id[i] != o[i] {
			return id[i] < o[i]
		}
	}
	return false
}

// MarshalBencode encodes the id as a 20-byte string.
func (id ID) MarshalBencode() ([]byte, error) {
	return AppendString(make([]byte, 0, IDLen+3), id[:]), nil
}

// UnmarshalBencode accepts exactly a 20-byte string.
func (id *ID) UnmarshalBencode(b []byte) error {
	s, err := exactString(b, IDLen, "id")
	if err != nil {
		return err
	}
	copy(id[:], s)
	return nil
}
