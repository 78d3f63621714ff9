package checkoutrun

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/order"
)

// checkoutEnv adds the fake listing and payment services and a manager.
func checkoutEnv(t testing.TB) (*env, *fakePayment) {
	e := start(t)
	(&fakeListing{runner: e.runner}).serve(t, e.nc)
	pay := &fakePayment{}
	pay.serve(t, e.nc)
	e.createListing(t, listingCreated())
	return e, pay
}

// manager returns a checkout runner with the default request timeout. A
// request answered in time never waits on it, and a short one would fail
// under load: at 64 checkouts at once on a busy machine an answer can take
// longer than a few hundred milliseconds, the runner then sends the request
// again while the first is still being handled, and the retries keep the
// responders too busy ever to answer in time.
func (e *env) manager(timeout time.Duration, onError func(error)) checkout.Config {
	return e.managerWith(timeout, 0, onError)
}

func (e *env) managerWith(timeout, request time.Duration, onError func(error)) checkout.Config {
	return checkout.Config{Store: e.store, Conn: e.nc, Clock: e.clock, Timeout: timeout,
		RequestTimeout: request, ListingSubject: listingPrefix, PaymentSubject: paymentPrefix,
		OrderSubject: orderPrefix, OnError: onError}
}

// runManager runs the checkout on cfg until the test ends or stop is called.
func runManager(t testing.TB, cfg checkout.Config) (stop func()) {
	_, stop = Start(t, cfg)
	return stop
}

func (e *env) status(t testing.TB, id string) order.Status {
	o, _, err := e.svc.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return o.Status
}

func (e *env) stock(t testing.TB) (int64, int) {
	var l heldListing
	l, _, err := loadHeld(t, e)
	if err != nil {
		t.Fatal(err)
	}
	holders := 0
	for _, q := range l.held {
		if q > 0 {
			holders++
		}
	}
	return l.Stock, holders
}

func loadHeld(t testing.TB, e *env) (heldListing, uint64, error) {
	return commandLoad(t.Context(), e, "l1")
}

func TestCheckoutConfirms(t *testing.T) {
	e, pay := checkoutEnv(t)
	runManager(t, e.manager(time.Minute, nil))
	if _, err := e.svc.Place(t.Context(), place()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "confirmation", func() bool { return e.status(t, "o1") == order.StatusConfirmed })
	if stock, holders := e.stock(t); stock != 8 || holders != 1 || pay.authorizations() != 1 {
		t.Errorf("stock %d held by %d, %d authorizations; want 8, 1, 1", stock, holders, pay.authorizations())
	}
}

