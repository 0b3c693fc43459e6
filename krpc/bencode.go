package krpc

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// This file is the module's one bencode scanner (BEP 3, bencoding):
// CheckCanonical judges whether bytes are one canonical value, ParseString
// reads one byte string, and AppendString writes one. Other packages use
// these instead of reading or writing bencode by hand; the packet codec in
// codec.go is built on the same readers. Only the conformance suite keeps a
// raw encoder, to write packets no conforming encoder would.

// Limits of the strict pre-decode check of a packet (practice: libtorrent
// bdecodes with depth 10 and at most 500 tokens; we allow a little more for
// BEP 44 values).
const (
	maxDepth  = 16
	maxTokens = 1024
)

// packetLimits bound every packet before it is decoded.
var packetLimits = Limits{MaxDepth: maxDepth, MaxTokens: maxTokens, Int64: true}

// ErrNotCanonical reports bencode that is malformed or not in canonical
// form. Every error of the scanner wraps it.
var ErrNotCanonical = errors.New("bencode: malformed or non-canonical")

// Limits bound what CheckCanonical accepts beyond canonical form. The zero
// value bounds only nesting, at the scanner's own 4096 levels.
type Limits struct {
	// MaxDepth is the deepest nesting of lists and dicts (a top-level
	// list is depth 1); 0, or more than 4096, is 4096.
	MaxDepth int
	// MaxTokens is the most values (integers, strings, lists and dicts;
	// dict keys do not count); 0 is no bound.
	MaxTokens int
	// Int64 refuses integers that do not fit a signed 64-bit integer.
	Int64 bool
}

// AppendString appends the bencoding of the byte string s (BEP 3: length
// in decimal, a colon, the bytes).
func AppendString[S ~string | ~[]byte](dst []byte, s S) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// ParseString returns the bytes of b, which must be exactly one canonical
// bencoded byte string. The result aliases b.
func ParseString(b []byte) ([]byte, error) {
	s, rest, err := readString(b)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: not a byte string", err)
	case len(rest) != 0:
		return nil, fmt.Errorf("%w: %d bytes after the byte string", ErrNotCanonical, len(rest))
	}
	return s, nil
}

// CheckCanonical verifies that b is exactly one bencoded value in canonical
// form (BEP 3): byte strings with a decimal length without leading zeros,
// integers without leading zeros and without "-0", dict keys that are byte
// strings in strictly increasing raw-byte order (so sorted and unique), and
// no trailing bytes; and that it stays within lim. Nesting deeper than
// maxNesting (4096) is refused whatever lim says, so no input can exhaust
// the stack. Errors wrap ErrNotCanonical and name the offset of the fault.
func CheckCanonical(b []byte, lim Limits) error {
	n, err := scan(b, lim, false)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("%w: %d trailing bytes at offset %d", ErrNotCanonical, len(b)-n, n)
	}
	return nil
}

// maxNesting bounds the recursion of scan when Limits set no depth. Deeper
// input is at least 2*maxNesting bytes, far beyond any packet or BEP 44
// value, and is refused.
const maxNesting = 1 << 12

// scanState is what one scan carries down its recursion.
type scanState struct {
	inLen    int // length of the whole input, for error offsets
	tokens   int
	maxDepth int
	maxTok   int
	int64    bool
	lax      bool
}

// scan checks the one value at the start of b and returns its length. With
// lax, dict keys need not be sorted or unique. Errors wrap ErrNotCanonical.
func scan(b []byte, lim Limits, lax bool) (int, error) {
	st := scanState{inLen: len(b), maxDepth: lim.MaxDepth, maxTok: lim.MaxTokens, int64: lim.Int64, lax: lax}
	if st.maxDepth <= 0 || st.maxDepth > maxNesting {
		st.maxDepth = maxNesting
	}
	if st.maxTok <= 0 {
		st.maxTok = math.MaxInt
	}
	rest, err := scanValue(b, 0, &st)
	return len(b) - len(rest), err
}

