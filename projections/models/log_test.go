package models_test

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/internal/logtest"
	"github.com/marketledger/ledger/projections/models"
)

func TestModelsOnGeneratedLog(t *testing.T) {
	env := startEnv(t)
	g := logtest.Generate(t, env.Store, logtest.Config{Seed: 7, Listings: 12, Flows: 120})
	evs, ps := logtest.ReadAll(t, env.Store)
	if len(evs) != g.Count {
		t.Fatalf("read %d events, appended %d", len(evs), g.Count)
	}
	ms, _ := models.NewModels()
	ctx := context.Background()
	if err := projections.Rebuild(ctx, env.Store, 0, ms); err != nil {
		t.Fatal(err)
	}
	want := logtest.FoldMem(t, evs, ps, nil)
	for _, m := range ms {
		got, _ := m.Snapshot()
		if !bytes.Equal(got, want[m.Name()]) {
			t.Errorf("%s: Rebuild and in-memory fold differ", m.Name())
		}
		// Restore then Snapshot gives the same bytes.
		fresh, _ := models.NewModel(m.Name())
		if err := fresh.Restore(got); err != nil {
			t.Fatalf("%s: restore: %v", m.Name(), err)
		}
		again, _ := fresh.Snapshot()
		if !bytes.Equal(got, again) {
			t.Errorf("%s: snapshot does not survive Restore", m.Name())
		}
		if len(m.Rows().Columns) == 0 {
			t.Errorf("%s: no columns", m.Name())
		}
	}
	byName := map[string]models.Model{}
	for _, m := range ms {
		byName[m.Name()] = m
	}
	if n := byName[models.ModelViolations].(*models.Violations).Count(); n != 0 {
		t.Errorf("compliant log has %d violations: %+v", n, byName[models.ModelViolations].(*models.Violations).List())
	}
	for cur, sum := range byName[models.ModelBalances].(*models.Balances).Totals() {
		if sum != 0 {
			t.Errorf("balances in %s sum to %d", cur, sum)
		}
	}
	cat := byName[models.ModelCatalogue].(*models.Catalogue)
	if !cat.Now().After(logtest.FreezeAt) {
		t.Fatalf("generated log ends at %s, before the freeze", cat.Now())
	}
	for _, id := range []string{"l-0", "l-1"} { // l-0 social commerce, l-1 marketplace
		l, _ := cat.Listing(id)
		social := l.Channel == contracts.ChannelSocialCommerce
		if l.PromotionOnly != social || (social && l.Purchasable) || (!social && l.Stock > 0 && !l.Purchasable) {
			t.Errorf("%s after the freeze: %+v", id, l)
		}
	}
}

// TestViolationsFindsWriteAroundTheFence writes blocked orders directly
// with the store, without the fence, into a log with a scheduled freeze:
// one decided after the freeze's instant by a writer that knew of it must
// be found; one decided before the instant is not a violation.
func TestViolationsFindsWriteAroundTheFence(t *testing.T) {
	env := startEnv(t)
	g := logtest.Generate(t, env.Store, logtest.Config{Seed: 3, Listings: 6, Flows: 40})
	bad := logtest.AppendViolationUnder(t, env.Store, "o-rogue", logtest.FreezeAt.Add(time.Minute), g.Policy)
	logtest.AppendViolationUnder(t, env.Store, "o-early", logtest.FreezeAt.Add(-time.Hour), g.Policy)
	v := models.NewViolations()
	if err := projections.Rebuild(context.Background(), env.Store, 0, []models.Model{v}); err != nil {
		t.Fatal(err)
	}
	got := v.List()
	if len(got) != 1 {
		t.Fatalf("want 1 violation, got %d: %+v", len(got), got)
	}
	if got[0].Position != bad.LastPosition || got[0].RuleID != "freeze-social-id" ||
		!slices.Equal(got[0].Kinds, []models.ViolationKind{models.ViolationDecisionInstant}) {
		t.Errorf("rogue order: %+v", got[0])
	}
	if v.Checked() == 0 || len(v.Rows().Rows) != 1 {
		t.Errorf("checked %d, rows %d", v.Checked(), len(v.Rows().Rows))
	}
}
