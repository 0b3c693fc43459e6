package routing

import (
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dhtd/dhtd/krpc"
)

// randID draws an id from r, so tests are reproducible.
func randID(r *rand.Rand) krpc.ID {
	var id krpc.ID
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	return id
}

// flipBit returns id with bit i (0 = most significant) inverted.
func flipBit(id krpc.ID, i int) krpc.ID {
	id[i/8] ^= 0x80 >> (i % 8)
	return id
}

// idWithPrefix returns a random id sharing exactly cpl leading bits with self.
func idWithPrefix(r *rand.Rand, self krpc.ID, cpl int) krpc.ID {
	id := randID(r)
	for i := 0; i < cpl; i++ {
		mask := byte(0x80) >> (i % 8)
		id[i/8] = id[i/8]&^mask | self[i/8]&mask
	}
	if cpl < idBits {
		mask := byte(0x80) >> (cpl % 8)
		id[cpl/8] = id[cpl/8]&^mask | ^self[cpl/8]&mask
	}
	return id
}

// bigDist is the XOR distance as a big integer: an oracle independent of
// CompareDistance.
func bigDist(a, b krpc.ID) *big.Int {
	x := a.Xor(b)
	return new(big.Int).SetBytes(x[:])
}

func TestCommonPrefixLen(t *testing.T) {
	var zero krpc.ID
	ones := zero
	for i := range ones {
		ones[i] = 0xff
	}
	tests := []struct {
		name string
		a, b krpc.ID
		want int
	}{
		{"equal", ones, ones, 160},
		{"equal zero", zero, zero, 160},
		{"first bit", zero, flipBit(zero, 0), 0},
		{"bit 7", zero, flipBit(zero, 7), 7},
		{"bit 8", zero, flipBit(zero, 8), 8},
		{"bit 100", ones, flipBit(ones, 100), 100},
		{"last bit", zero, flipBit(zero, 159), 159},
		{"all differ", zero, ones, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CommonPrefixLen(tt.a, tt.b); got != tt.want {
				t.Errorf("CommonPrefixLen = %d, want %d", got, tt.want)
			}
			if got := CommonPrefixLen(tt.b, tt.a); got != tt.want {
				t.Errorf("CommonPrefixLen(b, a) = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestCompareDistance(t *testing.T) {
	var zero krpc.ID
	one, two := zero, zero
	one[19], two[19] = 1, 2
	high := flipBit(zero, 0)
	tests := []struct {
		name         string
		target, a, b krpc.ID
		want         int
	}{
		{"a closer", zero, one, two, -1},
		{"b closer", zero, two, one, 1},
		{"same", zero, one, one, 0},
		{"xor not numeric", two, high, one, 1}, // one^two = 3 < high^two
		{"target itself", one, one, zero, -1},
		{"high byte dominates", zero, two, high, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CompareDistance(tt.target, tt.a, tt.b); got != tt.want {
				t.Errorf("CompareDistance = %d, want %d", got, tt.want)
			}
		})
	}

	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		target, a, b := randID(r), randID(r), randID(r)
		if r.IntN(4) == 0 {
			b = flipBit(a, r.IntN(160)) // close pairs exercise late bytes
		}
		want := bigDist(target, a).Cmp(bigDist(target, b))
		if got := CompareDistance(target, a, b); got != want {
			t.Fatalf("CompareDistance(%s, %s, %s) = %d, want %d", target, a, b, got, want)
		}
	}
}

func TestRandomIDInBucket(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	self := randID(r)
	tests := []struct {
		i       int
		last    bool
		wantCPL func(int) bool
	}{
		{0, false, func(c int) bool { return c == 0 }},
		{1, false, func(c int) bool { return c == 1 }},
		{7, false, func(c int) bool { return c == 7 }},
		{8, false, func(c int) bool { return c == 8 }},
		{13, false, func(c int) bool { return c == 13 }},
		{159, false, func(c int) bool { return c == 159 }},
		{0, true, func(c int) bool { return c >= 0 }},
		{9, true, func(c int) bool { return c >= 9 }},
		{100, true, func(c int) bool { return c >= 100 }},
		{160, false, func(c int) bool { return c == 160 }}, // nothing to flip: self
		{160, true, func(c int) bool { return c == 160 }},
		{-3, false, func(c int) bool { return c == 0 }}, // clamped
	}
	for _, tt := range tests {
		for range 50 {
			id := RandomIDInBucket(self, tt.i, tt.last)
			if c := CommonPrefixLen(self, id); !tt.wantCPL(c) {
				t.Fatalf("RandomIDInBucket(self, %d, %v): prefix length %d", tt.i, tt.last, c)
			}
		}
	}
	// The bits after the prefix are random, not copied from self.
	a, b := RandomIDInBucket(self, 20, false), RandomIDInBucket(self, 20, false)
	if a == b {
		t.Errorf("two random ids in bucket 20 are equal: %s", a)
	}
}

func TestSortByDistance(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		target := randID(r)
		nodes := make([]krpc.NodeInfo, 50)
		for i := range nodes {
			nodes[i] = krpc.NodeInfo{ID: randID(r), Addr: testAddr(i)}
		}
		want := slices.Clone(nodes)
		slices.SortFunc(want, func(a, b krpc.NodeInfo) int {
			return bigDist(target, a.ID).Cmp(bigDist(target, b.ID))
		})
		SortByDistance(target, nodes)
		if !slices.Equal(nodes, want) {
			t.Fatalf("SortByDistance order differs from big-integer order")
		}
	}
}

// TestDistanceWords checks the word-wise distance used by Closest against
// CompareDistance, with pairs that tie on the leading words.
func TestDistanceWords(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 2000 {
		target, a := randID(r), randID(r)
		b := flipBit(a, r.IntN(160))
		if r.IntN(2) == 0 {
			b = a // equal ids
		}
		want := CompareDistance(target, a, b)
		if got := distanceTo(&target, &a).cmp(distanceTo(&target, &b)); got != want {
			t.Fatalf("distance cmp = %d, CompareDistance = %d (a=%s b=%s)", got, want, a, b)
		}
	}
}
