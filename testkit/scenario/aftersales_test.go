package scenario

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/services/checkout"
)

// parallel runs f(0..n-1) concurrently and returns the errors in order.
func parallel(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	return errs
}

// TestFreezeSparesAfterSalesAndLiftRestores: during a freeze, refunds (full
// and partial), voids, settlements of earlier captured payments and
// cancellations all succeed while placements, authorizations and captures
// in scope are refused; a lift scheduled a second ahead restores trade from
// its own instant and not before, and the log shows no violation.
func TestFreezeSparesAfterSalesAndLiftRestores(t *testing.T) {
	ForSeeds(t, 2, func(t *testing.T, seed uint64) {
		ins := nodeInstances(t, 2)
		ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
		defer cancel()
		run := runID(seed)
		cat := "cat-" + run
		var specs []ListingSpec
		for i := range 4 {
			specs = append(specs, ListingSpec{ID: fmt.Sprintf("%s-sc-%d", run, i), Seller: "seller-" + run, Category: cat,
				Channel: contracts.ChannelSocialCommerce, Price: int64(100_000+i*10_000) * 100, Stock: 1000})
		}
		if err := CreateListings(ctx, ins[0], specs...); err != nil {
			t.Fatal(err)
		}
		k := 0
		pick := func(string) *Instance { k++; return ins[k%2] } // steps alternate between the instances
		var pickMu sync.Mutex
		pickLocked := func(s string) *Instance { pickMu.Lock(); defer pickMu.Unlock(); return pick(s) }
		newCheckout := func(name string, i int) *Checkout {
			return &Checkout{OrderID: fmt.Sprintf("%s-%s-%02d", run, name, i), BuyerID: fmt.Sprintf("buyer-%d", i),
				ListingID: specs[i%len(specs)].ID, Quantity: 1 + int64(i%2), Pick: pickLocked}
		}

		// Before the freeze: 12 captured checkouts. Then, with every
		// instance's order service down, 4 orders the checkout reserved and
		// authorized and cannot confirm; with the payment service down too,
		// 2 orders it reserved and cannot authorize.
		captured := make([]*Checkout, 12)
		for i, err := range parallel(12, func(i int) error {
			captured[i] = newCheckout("paid", i)
			return captured[i].Run(ctx)
		}) {
			if err != nil || captured[i].Outcome != Accepted {
				t.Fatalf("checkout before the freeze: %v, %s", err, captured[i].Outcome)
			}
		}
		authorized := inFlight(t, ctx, ins, contracts.ServiceOrder, run+"-auth", specs, 4, "payment.authorized")
		placed := inFlight(t, ctx, ins, contracts.ServicePayment, run+"-held", specs, 2, "listing.stock_reserved")

		rule := "freeze-" + run
		if _, _, err := ImposeFreeze(ctx, ins[0], Freeze(rule, cat, time.Time{})); err != nil {
			t.Fatalf("impose freeze: %v", err)
		}

		// During the freeze, everything at once.
		frozen := func(what string, err error) error {
			if events.KindOf(err) != events.KindFrozen {
				return fmt.Errorf("%s during the freeze: got %v, want frozen", what, err)
			}
			return nil
		}
		ok := func(what string, err error) error {
			if err != nil {
				return fmt.Errorf("%s during the freeze: %w", what, err)
			}
			return nil
		}
		refused := make([]*Checkout, 8)
		ops := []func(in *Instance) error{}
		for i := range 8 {
			ops = append(ops, func(*Instance) error {
				refused[i] = newCheckout("frozen", i)
				if err := refused[i].Run(ctx); err != nil {
					return err
				}
				if refused[i].Outcome != Refused || len(refused[i].Steps) != 1 {
					return fmt.Errorf("checkout %s during the freeze ended %s after %d steps", refused[i].OrderID, refused[i].Outcome, len(refused[i].Steps))
				}
				return frozen("placement of "+refused[i].OrderID, refused[i].Steps[0].Err)
			})
		}
		for i, c := range captured {
			ops = append(ops, func(in *Instance) error {
				pid := c.PaymentID
				switch {
				case i < 4: // refunded in full
					_, err := in.Payment.Refund(ctx, contracts.RefundPayment{PaymentID: pid, RefundID: "rf-" + pid, Amount: c.Amount,
						Reason: "buyer returned the goods", IdempotencyKey: "refund:" + pid})
					return ok("full refund of "+pid, err)
				case i < 8: // half refunded, the rest settled
					half := IDR(c.Amount.AmountMinor / 2)
					if _, err := in.Payment.Refund(ctx, contracts.RefundPayment{PaymentID: pid, RefundID: "rf-" + pid, Amount: half,
						Reason: "partial return", IdempotencyKey: "refund:" + pid}); err != nil {
						return ok("partial refund of "+pid, err)
					}
					fallthrough
				default:
					_, err := in.Payment.Settle(ctx, contracts.SettlePayment{PaymentID: pid, IdempotencyKey: "settle:" + pid})
					return ok("settlement of "+pid, err)
				}
			})
		}
		// The services come back: the checkout's capture of the authorized
		// orders and its authorization of the held ones are refused, and it
		// cancels them, voids their payments and releases their stock, all
		// during the freeze.
		for _, resume := range append(authorized.resume, placed.resume...) {
			resume()
		}
		for _, err := range parallel(len(ops), func(i int) error { return ops[i](ins[i%2]) }) {
			if err != nil {
				t.Error(err)
			}
		}
		for _, id := range append(authorized.orders, placed.orders...) {
			end, err := ins[0].Checkouts.Await(ctx, id)
			if err != nil || end.Status != "cancelled" || end.Outcome != Refused {
				t.Errorf("order %s in flight at the freeze ended %+v (%v), want cancelled because its payment was refused", id, end, err)
			}
		}
		JudgeCheckouts(t, ctx, ins[0].Checkouts)

		// A lift a second ahead: trade stays refused until its instant,
		// then resumes.
		lift := time.Now().Add(time.Second).Round(0)
		if _, _, err := LiftFreeze(ctx, ins[1], rule, lift); err != nil {
			t.Fatalf("lift: %v", err)
		}
		var mu sync.Mutex
		var all []*Checkout
		for i, err := range parallel(4, func(i int) error {
			for n := 0; ; n++ {
				c := newCheckout(fmt.Sprintf("lift%d", i), n)
				if err := c.Run(ctx); err != nil {
					return err
				}
				mu.Lock()
				all = append(all, c)
				mu.Unlock()
				if c.Outcome == Accepted && c.Steps[0].Issued.After(lift) {
					return nil
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}) {
			if err != nil {
				t.Errorf("loop %d around the lift: %v", i, err)
			}
		}
		// The lift is scheduled: it takes effect when the activator appends
		// its activation at the instant, and never before by any clock.
		lg := JudgeLog(t, ctx, ins[0].Store, rule)
		f := lg.Freezes[rule]
		if f.Lift == nil || !f.Lift.Scheduled.Equal(lift) || f.Lift.ActivationPosition == 0 || f.Lift.InForce.Before(lift) {
			t.Fatalf("lift in the log %+v, want one scheduled at %s and activated at or after it", f.Lift, lift)
		}
		// A service refuses until its view has applied the activation: a
		// refusal is late, never wrong, while the view catches up (well
		// under viewLagMax on this machine).
		const viewLagMax = time.Second
		liftFrom := f.Lift.InForce.Add(viewLagMax)
		var before, after int
		for _, c := range all {
			for _, s := range c.Steps {
				switch {
				case !Blocked(s.Name):
				case s.Err == nil && s.Done.Before(lift):
					t.Errorf("%s %s accepted %s before the lift's instant", c.OrderID, s.Name, lift.Sub(s.Done))
				case s.Err != nil && s.Issued.After(liftFrom):
					t.Errorf("%s %s sent %s after the lift's activation (and the view's lag) refused: %v", c.OrderID, s.Name, s.Issued.Sub(liftFrom), s.Err)
				case s.Err != nil:
					before++
				default:
					after++
				}
			}
		}
		if before == 0 {
			t.Errorf("no checkout was tried between the lift's append and its instant")
		}
		t.Logf("lift scheduled at %s activated %s later", lift.Format(time.RFC3339Nano), liftFrom.Sub(lift))

		judgeRaw(t, ctx, ins[0].Store)
		for typ, want := range map[string]int{"payment.refunded": 8, "payment.settled": 8, "payment.voided": 4,
			"payment.cancelled": 2, "order.cancelled": 6, "listing.stock_released": 6} {
			if lg.Counts[typ] < want {
				t.Errorf("%d %s events, want at least %d", lg.Counts[typ], typ, want)
			}
		}
		t.Logf("seed %d: %d blocked steps refused before the lift's instant, %d accepted after it", seed, before, after)
	})
}

// stalled is a set of orders whose checkout waits for a service that is
// down on every instance.
type stalled struct {
	orders []string
	resume []func()
}

// inFlight takes the NATS service of context down on every instance of
// ins, places n orders, and waits until the log has the event typ (the
// last step the checkout could take) for each: their checkouts then wait
// for that service. Call resume to let them go on.
func inFlight(t *testing.T, ctx context.Context, ins []*Instance, context, prefix string, specs []ListingSpec, n int, typ string) stalled {
	t.Helper()
	var s stalled
	for _, in := range ins {
		s.resume = append(s.resume, in.Pause(t, context))
	}
	for i := range n {
		id := fmt.Sprintf("%s-%02d", prefix, i)
		in := ins[i%len(ins)]
		if _, err := retry(ctx, func() error {
			_, err := in.Order.Place(ctx, contracts.PlaceOrder{OrderID: id, BuyerID: "buyer-" + id, ListingID: specs[i%len(specs)].ID,
				Quantity: 1, IdempotencyKey: checkout.StepKey(id, "place")})
			return err
		}); err != nil {
			t.Fatalf("placement of %s before the freeze: %v", id, err)
		}
		s.orders = append(s.orders, id)
	}
	if err := Await(ctx, 30*time.Second, "the in-flight orders' "+typ, func() bool {
		lg, err := ReadLog(ctx, ins[0].Store)
		if err != nil {
			return false
		}
		for _, id := range s.orders {
			if !lg.Has(id, typ) {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return s
}
