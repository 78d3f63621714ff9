package payment

import (
	"context"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
)

// placeOrder appends an order.placed as the order service does. The
// payment module may not import the order service, so the test writes the
// same event through the runner.
func placeOrder(t testing.TB, st events.Store, e contracts.OrderPlaced) {
	t.Helper()
	r := &command.Runner{Store: st, Codec: contracts.Codec{}, Source: contracts.Source(contracts.ServiceOrder), Clock: time.Now}
	agg := command.Aggregate[int]{Context: contracts.ServiceOrder, Initial: func(string) int { return 0 }, Evolve: func(n int, _ any) int { return n + 1 }}
	if _, err := command.Run[int, struct{}](context.Background(), r, agg, e.OrderID, command.Meta{CommandID: events.NewID(), Command: e}, nil,
		func(int, struct{}, time.Time) ([]any, error) { return []any{e}, nil }); err != nil {
		t.Fatal(err)
	}
}

// confirmOrder confirms order id with payment pid in the log, as the
// checkout does before it captures.
func confirmOrder(t testing.TB, st events.Store, id, pid string) {
	t.Helper()
	e := contracts.OrderConfirmed{OrderID: id, PaymentID: pid}
	r := &command.Runner{Store: st, Codec: contracts.Codec{}, Source: contracts.Source(contracts.ServiceOrder), Clock: time.Now}
	agg := command.Aggregate[int]{Context: contracts.ServiceOrder, Initial: func(string) int { return 0 }, Evolve: func(n int, _ any) int { return n + 1 }}
	if _, err := command.Run[int, struct{}](context.Background(), r, agg, id, command.Meta{CommandID: events.NewID(), Command: e}, nil,
		func(int, struct{}, time.Time) ([]any, error) { return []any{e}, nil }); err != nil {
		t.Fatal(err)
	}
}

// socialOrder is an order of one unit at unitMinor USD from a
// social-commerce listing in Indonesia.
func socialOrder(id string, unitMinor int64) contracts.OrderPlaced {
	return contracts.OrderPlaced{OrderID: id, BuyerID: "b1", ListingID: "l1", SellerID: "s1", Quantity: 1,
		UnitPrice: usd(unitMinor), Total: usd(unitMinor), Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID",
		Category: "fashion", Origin: contracts.OriginCrossBorder}
}

// restate is an authorization that states the order's fields truthfully,
// as the checkout sends it.
func restate(paymentID string, o contracts.OrderPlaced) contracts.AuthorizePayment {
	return contracts.AuthorizePayment{PaymentID: paymentID, OrderID: o.OrderID, BuyerID: o.BuyerID, SellerID: o.SellerID,
		Channel: o.Channel, Jurisdiction: o.Jurisdiction, Category: o.Category, Amount: o.Total}
}

// TestAuthorizeTakesScopeFromTheLog: a client allowed to send
// payment.authorize claims that a social-commerce order is a marketplace
// one while a social-commerce freeze is in force. The payment service
// judges the order as the log has it: the claim is refused, naming the
// field, and nothing is appended.
func TestAuthorizeTakesScopeFromTheLog(t *testing.T) {
	st, nc := startStore(t)
	svc := newService(t, st)
	ms, err := svc.Serve(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()
	placeOrder(t, st, socialOrder("o-social", 10_000))
	appendPolicy(t, st, "r1", freezeNow("r1"))
	before, err := st.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	lie := contracts.AuthorizePayment{PaymentID: "p-lie", OrderID: "o-social", BuyerID: "b1", SellerID: "s1",
		Channel: contracts.ChannelMarketplace, Jurisdiction: "ID", Category: "fashion", Amount: usd(10_000)}
	mustFail(t, nc, "authorize", lie, 422, "/channel")
	for _, tc := range []struct {
		field string
		edit  func(*contracts.AuthorizePayment)
	}{
		{"/jurisdiction", func(c *contracts.AuthorizePayment) { c.Jurisdiction = "SG" }},
		{"/category", func(c *contracts.AuthorizePayment) { c.Category = "books" }},
		{"/seller_id", func(c *contracts.AuthorizePayment) { c.SellerID = "s2" }},
		{"/buyer_id", func(c *contracts.AuthorizePayment) { c.BuyerID = "b2" }},
		{"/amount", func(c *contracts.AuthorizePayment) { c.Amount = usd(1) }},
	} {
		c := lie
		c.Channel = contracts.ChannelSocialCommerce
		tc.edit(&c)
		mustFail(t, nc, "authorize", c, 422, tc.field)
	}
	// Stated truthfully, or not stated at all, it meets the freeze.
	truth := lie
	truth.Channel = contracts.ChannelSocialCommerce
	mustFail(t, nc, "authorize", truth, 423, "r1")
	mustFail(t, nc, "authorize", contracts.AuthorizePayment{PaymentID: "p-bare", OrderID: "o-social"}, 423, "r1")
	mustFail(t, nc, "authorize", contracts.AuthorizePayment{PaymentID: "p-none", OrderID: "o-nowhere"}, 404, "/order_id")

	after, err := st.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("refused authorizations moved the log from %d to %d", before, after)
	}
}

// TestFloorOnPaymentsHonoured: a floor price that blocks payment.authorize
// and payment.capture refuses both for an order priced below it, as
// order.place is refused, and lets an order at the floor through.
func TestFloorOnPaymentsHonoured(t *testing.T) {
	st, nc := startStore(t)
	svc := newService(t, st)
	ms, err := svc.Serve(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()
	cheap, held, fair := socialOrder("o-cheap", 4_999), socialOrder("o-held", 4_999), socialOrder("o-fair", 5_000)
	for _, o := range []contracts.OrderPlaced{cheap, held, fair} {
		placeOrder(t, st, o)
	}
	mustOK(t, nc, "authorize", restate("p-held", held))

	appendPolicy(t, st, "floor-1", contracts.FloorPriceSet{RuleID: "floor-1", Scope: contracts.Scope{Jurisdictions: []string{"ID"}},
		BlockedOperations: []contracts.Operation{contracts.OpPaymentAuthorize, contracts.OpPaymentCapture},
		Amount:            usd(5_000), Origin: contracts.OriginCrossBorder, EffectiveAt: time.Now(), LegalBasis: "Permendag 31/2023", Issuer: "kemendag"})

	p := mustFail(t, nc, "authorize", restate("p-cheap", cheap), 423, "/order_id")
	if p.Rule == "" {
		t.Errorf("floor refusal names no rule: %+v", p)
	}
	confirmOrder(t, st, "o-held", "p-held")
	mustFail(t, nc, "capture", contracts.CapturePayment{PaymentID: "p-held"}, 423, "/order_id")
	mustOK(t, nc, "void", contracts.VoidPayment{PaymentID: "p-held", Reason: "below the floor"})
	ok := mustOK(t, nc, "authorize", restate("p-fair", fair))
	if ok.Payment.AuthorizedMinor != 5_000 || ok.Payment.SellerID != "s1" {
		t.Errorf("authorization at the floor: %+v", ok.Payment)
	}
	confirmOrder(t, st, "o-fair", "p-fair")
	mustOK(t, nc, "capture", contracts.CapturePayment{PaymentID: "p-fair"})
}
