package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/storage"
)

// Errors of PutSigned, for callers (the HTTP gateway) that map them to
// their own codes. Test with errors.Is.
var (
	// ErrBadItem: the record is malformed (key or signature length, v not
	// canonical bencode, salt too long, negative seq).
	ErrBadItem = errors.New("malformed BEP 44 item")
	// ErrValueTooLarge: v is over storage.MaxValueLen bytes (BEP 44 205).
	ErrValueTooLarge = errors.New("value too large")
	// ErrInvalidSignature: sig is not a valid signature of the record by
	// the key (BEP 44 206).
	ErrInvalidSignature = errors.New("invalid signature")
	// ErrCASMismatch: every storer refused the put because cas did not
	// match its seq (BEP 44 301).
	ErrCASMismatch = errors.New("cas mismatch")
)

// SignedPut is a mutable item signed elsewhere, as PutSigned sends it in
// its put queries (BEP 44): the caller holds the private key.
type SignedPut struct {
	// Key is the ed25519 public key ("k"), 32 bytes.
	Key ed25519.PublicKey
	// Salt is the optional salt (at most 64 bytes); the target is
	// SHA-1(Key ‖ Salt).
	Salt []byte
	// Value is the bencoded value ("v"), at most 1000 bytes.
	Value []byte
	// Seq is the sequence number the signature covers (zero or more).
	Seq int64
	// Sig is the signature of (Salt, Seq, Value) by Key, 64 bytes.
	Sig []byte
	// Cas, if set, asks storers to accept only if the seq they hold equals
	// it (BEP 44 compare-and-swap). Nil: no condition.
	Cas *int64
}

// PutSigned stores a mutable item signed elsewhere (BEP 44). The record is
// checked like a storing node would check it — shape, size, canonical
// bencode and, last, the signature — before anything is sent, so a bad
// record costs no lookup; such errors wrap ErrBadItem, ErrValueTooLarge or
// ErrInvalidSignature. If no storer accepts it and they said why, the
// error wraps ErrCASMismatch (301) or ErrSeqNotNewer (302).
func (n *Node) PutSigned(ctx context.Context, p SignedPut) (PutResult, error) {
	if err := checkSigned(p.Key, p.Salt, p.Value, p.Seq, p.Sig); err != nil {
		return PutResult{Target: storage.MutableTarget(p.Key, p.Salt), Seq: p.Seq}, fmt.Errorf("put: %w", err)
	}
	seq, sig := p.Seq, p.Sig
	res, err := n.putMutable(ctx, p.Key, p.Value, PutOptions{Salt: p.Salt, Seq: &seq, Cas: p.Cas}, func(int64) []byte { return sig })
	if err != nil && res.Stored == 0 {
		switch {
		case errors.Is(err, ErrSeqNotNewer):
		case res.Errors[krpc.ErrCodeCASMismatch] > 0:
			err = fmt.Errorf("%w (%d storers answered 301): %w", ErrCASMismatch, res.Errors[krpc.ErrCodeCASMismatch], err)
		case res.Errors[krpc.ErrCodeSeqLessCurrent] > 0:
			err = fmt.Errorf("%w (%d storers answered 302): %w", ErrSeqNotNewer, res.Errors[krpc.ErrCodeSeqLessCurrent], err)
		}
	}
	return res, err
}

// checkSigned applies the stateless BEP 44 put checks to a signed record.
func checkSigned(pub ed25519.PublicKey, salt, v []byte, seq int64, sig []byte) error {
	switch {
	case len(pub) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: public key is %d bytes, want %d", ErrBadItem, len(pub), ed25519.PublicKeySize)
	case len(sig) != ed25519.SignatureSize:
		return fmt.Errorf("%w: signature is %d bytes, want %d", ErrBadItem, len(sig), ed25519.SignatureSize)
	case len(salt) > storage.MaxSaltLen:
		return fmt.Errorf("%w: salt is %d bytes, at most %d", ErrBadItem, len(salt), storage.MaxSaltLen)
	case seq < 0:
		return fmt.Errorf("%w: negative seq %d", ErrBadItem, seq)
	}
	if err := storage.CheckValue(v); errors.Is(err, storage.ErrValueTooBig) {
		return fmt.Errorf("%w: %w", ErrValueTooLarge, err)
	} else if err != nil {
		return fmt.Errorf("%w: %w", ErrBadItem, err)
	}
	if !storage.VerifyMutable(pub, salt, seq, v, sig) {
		return ErrInvalidSignature
	}
	return nil
}
