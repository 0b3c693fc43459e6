// Package slotheap is a binary min-heap of elements that keep their own
// place in it, so that one can be fixed or removed where it stands. It is
// container/heap with the five methods each such heap would repeat
// written once.
package slotheap

import "container/heap"

// Elem is what a Heap holds: a pointer whose Before orders the heap (the
// root comes before every other element) and whose Slot is where the
// heap keeps its index: -1 while it is not in the heap.
type Elem[T any] interface {
	comparable
	Before(T) bool
	Slot() *int
}

// Heap is a min-heap of T. The zero value is an empty heap. It is not
// safe for concurrent use.
type Heap[T Elem[T]] struct {
	items []T
}

// Len returns the number of elements.
func (h *Heap[T]) Len() int { return len(h.items) }

// Min returns the root, which comes before every other element, and false
// if the heap is empty.
func (h *Heap[T]) Min() (T, bool) {
	if len(h.items) == 0 {
		var zero T
		return zero, false
	}
	return h.items[0], true
}

// Push adds x.
func (h *Heap[T]) Push(x T) { heap.Push((*adapter[T])(h), x) }

// Pop removes and returns the root; the heap must not be empty.
func (h *Heap[T]) Pop() T { return heap.Pop((*adapter[T])(h)).(T) }

// Fix restores the order after x, which is in the heap, changed.
func (h *Heap[T]) Fix(x T) { heap.Fix((*adapter[T])(h), *x.Slot()) }

// Remove takes x out of the heap, if it is in it.
func (h *Heap[T]) Remove(x T) {
	if i := *x.Slot(); i >= 0 && i < len(h.items) && h.items[i] == x {
		heap.Remove((*adapter[T])(h), i)
	}
}

// adapter is the heap.Interface of a Heap.
type adapter[T Elem[T]] Heap[T]

func (a *adapter[T]) Len() int           { return len(a.items) }
func (a *adapter[T]) Less(i, j int) bool { return a.items[i].Before(a.items[j]) }
func (a *adapter[T]) Swap(i, j int) {
	a.items[i], a.items[j] = a.items[j], a.items[i]
	*a.items[i].Slot(), *a.items[j].Slot() = i, j
}
func (a *adapter[T]) Push(x any) {
	e := x.(T)
	*e.Slot() = len(a.items)
	a.items = append(a.items, e)
}
func (a *adapter[T]) Pop() any {
	var zero T
	n := len(a.items) - 1
	e := a.items[n]
	a.items[n] = zero
	a.items = a.items[:n]
	*e.Slot() = -1
	return e
}
