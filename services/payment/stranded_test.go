package payment

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// A void that reaches the payment service before the authorization it is
// meant to release (sent earlier, delivered later) spends the payment id,
// so that the late authorization is refused instead of standing for an
// order that was given up.
func TestVoidBeforeAuthorizationRecordsATombstone(t *testing.T) {
	tomb := contracts.PaymentCancelled{PaymentID: "p1", Reason: "order cancelled"}
	Given().When(contracts.VoidPayment{PaymentID: "p1", Reason: "order cancelled"}).Then(t, tomb)
	Given(tomb).When(authorize(500)).ThenError(t, events.KindConflict, "/payment_id")
	Given(tomb).When(contracts.VoidPayment{PaymentID: "p1", Reason: "again"}).Then(t)
	Given(tomb).When(contracts.CapturePayment{PaymentID: "p1"}).ThenError(t, events.KindConflict, "/payment_id")
	if s := Evolve(Initial("p1"), tomb); s.Status != StatusCancelled || s.Corrupt != nil {
		t.Errorf("state after the tombstone: %+v", s)
	}
}

// The payment's view of the order follows its status: an order that was
// cancelled or rejected is paid for by nobody.
func TestOrderViewFollowsStatus(t *testing.T) {
	placed := contracts.OrderPlaced{OrderID: "o1", BuyerID: "b1", SellerID: "s1", Total: usd(500)}
	for _, tc := range []struct {
		then any
		want Order
	}{
		{contracts.OrderConfirmed{OrderID: "o1", PaymentID: "p1"}, Order{Confirmed: true}},
		{contracts.OrderCancelled{OrderID: "o1", Reason: "x"}, Order{Ended: "cancelled"}},
		{contracts.OrderRejected{OrderID: "o1", Reason: "x"}, Order{Ended: "rejected"}},
	} {
		got := EvolveOrder(EvolveOrder(Order{ID: "o1"}, placed), tc.then)
		if diff := cmp.Diff(tc.want, Order{Confirmed: got.Confirmed, Ended: got.Ended}); diff != "" {
			t.Errorf("after %T (-want +got):\n%s", tc.then, diff)
		}
	}
}

// An authorization or a capture for an order the log says was cancelled
// or rejected is refused: the money would be stranded.
func TestNoMoneyMovesForAGivenUpOrder(t *testing.T) {
	for _, ended := range []string{"cancelled", "rejected"} {
		o := orderFor(usd(500))
		o.Ended = ended
		Given().Adjust(forOrder(o)).When(authorize(500)).ThenError(t, events.KindConflict, "/order_id")
		Given(authorized(500)).Adjust(forOrder(o)).When(contracts.CapturePayment{PaymentID: "p1"}).ThenError(t, events.KindConflict, "/order_id")
		// Releasing and returning money stay open.
		Given(authorized(500)).Adjust(forOrder(o)).When(contracts.VoidPayment{PaymentID: "p1", Reason: "order " + ended}).
			Then(t, contracts.PaymentVoided{PaymentID: "p1", OrderID: "o1", Amount: usd(500), Reason: "order " + ended})
	}
	o := confirmedWith(usd(500), "p1")
	Given().Adjust(forOrder(o)).When(authorize(500)).ThenError(t, events.KindConflict, "/order_id")
	Given(authorized(500)).Adjust(forOrder(o)).When(contracts.CapturePayment{PaymentID: "p1"}).Then(t, captured(500))
}

// A marketplace captures on confirmation (ADR 0015 rule 4, ADR 0016): a
// capture for an order that is only placed is refused, and so is the
// capture of a payment other than the one the order was confirmed with,
// which would charge the buyer twice. Voiding either stays open.
func TestCaptureOnlyOnConfirmation(t *testing.T) {
	placed := orderFor(usd(500))
	Given(authorized(500)).Adjust(forOrder(placed)).When(contracts.CapturePayment{PaymentID: "p1"}).ThenError(t, events.KindConflict, "/order_id")
	other := confirmedWith(usd(500), "p2")
	Given(authorized(500)).Adjust(forOrder(other)).When(contracts.CapturePayment{PaymentID: "p1"}).ThenError(t, events.KindConflict, "/payment_id")
	Given(authorized(500)).Adjust(forOrder(other)).When(contracts.VoidPayment{PaymentID: "p1", Reason: "not the order's payment"}).
		Then(t, contracts.PaymentVoided{PaymentID: "p1", OrderID: "o1", Amount: usd(500), Reason: "not the order's payment"})
	Given(authorized(500)).Adjust(forOrder(confirmedWith(usd(500), "p1"))).When(contracts.CapturePayment{PaymentID: "p1"}).Then(t, captured(500))
}

// The payment's view of an order records the payment it was confirmed with.
func TestOrderViewKeepsTheConfirmedPayment(t *testing.T) {
	placed := contracts.OrderPlaced{OrderID: "o1", BuyerID: "b1", SellerID: "s1", Total: usd(500)}
	got := EvolveOrder(EvolveOrder(Order{ID: "o1"}, placed), contracts.OrderConfirmed{OrderID: "o1", PaymentID: "p1"})
	if !got.Confirmed || got.PaymentID != "p1" {
		t.Errorf("after order.confirmed with p1: confirmed %t, payment %q", got.Confirmed, got.PaymentID)
	}
}

// TestLateAuthorizeAfterVoidIsRefused plays the race over NATS: the
// checkout gave up and voided before its authorization was delivered. The
// void spends the payment id, and the late authorization stores nothing.
func TestLateAuthorizeAfterVoidIsRefused(t *testing.T) {
	st, nc := startStore(t)
	ms, err := newService(t, st).Serve(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()
	p := withOrder(t, st, auth("p1", contracts.ChannelMarketplace, 1_000))
	voided := mustOK(t, nc, "void", contracts.VoidPayment{PaymentID: "p1", Reason: "checkout timed out"})
	if voided.Payment.Status != StatusCancelled {
		t.Errorf("void before authorization: status %q, want %q", voided.Payment.Status, StatusCancelled)
	}
	mustFail(t, nc, "authorize", p, 409, "/payment_id")
	mustOK(t, nc, "void", contracts.VoidPayment{PaymentID: "p1", Reason: "checkout timed out"}) // a retry
}