// TestCheckoutRestartMidFlow stops the manager after the stock was reserved
// while the payment service is down, starts a new one with it up, and
// checks that the order is confirmed once with one authorization.
func TestCheckoutRestartMidFlow(t *testing.T) {
	e := start(t)
	(&fakeListing{runner: e.runner}).serve(t, e.nc)
	e.createListing(t, listingCreated())
	stop := runManager(t, e.manager(time.Minute, nil))
	if _, err := e.svc.Place(t.Context(), place()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reservation", func() bool { return e.count(t, "listing", "l1", "listing.stock_reserved") == 1 })
	stop()
	pay := &fakePayment{}
	pay.serve(t, e.nc)
	runManager(t, e.manager(time.Minute, nil))
	waitFor(t, "confirmation", func() bool { return e.status(t, "o1") == order.StatusConfirmed })
	time.Sleep(200 * time.Millisecond) // let a duplicate, if any, happen
	if n := e.count(t, "order", "o1", "order.confirmed"); n != 1 || pay.authorizations() != 1 || e.count(t, "listing", "l1", "listing.stock_reserved") != 1 {
		t.Errorf("%d confirmations, %d authorizations, %d reservations; want 1 each", n, pay.authorizations(),
			e.count(t, "listing", "l1", "listing.stock_reserved"))
	}
}

func TestCheckoutPaymentDeclined(t *testing.T) {
	e, pay := checkoutEnv(t)
	runManager(t, e.manager(time.Minute, nil))
	if _, err := e.svc.Place(t.Context(), with(place(), func(c *contracts.PlaceOrder) { c.BuyerID = "broke" })); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cancellation", func() bool { return e.status(t, "o1") == order.StatusCancelled })
	waitFor(t, "release", func() bool { s, h := e.stock(t); return s == 10 && h == 0 })
	if pay.authorizations() != 0 {
		t.Errorf("%d authorizations of a declined payment", pay.authorizations())
	}
}

// TestCheckoutTimeout lets the payment service swallow requests and moves
// the decision clock past the deadline: the order is cancelled, the
// possible authorization voided and the stock released.
func TestCheckoutTimeout(t *testing.T) {
	e, pay := checkoutEnv(t)
	pay.silent.Store(true)
	// The payment service never answers: each request ends by its timeout,
	// and the deadline is checked between two requests.
	runManager(t, e.managerWith(time.Minute, 300*time.Millisecond, nil))
	if _, err := e.svc.Place(t.Context(), place()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reservation", func() bool { return e.count(t, "listing", "l1", "listing.stock_reserved") == 1 })
	e.setNow(beforeNoon.Add(2 * time.Minute))
	waitFor(t, "cancellation", func() bool { return e.status(t, "o1") == order.StatusCancelled })
	waitFor(t, "release", func() bool { s, h := e.stock(t); return s == 10 && h == 0 })
	pay.mu.Lock()
	defer pay.mu.Unlock()
	if !pay.voided[contracts.PaymentID("o1")] {
		t.Errorf("timed-out authorization was not voided")
	}
}

func TestCheckoutOutOfStockRejects(t *testing.T) {
	e, _ := checkoutEnv(t)
	runManager(t, e.manager(time.Minute, nil))
	// Both pass placement's stock snapshot; only one can be reserved.
	a := with(place(), func(c *contracts.PlaceOrder) { c.Quantity = 6 })
	b := with(a, func(c *contracts.PlaceOrder) { c.OrderID = "o2" })
	for _, c := range []contracts.PlaceOrder{a, b} {
		if _, err := e.svc.Place(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both decided", func() bool {
		s1, s2 := e.status(t, "o1"), e.status(t, "o2")
		return s1 != order.StatusPlaced && s2 != order.StatusPlaced
	})
	// Orders are checked out concurrently, so either may get the units
	// (Config.Concurrency): one is confirmed, the other rejected.
	got := [2]order.Status{e.status(t, "o1"), e.status(t, "o2")}
	if got != [2]order.Status{order.StatusConfirmed, order.StatusRejected} && got != [2]order.Status{order.StatusRejected, order.StatusConfirmed} {
		t.Errorf("statuses %v, want one confirmed and one rejected", got)
	}
	if stock, holders := e.stock(t); stock != 4 || holders != 1 {
		t.Errorf("stock %d held by %d, want 4 held by 1", stock, holders)
	}
}

// TestHundredBuyers races 100 buyers through placement and checkout for a
// listing with 10 units: exactly 10 orders are confirmed, stock ends at 0,
// and only their authorizations stay open.
func TestHundredBuyers(t *testing.T) {
	e, pay := checkoutEnv(t)
	runManager(t, e.manager(time.Minute, nil))
	var placed, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			_, err := e.svc.Place(context.Background(), contracts.PlaceOrder{OrderID: fmt.Sprintf("o%d", i),
				BuyerID: fmt.Sprintf("b%d", i), ListingID: "l1", Quantity: 1})
			switch events.KindOf(err) {
			case events.KindOther:
				placed.Add(1)
			case events.KindConflict:
				refused.Add(1)
			default:
				t.Errorf("buyer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	waitFor(t, "every placed order decided", func() bool {
		n := 0
		for i := range 100 {
			if s := e.status(t, fmt.Sprintf("o%d", i)); s == order.StatusPlaced {
				return false
			} else if s == order.StatusConfirmed {
				n++
			}
		}
		return n == 10
	})
	// The authorization goes with the reservation: every placed order is
	// authorized, and the rejected ones' authorizations are voided.
	waitFor(t, "the rejected orders' authorizations voided", func() bool { return pay.open() == 10 })
	stock, holders := e.stock(t)
	if stock != 0 || holders != 10 || pay.open() != 10 {
		t.Errorf("stock %d, holders %d, open authorizations %d; want 0, 10, 10 (placed %d, refused %d, authorized %d)",
			stock, holders, pay.open(), placed.Load(), refused.Load(), pay.authorizations())
	}
}

// TestCheckoutOneStuckOrderDoesNotHoldBackOthers: a step that can never
// succeed (its idempotency key already taken by another command) leaves
// that order as it is, says so, and the next orders are checked out.
func TestCheckoutOneStuckOrderDoesNotHoldBackOthers(t *testing.T) {
	e, _ := checkoutEnv(t)
	// Another command takes o1's confirmation key first.
	taken := place()
	taken.OrderID, taken.IdempotencyKey = "o-taken", checkout.StepKey("o1", "confirm")
	if _, err := e.svc.Place(t.Context(), taken); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var heard []error
	m := e.manager(time.Minute, func(err error) { mu.Lock(); heard = append(heard, err); mu.Unlock() })
	runManager(t, m)
	if _, err := e.svc.Place(t.Context(), place()); err != nil {
		t.Fatal(err)
	}
	second := place()
	second.OrderID = "o2"
	if _, err := e.svc.Place(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "o2 confirmed", func() bool { return e.status(t, "o2") == order.StatusConfirmed })
	reported := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, err := range heard {
			if events.KindOf(err) == events.KindDuplicate && strings.Contains(err.Error(), "o1") {
				return true
			}
		}
		return false
	}
	waitFor(t, "the stuck order reported", reported) // o1's steps run beside o2's
	if s := e.status(t, "o1"); s != order.StatusPlaced {
		t.Errorf("o1 is %s; want it left placed", s)
	}
}
