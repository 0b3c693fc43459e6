package pkarr

import (
	"errors"
	"fmt"
	"strings"
)

// z-base-32 (Zooko O'Whielacronx, "human-oriented base-32 encoding"), the
// encoding of Pkarr public keys: 5 bits a character, most significant bit
// first, no padding; the last character's unused low bits are zero. A
// 32-byte key is 52 characters.

const zbase32Alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769"

// zbase32Index maps a byte to its 5-bit value, or 0xff.
var zbase32Index = func() [256]byte {
	var t [256]byte
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(zbase32Alphabet); i++ {
		t[zbase32Alphabet[i]] = byte(i)
	}
	return t
}()

// ErrZBase32 is wrapped by every z-base-32 decoding error.
var ErrZBase32 = errors.New("not z-base-32")

// EncodeZBase32 encodes b in z-base-32.
func EncodeZBase32(b []byte) string {
	var sb strings.Builder
	sb.Grow((len(b)*8 + 4) / 5)
	var acc uint32
	bits := 0
	for _, c := range b {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			sb.WriteByte(zbase32Alphabet[(acc>>bits)&31])
		}
	}
	if bits > 0 {
		sb.WriteByte(zbase32Alphabet[(acc<<(5-bits))&31])
	}
	return sb.String()
}

// DecodeZBase32 decodes s, which must be the exact encoding of whole
// bytes: a character count no encoding produces, or non-zero unused bits
// in the last character, is an error.
func DecodeZBase32(s string) ([]byte, error) {
	n := len(s) * 5 / 8
	if (n*8+4)/5 != len(s) {
		return nil, fmt.Errorf("%w: %d characters is no whole number of bytes", ErrZBase32, len(s))
	}
	out := make([]byte, 0, n)
	var acc uint32
	bits := 0
	for i := 0; i < len(s); i++ {
		v := zbase32Index[s[i]]
		if v == 0xff {
			return nil, fmt.Errorf("%w: character %q at %d", ErrZBase32, s[i], i)
		}
		acc = acc<<5 | uint32(v)
		bits += 5
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
		}
	}
	if acc&(1<<bits-1) != 0 {
		return nil, fmt.Errorf("%w: unused bits of the last character are not zero", ErrZBase32)
	}
	return out, nil
}
