package notary

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Frontier computes the root of an append-only Merkle tree (RFC 6962) as
// leaves stream by, keeping one hash per complete subtree on the tree's
// right edge: log2(n) hashes, where a Tree keeps every level (about two
// hashes a leaf). A bundle over millions of events needs its root only.
// It is not safe for concurrent use.
type Frontier struct {
	stack []Hash // complete subtrees, largest (leftmost) first
	size  uint64
}

// Append adds a leaf hash.
func (f *Frontier) Append(leaf Hash) {
	h := leaf
	for n := f.size; n&1 == 1; n >>= 1 { // each trailing one is a subtree of the same size to merge
		h = NodeHash(f.stack[len(f.stack)-1], h)
		f.stack = f.stack[:len(f.stack)-1]
	}
	f.stack = append(f.stack, h)
	f.size++
}

// Size returns the number of leaves.
func (f *Frontier) Size() uint64 { return f.size }

// Root returns the root of every leaf appended (RFC 6962 MTH): the
// subtrees folded from the right, as MTH splits at the largest power of two.
func (f *Frontier) Root() (Hash, bool) {
	if f.size == 0 {
		return Hash{}, false
	}
	r := f.stack[len(f.stack)-1]
	for i := len(f.stack) - 2; i >= 0; i-- {
		r = NodeHash(f.stack[i], r)
	}
	return r, true
}

// MarshalBinary encodes the frontier: the leaf count (8 bytes, big-endian)
// and the subtree hashes, largest first, so that a fold can keep it and go
// on appending later.
func (f *Frontier) MarshalBinary() ([]byte, error) {
	b := make([]byte, 8, 8+len(f.stack)*len(Hash{}))
	binary.BigEndian.PutUint64(b, f.size)
	for _, h := range f.stack {
		b = append(b, h[:]...)
	}
	return b, nil
}

// UnmarshalBinary restores a frontier MarshalBinary encoded, refusing one
// whose hashes do not match its leaf count (one per bit set in it).
func (f *Frontier) UnmarshalBinary(b []byte) error {
	if len(b) < 8 || (len(b)-8)%len(Hash{}) != 0 {
		return fmt.Errorf("notary: a frontier is 8 bytes and whole hashes, not %d bytes", len(b))
	}
	size := binary.BigEndian.Uint64(b)
	n := (len(b) - 8) / len(Hash{})
	if n != bits.OnesCount64(size) {
		return fmt.Errorf("notary: a frontier of %d leaves has %d subtrees, not %d", size, bits.OnesCount64(size), n)
	}
	stack := make([]Hash, n)
	for i := range stack {
		copy(stack[i][:], b[8+i*len(Hash{}):])
	}
	f.stack, f.size = stack, size
	return nil
}
