package scenario

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
)

// TestCheckoutReadsTheLogOncePerRound: the checkout reads an order and its
// payment from the log when a round starts and carries the services'
// answers forward from step to step; the reservation and the authorization
// its own round stored before the confirmation need no round of their own.
// A checkout costs 4 reads (the placement's round, the capture's), where
// reading again after every step and for every event took 16: each a round
// trip to the log's leader, for every checkout.
func TestCheckoutReadsTheLogOncePerRound(t *testing.T) {
	ins := nodeInstances(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	lst := ListingSpec{ID: "reads-l", Seller: "seller-reads", Category: "reads", Channel: contracts.ChannelMarketplace,
		Price: 25_000 * 100, Stock: 1_000}
	if err := CreateListings(ctx, ins[0], lst); err != nil {
		t.Fatal(err)
	}
	run := ins[0].Checkouts.Runner
	if err := run.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 20
	before := run.Reads()
	for i := range n {
		c := &Checkout{OrderID: fmt.Sprintf("reads-o-%02d", i), BuyerID: "buyer-reads", ListingID: lst.ID, Quantity: 1,
			Pick: func(string) *Instance { return ins[0] }}
		if err := c.Run(ctx); err != nil || c.Outcome != Accepted {
			t.Fatalf("checkout %s: %v %s %s", c.OrderID, err, c.Outcome, c.Reason)
		}
	}
	if err := run.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if reads := run.Reads() - before; reads > 4*n {
		t.Errorf("%d reads of the log for %d checkouts (%.1f each), want at most 4 each", reads, n, float64(reads)/n)
	}
	lg, err := ReadLog(ctx, ins[0].Store)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := lg.Stock[lst.ID], lst.Stock-n; got != want {
		t.Errorf("stock %d, want %d", got, want)
	}
	judgeRaw(t, ctx, ins[0].Store)
	JudgeCheckouts(t, ctx, ins[0].Checkouts)
}

// TestCheckoutAuthorizesWhileTheReservationWaits: the checkout sends the
// authorization with the reservation, not after it. With the listing
// service down, the payment is authorized all the same; once the listing
// service is back the order is confirmed and captured, once.
func TestCheckoutAuthorizesWhileTheReservationWaits(t *testing.T) {
	ins := nodeInstances(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	lst := ListingSpec{ID: "par-l", Seller: "seller-par", Category: "par", Channel: contracts.ChannelMarketplace,
		Price: 25_000 * 100, Stock: 10}
	if err := CreateListings(ctx, ins[0], lst); err != nil {
		t.Fatal(err)
	}
	resume := ins[0].Pause(t, contracts.ServiceListing)
	c := &Checkout{OrderID: "par-o", BuyerID: "buyer-par", ListingID: lst.ID, Quantity: 1, Pick: func(string) *Instance { return ins[0] }}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for {
		lg, err := ReadLog(ctx, ins[0].Store)
		if err != nil {
			t.Fatal(err)
		}
		if lg.Has(c.OrderID, "listing.stock_reserved") {
			t.Fatal("reserved while the listing service is down")
		}
		if lg.Has(c.OrderID, "payment.authorized") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no authorization while the reservation waits: %v", ctx.Err())
		case err := <-done:
			t.Fatalf("checkout ended while the listing service is down: %v %s", err, c.Outcome)
		case <-time.After(20 * time.Millisecond): // the log announces nothing to a reader
		}
	}
	resume()
	if err := <-done; err != nil || c.Outcome != Accepted {
		t.Fatalf("checkout: %v %s %s", err, c.Outcome, c.Reason)
	}
	if err := ins[0].Checkouts.Runner.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	lg, err := ReadLog(ctx, ins[0].Store)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"listing.stock_reserved", "payment.authorized", "order.confirmed", "payment.captured"} {
		if n := countOf(lg.ByOrder[c.OrderID], typ); n != 1 {
			t.Errorf("%d %s, want 1 (%v)", n, typ, lg.ByOrder[c.OrderID])
		}
	}
	judgeRaw(t, ctx, ins[0].Store)
	JudgeCheckouts(t, ctx, ins[0].Checkouts)
}

func countOf(types []string, typ string) int {
	n := 0
	for _, t := range types {
		if t == typ {
			n++
		}
	}
	return n
}
