package notary

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"

	"github.com/marketledger/ledger/events"
)

// Hash is a SHA-256 Merkle tree hash.
type Hash [32]byte

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash reads a hex hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("not a hex SHA-256: %q", s)
	}
	copy(h[:], b)
	return h, nil
}

// LeafHash is the RFC 6962 leaf hash: SHA-256(0x00 || leaf).
func LeafHash(leaf []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(leaf)
	var out Hash
	h.Sum(out[:0])
	return out
}

// NodeHash is the RFC 6962 interior node hash: SHA-256(0x01 || l || r).
func NodeHash(l, r Hash) Hash {
	var b [65]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[33:], r[:])
	return sha256.Sum256(b[:])
}

// EventLeaf is the leaf the notary logs for an event: its global position
// (8 bytes big-endian), its server time (Unix nanoseconds, 8 bytes
// big-endian) and its content hash (32 bytes). The event hash covers what the
// event says; position and time bind where and when the log holds it, which
// the event hash leaves out.
func EventLeaf(e *events.Event) ([]byte, error) {
	h, err := hex.DecodeString(e.Hash)
	if err != nil || len(h) != sha256.Size {
		return nil, &events.Error{Op: "projections.EventLeaf", Kind: events.KindIntegrity,
			Field: fmt.Sprintf("position %d", e.Position), Rule: "event hash is not a hex SHA-256"}
	}
	b := make([]byte, 0, 48)
	b = binary.BigEndian.AppendUint64(b, e.Position)
	b = binary.BigEndian.AppendUint64(b, uint64(e.RecordedAt.UnixNano()))
	return append(b, h...), nil
}

// Tree is an append-only Merkle tree that keeps every complete subtree, so
// that the root of any earlier size and any proof cost O(log n) hashes.
// It is not safe for concurrent use.
type Tree struct {
	levels [][]Hash // levels[k][i]: the subtree of 2^k leaves from i*2^k
}

// Append adds a leaf hash.
func (t *Tree) Append(leaf Hash) {
	if len(t.levels) == 0 {
		t.levels = append(t.levels, nil)
	}
	t.levels[0] = append(t.levels[0], leaf)
	for k := 0; len(t.levels[k])%2 == 0; k++ {
		n := len(t.levels[k])
		if k+1 == len(t.levels) {
			t.levels = append(t.levels, nil)
		}
		t.levels[k+1] = append(t.levels[k+1], NodeHash(t.levels[k][n-2], t.levels[k][n-1]))
	}
}

// Size returns the number of leaves.
func (t *Tree) Size() uint64 {
	if len(t.levels) == 0 {
		return 0
	}
	return uint64(len(t.levels[0]))
}

// Root returns the root of the tree's first n leaves (n >= 1).
func (t *Tree) Root(n uint64) (Hash, error) {
	if n == 0 || n > t.Size() {
		return Hash{}, fmt.Errorf("tree size %d out of range 1..%d", n, t.Size())
	}
	return t.subtree(0, n), nil
}

// subtree is MTH(D[lo:hi]). Every range the RFC's recursion asks for
// starts at a multiple of its largest power-of-two part, so complete
// subtrees come from levels.
func (t *Tree) subtree(lo, hi uint64) Hash {
	n := hi - lo
	if n&(n-1) == 0 {
		k := bits.TrailingZeros64(n)
		return t.levels[k][lo>>k]
	}
	k := splitPoint(n)
	return NodeHash(t.subtree(lo, lo+k), t.subtree(lo+k, hi))
}

// splitPoint is the largest power of two smaller than n (n >= 2).
func splitPoint(n uint64) uint64 { return 1 << (bits.Len64(n-1) - 1) }

// InclusionProof returns the audit path of leaf index in the tree of size n
// (RFC 6962 section 2.1.1).
func (t *Tree) InclusionProof(index, n uint64) ([]Hash, error) {
	if n == 0 || n > t.Size() || index >= n {
		return nil, fmt.Errorf("leaf %d not in a tree of size %d (have %d)", index, n, t.Size())
	}
	return t.path(index, 0, n), nil
}

