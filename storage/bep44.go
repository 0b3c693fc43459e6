package storage

// BEP 44 ("Storing arbitrary data in the DHT") primitives: item targets, the
// signature buffer, Ed25519 signing and verification, the canonical-bencode
// check of v, and the put checks that need neither the item store nor the
// write token. Everything in this file is a pure function.
//
// References are to BEP 44 (https://www.bittorrent.org/beps/bep_0044.html)
// and to docs/protocol.md, "BEP 44 items", for what deployed clients do
// where the BEP is loose.

import (
	"crypto/ed25519"
	"crypto/sha1"
	"fmt"
	"strconv"

	"github.com/dhtd/dhtd/krpc"
)

// BEP 44 size limits.
const (
	// MaxValueLen is the largest bencoded v, in bytes, a storing node accepts
	// (BEP 44: larger values MAY be rejected with error 205; we always do).
	MaxValueLen = 1000
	// MaxSaltLen is the largest salt in bytes (BEP 44: MUST NOT exceed 64;
	// error 207).
	MaxSaltLen = 64
)

// Wire messages of the BEP 44 errors, as libtorrent sends them (docs/protocol.md, BEP 44 items).
const (
	bep44MsgValueTooBig = "message (v field) too big"
	bep44MsgInvalidSig  = "invalid signature"
	bep44MsgSaltTooBig  = "salt (salt field) too big"
	bep44MsgCASMismatch = "CAS mismatch"
	bep44MsgSeqLess     = "sequence number less than current"
)

// ImmutableTarget returns the target of an immutable item: the SHA-1 of the
// exact bencoded bytes of v as sent (BEP 44). v is never re-encoded first.
func ImmutableTarget(v []byte) krpc.ID {
	return krpc.ID(sha1.Sum(v))
}

// MutableTarget returns the target of a mutable item: SHA-1(k ‖ salt), where
// k is the 32-byte Ed25519 public key as sent and salt the raw salt bytes
// (BEP 44). An empty or nil salt gives SHA-1(k).
func MutableTarget(k []byte, salt []byte) krpc.ID {
	// k (32) + salt (<= 64) fits a stack buffer in every valid case.
	var buf [ed25519.PublicKeySize + MaxSaltLen]byte
	b := append(append(buf[:0], k...), salt...)
	return krpc.ID(sha1.Sum(b))
}

// SignBuffer returns the exact byte string a BEP 44 mutable item signature
// covers:
//
//	["4:salt" <len(salt)> ":" <salt>]  only when salt is non-empty
//	"3:seqi" <seq> "e1:v" <v>
//
// v is the raw bencoded value, appended verbatim. The buffer is built by
// concatenation, never by bencoding a dict and stripping it (BEP 44, §2 of
// BEP 44).
func SignBuffer(salt []byte, seq int64, v []byte) []byte {
	n := len("3:seqi") + 20 + len("e1:v") + len(v)
	if len(salt) > 0 {
		n += len("4:salt") + 3 + 1 + len(salt)
	}
	b := make([]byte, 0, n)
	if len(salt) > 0 {
		b = krpc.AppendString(append(b, "4:salt"...), salt)
	}
	b = append(b, "3:seqi"...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, "e1:v"...)
	return append(b, v...)
}

// VerifyMutable reports whether sig is a valid Ed25519 signature by public
// key k over SignBuffer(salt, seq, v) (BEP 44). It returns false, rather than
// panicking, when k is not 32 bytes or sig not 64 bytes.
func VerifyMutable(k, salt []byte, seq int64, v, sig []byte) bool {
	if len(k) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(k), SignBuffer(salt, seq, v), sig)
}

// SignMutable signs a mutable item with a Go ed25519 private key (seed ‖
// public key) and returns the 64-byte signature over SignBuffer(salt, seq, v)
// (BEP 44). Ed25519 is deterministic, so the result is reproducible. Like
// ed25519.Sign it panics if priv is not ed25519.PrivateKeySize bytes.
//
// The private key printed in BEP 44's own test vectors is the ref10
// "expanded" form, not Go's; see docs/protocol.md, BEP 44 items.
func SignMutable(priv ed25519.PrivateKey, salt []byte, seq int64, v []byte) []byte {
	return ed25519.Sign(priv, SignBuffer(salt, seq, v))
}

