package scenario

import (
	"context"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit/judge"
)

// TestJudgesFindAPlantedViolation writes around the guarantee on purpose
// (an order placed in scope after a freeze, appended without the policy
// fence and claiming the policy before the freeze) and checks that both
// judges the freeze tests rely on see it: a judge that cannot fail would
// prove nothing.
func TestJudgesFindAPlantedViolation(t *testing.T) {
	ins := nodeInstances(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	lst := ListingSpec{ID: "planted-1", Seller: "seller-1", Category: "batik", Channel: contracts.ChannelSocialCommerce, Price: 150_000 * 100, Stock: 5}
	if err := CreateListings(ctx, ins[0], lst); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ImposeFreeze(ctx, ins[0], Freeze("freeze-planted", lst.Category, time.Time{})); err != nil {
		t.Fatal(err)
	}
	typ, v, data, err := contracts.Encode(contracts.OrderPlaced{OrderID: "planted-o1", BuyerID: "buyer-1", ListingID: lst.ID,
		SellerID: lst.Seller, Quantity: 1, UnitPrice: IDR(lst.Price), Total: IDR(lst.Price), Channel: lst.Channel,
		Jurisdiction: "ID", Category: lst.Category, Origin: contracts.OriginDomestic})
	if err != nil {
		t.Fatal(err)
	}
	ev := events.Event{ID: events.NewID(), Type: typ, SchemaVersion: v, Source: contracts.Source(contracts.ServiceOrder),
		AggregateID: "planted-o1", OccurredAt: time.Now(), Data: data}
	if _, err := ins[0].Store.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: contracts.ServiceOrder, ID: "planted-o1"},
		Events: []events.Event{ev}}); err != nil {
		t.Fatal(err)
	}
	lg, err := ReadLog(ctx, ins[0].Store)
	if err != nil {
		t.Fatal(err)
	}
	if v := lg.Violations(lg.Freezes["freeze-planted"]); len(v) == 0 {
		t.Errorf("Log.Violations found nothing in a log with a planted violation")
	} else {
		t.Logf("found: %v", v)
	}
	audit, err := Audit(ctx, ins[0].Store)
	if err != nil {
		t.Fatal(err)
	}
	if audit.Count() != 1 {
		t.Errorf("the violations audit found %d violations, want the planted one", audit.Count())
	}
	r, err := judge.Check(ctx, ins[0].Store.JetStream(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Violations) != 1 || r.Violations[0].RuleID != "freeze-planted" || r.Violations[0].EventID != ev.ID {
		t.Errorf("the independent judge found violations %v, want the planted one", r.Violations)
	}
}
