package listing

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

// spec is the listing decider under test, on listing l1.
var spec = decidertest.Spec[Listing, Inputs]{ID: "l1", Initial: Initial, Evolve: Evolve, Decide: Decide, Now: beforeNoon}

// Given starts a case from the listing's past events.
func Given(evs ...any) decidertest.Case[Listing, Inputs] { return spec.Given(evs...) }

func created() contracts.ListingCreated {
	return contracts.ListingCreated{ListingID: "l1", SellerID: "s1", Title: "Batik shirt", Category: "apparel",
		Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Origin: contracts.OriginCrossBorder,
		Price: usd(150_00), Stock: 10}
}

func create() contracts.CreateListing {
	c := created()
	return contracts.CreateListing{ListingID: c.ListingID, SellerID: c.SellerID, Title: c.Title, Category: c.Category,
		Channel: c.Channel, Jurisdiction: c.Jurisdiction, Origin: c.Origin, Price: c.Price, Stock: c.Stock}
}

func with[T any](v T, f func(*T)) T { f(&v); return v }

var (
	floor = policyview.Fold(contracts.FloorPriceSet{RuleID: "floor-usd-100", Scope: contracts.Scope{Jurisdictions: []string{"ID"}},
		BlockedOperations: contracts.FloorPriceOperations, Amount: usd(100_00), Origin: contracts.OriginCrossBorder,
		EffectiveAt: freezeAt, LegalBasis: "Permendag 31/2023"})
	freeze = policyview.Fold(contracts.FreezeImposed{RuleID: "freeze-id-sc", Scope: contracts.Scope{Jurisdictions: []string{"ID"},
		Channels: []contracts.Channel{contracts.ChannelSocialCommerce}}, BlockedOperations: contracts.FreezeOperations,
		EffectiveAt: freezeAt, LegalBasis: "Permendag 31/2023"})
)

func TestDecideAccepts(t *testing.T) {
	reserved := contracts.ListingStockReserved{ListingID: "l1", OrderID: "o1", Quantity: 3, Stock: 7}
	tests := []struct {
		name string
		s    decidertest.Case[Listing, Inputs]
		then []any
	}{
		{"create", Given().When(create()), []any{created()}},
		{"create with no stock", Given().When(with(create(), func(c *contracts.CreateListing) { c.Stock = 0 })),
			[]any{with(created(), func(e *contracts.ListingCreated) { e.Stock = 0 })}},
		{"create below the floor before it is in force", Given().With(Inputs{Rules: floor}).At(beforeNoon).
			When(with(create(), func(c *contracts.CreateListing) { c.Price = usd(50_00) })),
			[]any{with(created(), func(e *contracts.ListingCreated) { e.Price = usd(50_00) })}},
		{"create during a freeze: listings stay visible", Given().With(Inputs{Rules: freeze}).At(freezeAt).When(create()), []any{created()}},
		{"create domestic below a cross-border floor", Given().With(Inputs{Rules: floor}).At(freezeAt).
			When(with(create(), func(c *contracts.CreateListing) { c.Origin, c.Price = contracts.OriginDomestic, usd(1) })),
			[]any{with(created(), func(e *contracts.ListingCreated) { e.Origin, e.Price = contracts.OriginDomestic, usd(1) })}},
		{"change price", Given(created()).When(contracts.ChangePrice{ListingID: "l1", Price: usd(120_00)}),
			[]any{contracts.ListingPriceChanged{ListingID: "l1", Price: usd(120_00), PreviousPrice: usd(150_00)}}},
		{"change price to the same price", Given(created()).When(contracts.ChangePrice{ListingID: "l1", Price: usd(150_00)}), nil},
		{"change price at the floor", Given(created()).With(Inputs{Rules: floor}).At(freezeAt).When(contracts.ChangePrice{ListingID: "l1", Price: usd(100_00)}),
			[]any{contracts.ListingPriceChanged{ListingID: "l1", Price: usd(100_00), PreviousPrice: usd(150_00)}}},
		{"change stock", Given(created()).When(contracts.ChangeStock{ListingID: "l1", Stock: 0}),
			[]any{contracts.ListingStockChanged{ListingID: "l1", Stock: 0, PreviousStock: 10}}},
		{"delist", Given(created()).When(contracts.Delist{ListingID: "l1", Reason: "sold elsewhere"}),
			[]any{contracts.ListingDelisted{ListingID: "l1", Reason: "sold elsewhere"}}},
		{"delist twice", Given(created(), contracts.ListingDelisted{ListingID: "l1"}).When(contracts.Delist{ListingID: "l1"}), nil},
		{"reserve", Given(created()).When(contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 3}), []any{reserved}},
		{"reserve all", Given(created()).When(contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 10}),
			[]any{contracts.ListingStockReserved{ListingID: "l1", OrderID: "o1", Quantity: 10, Stock: 0}}},
		{"reserve again for the same order", Given(created(), reserved).When(contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 3}), nil},
		{"reserve during a freeze", Given(created()).With(Inputs{Rules: freeze}).At(freezeAt).When(contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 3}), []any{reserved}},
		{"release", Given(created(), reserved).When(contracts.ReleaseStock{ListingID: "l1", OrderID: "o1", Quantity: 3, Reason: "cancelled"}),
			[]any{contracts.ListingStockReleased{ListingID: "l1", OrderID: "o1", Quantity: 3, Stock: 10, Reason: "cancelled"}}},
		{"release part", Given(created(), reserved).When(contracts.ReleaseStock{ListingID: "l1", OrderID: "o1", Quantity: 1, Reason: "x"}),
			[]any{contracts.ListingStockReleased{ListingID: "l1", OrderID: "o1", Quantity: 1, Stock: 8, Reason: "x"}}},
		{"release again", Given(created(), reserved, contracts.ListingStockReleased{ListingID: "l1", OrderID: "o1", Quantity: 3, Stock: 10}).
			When(contracts.ReleaseStock{ListingID: "l1", OrderID: "o1", Quantity: 3, Reason: "x"}), nil},
		{"release on a delisted listing", Given(created(), reserved, contracts.ListingDelisted{ListingID: "l1"}).
			When(contracts.ReleaseStock{ListingID: "l1", OrderID: "o1", Quantity: 3, Reason: "x"}),
			[]any{contracts.ListingStockReleased{ListingID: "l1", OrderID: "o1", Quantity: 3, Stock: 10, Reason: "x"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.s.Then(t, tc.then...) })
	}
}

