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

// TestFrontierKeptAndRestored: a frontier encoded at any size and restored
// goes on to the same roots as one never stopped; an encoding whose hashes
// do not match its leaf count is refused.
func TestFrontierKeptAndRestored(t *testing.T) {
	var whole Frontier
	leaf := func(i int) Hash { return LeafHash([]byte{byte(i), byte(i >> 8)}) }
	for stop := range 70 {
		var f Frontier
		for i := range stop {
			f.Append(leaf(i))
		}
		b, _ := f.MarshalBinary()
		var g Frontier
		if err := g.UnmarshalBinary(b); err != nil {
			t.Fatalf("restore at %d: %v", stop, err)
		}
		whole = Frontier{}
		for i := range 70 {
			whole.Append(leaf(i))
			if i >= stop {
				g.Append(leaf(i))
			}
		}
		if a, _ := g.Root(); a != mustRoot(t, &whole) || g.Size() != 70 {
			t.Fatalf("restored at %d: root %s, want %s", stop, a, mustRoot(t, &whole))
		}
	}
	b, _ := whole.MarshalBinary()
	var g Frontier
	if err := g.UnmarshalBinary(b[:len(b)-len(Hash{})]); err == nil {
		t.Error("a frontier missing a subtree was restored")
	}
	if err := g.UnmarshalBinary(b[:5]); err == nil {
		t.Error("5 bytes were restored as a frontier")
	}
}

func mustRoot(t *testing.T, f *Frontier) Hash {
	t.Helper()
	r, ok := f.Root()
	if !ok {
		t.Fatal("no root")
	}
	return r
}
