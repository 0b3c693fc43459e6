package krpc

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/anacrolix/torrent/bencode"
)

// MinPacketLen is the smallest packet worth decoding (practice, libtorrent:
// 20 bytes or less is dropped unread).
const MinPacketLen = 21

// ErrDrop marks packets that must be dropped without a reply: not bencode,
// not canonical, not a dict, or without a usable "t" and "y" (krpc.md §8).
// Replying to them would make the node an amplifier.
var ErrDrop = errors.New("krpc: undecodable packet")

// BodyError reports a message whose envelope ("t", "y") decoded but whose
// arguments, return values or error list did not. Decode still returns the
// envelope, so a query can be answered with error 203.
type BodyError struct {
	Err error
}

// Error implements error.
func (e *BodyError) Error() string { return "krpc: malformed body: " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *BodyError) Unwrap() error { return e.Err }

// Decode parses one packet. Errors wrapping ErrDrop mean "drop silently";
// a *BodyError comes with the envelope filled in m. Decode never panics on
// any input and allocates in proportion to the packet only.
func Decode(b []byte, m *Msg) error {
	*m = Msg{}
	if len(b) < MinPacketLen || b[0] != 'd' || b[len(b)-1] != 'e' {
		return fmt.Errorf("%w: not a dict of plausible size", ErrDrop)
	}
	if err := checkCanonical(b); err != nil {
		return fmt.Errorf("%w: %v", ErrDrop, err)
	}
	var a, r, e []byte
	var haveT bool
	err := eachEntry(b, func(key, val []byte) error {
		switch string(key) {
		case "t":
			s, _, err := readString(val)
			if err != nil {
				return fmt.Errorf("t is not a string")
			}
			m.T, haveT = string(s), true
		case "y":
			s, _, err := readString(val)
			if err != nil || len(s) != 1 {
				return fmt.Errorf("y is not a 1-byte string")
			}
			m.Y = string(s)
		case "q":
			s, _, err := readString(val)
			if err != nil {
				m.Q = "\x00" // not a string: answered 203 below
			} else {
				m.Q = string(s)
			}
		case "a":
			a = val
		case "r":
			r = val
		case "e":
			e = val
		case "v":
			if s, _, err := readString(val); err == nil {
				m.V = string(s)
			}
		case "ip":
			var ip CompactAddr
			if ip.UnmarshalBencode(val) == nil {
				m.IP = &ip
			}
		case "ro":
			if v, _, err := readInt(val); err == nil {
				m.RO = v
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDrop, err)
	}
	if !haveT {
		return fmt.Errorf("%w: no transaction id", ErrDrop)
	}
	switch m.Y {
	case KindQuery:
		if m.Q == "" || m.Q == "\x00" {
			m.Q = ""
			return &BodyError{errors.New("q missing or not a string")}
		}
		if a == nil {
			return &BodyError{errors.New("a missing")}
		}
		if !hasKey(a, "id") {
			return &BodyError{errors.New("a.id missing")}
		}
		m.A = new(Args)
		if err := bencode.Unmarshal(a, m.A); err != nil {
			m.A = nil
			return &BodyError{fmt.Errorf("decode a: %w", err)}
		}
	case KindResponse:
		if r == nil || !hasKey(r, "id") {
			return &BodyError{errors.New("r or r.id missing")}
		}
		m.R = new(Return)
		if err := bencode.Unmarshal(r, m.R); err != nil {
			m.R = nil
			return &BodyError{fmt.Errorf("decode r: %w", err)}
		}
	case KindError:
		m.E = new(Error)
		if e == nil {
			m.E = &Error{Code: ErrCodeGeneric}
			return &BodyError{errors.New("e missing")}
		}
		if err := m.E.UnmarshalBencode(e); err != nil {
			m.E = &Error{Code: ErrCodeGeneric}
			return &BodyError{fmt.Errorf("decode e: %w", err)}
		}
	default:
		return fmt.Errorf("%w: y is %q", ErrDrop, m.Y)
	}
	return nil
}

// Encode returns the canonical bencoding of m.
func Encode(m *Msg) ([]byte, error) {
	b, err := bencode.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s %q: %w", m.Y, m.Q, err)
	}
	return b, nil
}

// eachEntry calls f for every key and raw value of the canonical dict b.
func eachEntry(b []byte, f func(key, val []byte) error) error {
	if len(b) < 2 || b[0] != 'd' {
		return errors.New("not a dict")
	}
	b = b[1:]
	for len(b) > 0 && b[0] != 'e' {
		key, rest, err := readString(b)
		if err != nil {
			return err
		}
		tokens := 0
		after, err := skipValue(rest, 0, &tokens)
		if err != nil {
			return err
		}
		if err := f(key, rest[:len(rest)-len(after)]); err != nil {
			return err
		}
		b = after
	}
	return nil
}

// hasKey reports whether the dict b has key.
func hasKey(b []byte, key string) bool {
	if len(b) == 0 || b[0] != 'd' {
		return false
	}
	found := false
	_ = eachEntry(b, func(k, _ []byte) error {
		if bytes.Equal(k, []byte(key)) {
			found = true
		}
		return nil
	})
	return found
}