func TestDecideRefuses(t *testing.T) {
	reserved := contracts.ListingStockReserved{ListingID: "l1", OrderID: "o1", Quantity: 3, Stock: 7}
	delisted := contracts.ListingDelisted{ListingID: "l1"}
	tests := []struct {
		name  string
		s     decidertest.Case[Listing, Inputs]
		kind  events.Kind
		field string
	}{
		{"create twice", Given(created()).When(create()), events.KindConflict, "/listing_id"},
		{"create with zero price", Given().When(with(create(), func(c *contracts.CreateListing) { c.Price.AmountMinor = 0 })), events.KindInvalid, "/price/amount_minor"},
		{"create with negative price", Given().When(with(create(), func(c *contracts.CreateListing) { c.Price.AmountMinor = -5 })), events.KindInvalid, "/price/amount_minor"},
		{"create with huge price", Given().When(with(create(), func(c *contracts.CreateListing) { c.Price.AmountMinor = contracts.MaxAmountMinor + 1 })), events.KindInvalid, "/price/amount_minor"},
		{"create with unknown currency", Given().When(with(create(), func(c *contracts.CreateListing) { c.Price.Currency = "XYZ" })), events.KindInvalid, "/price/currency"},
		{"create with negative stock", Given().When(with(create(), func(c *contracts.CreateListing) { c.Stock = -1 })), events.KindInvalid, "/stock"},
		{"create with unknown channel", Given().When(with(create(), func(c *contracts.CreateListing) { c.Channel = "tv" })), events.KindInvalid, "/channel"},
		{"create with unknown jurisdiction", Given().When(with(create(), func(c *contracts.CreateListing) { c.Jurisdiction = "XX" })), events.KindInvalid, "/jurisdiction"},
		{"create with unknown origin", Given().When(with(create(), func(c *contracts.CreateListing) { c.Origin = "moon" })), events.KindInvalid, "/origin"},
		{"create with no seller", Given().When(with(create(), func(c *contracts.CreateListing) { c.SellerID = "" })), events.KindInvalid, "/seller_id"},
		{"create below the floor", Given().With(Inputs{Rules: floor}).At(freezeAt).When(with(create(), func(c *contracts.CreateListing) { c.Price = usd(99_99) })), events.KindFrozen, "/price"},
		{"create in another currency under a floor", Given().With(Inputs{Rules: floor}).At(freezeAt).When(with(create(), func(c *contracts.CreateListing) { c.Price = contracts.Money{AmountMinor: 500_000_000, Currency: "IDR"} })), events.KindFrozen, "/price"},
		{"change price of unknown listing", Given().When(contracts.ChangePrice{ListingID: "l1", Price: usd(1)}), events.KindNotFound, "/listing_id"},
		{"change price of delisted listing", Given(created(), delisted).When(contracts.ChangePrice{ListingID: "l1", Price: usd(1)}), events.KindInvalid, "/listing_id"},
		{"change price to zero", Given(created()).When(contracts.ChangePrice{ListingID: "l1", Price: usd(0)}), events.KindInvalid, "/price/amount_minor"},
		{"change price currency", Given(created()).When(contracts.ChangePrice{ListingID: "l1", Price: contracts.Money{AmountMinor: 1, Currency: "EUR"}}), events.KindInvalid, "/price/currency"},
		{"change price below the floor", Given(created()).With(Inputs{Rules: floor}).At(freezeAt).When(contracts.ChangePrice{ListingID: "l1", Price: usd(99_99)}), events.KindFrozen, "/price"},
		{"change stock of unknown listing", Given().When(contracts.ChangeStock{ListingID: "l1", Stock: 1}), events.KindNotFound, "/listing_id"},
		{"change stock to negative", Given(created()).When(contracts.ChangeStock{ListingID: "l1", Stock: -1}), events.KindInvalid, "/stock"},
		{"change stock of delisted listing", Given(created(), delisted).When(contracts.ChangeStock{ListingID: "l1", Stock: 1}), events.KindInvalid, "/listing_id"},
		{"delist unknown listing", Given().When(contracts.Delist{ListingID: "l1"}), events.KindNotFound, "/listing_id"},
		{"reserve on unknown listing", Given().When(contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 1}), events.KindNotFound, "/listing_id"},
		{"reserve on delisted listing", Given(created(), delisted).When(contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 1}), events.KindInvalid, "/listing_id"},
		{"reserve more than available", Given(created(), reserved).When(contracts.ReserveStock{ListingID: "l1", OrderID: "o2", Quantity: 8}), events.KindConflict, "/quantity"},
		{"reserve zero", Given(created()).When(contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 0}), events.KindInvalid, "/quantity"},
		{"reserve a different quantity for the same order", Given(created(), reserved).When(contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 2}), events.KindConflict, "/quantity"},
		{"reserve after release", Given(created(), reserved, contracts.ListingStockReleased{ListingID: "l1", OrderID: "o1", Quantity: 3, Stock: 10}).
			When(contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 3}), events.KindConflict, "/order_id"},
		{"release for an order that reserved nothing", Given(created(), reserved).When(contracts.ReleaseStock{ListingID: "l1", OrderID: "o2", Quantity: 1, Reason: "x"}), events.KindNotFound, "/order_id"},
		{"release more than reserved", Given(created(), reserved).When(contracts.ReleaseStock{ListingID: "l1", OrderID: "o1", Quantity: 4, Reason: "x"}), events.KindInvalid, "/quantity"},
		{"release on unknown listing", Given().When(contracts.ReleaseStock{ListingID: "l1", OrderID: "o1", Quantity: 1, Reason: "x"}), events.KindNotFound, "/listing_id"},
		{"unknown command", Given(created()).When(contracts.PlaceOrder{}), events.KindInvalid, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.s.ThenError(t, tc.kind, tc.field) })
	}
}

