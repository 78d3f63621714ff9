package notary

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
)

// mth is the RFC 6962 definition, computed the slow way.
func mth(leaves []Hash) Hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := splitPoint(uint64(len(leaves)))
	return NodeHash(mth(leaves[:k]), mth(leaves[k:]))
}

func TestMerkleProofs(t *testing.T) {
	var tr Tree
	var leaves []Hash
	for i := range 70 {
		l := LeafHash([]byte(strconv.Itoa(i)))
		leaves = append(leaves, l)
		tr.Append(l)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for n := uint64(1); n <= 70; n++ {
		root, err := tr.Root(n)
		if err != nil || root != mth(leaves[:n]) {
			t.Fatalf("root %d: %v", n, err)
		}
		for i := uint64(0); i < n; i++ {
			p, _ := tr.InclusionProof(i, n)
			if err := VerifyInclusion(leaves[i], i, n, p, root); err != nil {
				t.Fatalf("inclusion %d/%d: %v", i, n, err)
			}
			if err := VerifyInclusion(leaves[(i+1)%70], i, n, p, root); err == nil && leaves[(i+1)%70] != leaves[i] {
				t.Fatalf("inclusion of a wrong leaf %d/%d verified", i, n)
			}
			if len(p) > 0 {
				bad := append([]Hash(nil), p...)
				bad[rng.IntN(len(bad))][rng.IntN(32)] ^= 1
				if err := VerifyInclusion(leaves[i], i, n, bad, root); !errors.Is(err, ErrProof) {
					t.Fatalf("tampered inclusion path %d/%d verified", i, n)
				}
			}
		}
		for m := uint64(1); m <= n; m++ {
			rm, _ := tr.Root(m)
			p, err := tr.ConsistencyProof(m, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyConsistency(m, n, rm, root, p); err != nil {
				t.Fatalf("consistency %d..%d: %v", m, n, err)
			}
			if m < n {
				wrong := rm
				wrong[0] ^= 1
				if VerifyConsistency(m, n, wrong, root, p) == nil {
					t.Fatalf("consistency with a tampered old root %d..%d verified", m, n)
				}
				if len(p) > 0 {
					bad := append([]Hash(nil), p...)
					bad[rng.IntN(len(bad))][0] ^= 1
					if VerifyConsistency(m, n, rm, root, bad) == nil {
						t.Fatalf("tampered consistency proof %d..%d verified", m, n)
					}
				}
			}
		}
	}
}
