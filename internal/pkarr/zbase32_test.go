package pkarr

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// Vectors produced by the z32 package the Pkarr JS client uses.
var zbase32Vectors = []struct{ hex, z string }{
	{"", ""},
	{"00", "yy"},
	{"f0", "6y"},
	{"ff", "9h"},
	{"0102", "yrby"},
	{"deadbeef", "54s575a"},
	{"48656c6c6f2c20576f726c6421", "jb1sa5dxfoofq551pt1nn"},
	{"0000000000", "yyyyyyyy"},
	{"ffffffffff", "99999999"},
	{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "yyyoryarywdyqnyjbefoadeqbhebnrounoktcfaadrpbs8y7daxo"},
	{"8686ab142e51f7035c61dc2d7ad3c1416a60cdeb9bd537b8face9c7fcd3bf4c0", "o4dksfbqk85ogzdb5osziw6befigbuxmuxkuxq8434q89uj56uyy"},
}

func TestZBase32Vectors(t *testing.T) {
	for _, v := range zbase32Vectors {
		b, _ := hex.DecodeString(v.hex)
		if got := EncodeZBase32(b); got != v.z {
			t.Errorf("encode %s = %q, want %q", v.hex, got, v.z)
		}
		got, err := DecodeZBase32(v.z)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("decode %q = %x, %v; want %s", v.z, got, err, v.hex)
		}
	}
}

func TestZBase32Bad(t *testing.T) {
	for _, s := range []string{
		"y",      // 5 bits: no whole byte
		"yyy",    // 15 bits: one byte and 7 stray bits, which no encoding produces
		"6b",     // 0xf0 with a non-zero unused bit
		"yl",     // 'l' is not in the alphabet
		"YY",     // upper case is not z-base-32
		"yy\x00", // NUL
	} {
		if b, err := DecodeZBase32(s); !errors.Is(err, ErrZBase32) {
			t.Errorf("decode %q = %x, %v; want ErrZBase32", s, b, err)
		}
	}
}

func FuzzZBase32(f *testing.F) {
	for _, v := range zbase32Vectors {
		f.Add(v.z)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeZBase32(s)
		if err != nil {
			return
		}
		if back := EncodeZBase32(b); back != s {
			t.Fatalf("decode %q then encode = %q", s, back)
		}
	})
}