// TestFloorRefusalNamesRule checks that a refusal carries the rule id and
// the legal basis, for the problem body and for OrderRejected.
func TestFloorRefusalNamesRule(t *testing.T) {
	e := Given().With(Inputs{Rules: floor}).At(freezeAt).When(with(create(), func(c *contracts.CreateListing) { c.Price = usd(1) })).
		ThenError(t, events.KindFrozen, "/price")
	r, ok := policyview.RefusalOf(e)
	if !ok {
		t.Fatalf("no refusal in %v", e)
	}
	if got, want := [2]string{r.RuleID, r.LegalBasis}, [2]string{"floor-usd-100", "Permendag 31/2023"}; got != want {
		t.Errorf("refusal names %v, want %v", got, want)
	}
}

// TestNoStockIsAReason checks that only a reservation beyond the units left
// carries ReasonNoStock: the checkout rejects the order for it, while other
// conflicts on the quantity mean something else.
func TestNoStockIsAReason(t *testing.T) {
	reserved := contracts.ListingStockReserved{ListingID: "l1", OrderID: "o1", Quantity: 3, Stock: 7}
	e := Given(created(), reserved).When(contracts.ReserveStock{ListingID: "l1", OrderID: "o2", Quantity: 8}).
		ThenError(t, events.KindConflict, "/quantity")
	if events.ReasonOf(e) != events.ReasonNoStock {
		t.Errorf("reason %q, want %q", events.ReasonOf(e), events.ReasonNoStock)
	}
	e = Given(created(), reserved).When(contracts.ReserveStock{ListingID: "l1", OrderID: "o1", Quantity: 2}).
		ThenError(t, events.KindConflict, "/quantity")
	if events.ReasonOf(e) != "" {
		t.Errorf("a different quantity for the same order: reason %q, want none", events.ReasonOf(e))
	}
}
