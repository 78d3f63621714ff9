package listing

import (
	"fmt"
	"testing"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/testkit/decidertest"
	"pgregory.net/rapid"
)

// TestStockProperties runs random command sequences against the decider:
// stock never goes negative, a reservation never takes more than is
// available, an order never holds units after release, every unit is
// either available or held (stock + held = the seller's supply), and the
// listing replayed from its events is the listing the run built.
func TestStockProperties(t *testing.T) {
	spec.Property(t, func(t *rapid.T) decidertest.Model[Listing, Inputs] {
		supply := Evolve(Initial("l1"), created()).Stock
		return decidertest.Model[Listing, Inputs]{
			Given:    map[string][]any{"l1": {created()}},
			StepsMax: 80,
			Next: func(t *rapid.T, i int, _ func(string) Listing) (decidertest.Step[Inputs], bool) {
				return decidertest.Step[Inputs]{ID: "l1", Cmd: drawCommand(t, i), Now: beforeNoon}, true
			},
			Accepted: func(t *rapid.T, _ string, s Listing, e any) {
				switch e := e.(type) {
				case contracts.ListingStockReserved:
					if e.Quantity > s.Stock {
						t.Fatalf("reserved %d of %d available", e.Quantity, s.Stock)
					}
				case contracts.ListingStockReleased:
					if e.Quantity > s.Reserved[e.OrderID] {
						t.Fatalf("released %d, order %s held %d", e.Quantity, e.OrderID, s.Reserved[e.OrderID])
					}
				case contracts.ListingStockChanged:
					supply += e.Stock - e.PreviousStock
				}
			},
			Invariant: func(t *rapid.T, states map[string]Listing) {
				s := states["l1"]
				held := int64(0)
				for o, q := range s.Reserved {
					if q <= 0 || s.Released[o] {
						t.Fatalf("order %s holds %d (released %v)", o, q, s.Released[o])
					}
					held += q
				}
				if s.Stock < 0 || s.Stock+held != supply {
					t.Fatalf("stock %d + held %d != supply %d", s.Stock, held, supply)
				}
			},
		}
	})
}

func drawCommand(t *rapid.T, i int) any {
	order := fmt.Sprintf("o%d", rapid.IntRange(0, 5).Draw(t, fmt.Sprintf("order%d", i)))
	qty := rapid.Int64Range(-1, 6).Draw(t, fmt.Sprintf("qty%d", i))
	switch rapid.IntRange(0, 3).Draw(t, fmt.Sprintf("cmd%d", i)) {
	case 0:
		return contracts.ChangeStock{ListingID: "l1", Stock: rapid.Int64Range(-1, 20).Draw(t, fmt.Sprintf("stock%d", i))}
	case 1:
		return contracts.ReleaseStock{ListingID: "l1", OrderID: order, Quantity: qty, Reason: "cancelled"}
	default:
		return contracts.ReserveStock{ListingID: "l1", OrderID: order, Quantity: qty}
	}
}
