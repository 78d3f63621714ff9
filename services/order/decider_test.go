package order

import (
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/testkit/decidertest"
)

var (
	wib        = time.FixedZone("WIB", 7*3600)
	freezeAt   = time.Date(2023, 10, 4, 17, 0, 0, 0, wib)
	beforeNoon = time.Date(2023, 10, 4, 11, 0, 0, 0, wib)
	usd        = func(minor int64) contracts.Money { return contracts.Money{AmountMinor: minor, Currency: "USD"} }
)

// spec is the order decider under test, on order o1. A case decides
// with the listing of theListing() and no rules unless it adjusts them.
var spec = decidertest.Spec[Order, Inputs]{ID: "o1", Initial: Initial, Evolve: Evolve, Decide: Decide, Now: beforeNoon,
	Inputs: func(Order, any) Inputs { return Inputs{Listing: theListing()} }}

// Given starts a case from the order's past events.
func Given(evs ...any) decidertest.Case[Order, Inputs] { return spec.Given(evs...) }

// onListing sets the listing as the order service sees it at decision time.
func onListing(l Listing) func(*Inputs) { return func(in *Inputs) { in.Listing = l } }

// under sets the policy rules.
func under(rules policyview.Rules) func(*Inputs) { return func(in *Inputs) { in.Rules = rules } }

func theListing() Listing {
	return Listing{ID: "l1", Created: true, SellerID: "s1", Category: "apparel", Channel: contracts.ChannelSocialCommerce,
		Jurisdiction: "ID", Origin: contracts.OriginCrossBorder, Price: usd(150_00), Stock: 10}
}

func placed() contracts.OrderPlaced {
	return contracts.OrderPlaced{OrderID: "o1", BuyerID: "b1", ListingID: "l1", SellerID: "s1", Quantity: 2,
		UnitPrice: usd(150_00), Total: usd(300_00), Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID",
		Category: "apparel", Origin: contracts.OriginCrossBorder}
}

func place() contracts.PlaceOrder {
	return contracts.PlaceOrder{OrderID: "o1", BuyerID: "b1", ListingID: "l1", Quantity: 2}
}

func with[T any](v T, f func(*T)) T { f(&v); return v }

var (
	confirmed = contracts.OrderConfirmed{OrderID: "o1", PaymentID: "p1"}
	cancelled = contracts.OrderCancelled{OrderID: "o1", Reason: "changed my mind"}
	shipped   = contracts.OrderShipped{OrderID: "o1", Carrier: "JNE"}
	completed = contracts.OrderCompleted{OrderID: "o1"}
	rejected  = contracts.OrderRejected{OrderID: "o1", Reason: "out of stock"}

	freeze = policyview.Fold(contracts.FreezeImposed{RuleID: "freeze-id-sc", Scope: contracts.Scope{Jurisdictions: []string{"ID"},
		Channels: []contracts.Channel{contracts.ChannelSocialCommerce}}, BlockedOperations: contracts.FreezeOperations,
		EffectiveAt: freezeAt, LegalBasis: "Permendag 31/2023"})
	// liftPending has the lift scheduled an hour after the freeze and not
	// yet activated: a lift is never honoured early by the clock.
	liftPending = freeze.Apply(freeze.Position+1, contracts.FreezeLifted{RuleID: "freeze-id-sc", EffectiveAt: freezeAt.Add(time.Hour),
		Activation: contracts.ActivationScheduled})
	lifted = liftPending.Apply(liftPending.Position+1, contracts.RuleActivated{RuleID: "freeze-id-sc",
		Activates: contracts.ChangeFreezeLifted, ScheduledAt: freezeAt.Add(time.Hour)})
	floor = policyview.Fold(contracts.FloorPriceSet{RuleID: "floor-usd-100", BlockedOperations: contracts.FloorPriceOperations,
		Amount: usd(100_00), Origin: contracts.OriginCrossBorder, EffectiveAt: freezeAt, LegalBasis: "Permendag 31/2023"})
)

