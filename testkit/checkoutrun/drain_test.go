package checkoutrun

import (
	"context"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/services/order"
)

// TestDrainWaitsForTheCheckoutToEnd: Drain, which a caller on a simulated
// clock calls after every step, returns only once the checkout of every
// order placed is over, compensation included, with no polling. The log
// ends with a record of the store's own (an order placement is fenced: a
// policy fence record follows it, and an idempotency record follows every
// keyed step), which no follower is delivered: Drain must not wait for it.
func TestDrainWaitsForTheCheckoutToEnd(t *testing.T) {
	e, _ := checkoutEnv(t)
	m, _ := Start(t, e.manager(time.Minute, func(err error) { t.Error(err) }))
	if _, err := e.svc.Place(t.Context(), with(place(), func(c *contracts.PlaceOrder) { c.BuyerID = "broke" })); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := m.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if got := e.status(t, "o1"); got != order.StatusCancelled {
		t.Errorf("order after drain: %s, want %s (payment declined)", got, order.StatusCancelled)
	}
	if stock, holders := e.stock(t); stock != 10 || holders != 0 {
		t.Errorf("after drain: stock %d held by %d, want 10 held by none", stock, holders)
	}
	last, err := e.store.PositionAt(t.Context(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if head := e.head(t); head <= last {
		t.Errorf("the log ends with its event at %d: want a store record after it, as in production", last)
	}
}
