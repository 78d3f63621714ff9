package invariant_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/testkit"
	"github.com/marketledger/ledger/testkit/invariant"
	"github.com/marketledger/ledger/testkit/scenario"
)

// settle is how long the tests wait for the checkout to reach a state.
const settle = 20 * time.Second

// stack is one node with the listing and payment services served over
// NATS and the checkout process manager following the log.
type stack struct {
	node *testkit.Node
	in   *scenario.Instance
}

func startStack(t *testing.T) *stack {
	t.Helper()
	node := testkit.StartNode(t, testkit.WithStoreOptions(events.WithTypeChecker(contracts.Checker{}), contracts.Fence()))
	in := scenario.NewInstance(t, "i0", node.Store)
	nc := node.Connect(t)
	ls, err := in.Listing.Serve(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ls.Stop() })
	ps, err := in.Payment.Serve(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Stop() })
	osv, err := in.Order.Serve(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { osv.Stop() })
	return &stack{node: node, in: in}
}

// runManager runs a checkout manager until stop or the test's end.
func (s *stack) runManager(t *testing.T) (stop func()) {
	t.Helper()
	m := checkout.New(checkout.Config{Store: s.node.Store, Conn: s.node.Connect(t),
		Clock: time.Now, Timeout: 30 * time.Second, RequestTimeout: time.Second,
		OnError: func(err error) { t.Logf("checkout: %v", err) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func (s *stack) status(t *testing.T, id string) order.Status {
	t.Helper()
	o, _, err := s.in.Order.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return o.Status
}

// awaitSettled waits until no order of ids is placed and the log strands
// nothing; compensation runs after an order's end, so the invariant may
// take a moment to hold.
func (s *stack) awaitSettled(t *testing.T, ids []string) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for _, id := range ids {
		for s.status(t, id) == order.StatusPlaced {
			if time.Now().After(deadline) {
				t.Fatalf("order %s still placed after %s", id, settle)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var err error
	for time.Now().Before(deadline) {
		if err = invariant.NothingStranded(t.Context(), s.node.Store); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond) // each check reads the whole log
	}
	t.Fatal(err)
}

func place(t *testing.T, s *stack, id, listingID string) bool {
	t.Helper()
	_, err := s.in.Order.Place(t.Context(), contracts.PlaceOrder{OrderID: id, BuyerID: "b-" + id, ListingID: listingID,
		Quantity: 1, IdempotencyKey: checkout.StepKey(id, "place")})
	switch {
	case err == nil:
		return true
	case events.KindOf(err) == events.KindFrozen, scenario.IsNoStock(err):
		return false
	}
	t.Fatalf("place %s: %v", id, err)
	return false
}

// TestCheckoutStrandsNothing runs the real services and the checkout
// manager through a freeze that lands between placements and payments,
// orders beyond the stock, buyers who cancel after confirmation (some
// after the capture), and a manager restarted mid-flow; then judges the
// log: every order that ended holds no stock and no money.
func TestCheckoutStrandsNothing(t *testing.T) {
	s := startStack(t)
	if err := scenario.CreateListings(t.Context(), s.in,
		scenario.ListingSpec{ID: "social", Seller: "s1", Category: "fashion", Channel: contracts.ChannelSocialCommerce, Price: 50_000_00, Stock: 12},
		scenario.ListingSpec{ID: "market", Seller: "s2", Category: "home", Channel: contracts.ChannelMarketplace, Price: 80_000_00, Stock: 8},
	); err != nil {
		t.Fatal(err)
	}
	stop := s.runManager(t)
	var ids []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			for _, l := range []string{"social", "market"} {
				id := fmt.Sprintf("o-%s-%02d", l, i)
				if place(t, s, id, l) {
					mu.Lock()
					ids = append(ids, id)
					mu.Unlock()
				}
			}
		})
		if i == 10 {
			// Placements before it stand; their payments meet the freeze.
			if _, _, err := scenario.ImposeFreeze(t.Context(), s.in, scenario.Freeze("f1", "fashion", time.Now())); err != nil {
				t.Fatal(err)
			}
		}
		if i == 20 {
			stop() // the manager goes away mid-flow and comes back
			stop = s.runManager(t)
		}
	}
	wg.Wait()
	s.awaitSettled(t, ids)

	// Buyers cancel confirmed marketplace orders, each after its capture:
	// the checkout captures on confirmation (ADR 0016).
	captured := 0
	for _, id := range ids {
		if s.status(t, id) != order.StatusConfirmed || id[:8] != "o-market" {
			continue
		}
		captured++
		if _, err := s.in.Order.Cancel(t.Context(), contracts.CancelOrder{OrderID: id, Reason: "buyer changed mind"}); err != nil {
			t.Fatalf("cancel %s: %v", id, err)
		}
	}
	if captured == 0 {
		t.Fatal("no marketplace order was confirmed: the scenario tested nothing")
	}
	s.awaitSettled(t, ids)
	h, err := invariant.Read(t.Context(), s.node.Store)
	if err != nil {
		t.Fatal(err)
	}
	var ended int
	for _, id := range ids {
		if st := h.Status[id]; st == "cancelled" || st == "rejected" {
			ended++
		}
	}
	t.Logf("%d orders placed, %d ended rejected or cancelled", len(ids), ended)
}