func TestDecideAccepts(t *testing.T) {
	marketplace := with(theListing(), func(l *Listing) { l.Channel = contracts.ChannelMarketplace })
	tests := []struct {
		name string
		s    decidertest.Case[Order, Inputs]
		then []any
	}{
		{"place takes price and attributes from the listing", Given().When(place()), []any{placed()}},
		{"place just before the freeze", Given().Adjust(under(freeze)).At(freezeAt.Add(-time.Nanosecond)).When(place()), []any{placed()}},
		{"place out of the freeze's scope", Given().Adjust(onListing(marketplace)).Adjust(under(freeze)).At(freezeAt).When(place()),
			[]any{with(placed(), func(e *contracts.OrderPlaced) { e.Channel = contracts.ChannelMarketplace })}},
		{"place after the lift", Given().Adjust(under(lifted)).At(freezeAt.Add(time.Hour)).When(place()), []any{placed()}},
		{"place at the floor", Given().Adjust(onListing(with(theListing(), func(l *Listing) { l.Price = usd(100_00) }))).Adjust(under(floor)).At(freezeAt).When(place()),
			[]any{with(placed(), func(e *contracts.OrderPlaced) { e.UnitPrice, e.Total = usd(100_00), usd(200_00) })}},
		{"confirm", Given(placed()).When(contracts.ConfirmOrder{OrderID: "o1", PaymentID: "p1"}), []any{confirmed}},
		{"confirm again", Given(placed(), confirmed).When(contracts.ConfirmOrder{OrderID: "o1", PaymentID: "p1"}), nil},
		{"cancel placed", Given(placed()).When(contracts.CancelOrder{OrderID: "o1", Reason: "changed my mind"}), []any{cancelled}},
		{"cancel confirmed", Given(placed(), confirmed).When(contracts.CancelOrder{OrderID: "o1", Reason: "changed my mind"}), []any{cancelled}},
		{"cancel during a freeze", Given(placed(), confirmed).Adjust(under(freeze)).At(freezeAt).When(contracts.CancelOrder{OrderID: "o1", Reason: "changed my mind"}), []any{cancelled}},
		{"cancel again", Given(placed(), cancelled).When(contracts.CancelOrder{OrderID: "o1", Reason: "again"}), nil},
		{"ship", Given(placed(), confirmed).When(contracts.ShipOrder{OrderID: "o1", Carrier: "JNE"}), []any{shipped}},
		{"complete", Given(placed(), confirmed, shipped).When(contracts.CompleteOrder{OrderID: "o1"}), []any{completed}},
		{"reject", Given(placed()).When(contracts.RejectOrder{OrderID: "o1", Reason: "out of stock"}), []any{rejected}},
		{"reject again", Given(placed(), rejected).When(contracts.RejectOrder{OrderID: "o1", Reason: "out of stock"}), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.s.Then(t, tc.then...) })
	}
}

