package scenario

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/marketledger/ledger/contracts"
)

// TestHotListingAmpleStock: 64 buyers at once, two orders each, all on one
// listing with ample stock, across three service instances on one node (a
// flash sale). Every order is accepted: an order may fail for want of stock
// or by a rule, never because other buyers were busy. Before commands of
// one aggregate took turns, reservations that lost every attempt to their
// neighbours rejected about a third of such orders ("gave up after 8
// attempts under contention").
func TestHotListingAmpleStock(t *testing.T) {
	ins := nodeInstances(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	const buyers, each = 64, 2
	lst := ListingSpec{ID: "flash-hot", Seller: "seller-flash", Category: "flash", Channel: contracts.ChannelMarketplace,
		Price: 49_000 * 100, Stock: 1_000_000}
	if err := CreateListings(ctx, ins[0], lst); err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		outcomes = map[Outcome]int{}
		reasons  []string
		wg       sync.WaitGroup
	)
	start := make(chan struct{})
	for b := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(b), 2))
			<-start
			for i := range each {
				c := &Checkout{OrderID: fmt.Sprintf("flash-%02d-%d", b, i), BuyerID: fmt.Sprintf("buyer-%02d", b),
					ListingID: lst.ID, Quantity: 1, Pick: func(string) *Instance { return ins[rng.IntN(len(ins))] }}
				err := c.Run(ctx)
				mu.Lock()
				if err != nil {
					reasons = append(reasons, err.Error())
				} else {
					outcomes[c.Outcome]++
					if c.Outcome != Accepted {
						reasons = append(reasons, fmt.Sprintf("%s ended %s: %s", c.OrderID, c.Outcome, c.Reason))
					}
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	if outcomes[Accepted] != buyers*each {
		t.Errorf("%d of %d orders accepted (%v)", outcomes[Accepted], buyers*each, outcomes)
		for i, r := range reasons {
			if i == 10 {
				t.Errorf("... and %d more", len(reasons)-10)
				break
			}
			t.Error(r)
		}
	}
	lg, err := ReadLog(ctx, ins[0].Store)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := lg.Stock[lst.ID], int64(lst.Stock-buyers*each); got != want {
		t.Errorf("stock after the sale %d, want %d", got, want)
	}
	judgeRaw(t, ctx, ins[0].Store)
	JudgeCheckouts(t, ctx, ins[0].Checkouts)
}
