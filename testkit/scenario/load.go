package scenario

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketledger/ledger/contracts"
)

// Load is a set of concurrent checkout loops across instances: Loops loops
// buy social-commerce listings of Category in Indonesia (the trade a
// freeze of that category blocks) and Control loops buy marketplace
// listings of the same category (trade it must not block). Each loop runs
// checkouts back to back until Stop is closed.
type Load struct {
	RunID     string
	Category  string
	Instances []*Instance
	Loops     int
	Control   int
	Seed      uint64

	// Cut is the instant from which the loops count blocked steps as
	// "after" (the freeze's acknowledgement or its scheduled instant); it
	// is set by the test while the loops run.
	Cut atomic.Pointer[time.Time]

	accepted      atomic.Int64 // in-scope checkouts accepted
	refusedAfter  atomic.Int64 // in-scope blocked steps issued after Cut and refused
	controlAfter  atomic.Int64 // control checkouts accepted that began after Cut
	acceptedLimit int64
	reached       chan struct{}
	reachedOnce   sync.Once

	mu        sync.Mutex
	Checkouts []*Checkout // every checkout of the in-scope loops
	Controls  []*Checkout // every checkout of the control loops
	Errs      []error
}

// Listings returns the listings a load buys from: eight in scope, two
// control ones, each with ample stock.
func (l *Load) Listings() []ListingSpec {
	var out []ListingSpec
	for i := range 8 {
		out = append(out, ListingSpec{ID: fmt.Sprintf("%s-sc-%d", l.RunID, i), Seller: fmt.Sprintf("seller-%d", i%3),
			Category: l.Category, Channel: contracts.ChannelSocialCommerce, Price: int64(50_000+i*25_000) * 100, Stock: 1_000_000})
	}
	for i := range 2 {
		out = append(out, ListingSpec{ID: fmt.Sprintf("%s-mp-%d", l.RunID, i), Seller: "seller-mp",
			Category: l.Category, Channel: contracts.ChannelMarketplace, Price: 80_000 * 100, Stock: 1_000_000})
	}
	return out
}

// Accepted returns a channel closed once n in-scope checkouts have been
// accepted; call it before Run.
func (l *Load) Accepted(n int64) <-chan struct{} {
	l.acceptedLimit, l.reached = n, make(chan struct{})
	return l.reached
}

// RefusedAfter is the number of in-scope blocked steps issued after Cut and
// refused so far.
func (l *Load) RefusedAfter() int64 { return l.refusedAfter.Load() }

// ControlAfter is the number of control checkouts begun after Cut and
// accepted so far.
func (l *Load) ControlAfter() int64 { return l.controlAfter.Load() }

// Run starts the loops and returns a function that stops them and waits.
func (l *Load) Run(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	listings := l.Listings()
	for i := range l.Loops + l.Control {
		control := i >= l.Loops
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(l.Seed, uint64(i)))
			pick := func(string) *Instance { return l.Instances[rng.IntN(len(l.Instances))] }
			for n := 0; ctx.Err() == nil; n++ {
				lst := listings[rng.IntN(8)]
				if control {
					lst = listings[8+rng.IntN(2)]
				}
				c := &Checkout{OrderID: fmt.Sprintf("%s-o%02d-%05d", l.RunID, i, n), BuyerID: fmt.Sprintf("buyer-%d-%d", i, rng.IntN(1000)),
					ListingID: lst.ID, Quantity: 1 + rng.Int64N(2), Pick: pick}
				cut := l.Cut.Load()
				began := time.Now()
				err := c.Run(ctx)
				if ctx.Err() != nil {
					return // a checkout cut short by the end of the run says nothing
				}
				l.record(c, control, cut, began, err)
				if err != nil {
					return
				}
				if c.Outcome == Refused {
					// A refused buyer tries again after a moment, as a
					// person would: loops spinning on refusals at full
					// speed would starve the out-of-scope checkouts the
					// scenarios wait for on a busy machine.
					select {
					case <-ctx.Done():
					case <-time.After(refusedPause):
					}
				}
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

// refusedPause is how long a loop waits after a refused checkout.
const refusedPause = 50 * time.Millisecond

func (l *Load) record(c *Checkout, control bool, cut *time.Time, began time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.Errs = append(l.Errs, err)
		return
	}
	if control {
		l.Controls = append(l.Controls, c)
		if c.Outcome == Accepted && cut != nil && began.After(*cut) {
			l.controlAfter.Add(1)
		}
		return
	}
	l.Checkouts = append(l.Checkouts, c)
	if c.Outcome == Accepted && l.accepted.Add(1) == l.acceptedLimit {
		l.reachedOnce.Do(func() { close(l.reached) })
	}
	if now := l.Cut.Load(); now != nil {
		for _, s := range c.Steps {
			if Blocked(s.Name) && s.Issued.After(*now) && s.Err != nil {
				l.refusedAfter.Add(1)
			}
		}
	}
}

// Await waits until cond holds, re-checking it every few milliseconds: the
// loops' counters announce nothing of their own. It fails after limit.
func Await(ctx context.Context, limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("scenario: %s not reached within %s", what, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
