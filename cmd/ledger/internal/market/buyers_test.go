package market

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// slowCheckout finishes after a number of drains that time out, sending a
// step in each (slow), or never sends one (stopped).
type slowCheckout struct {
	timeouts int
	stopped  bool
	drains   int
	steps    atomic.Int64
}

func (c *slowCheckout) Drain(ctx context.Context) error {
	c.drains++
	if c.stopped || c.drains <= c.timeouts {
		if !c.stopped {
			c.steps.Add(1)
		}
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (c *slowCheckout) Steps() int64 { return c.steps.Load() }

// TestDrainWaitsForASlowCheckoutAndFailsAStoppedOne: the day goes on while
// the checkout sends steps, however slowly (a day-scale demo on a busy
// machine once failed at 10:08 on a bound of the whole wait), and fails
// when it sends none for drainMax.
func TestDrainWaitsForASlowCheckoutAndFailsAStoppedOne(t *testing.T) {
	defer func(d time.Duration) { drainMax = d }(drainMax)
	drainMax = 10 * time.Millisecond
	slow := &slowCheckout{timeouts: 3}
	if err := (&market{svc: Services{Checkout: slow}}).drain(t.Context()); err != nil || slow.drains != 4 {
		t.Fatalf("slow checkout: %v after %d drains, want nil after 4", err, slow.drains)
	}
	stopped := &slowCheckout{stopped: true}
	if err := (&market{svc: Services{Checkout: stopped}}).drain(t.Context()); err == nil || stopped.drains != 1 {
		t.Fatalf("stopped checkout: %v after %d drains, want an error after 1", err, stopped.drains)
	}
}