func (t *Tree) path(m, lo, hi uint64) []Hash {
	n := hi - lo
	if n == 1 {
		return nil
	}
	k := splitPoint(n)
	if m < k {
		return append(t.path(m, lo, lo+k), t.subtree(lo+k, hi))
	}
	return append(t.path(m-k, lo+k, hi), t.subtree(lo, lo+k))
}

// ConsistencyProof proves the tree of size m is a prefix of the tree of
// size n (RFC 6962 section 2.1.2).
func (t *Tree) ConsistencyProof(m, n uint64) ([]Hash, error) {
	if m == 0 || m > n || n > t.Size() {
		return nil, fmt.Errorf("sizes %d..%d out of range 1..%d", m, n, t.Size())
	}
	if m == n {
		return nil, nil
	}
	return t.subproof(m, 0, n, true), nil
}

func (t *Tree) subproof(m, lo, hi uint64, complete bool) []Hash {
	n := hi - lo
	if m == n {
		if complete {
			return nil
		}
		return []Hash{t.subtree(lo, hi)}
	}
	k := splitPoint(n)
	if m <= k {
		return append(t.subproof(m, lo, lo+k, complete), t.subtree(lo+k, hi))
	}
	return append(t.subproof(m-k, lo+k, hi, false), t.subtree(lo, lo+k))
}

// ErrProof is returned (wrapped) by the verifiers when a proof fails.
var ErrProof = errors.New("merkle proof does not verify")

// VerifyInclusion checks that leaf is at index in the tree of size n whose
// root is root (RFC 9162 section 2.1.3.2).
func VerifyInclusion(leaf Hash, index, n uint64, proof []Hash, root Hash) error {
	if index >= n {
		return fmt.Errorf("%w: leaf index %d not below tree size %d", ErrProof, index, n)
	}
	fn, sn, r := index, n-1, leaf
	for _, p := range proof {
		if sn == 0 {
			return fmt.Errorf("%w: proof longer than the tree is deep", ErrProof)
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn, sn = fn>>1, sn>>1
			}
		} else {
			r = NodeHash(r, p)
		}
		fn, sn = fn>>1, sn>>1
	}
	if sn != 0 || r != root {
		return fmt.Errorf("%w: computed root %s, expected %s", ErrProof, r, root)
	}
	return nil
}

// VerifyConsistency checks that the tree of size m with root rootM is a
// prefix of the tree of size n with root rootN (RFC 9162 section 2.1.4.2).
func VerifyConsistency(m, n uint64, rootM, rootN Hash, proof []Hash) error {
	switch {
	case m == 0 || m > n:
		return fmt.Errorf("%w: sizes %d..%d", ErrProof, m, n)
	case m == n:
		if len(proof) != 0 || rootM != rootN {
			return fmt.Errorf("%w: equal sizes with different roots or a non-empty proof", ErrProof)
		}
		return nil
	}
	if m&(m-1) == 0 {
		proof = append([]Hash{rootM}, proof...)
	}
	if len(proof) == 0 {
		return fmt.Errorf("%w: empty proof", ErrProof)
	}
	fn, sn := m-1, n-1
	for fn&1 == 1 {
		fn, sn = fn>>1, sn>>1
	}
	fr, sr := proof[0], proof[0]
	for _, c := range proof[1:] {
		if sn == 0 {
			return fmt.Errorf("%w: proof too long", ErrProof)
		}
		if fn&1 == 1 || fn == sn {
			fr, sr = NodeHash(c, fr), NodeHash(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn, sn = fn>>1, sn>>1
			}
		} else {
			sr = NodeHash(sr, c)
		}
		fn, sn = fn>>1, sn>>1
	}
	if sn != 0 || fr != rootM || sr != rootN {
		return fmt.Errorf("%w: consistency %d..%d", ErrProof, m, n)
	}
	return nil
}

// MarshalText writes the hash as hex, so proofs read well as JSON.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	*h = p
	return err
}
