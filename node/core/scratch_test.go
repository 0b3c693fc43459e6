package core

import (
	"bytes"
	"testing"
)

// A recycled buffer of a size class carries the next packet of that
// class; other buffers are not kept, and a free list stops at maxFree.
func TestScratchRecycle(t *testing.T) {
	var s Scratch
	small := make([]byte, 60, bufSizes[0])
	s.Recycle(small)
	odd := make([]byte, 10, 100) // no size class: not kept
	s.Recycle(odd)
	if got := len(s.free[0]) + len(s.free[1]) + len(s.free[2]); got != 1 {
		t.Fatalf("%d buffers kept, want 1", got)
	}
	pkt := bytes.Repeat([]byte{'x'}, 90)
	out := s.packet(pkt)
	if !bytes.Equal(out, pkt) || &out[:1][0] != &small[:1][0] {
		t.Fatalf("packet did not reuse the recycled buffer (or copied wrongly)")
	}
	big := bytes.Repeat([]byte{'y'}, 300)
	if out := s.packet(big); !bytes.Equal(out, big) || cap(out) != bufSizes[1] {
		t.Fatalf("a 300-byte packet got cap %d, want %d", cap(out), bufSizes[1])
	}
	value := bytes.Repeat([]byte{'v'}, 1000) // an answer carrying a BEP 44 value
	if out := s.packet(value); !bytes.Equal(out, value) || cap(out) != bufSizes[2] {
		t.Fatalf("a 1000-byte packet got cap %d, want %d", cap(out), bufSizes[2])
	}
	huge := bytes.Repeat([]byte{'z'}, 2000)
	if out := s.packet(huge); !bytes.Equal(out, huge) {
		t.Fatalf("a 2000-byte packet was copied wrongly")
	}
	for range maxFree + 10 {
		s.Recycle(make([]byte, 0, bufSizes[0]))
	}
	if len(s.free[0]) != maxFree {
		t.Fatalf("%d small buffers kept, want the bound %d", len(s.free[0]), maxFree)
	}
}
