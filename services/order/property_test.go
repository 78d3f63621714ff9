package order

import (
	"fmt"
	"testing"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/testkit/decidertest"
	"pgregory.net/rapid"
)

// TestLifecycleProperties runs random command sequences against the
// decider: a cancelled or rejected order is never confirmed, shipped or
// completed; a shipped order is never cancelled; the total is always unit
// price times quantity.
func TestLifecycleProperties(t *testing.T) {
	spec.Property(t, func(t *rapid.T) decidertest.Model[Order, Inputs] {
		l := theListing()
		l.Price = usd(rapid.Int64Range(1, contracts.MaxAmountMinor).Draw(t, "price"))
		return decidertest.Model[Order, Inputs]{
			StepsMax: 40,
			Next: func(t *rapid.T, i int, _ func(string) Order) (decidertest.Step[Inputs], bool) {
				return decidertest.Step[Inputs]{ID: "o1", Cmd: drawOrderCommand(t, i), In: Inputs{Listing: l}, Now: beforeNoon}, true
			},
			Accepted: func(t *rapid.T, _ string, s Order, e any) {
				typ, _, _ := contracts.TypeOf(e)
				checkTransition(t, s.Status, typ)
			},
			Invariant: func(t *rapid.T, states map[string]Order) {
				s := states["o1"]
				if s.Status != StatusNone && s.Total.AmountMinor != s.UnitPrice.AmountMinor*s.Quantity {
					t.Fatalf("total %v != %v × %d", s.Total, s.UnitPrice, s.Quantity)
				}
			},
		}
	})
}

func checkTransition(t *rapid.T, from Status, typ string) {
	final := from == StatusCancelled || from == StatusRejected || from == StatusCompleted
	switch {
	case final:
		t.Fatalf("%s appended to a %s order", typ, from)
	case typ == "order.cancelled" && (from == StatusShipped):
		t.Fatalf("shipped order cancelled")
	case typ == "order.shipped" && from != StatusConfirmed:
		t.Fatalf("%s order shipped", from)
	case typ == "order.completed" && from != StatusShipped:
		t.Fatalf("%s order completed", from)
	}
}

func drawOrderCommand(t *rapid.T, i int) any {
	switch rapid.IntRange(0, 5).Draw(t, fmt.Sprintf("cmd%d", i)) {
	case 0:
		return contracts.PlaceOrder{OrderID: "o1", BuyerID: "b1", ListingID: "l1", Quantity: rapid.Int64Range(-1, 12).Draw(t, fmt.Sprintf("qty%d", i))}
	case 1:
		return contracts.ConfirmOrder{OrderID: "o1", PaymentID: rapid.SampledFrom([]string{"p1", "p2"}).Draw(t, fmt.Sprintf("pay%d", i))}
	case 2:
		return contracts.CancelOrder{OrderID: "o1", Reason: "changed my mind"}
	case 3:
		return contracts.ShipOrder{OrderID: "o1"}
	case 4:
		return contracts.CompleteOrder{OrderID: "o1"}
	default:
		return contracts.RejectOrder{OrderID: "o1", Reason: "out of stock"}
	}
}
