// Package pkarr is Pkarr (public-key addressable resource records) on the
// Mainline DHT: DNS packets signed by an Ed25519 key and stored as the BEP
// 44 mutable item of that key, with no salt, the seq being the time of
// signing in microseconds.
//
// It holds the pieces both the HTTP relay (gateway) and the shell
// (cmd/dhtd) need: z-base-32 keys, the relay's body layout
// (SignedPacket), and DNS records written as text (records.go). It does no
// I/O.
package pkarr

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

const (
	// HeaderLen is the relay body's fixed part: the 64-byte signature and
	// the seq as 8 bytes big-endian.
	HeaderLen = ed25519.SignatureSize + 8
	// MaxPacketLen is the largest DNS packet the relay layout allows.
	MaxPacketLen = 1000
	// MaxBodyLen is the largest relay body.
	MaxBodyLen = HeaderLen + MaxPacketLen
)

// Errors of ParseBody and FromItem; test with errors.Is.
var (
	// ErrMalformed: the body or item does not have the Pkarr layout.
	ErrMalformed = errors.New("malformed Pkarr packet")
	// ErrTooLarge: the packet does not fit the layout or, bencoded, a BEP
	// 44 value (at most 1000 bytes).
	ErrTooLarge = errors.New("oversized Pkarr packet")
	// ErrBadSignature: the signature is not the key's over seq and packet.
	ErrBadSignature = errors.New("invalid Pkarr signature")
	// ErrBadKey: a key is neither 52 z-base-32 nor 64 hex characters of
	// 32 bytes.
	ErrBadKey = errors.New("bad Pkarr public key")
)

// SignedPacket is one signed DNS packet of a key.
type SignedPacket struct {
	PublicKey ed25519.PublicKey
	Sig       []byte // over storage.SignBuffer(nil, Seq, Value())
	Seq       int64  // microseconds since the Unix epoch at signing
	Packet    []byte // the encoded DNS packet
}

// Sign signs packet under priv with seq (microseconds since the epoch).
func Sign(priv ed25519.PrivateKey, packet []byte, seq int64) (SignedPacket, error) {
	p := SignedPacket{PublicKey: priv.Public().(ed25519.PublicKey), Seq: seq, Packet: packet}
	if err := p.checkSize(); err != nil {
		return SignedPacket{}, err
	}
	p.Sig = storage.SignMutable(priv, nil, seq, p.Value())
	return p, nil
}

// SeqAt returns the seq of a packet signed at t.
func SeqAt(t time.Time) int64 { return t.UnixMicro() }

// Time returns the time of signing the seq says.
func (p SignedPacket) Time() time.Time { return time.UnixMicro(p.Seq).UTC() }

// Value returns the BEP 44 value: the packet as a bencoded byte string.
func (p SignedPacket) Value() []byte {
	return krpc.AppendString(nil, p.Packet)
}

// Item returns the BEP 44 mutable item of p.
func (p SignedPacket) Item() storage.Item {
	return storage.Item{V: p.Value(), K: p.PublicKey, Seq: p.Seq, Sig: p.Sig, Mutable: true}
}

// Body returns the relay layout: signature, seq (8 bytes big-endian),
// packet.
func (p SignedPacket) Body() []byte {
	b := make([]byte, HeaderLen, HeaderLen+len(p.Packet))
	copy(b, p.Sig)
	binary.BigEndian.PutUint64(b[ed25519.SignatureSize:], uint64(p.Seq))
	return append(b, p.Packet...)
}

func (p SignedPacket) checkSize() error {
	if len(p.Packet) > MaxPacketLen {
		return fmt.Errorf("%w: packet is %d bytes, at most %d", ErrTooLarge, len(p.Packet), MaxPacketLen)
	}
	if n := len(p.Value()); n > storage.MaxValueLen {
		return fmt.Errorf("%w: packet is %d bytes, %d bencoded, at most %d (BEP 44)", ErrTooLarge, len(p.Packet), n, storage.MaxValueLen)
	}
	return nil
}

// Verify checks the size and the signature.
func (p SignedPacket) Verify() error {
	if len(p.PublicKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: %d bytes", ErrBadKey, len(p.PublicKey))
	}
	if err := p.checkSize(); err != nil {
		return err
	}
	if !storage.VerifyMutable(p.PublicKey, nil, p.Seq, p.Value(), p.Sig) {
		return ErrBadSignature
	}
	return nil
}

// ParseBody reads a relay body for pub and verifies it.
func ParseBody(pub ed25519.PublicKey, body []byte) (SignedPacket, error) {
	if len(body) > MaxBodyLen {
		return SignedPacket{}, fmt.Errorf("%w: body is %d bytes, at most %d", ErrTooLarge, len(body), MaxBodyLen)
	}
	if len(body) < HeaderLen {
		return SignedPacket{}, fmt.Errorf("%w: body is %d bytes, at least %d (signature and seq)", ErrMalformed, len(body), HeaderLen)
	}
	seq := binary.BigEndian.Uint64(body[ed25519.SignatureSize:HeaderLen])
	if seq > math.MaxInt64 {
		return SignedPacket{}, fmt.Errorf("%w: seq %d does not fit BEP 44's signed integer", ErrMalformed, seq)
	}
	p := SignedPacket{
		PublicKey: pub,
		Sig:       append([]byte(nil), body[:ed25519.SignatureSize]...),
		Seq:       int64(seq),
		Packet:    append([]byte(nil), body[HeaderLen:]...),
	}
	return p, p.Verify()
}

// FromItem reads a BEP 44 mutable item (no salt, v a byte string) as a
// signed packet and verifies it.
func FromItem(it storage.Item) (SignedPacket, error) {
	if !it.Mutable || len(it.Salt) != 0 {
		return SignedPacket{}, fmt.Errorf("%w: not a mutable item without salt", ErrMalformed)
	}
	packet, err := krpc.ParseString(it.V)
	if err != nil {
		return SignedPacket{}, fmt.Errorf("%w: value: %w", ErrMalformed, err)
	}
	p := SignedPacket{PublicKey: it.K, Sig: it.Sig, Seq: it.Seq, Packet: packet}
	return p, p.Verify()
}

// ParseKey reads a public key given as 52 z-base-32 characters (Pkarr's
// form, optionally with a "pk:" prefix) or 64 hex characters.
func ParseKey(s string) (ed25519.PublicKey, error) {
	if len(s) == 2*ed25519.PublicKeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	if len(s) > 3 && s[:3] == "pk:" {
		s = s[3:]
	}
	b, err := DecodeZBase32(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadKey, len(b), ed25519.PublicKeySize)
	}
	return b, nil
}

// KeyString is the z-base-32 form of a public key.
func KeyString(pub ed25519.PublicKey) string { return EncodeZBase32(pub) }
