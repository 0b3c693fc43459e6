package krpc

import (
	"errors"
	"fmt"
	"strconv"
)

// Limits of the strict pre-decode check (practice: libtorrent bdecodes with
// depth 10 and at most 500 tokens; we allow a little more for BEP 44 values).
const (
	maxDepth  = 16
	maxTokens = 1024
)

// ErrNotCanonical reports bencode that is malformed or not in canonical form.
var ErrNotCanonical = errors.New("bencode: malformed or non-canonical")

// appendString appends the bencoding of s.
func appendString(dst, s []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// readString decodes a bencoded byte string at the start of b and returns it
// and the remaining bytes.
func readString(b []byte) (s, rest []byte, err error) {
	n := 0
	i := 0
	for ; i < len(b) && b[i] != ':'; i++ {
		c := b[i]
		if c < '0' || c > '9' || (i == 1 && b[0] == '0') || i > 7 {
			return nil, nil, ErrNotCanonical
		}
		n = n*10 + int(c-'0')
	}
	if i == 0 || i >= len(b) {
		return nil, nil, ErrNotCanonical
	}
	i++
	if n > len(b)-i {
		return nil, nil, ErrNotCanonical
	}
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

// readInt decodes a canonical bencoded integer at the start of b.
func readInt(b []byte) (v int64, rest []byte, err error) {
	if len(b) < 3 || b[0] != 'i' {
		return 0, nil, ErrNotCanonical
	}
	end := 1
	for end < len(b) && b[end] != 'e' {
		end++
	}
	if end >= len(b) || end > 21 {
		return 0, nil, ErrNotCanonical
	}
	digits := b[1:end]
	if len(digits) == 0 || (digits[0] == '-' && (len(digits) == 1 || digits[1] == '0')) ||
		(digits[0] == '0' && len(digits) > 1) {
		return 0, nil, ErrNotCanonical
	}
	v, perr := strconv.ParseInt(string(digits), 10, 64)
	if perr != nil {
		return 0, nil, ErrNotCanonical
	}
	return v, b[end+1:], nil
}

// checkCanonical verifies that b is exactly one bencoded value in canonical
// form (sorted unique dict keys, no leading zeros, no "-0"), no deeper than
// maxDepth and with at most maxTokens values. It is the cheap gate every
// packet passes before the reflective decoder sees it.
func checkCanonical(b []byte) error {
	tokens := 0
	rest, err := skipValue(b, 0, &tokens)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrNotCanonical, len(rest))
	}
	return nil
}

// skipValue skips one canonical value and returns what follows it.
func skipValue(b []byte, depth int, tokens *int) ([]byte, error) {
	return skipValueMode(b, depth, tokens, false)
}

// wellFormed reports whether b is exactly one bencoded value within the
// depth and token limits, allowing dict keys out of order or repeated (the
// one way a well-formed value is not canonical once integers are canonical).
func wellFormed(b []byte) bool {
	tokens := 0
	rest, err := skipValueMode(b, 0, &tokens, true)
	return err == nil && len(rest) == 0
}

// skipValueMode is skipValue; with lax, dict keys need not be sorted or
// unique.
func skipValueMode(b []byte, depth int, tokens *int, lax bool) ([]byte, error) {
	*tokens++
	if *tokens > maxTokens {
		return nil, fmt.Errorf("%w: more than %d values", ErrNotCanonical, maxTokens)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: truncated", ErrNotCanonical)
	}
	switch c := b[0]; {
	case c == 'i':
		_, rest, err := readInt(b)
		return rest, err
	case c >= '0' && c <= '9':
		_, rest, err := readString(b)
		return rest, err
	case c == 'l':
		if depth >= maxDepth {
			return nil, fmt.Errorf("%w: nested deeper than %d", ErrNotCanonical, maxDepth)
		}
		b = b[1:]
		for {
			if len(b) == 0 {
				return nil, fmt.Errorf("%w: truncated list", ErrNotCanonical)
			}
			if b[0] == 'e' {
				return b[1:], nil
			}
			var err error
			if b, err = skipValueMode(b, depth+1, tokens, lax); err != nil {
				return nil, err
			}
		}
	case c == 'd':
		if depth >= maxDepth {
			return nil, fmt.Errorf("%w: nested deeper than %d", ErrNotCanonical, maxDepth)
		}
		b = b[1:]
		var prev []byte
		first := true
		for {
			if len(b) == 0 {
				return nil, fmt.Errorf("%w: truncated dict", ErrNotCanonical)
			}
			if b[0] == 'e' {
				return b[1:], nil
			}
			key, rest, err := readString(b)
			if err != nil {
				return nil, fmt.Errorf("%w: dict key is not a string", ErrNotCanonical)
			}
			if !lax && !first && string(key) <= string(prev) {
				return nil, fmt.Errorf("%w: dict keys unsorted or repeated", ErrNotCanonical)
			}
			first, prev = false, key
			if b, err = skipValueMode(rest, depth+1, tokens, lax); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%w: unexpected byte %q", ErrNotCanonical, c)
	}
}
