package storage

// BEP 44 ("Storing arbitrary data in the DHT") primitives: item targets, the
// signature buffer, Ed25519 signing and verification, the canonical-bencode
// check of v, and the put checks that need neither the item store nor the
// write token. Everything in this file is a pure function.
//
// References are to BEP 44 (https://www.bittorrent.org/beps/bep_0044.html)
// and to the project digest /work/shared/spec/bep44.md (§ numbers).

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha1"
	"errors"
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

// Wire messages of the BEP 44 errors, as libtorrent sends them (bep44.md §8).
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
// bep44.md).
func SignBuffer(salt []byte, seq int64, v []byte) []byte {
	n := len("3:seqi") + 20 + len("e1:v") + len(v)
	if len(salt) > 0 {
		n += len("4:salt") + 3 + 1 + len(salt)
	}
	b := make([]byte, 0, n)
	if len(salt) > 0 {
		b = append(b, "4:salt"...)
		b = strconv.AppendInt(b, int64(len(salt)), 10)
		b = append(b, ':')
		b = append(b, salt...)
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
// "expanded" form, not Go's; see bep44.md §7.
func SignMutable(priv ed25519.PrivateKey, salt []byte, seq int64, v []byte) []byte {
	return ed25519.Sign(priv, SignBuffer(salt, seq, v))
}

// ErrNotCanonical is wrapped by every CheckBencode failure.
var ErrNotCanonical = errors.New("bencode: malformed or non-canonical")

// bencodeFrame is one open list or dict while CheckBencode walks a value.
type bencodeFrame struct {
	dict    bool
	needKey bool   // dict: the next token is a key or the closing 'e'
	hasPrev bool   // dict: prev holds the previous key
	prev    []byte // dict: previous key, for the sort-order check
}

// CheckBencode verifies that v is exactly one bencoded value in canonical
// form: byte strings with a decimal length without leading zeros, integers
// without leading zeros and without "-0", dict keys that are byte strings in
// strictly increasing raw-byte order (so sorted and unique), and no trailing
// bytes. Integers may have any number of digits. Nesting depth is limited
// only by len(v): the walk is iterative, so hostile input cannot exhaust the
// stack. BEP 44 hashes and signs the exact bytes of v; bep44.md §1 recommends
// refusing non-canonical v with 203 rather than storing it.
func CheckBencode(v []byte) error {
	if len(v) == 0 {
		return fmt.Errorf("%w: empty input", ErrNotCanonical)
	}
	var stack []bencodeFrame
	i := 0
	for {
		if i >= len(v) {
			return fmt.Errorf("%w: truncated at offset %d", ErrNotCanonical, i)
		}
		c := v[i]
		var top *bencodeFrame
		if n := len(stack); n > 0 {
			top = &stack[n-1]
		}
		completed := false // a whole value ended at i
		switch {
		case top != nil && c == 'e' && (!top.dict || top.needKey):
			stack = stack[:len(stack)-1]
			i++
			completed = true
		case top != nil && top.dict && top.needKey:
			key, next, err := bencodeString(v, i)
			if err != nil {
				return fmt.Errorf("dict key at offset %d: %w", i, err)
			}
			if top.hasPrev && bytes.Compare(key, top.prev) <= 0 {
				return fmt.Errorf("%w: dict key %q at offset %d unsorted or repeated", ErrNotCanonical, key, i)
			}
			top.prev, top.hasPrev, top.needKey = key, true, false
			i = next
		case c == 'i':
			next, err := bencodeInt(v, i)
			if err != nil {
				return err
			}
			i = next
			completed = true
		case c >= '0' && c <= '9':
			_, next, err := bencodeString(v, i)
			if err != nil {
				return err
			}
			i = next
			completed = true
		case c == 'l':
			stack = append(stack, bencodeFrame{})
			i++
		case c == 'd':
			stack = append(stack, bencodeFrame{dict: true, needKey: true})
			i++
		default:
			return fmt.Errorf("%w: unexpected byte %q at offset %d", ErrNotCanonical, c, i)
		}
		if !completed {
			continue
		}
		if len(stack) == 0 {
			if i != len(v) {
				return fmt.Errorf("%w: %d trailing bytes", ErrNotCanonical, len(v)-i)
			}
			return nil
		}
		if t := &stack[len(stack)-1]; t.dict {
			t.needKey = true
		}
	}
}

// bencodeString parses the canonical byte string starting at b[i] and returns
// it and the offset just past it.
func bencodeString(b []byte, i int) (s []byte, next int, err error) {
	start := i
	n := 0
	for ; i < len(b) && b[i] != ':'; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return nil, 0, fmt.Errorf("%w: bad string length at offset %d", ErrNotCanonical, start)
		}
		if i > start && b[start] == '0' {
			return nil, 0, fmt.Errorf("%w: string length with leading zero at offset %d", ErrNotCanonical, start)
		}
		n = n*10 + int(c-'0')
		if n > len(b) {
			return nil, 0, fmt.Errorf("%w: string length at offset %d exceeds input", ErrNotCanonical, start)
		}
	}
	if i == start || i >= len(b) {
		return nil, 0, fmt.Errorf("%w: truncated string at offset %d", ErrNotCanonical, start)
	}
	i++ // ':'
	if n > len(b)-i {
		return nil, 0, fmt.Errorf("%w: string at offset %d runs past the end", ErrNotCanonical, start)
	}
	return b[i : i+n], i + n, nil
}

// bencodeInt checks the canonical integer starting at b[i] ('i') and returns
// the offset just past its closing 'e'.
func bencodeInt(b []byte, i int) (next int, err error) {
	start := i
	i++ // 'i'
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	switch {
	case i >= len(b) || b[i] != 'e':
		return 0, fmt.Errorf("%w: malformed integer at offset %d", ErrNotCanonical, start)
	case i == digits:
		return 0, fmt.Errorf("%w: integer without digits at offset %d", ErrNotCanonical, start)
	case b[digits] == '0' && (i-digits > 1 || digits > start+1):
		// "i03e" (leading zero) or "i-0e" (negative zero).
		return 0, fmt.Errorf("%w: non-canonical integer at offset %d", ErrNotCanonical, start)
	}
	return i + 1, nil
}

// PutArgs are the arguments of a BEP 44 put query that the storage layer
// checks (bep44.md §3). Byte-string fields are empty when absent (KRPC does
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
// (ErrMalformed, with ErrNotCanonical as the cause) of at most MaxValueLen
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

// ValidatePutShape runs the put checks of bep44.md §4 that come before the
// token check and need neither the store nor the token secret, in this order:
//
//  1. 203: v or token missing; a mutable put (k present) whose k is not 32
//     bytes, whose sig is not 64 bytes or whose seq is missing; an
//     immutable put (no k) carrying sig, salt or cas (BEP 44 errata: such a
//     put is malformed, never stored as immutable); v not exactly one
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

// VerifyPutSignature is the last stateless put check (bep44.md §4 step 5;
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

// ValidatePut applies every stateless put check in the order of bep44.md §4:
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
