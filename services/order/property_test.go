package order

import (
	"fmt"
	"testing"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/runtime/policyview"
	"pgregory.net/rapid"
)

// TestLifecycleProperties runs random command sequences against the
// decider: a cancelled or rejected order is never confirmed, shipped or
// completed; a shipped order is never cancelled; the total is always unit
// price times quantity.
func TestLifecycleProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := Initial("o1")
		l := theListing()
		l.Price = usd(rapid.Int64Range(1, contracts.MaxAmountMinor).Draw(t, "price"))
		for i := range rapid.IntRange(1, 40).Draw(t, "steps") {
			evs, err := Decide(s, drawOrderCommand(t, i), l, policyview.Rules{}, beforeNoon)
			if err != nil {
				continue
			}
			for _, e := range evs {
				typ, _, _ := contracts.TypeOf(e)
				checkTransition(t, s.Status, typ)
				s = Evolve(s, e)
			}
			if s.Status != StatusNone && s.Total.AmountMinor != s.UnitPrice.AmountMinor*s.Quantity {
				t.Fatalf("total %v != %v × %d", s.Total, s.UnitPrice, s.Quantity)
			}
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