// CheckBencode verifies that v is exactly one bencoded value in canonical
// form, as krpc.CheckCanonical defines it, with integers of any size and no
// bound on nesting but the scanner's own. BEP 44 hashes and signs the exact
// bytes of v, so a non-canonical v is refused with 203 rather than stored
// (BEP 44, Messages). Errors wrap krpc.ErrNotCanonical.
func CheckBencode(v []byte) error {
	return krpc.CheckCanonical(v, krpc.Limits{})
}

// PutArgs are the arguments of a BEP 44 put query that the storage layer
// checks (docs/protocol.md, BEP 44 items). Byte-string fields are empty when absent (KRPC does
// not distinguish an absent string from an empty one); Seq and Cas are nil
// when absent. A put is mutable iff K is non-empty.
type PutArgs struct {
	Token []byte // write token; only its presence is checked here
	V     []byte // raw bencoded v, exactly as sent
	K     []byte // Ed25519 public key (mutable)
	Salt  []byte // optional salt (mutable)
	Sig   []byte // Ed25519 signature (mutable)
	Seq   *int64 // sequence number (mutable)
	Cas   *int64 // optional compare-and-swap seq (mutable)
}

// NewPutArgs copies the BEP 44 put arguments out of a decoded query.
func NewPutArgs(a *krpc.Args) PutArgs {
	p := PutArgs{
		V:   []byte(a.V),
		Seq: a.Seq,
		Cas: a.Cas,
	}
	if a.Token != "" {
		p.Token = []byte(a.Token)
	}
	if a.K != "" {
		p.K = []byte(a.K)
	}
	if a.Salt != "" {
		p.Salt = []byte(a.Salt)
	}
	if a.Sig != "" {
		p.Sig = []byte(a.Sig)
	}
	return p
}

// Mutable reports whether the put is for a mutable item (K present).
func (a PutArgs) Mutable() bool { return len(a.K) > 0 }

// Target returns the derived target of the put: MutableTarget(K, Salt) for a
// mutable put, ImmutableTarget(V) otherwise (BEP 44: a put carries no
// target). It is meaningful only once ValidatePutShape has passed.
func (a PutArgs) Target() krpc.ID {
	if a.Mutable() {
		return MutableTarget(a.K, a.Salt)
	}
	return ImmutableTarget(a.V)
}

// Item returns the item the put would store. The slices alias the
// arguments; ItemStore.Put copies them.
func (a PutArgs) Item() Item {
	it := Item{V: a.V, Mutable: a.Mutable()}
	if it.Mutable {
		it.K, it.Salt, it.Sig = a.K, a.Salt, a.Sig
		if a.Seq != nil {
			it.Seq = *a.Seq
		}
	}
	return it
}

// CheckValue is the one check of a BEP 44 value, for storing nodes and
// publishers alike: v must be exactly one canonical bencoded value
// (ErrMalformed, with krpc.ErrNotCanonical as the cause) of at most MaxValueLen
// bytes (ErrValueTooBig). The error is a *PutError.
func CheckValue(v []byte) error {
	if err := CheckBencode(v); err != nil {
		return &PutError{Rule: ErrMalformed, Msg: "v is not canonical bencoding", Cause: err}
	}
	if len(v) > MaxValueLen {
		return &PutError{Rule: ErrValueTooBig, Msg: bep44MsgValueTooBig,
			Cause: fmt.Errorf("value is %d bytes, at most %d", len(v), MaxValueLen)}
	}
	return nil
}