// scanValue checks the value at the start of b and returns what follows it.
func scanValue(b []byte, depth int, st *scanState) ([]byte, error) {
	if st.tokens++; st.tokens > st.maxTok {
		return nil, fmt.Errorf("%w: more than %d values at offset %d", ErrNotCanonical, st.maxTok, st.inLen-len(b))
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: truncated at offset %d", ErrNotCanonical, st.inLen)
	}
	switch c := b[0]; {
	case c >= '0' && c <= '9':
		_, rest, err := readString(b)
		if err != nil {
			return nil, fmt.Errorf("%w: malformed byte string at offset %d", ErrNotCanonical, st.inLen-len(b))
		}
		return rest, nil
	case c == 'i':
		next, ok := intAt(b, 0, st.int64)
		if !ok {
			return nil, fmt.Errorf("%w: malformed or non-canonical integer at offset %d", ErrNotCanonical, st.inLen-len(b))
		}
		return b[next:], nil
	case c == 'l':
		if depth >= st.maxDepth {
			return nil, fmt.Errorf("%w: nested deeper than %d at offset %d", ErrNotCanonical, st.maxDepth, st.inLen-len(b))
		}
		b = b[1:]
		for {
			if len(b) == 0 {
				return nil, fmt.Errorf("%w: truncated list at offset %d", ErrNotCanonical, st.inLen)
			}
			if b[0] == 'e' {
				return b[1:], nil
			}
			var err error
			if b, err = scanValue(b, depth+1, st); err != nil {
				return nil, err
			}
		}
	case c == 'd':
		if depth >= st.maxDepth {
			return nil, fmt.Errorf("%w: nested deeper than %d at offset %d", ErrNotCanonical, st.maxDepth, st.inLen-len(b))
		}
		b = b[1:]
		var prev []byte
		for first := true; ; first = false {
			if len(b) == 0 {
				return nil, fmt.Errorf("%w: truncated dict at offset %d", ErrNotCanonical, st.inLen)
			}
			if b[0] == 'e' {
				return b[1:], nil
			}
			key, rest, err := readString(b)
			if err != nil {
				return nil, fmt.Errorf("%w: dict key at offset %d is not a byte string", ErrNotCanonical, st.inLen-len(b))
			}
			if !st.lax && !first && string(key) <= string(prev) {
				return nil, fmt.Errorf("%w: dict key %q at offset %d unsorted or repeated", ErrNotCanonical, key, st.inLen-len(b))
			}
			prev = key
			if b, err = scanValue(rest, depth+1, st); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%w: unexpected byte %q at offset %d", ErrNotCanonical, c, st.inLen-len(b))
	}
}

// wellFormed reports whether b is exactly one bencoded value within the
// packet limits, allowing dict keys out of order or repeated (the one way a
// well-formed value is not canonical once integers are canonical).
func wellFormed(b []byte) bool {
	n, err := scan(b, packetLimits, true)
	return err == nil && n == len(b)
}

// skipValue returns the length of the value at the start of b. It is the
// cheap walk over values that already passed CheckCanonical or wellFormed:
// it checks the structure (so it never reads past b) but not key order,
// integer form or limits.
func skipValue(b []byte) (int, error) {
	depth := 0
	i := 0
	for {
		if i >= len(b) {
			return 0, fmt.Errorf("%w: truncated at offset %d", ErrNotCanonical, i)
		}
		switch c := b[i]; {
		case c == 'e' && depth > 0:
			depth--
			i++
		case c == 'l' || c == 'd':
			depth++
			i++
			continue
		case c == 'i':
			j := i + 1
			for j < len(b) && b[j] != 'e' {
				j++
			}
			if j >= len(b) {
				return 0, fmt.Errorf("%w: truncated integer at offset %d", ErrNotCanonical, i)
			}
			i = j + 1
		case c >= '0' && c <= '9':
			_, rest, err := readString(b[i:])
			if err != nil {
				return 0, fmt.Errorf("%w: malformed byte string at offset %d", ErrNotCanonical, i)
			}
			i = len(b) - len(rest)
		default:
			return 0, fmt.Errorf("%w: unexpected byte %q at offset %d", ErrNotCanonical, c, i)
		}
		if depth == 0 {
			return i, nil
		}
	}
}

// intAt checks the canonical integer at b[i] ('i') and returns the offset
// just past its closing 'e'; ok is false if there is none. With fit64, the
// integer must fit an int64.
func intAt(b []byte, i int, fit64 bool) (next int, ok bool) {
	i++ // 'i'
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	digits := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i >= len(b) || b[i] != 'e' || i == digits ||
		(b[digits] == '0' && (i-digits > 1 || neg)) || // "i03e" (leading zero) or "i-0e" (negative zero)
		(fit64 && !fitsInt64(b[digits:i], neg)) {
		return 0, false
	}
	return i + 1, true
}

// fitsInt64 reports whether the decimal digits d (without leading zeros),
// negated if neg, fit an int64.
func fitsInt64(d []byte, neg bool) bool {
	const maxDigits = 19 // len("9223372036854775807")
	if len(d) < maxDigits {
		return true
	}
	if len(d) > maxDigits {
		return false
	}
	var u uint64
	for _, c := range d {
		u = u*10 + uint64(c-'0') // 19 digits cannot overflow uint64
	}
	if neg {
		return u <= math.MaxInt64+1
	}
	return u <= math.MaxInt64
}

// errNotString and errNotInt are the allocation-free failures of the field
// readers below, which run on every decoded field; callers add the field's
// name.
var (
	errNotString = fmt.Errorf("%w: not a byte string", ErrNotCanonical)
	errNotInt    = fmt.Errorf("%w: not a canonical 64-bit integer", ErrNotCanonical)
)

// readString decodes the canonical byte string at the start of b and
// returns it and the remaining bytes. It runs on every string the node
// reads, so it fails with the bare errNotString; callers say where.
func readString(b []byte) (s, rest []byte, err error) {
	n, i := 0, 0
	for ; i < len(b); i++ {
		d := b[i] - '0'
		if d > 9 {
			break
		}
		if n = n*10 + int(d); n > len(b) {
			return nil, nil, errNotString
		}
	}
	if i == 0 || i >= len(b) || b[i] != ':' || (b[0] == '0' && i > 1) || n > len(b)-i-1 {
		return nil, nil, errNotString
	}
	i++ // ':'
	return b[i : i+n], b[i+n:], nil
}

// exactString decodes b, which must be exactly one byte string of length n.
func exactString(b []byte, n int, what string) ([]byte, error) {
	s, rest, err := readString(b)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%s: not a byte string", what)
	}
	if len(s) != n {
		return nil, fmt.Errorf("%s: want %d bytes, got %d", what, n, len(s))
	}
	return s, nil
}

// readInt decodes the canonical integer at the start of b, which must fit
// an int64, and returns it and the remaining bytes.
func readInt(b []byte) (v int64, rest []byte, err error) {
	if len(b) < 3 || b[0] != 'i' {
		return 0, nil, errNotInt
	}
	next, ok := intAt(b, 0, true)
	if !ok {
		return 0, nil, errNotInt
	}
	d, neg := b[1:next-1], b[1] == '-'
	if neg {
		d = d[1:]
	}
	var u uint64
	for _, c := range d {
		u = u*10 + uint64(c-'0') // fits: intAt checked the range
	}
	if neg {
		return -int64(u), b[next:], nil // -(1<<63) wraps to itself
	}
	return int64(u), b[next:], nil
}
