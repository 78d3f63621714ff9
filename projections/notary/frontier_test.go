package notary

import (
	"crypto/sha256"
	"testing"
)

// TestFrontierRootIsTreeRoot compares the streaming root with the Tree's
// for every size up to 600.
func TestFrontierRootIsTreeRoot(t *testing.T) {
	var tr Tree
	var f Frontier
	for i := range 600 {
		leaf := LeafHash(sha256.New().Sum([]byte{byte(i), byte(i >> 8)}))
		tr.Append(leaf)
		f.Append(leaf)
		want, err := tr.Root(tr.Size())
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := f.Root(); !ok || got != want || f.Size() != tr.Size() {
			t.Fatalf("size %d: frontier root %s, tree root %s", tr.Size(), got, want)
		}
	}
}