// ValidatePutShape runs the put checks of docs/protocol.md, BEP 44 items that come before the
// token check and need neither the store nor the token secret, in this order:
//
//  1. 203: v or token missing; a mutable put (k present) whose k is not 32
//     bytes, whose sig is not 64 bytes or whose seq is missing; an
//     immutable put (no k) carrying sig, salt or cas (such a put is
//     malformed and never stored as immutable: BEP 44 tells the kinds
//     apart by k and sig); v not exactly one
//     canonical bencoded value. A seq without k and sig is ignored: BEP 44
//     tells the kinds apart by k and sig, libtorrent stores such a put as
//     immutable, and anacrolix/dht sends "seq": 0 in every immutable put.
//  2. 205: v longer than MaxValueLen bytes.
//  3. 207: salt longer than MaxSaltLen bytes.
//  4. 203: seq negative (practice, libtorrent; §4 step 5 places it after the
//     token check, which is also 203, so the answer is the same).
//
// The caller then verifies the token for (source address, a.Target()) and
// answers 203 if it fails (§4 step 4), and finally calls VerifyPutSignature
// (206). ValidatePut chains all three.
//
// It returns nil when the put is well formed, else a *PutError.
func ValidatePutShape(a *PutArgs) error {
	switch {
	case len(a.V) == 0:
		return refuse(ErrMalformed, "missing v")
	case len(a.Token) == 0:
		return refuse(ErrMalformed, "missing token")
	}
	if a.Mutable() {
		switch {
		case len(a.K) != ed25519.PublicKeySize:
			return refuse(ErrMalformed, fmt.Sprintf("invalid k: want %d bytes, got %d", ed25519.PublicKeySize, len(a.K)))
		case len(a.Sig) != ed25519.SignatureSize:
			return refuse(ErrMalformed, fmt.Sprintf("invalid sig: want %d bytes, got %d", ed25519.SignatureSize, len(a.Sig)))
		case a.Seq == nil:
			return refuse(ErrMalformed, "missing seq")
		}
	} else {
		switch {
		case len(a.Sig) > 0:
			return refuse(ErrMalformed, "sig without k")
		case len(a.Salt) > 0:
			return refuse(ErrMalformed, "salt without k")
		case a.Cas != nil:
			return refuse(ErrMalformed, "cas without k")
		}
	}
	if err := CheckValue(a.V); err != nil {
		return err
	}
	if len(a.Salt) > MaxSaltLen {
		return refuse(ErrSaltTooBig, bep44MsgSaltTooBig)
	}
	if a.Mutable() && *a.Seq < 0 {
		return refuse(ErrMalformed, "negative seq")
	}
	return nil
}

// VerifyPutSignature is the last stateless put check (docs/protocol.md, BEP 44 items step 5;
// BEP 44: a storing node MUST verify the signature before storing): for a
// mutable put it answers 206 unless Sig is a valid signature by K over
// SignBuffer(Salt, Seq, V). Immutable puts pass. Call it only after
// ValidatePutShape and the token check have passed; it is the most expensive
// check, which is why it comes last.
func VerifyPutSignature(a *PutArgs) error {
	if !a.Mutable() {
		return nil
	}
	if a.Seq == nil || !VerifyMutable(a.K, a.Salt, *a.Seq, a.V, a.Sig) {
		return refuse(ErrBadSignature, bep44MsgInvalidSig)
	}
	return nil
}

// ValidatePut applies every stateless put check in the order of docs/protocol.md, BEP 44 items:
// ValidatePutShape (203/205/207), then tokenOK(target) for the derived target
// (203 "invalid token", ErrBadToken, when it returns false; the caller
// binds the token to the source address), then VerifyPutSignature (206).
// The store rules (301, 302, storage full) are ItemStore.Put's. It returns
// nil when the put may be handed to the store, else a *PutError.
func ValidatePut(a *PutArgs, tokenOK func(target krpc.ID) bool) error {
	if err := ValidatePutShape(a); err != nil {
		return err
	}
	if !tokenOK(a.Target()) {
		return refuse(ErrBadToken, "invalid token")
	}
	return VerifyPutSignature(a)
}
