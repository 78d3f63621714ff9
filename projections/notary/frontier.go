package notary

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
