package bundle

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/internal/logtest"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// TestRowProofVerifiesOffline: a point answer with proof=true survives a
// round trip through JSON and verifies against the notary's key alone; a
// changed state, a changed event or another key fails.
func TestRowProofVerifiesOffline(t *testing.T) {
	env := startEnv(t)
	logtest.Generate(t, env.Store, logtest.Config{Seed: 43, Listings: 4, Flows: 20})
	ctx := context.Background()
	key, err := notary.LoadOrCreateKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	nt := notary.New(env.Store, key)
	ix, err := projections.OpenIndex(filepath.Join(t.TempDir(), "asof.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.Build(ctx, env.Store, 0); err != nil {
		t.Fatal(err)
	}
	rq := projections.NewRowQuerier(ctx, ix, env.Store)
	head, _ := env.Store.LastPosition(ctx)
	a, err := rq.Row(ctx, models.ModelOrders, "o-3", projections.AtPosition(head), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ProveRow(ctx, env.Store, ix, nt, a); !errors.Is(err, events.ErrUnavailable) {
		t.Errorf("no checkpoint yet: got %v", err)
	}
	if _, _, err := nt.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := ProveRow(ctx, env.Store, ix, nt, a)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Proof.Events) < 2 {
		t.Fatalf("order o-3 proven by %d events", len(p.Proof.Events))
	}
	saved, _ := json.Marshal(p)
	load := func() *RowAnswer {
		var got RowAnswer
		if err := json.Unmarshal(saved, &got); err != nil {
			t.Fatal(err)
		}
		return &got
	}
	if checked, err := VerifyRow(load(), key.Public().(ed25519.PublicKey)); err != nil || !checked {
		t.Fatalf("saved answer: %v (state checked %v)", err, checked)
	}
	other, _ := notary.LoadOrCreateKey(t.TempDir())
	tampered := []struct {
		name string
		edit func(*RowAnswer)
		key  ed25519.PublicKey
		want string
	}{
		{"other key", func(*RowAnswer) {}, other.Public().(ed25519.PublicKey), "trusted key"},
		{"event data", func(a *RowAnswer) { a.Proof.Events[0].Data = `{"order_id":"o-9"}` }, nil, "hash"},
		{"dropped last event", func(a *RowAnswer) { a.Proof.Events = a.Proof.Events[:len(a.Proof.Events)-1] }, nil, "version"},
		{"state", func(a *RowAnswer) { a.Rows[0].State = json.RawMessage(`{"status":"completed"}`) }, nil, "state"},
		{"key", func(a *RowAnswer) { a.Rows[0].Key = "o-4" }, nil, "state"},
		{"event position", func(a *RowAnswer) { a.Proof.Events[0].Proof.LeafIndex++ }, nil, "proof"},
	}
	for _, tt := range tampered {
		a := load()
		tt.edit(a)
		if _, err := VerifyRow(a, tt.key); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error about %s", tt.name, err, tt.want)
		}
	}
}
