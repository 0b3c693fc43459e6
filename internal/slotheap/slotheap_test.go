package slotheap

import (
	"math/rand/v2"
	"slices"
	"testing"
)

type elem struct {
	v    int
	slot int
}

func (e *elem) Before(o *elem) bool { return e.v < o.v }
func (e *elem) Slot() *int          { return &e.slot }

// Elements come out in order after pushes, fixes and removals, and each
// knows its place while it is in the heap and -1 once out.
func TestHeapOrderAndSlots(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var h Heap[*elem]
	if _, ok := h.Min(); ok || h.Len() != 0 {
		t.Fatal("the zero heap is not empty")
	}
	var all []*elem
	for range 200 {
		e := &elem{v: rnd.IntN(1000), slot: -1}
		all = append(all, e)
		h.Push(e)
	}
	for _, e := range all[:50] { // change some values in place
		e.v = rnd.IntN(1000)
		h.Fix(e)
	}
	removed := all[50:80]
	for _, e := range removed {
		h.Remove(e)
		h.Remove(e) // a second time: no longer in it, nothing happens
		if e.slot != -1 {
			t.Fatalf("removed element has slot %d", e.slot)
		}
	}
	for i, e := range h.items {
		if e.slot != i {
			t.Fatalf("element at %d says it is at %d", i, e.slot)
		}
	}
	var want []int
	for _, e := range all {
		if !slices.Contains(removed, e) {
			want = append(want, e.v)
		}
	}
	slices.Sort(want)
	var got []int
	for h.Len() > 0 {
		m, _ := h.Min()
		e := h.Pop()
		if e != m || e.slot != -1 {
			t.Fatalf("popped %p (slot %d), min was %p", e, e.slot, m)
		}
		got = append(got, e.v)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("popped %v, want %v", got, want)
	}
}