func TestDecideRefuses(t *testing.T) {
	huge := with(theListing(), func(l *Listing) { l.Price = usd(contracts.MaxAmountMinor) })
	tests := []struct {
		name  string
		s     decidertest.Case[Order, Inputs]
		kind  events.Kind
		field string
	}{
		{"place twice", Given(placed()).When(place()), events.KindConflict, "/order_id"},
		{"place zero units", Given().When(with(place(), func(c *contracts.PlaceOrder) { c.Quantity = 0 })), events.KindInvalid, "/quantity"},
		{"place negative units", Given().When(with(place(), func(c *contracts.PlaceOrder) { c.Quantity = -1 })), events.KindInvalid, "/quantity"},
		{"place with no buyer", Given().When(with(place(), func(c *contracts.PlaceOrder) { c.BuyerID = "" })), events.KindInvalid, "/buyer_id"},
		{"place on unknown listing", Given().Adjust(onListing(Listing{ID: "l1"})).When(place()), events.KindNotFound, "/listing_id"},
		{"place on delisted listing", Given().Adjust(onListing(with(theListing(), func(l *Listing) { l.Delisted = true }))).When(place()), events.KindInvalid, "/listing_id"},
		{"place with an amount that overflows", Given().Adjust(onListing(huge)).When(place()), events.KindInvalid, "/quantity"},
		{"place more than in stock", Given().When(with(place(), func(c *contracts.PlaceOrder) { c.Quantity = 11 })), events.KindConflict, "/quantity"},
		{"place at the freeze instant", Given().Adjust(under(freeze)).At(freezeAt).When(place()), events.KindFrozen, ""},
		{"place during the freeze", Given().Adjust(under(liftPending)).At(freezeAt.Add(time.Hour + time.Minute)).When(place()), events.KindFrozen, ""},
		{"place below the floor", Given().Adjust(onListing(with(theListing(), func(l *Listing) { l.Price = usd(99_99) }))).Adjust(under(floor)).At(freezeAt).When(place()), events.KindFrozen, "/listing_id"},
		{"confirm unknown order", Given().When(contracts.ConfirmOrder{OrderID: "o1", PaymentID: "p1"}), events.KindNotFound, "/order_id"},
		{"confirm cancelled order", Given(placed(), cancelled).When(contracts.ConfirmOrder{OrderID: "o1", PaymentID: "p1"}), events.KindConflict, "/order_id"},
		{"confirm with another payment", Given(placed(), confirmed).When(contracts.ConfirmOrder{OrderID: "o1", PaymentID: "p2"}), events.KindConflict, "/payment_id"},
		{"cancel unknown order", Given().When(contracts.CancelOrder{OrderID: "o1", Reason: "x"}), events.KindNotFound, "/order_id"},
		{"cancel without reason", Given(placed()).When(contracts.CancelOrder{OrderID: "o1"}), events.KindInvalid, "/reason"},
		{"cancel shipped order", Given(placed(), confirmed, shipped).When(contracts.CancelOrder{OrderID: "o1", Reason: "x"}), events.KindConflict, "/order_id"},
		{"cancel rejected order", Given(placed(), rejected).When(contracts.CancelOrder{OrderID: "o1", Reason: "x"}), events.KindConflict, "/order_id"},
		{"ship unconfirmed order", Given(placed()).When(contracts.ShipOrder{OrderID: "o1"}), events.KindConflict, "/order_id"},
		{"ship cancelled order", Given(placed(), confirmed, cancelled).When(contracts.ShipOrder{OrderID: "o1"}), events.KindConflict, "/order_id"},
		{"ship unknown order", Given().When(contracts.ShipOrder{OrderID: "o1"}), events.KindNotFound, "/order_id"},
		{"complete unshipped order", Given(placed(), confirmed).When(contracts.CompleteOrder{OrderID: "o1"}), events.KindConflict, "/order_id"},
		{"complete cancelled order", Given(placed(), cancelled).When(contracts.CompleteOrder{OrderID: "o1"}), events.KindConflict, "/order_id"},
		{"reject confirmed order", Given(placed(), confirmed).When(contracts.RejectOrder{OrderID: "o1", Reason: "x"}), events.KindConflict, "/order_id"},
		{"reject without reason", Given(placed()).When(contracts.RejectOrder{OrderID: "o1"}), events.KindInvalid, "/reason"},
		{"unknown command", Given().When(contracts.CreateListing{}), events.KindInvalid, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.s.ThenError(t, tc.kind, tc.field) })
	}
}

// TestFreezeRefusalNamesRule checks that a refusal carries the rule id and
// the legal basis.
func TestFreezeRefusalNamesRule(t *testing.T) {
	e := Given().Adjust(under(freeze)).At(freezeAt).When(place()).ThenError(t, events.KindFrozen, "")
	r, ok := policyview.RefusalOf(e)
	if !ok || r.RuleID != "freeze-id-sc" || r.LegalBasis != "Permendag 31/2023" {
		t.Errorf("refusal %+v (%v), want rule freeze-id-sc under Permendag 31/2023", r, e)
	}
}

// TestPlaceBeyondStockIsNoStock checks that placing more than the listing
// view has left is refused with ReasonNoStock, the reason a client matches.
func TestPlaceBeyondStockIsNoStock(t *testing.T) {
	e := Given().When(with(place(), func(c *contracts.PlaceOrder) { c.Quantity = 11 })).ThenError(t, events.KindConflict, "/quantity")
	if events.ReasonOf(e) != events.ReasonNoStock {
		t.Errorf("reason %q, want %q", events.ReasonOf(e), events.ReasonNoStock)
	}
}
