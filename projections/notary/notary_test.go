package notary

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/internal/logtest"
)

func TestNotaryKeyFile(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "notary", "ed25519.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "notary", "ed25519.pub"))
	if err != nil || !ed25519.PublicKey(pub).Equal(k1.Public()) {
		t.Fatalf("public key file: %v", err)
	}
	k2, err := LoadOrCreateKey(dir)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("second start made another key: %v", err)
	}
	os.Chmod(filepath.Join(dir, "notary", "ed25519.key"), 0o644)
	if _, err := LoadOrCreateKey(dir); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("world-readable key accepted: %v", err)
	}
}

func TestNotaryCheckpointsAndProofs(t *testing.T) {
	env := startEnv(t)
	g := logtest.Generate(t, env.Store, logtest.Config{Seed: 31, Listings: 5, Flows: 30})
	ctx := context.Background()
	key, _ := LoadOrCreateKey(t.TempDir())
	n := New(env.Store, key)
	c1, a1, err := n.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g.More(20, 4, 32)
	c2, _, err := n.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c2.TreeSize <= c1.TreeSize+1 || c2.Position <= a1.LastPosition {
		t.Fatalf("second checkpoint %+v does not cover the first's event", c2)
	}
	// The checkpoints are in the log, and verify from it alone.
	stored, err := env.Store.Load(ctx, NotaryAggregate, 0)
	if err != nil || len(stored) != 2 {
		t.Fatalf("notary events: %d %v", len(stored), err)
	}
	var roots []Hash
	for _, e := range stored {
		c, err := contracts.DecodeAs[contracts.NotaryCheckpointed](e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			t.Fatal(err)
		}
		r, err := VerifyCheckpoint(c, n.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, r)
	}
	// Tampering with a checkpoint or trusting another key fails.
	bad := c2
	bad.RootHash = c1.RootHash
	if _, err := VerifyCheckpoint(bad, nil); !errors.Is(err, events.ErrIntegrity) {
		t.Errorf("checkpoint with another root verified: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(crand.Reader)
	if _, err := VerifyCheckpoint(c2, other); err == nil {
		t.Error("checkpoint verified against another trusted key")
	}
	// Consistency between the two checkpoints.
	p, err := n.Consistency(ctx, c1.TreeSize, c2.TreeSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyConsistency(c1.TreeSize, c2.TreeSize, roots[0], roots[1], p); err != nil {
		t.Fatal(err)
	}
	if VerifyConsistency(c1.TreeSize, c2.TreeSize, roots[1], roots[1], p) == nil {
		t.Error("consistency verified with a wrong old root")
	}
	// Inclusion of events under the second checkpoint; a tampered event fails.
	evs, _ := logtest.ReadAll(t, env.Store)
	rng := rand.New(rand.NewPCG(3, 3))
	for range 20 {
		e := evs[rng.IntN(len(evs))]
		if e.Position > c2.Position {
			continue
		}
		ip, err := n.Inclusion(ctx, e.Position, c2.TreeSize)
		if err != nil {
			t.Fatal(err)
		}
		if err := ip.Verify(&e, roots[1]); err != nil {
			t.Fatalf("position %d: %v", e.Position, err)
		}
		forged := e
		forged.Hash = evs[0].Hash
		if forged.Hash != e.Hash && ip.Verify(&forged, roots[1]) == nil {
			t.Fatalf("forged event at %d verified", e.Position)
		}
		moved := e
		moved.RecordedAt = e.RecordedAt.Add(1)
		if ip.Verify(&moved, roots[1]) == nil {
			t.Fatalf("event with another recorded time at %d verified", e.Position)
		}
	}
	// A second notary folding from zero gets the same roots.
	n2 := New(env.Store, key)
	size, root, err := n2.TreeAt(ctx, c1.Position)
	if err != nil || size != c1.TreeSize || root != roots[0] {
		t.Errorf("refold: size %d root %s, checkpoint %d %s (%v)", size, root, c1.TreeSize, roots[0], err)
	}
	if _, err := n.Inclusion(ctx, c2.Position+1000, c2.TreeSize); !errors.Is(err, events.ErrNotFound) {
		t.Errorf("proof for a missing position: %v", err)
	}
}
