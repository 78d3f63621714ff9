package scenario

import (
	"context"
	"fmt"
	"testing"

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
