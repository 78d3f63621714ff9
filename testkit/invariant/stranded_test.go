package invariant

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/marketledger/ledger/contracts"
)

func idr(x int64) contracts.Money { return contracts.Money{AmountMinor: x, Currency: "IDR"} }

// TestViolations folds histories by hand and checks what the checker says
// about each: one line per stranded holding, none for a settled history.
func TestViolations(t *testing.T) {
	placed := func(id string) any { return contracts.OrderPlaced{OrderID: id} }
	reserved := func(id string, q int64) any {
		return contracts.ListingStockReserved{ListingID: "l1", OrderID: id, Quantity: q}
	}
	released := func(id string, q int64) any {
		return contracts.ListingStockReleased{ListingID: "l1", OrderID: id, Quantity: q}
	}
	authorized := func(id string) any {
		return contracts.PaymentAuthorized{PaymentID: "p-" + id, OrderID: id, Amount: idr(100)}
	}
	for _, tc := range []struct {
		name    string
		history []any
		want    []string
	}{
		{"confirmed holds by right", []any{placed("o1"), reserved("o1", 2), authorized("o1"),
			contracts.OrderConfirmed{OrderID: "o1"}}, nil},
		{"compensated", []any{placed("o1"), reserved("o1", 2), authorized("o1"), contracts.OrderCancelled{OrderID: "o1"},
			released("o1", 2), contracts.PaymentVoided{PaymentID: "p-o1", OrderID: "o1"}}, nil},
		{"refunded", []any{placed("o1"), authorized("o1"), contracts.PaymentCaptured{PaymentID: "p-o1", OrderID: "o1", Amount: idr(100)},
			contracts.OrderCancelled{OrderID: "o1"}, contracts.PaymentRefunded{PaymentID: "p-o1", OrderID: "o1", Amount: idr(100)}}, nil},
		{"late reservation", []any{placed("o1"), contracts.OrderRejected{OrderID: "o1"}, reserved("o1", 1)},
			[]string{"order o1 ended rejected and still holds 1 units of listing l1"}},
		{"open authorization", []any{placed("o1"), authorized("o1"), contracts.OrderCancelled{OrderID: "o1"}},
			[]string{"order o1 ended cancelled and payment p-o1 is still authorized"}},
		{"unrefunded capture", []any{placed("o1"), authorized("o1"), contracts.PaymentCaptured{PaymentID: "p-o1", OrderID: "o1", Amount: idr(100)},
			contracts.OrderCancelled{OrderID: "o1"}, contracts.PaymentRefunded{PaymentID: "p-o1", OrderID: "o1", Amount: idr(40)}},
			[]string{"order o1 ended cancelled and payment p-o1 holds 60 captured, unrefunded"}},
		{"reservation of no order", []any{reserved("o9", 1)},
			[]string{"listing l1 holds 1 units for order o9, which the log does not have"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHoldings()
			for _, e := range tc.history {
				h.Apply(e)
			}
			if diff := cmp.Diff(tc.want, h.Violations()); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
			if err := h.Err(); (err != nil) != (len(tc.want) > 0) || (err != nil && !strings.Contains(err.Error(), tc.want[0])) {
				t.Errorf("Err() = %v", err)
			}
		})
	}
}
