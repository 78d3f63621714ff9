package notary_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/notary"
)

// TestVerifyingMerkleVectors: the leaves, leaf hashes and root that
// docs/verifying.md gives are the notary's.
func TestVerifyingMerkleVectors(t *testing.T) {
	doc, err := os.ReadFile("../../docs/verifying.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := bytes.Cut(doc, []byte("<!-- vectors"))
	_, rest, _ = bytes.Cut(rest, []byte("```json\n"))
	block, _, ok := bytes.Cut(rest, []byte("```"))
	if !ok {
		t.Fatal("docs/verifying.md: no vectors block")
	}
	var v struct {
		Leaves []struct {
			Position   uint64 `json:"position"`
			RecordedAt int64  `json:"recorded_at_unix_nano"`
			EventHash  string `json:"event_hash"`
			Leaf       string `json:"leaf"`
			LeafHash   string `json:"leaf_hash"`
		} `json:"leaves"`
		Root string `json:"root"`
	}
	if err := json.Unmarshal(block, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Leaves) == 0 {
		t.Fatal("no leaf vectors")
	}
	var tree notary.Tree
	for i, l := range v.Leaves {
		e := events.Event{Position: l.Position, RecordedAt: time.Unix(0, l.RecordedAt), Hash: l.EventHash}
		leaf, err := notary.EventLeaf(&e)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(leaf); got != l.Leaf {
			t.Errorf("leaf %d: %s, the page says %s", i, got, l.Leaf)
		}
		h := notary.LeafHash(leaf)
		if h.String() != l.LeafHash {
			t.Errorf("leaf hash %d: %s, the page says %s", i, h, l.LeafHash)
		}
		tree.Append(h)
	}
	root, err := tree.Root(tree.Size())
	if err != nil || root.String() != v.Root {
		t.Errorf("root %s (%v), the page says %s", root, err, v.Root)
	}
}
