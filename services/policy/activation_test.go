package policy

import (
	"context"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/runtime/policyview"
)

var socialTarget = contracts.Target{Jurisdiction: "ID", Channel: contracts.ChannelSocialCommerce, Category: "batik", SellerID: "s1",
	Origin: contracts.OriginDomestic}

// TestHeldBackDecisionRefusedAfterActivation is the scenario of a decision
// made just before a scheduled freeze's instant E and stored after it: an
// order is decided under a policy view that knows the freeze but not its
// activation, at an instant before E, and held back (as a leader election
// or a full committer would) until the policy service's activator has
// stored the activation at E. The store refuses it by its fence; the
// runner decides it again under the new view, and the rule refuses it, by
// position, although the trading service's clock still reads before E.
// Nothing in scope is stored after the activation.
func TestHeldBackDecisionRefusedAfterActivation(t *testing.T) {
	st, _ := startStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := t0.Add(time.Hour)
	policyClock := newClock(t0)
	svc, err := New(Config{Store: st, Clock: policyClock.Now, Authorizer: StaticRoles{"kemendag": {RolePolicyIssuer}}})
	if err != nil {
		t.Fatal(err)
	}
	c := freezeCmd("fz")
	c.EffectiveAt = e
	imposedRes, err := svc.ImposeFreeze(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	view, err := policyview.Start(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()

	// The trading service decides at E minus a millisecond: the clock rule
	// does not refuse yet.
	tradeClock := newClock(e.Add(-time.Millisecond))
	runner := &command.Runner{Store: st, Codec: contracts.Codec{}, Source: contracts.Source(contracts.ServiceOrder), Clock: tradeClock.Now}
	agg := command.Aggregate[int]{Context: contracts.ServiceOrder, Initial: func(string) int { return 0 }, Evolve: func(s int, _ any) int { return s + 1 }}
	decided, release := make(chan uint64, 1), make(chan struct{})
	attempts := 0
	type outcome struct {
		res command.Result[int]
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		meta := command.Meta{CommandID: "place-o1", Command: "place o1"}
		res, err := command.Run(ctx, runner, agg, "o1", meta, view.Snapshot,
			func(_ int, rules policyview.Rules, now time.Time) ([]any, error) {
				attempts++
				if err := rules.Check(contracts.OpOrderPlace, socialTarget, contracts.Money{AmountMinor: 1, Currency: "IDR"}, now); err != nil {
					return nil, err
				}
				if attempts == 1 {
					decided <- rules.Position
					<-release // held back between the decision and its append
				}
				return []any{contracts.OrderPlaced{OrderID: "o1", BuyerID: "b1", ListingID: "l1", SellerID: "s1", Quantity: 1,
					UnitPrice: contracts.Money{AmountMinor: 1, Currency: "IDR"}, Total: contracts.Money{AmountMinor: 1, Currency: "IDR"},
					Channel: socialTarget.Channel, Jurisdiction: "ID", Category: "batik", Origin: socialTarget.Origin}}, nil
			})
		done <- outcome{res, err}
	}()
	var under uint64
	select {
	case under = <-decided:
	case <-ctx.Done():
		t.Fatal("no decision")
	}
	if under < imposedRes.Appended.LastPosition {
		t.Fatalf("decided under policy %d, before the freeze at %d", under, imposedRes.Appended.LastPosition)
	}

	policyClock.Set(e)
	if res, err := svc.ActivateDue(ctx); err != nil || len(res) != 1 || len(res[0].Events) != 1 {
		t.Fatalf("activation at E: %+v, %v", res, err)
	}
	close(release)
	var out outcome
	select {
	case out = <-done:
	case <-ctx.Done():
		t.Fatal("the held-back decision never returned")
	}
	if events.KindOf(out.err) != events.KindFrozen {
		t.Fatalf("held-back decision: %+v, %v; want refused by the freeze", out.res, out.err)
	}
	if r, ok := policyview.RefusalOf(out.err); !ok || r.RuleID != "fz" {
		t.Errorf("refused by %v, want rule fz", out.err)
	}
	if attempts != 2 {
		t.Errorf("decided %d times, want twice (once under the old view, refused by the fence; once under the activation)", attempts)
	}
	if st.Stats().PolicyConflicts == 0 {
		t.Errorf("the store did not refuse the held-back decision by its fence")
	}
	evs, err := st.Load(ctx, events.AggregateRef{Context: contracts.ServiceOrder, ID: "o1"}, 0)
	if err != nil || len(evs) != 0 {
		t.Errorf("order events stored: %v, %v", evs, err)
	}
}
