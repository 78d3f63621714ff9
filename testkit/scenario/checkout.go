package scenario

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/listing"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/services/payment"
)

// Outcome is how a checkout ended.
type Outcome int

// The outcomes of a checkout.
const (
	// Accepted: placed, reserved, authorized, captured and confirmed.
	Accepted Outcome = iota + 1
	// Refused: a policy rule refused a step; what was done was undone.
	Refused
	// OutOfStock: the reservation found too few units; the order was
	// rejected.
	OutOfStock
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Refused:
		return "refused"
	case OutOfStock:
		return "out_of_stock"
	}
	return "unknown"
}

// The steps of a checkout. Place, authorize and capture are the operations
// a freeze blocks; the others must never be blocked.
const (
	StepPlace     = "order.place"
	StepReserve   = "listing.reserve_stock"
	StepAuthorize = "payment.authorize"
	StepCapture   = "payment.capture"
	StepConfirm   = "order.confirm"
	StepVoid      = "payment.void"
	StepRelease   = "listing.release_stock"
	StepCancel    = "order.cancel"
	StepReject    = "order.reject"
)

// Blocked reports whether a freeze blocks step.
func Blocked(step string) bool {
	return step == StepPlace || step == StepAuthorize || step == StepCapture
}

// Step is one command of a checkout as its caller saw it. Issued is when it
// was first sent, Done when its final answer came (after retries of a
// transient failure, with the same idempotency key).
type Step struct {
	Name     string
	Instance string
	Issued   time.Time
	Done     time.Time
	Err      error
}

// Checkout is one buyer's checkout.
type Checkout struct {
	OrderID   string
	BuyerID   string
	ListingID string
	Quantity  int64
	// Pick chooses the instance that sends each step; several instances
	// make every step a decision of whichever process got it.
	Pick func(step string) *Instance

	Outcome   Outcome
	PaymentID string
	Amount    contracts.Money
	Steps     []Step
}

// Run drives the checkout as the checkout process manager does: place,
// reserve, authorize, capture, confirm. A policy refusal at any step undoes
// the earlier ones (void, release, cancel) and ends it Refused; too little
// stock rejects the order. Every command carries an idempotency key derived
// from the order and the step, so a retry after an unknown outcome never
// places, reserves or charges twice. It returns an error only for a
// failure that is neither a refusal nor transient.
func (c *Checkout) Run(ctx context.Context) error {
	ctx = order.WithCorrelationID(ctx, c.OrderID)
	key := func(step string) string { return checkout.StepKey(c.OrderID, step) }
	var placed order.Order
	err := c.step(ctx, StepPlace, func(in *Instance) error {
		res, err := in.Order.Place(ctx, contracts.PlaceOrder{OrderID: c.OrderID, BuyerID: c.BuyerID,
			ListingID: c.ListingID, Quantity: c.Quantity, IdempotencyKey: key("place")})
		placed = res.State
		return err
	})
	switch {
	case events.KindOf(err) == events.KindFrozen:
		c.Outcome = Refused
		return nil
	case IsNoStock(err):
		c.Outcome = OutOfStock
		return nil
	case err != nil:
		return err
	}
	lctx := listing.WithCorrelationID(ctx, c.OrderID)
	err = c.step(ctx, StepReserve, func(in *Instance) error {
		_, err := in.Listing.ReserveStock(lctx, contracts.ReserveStock{ListingID: c.ListingID, OrderID: c.OrderID,
			Quantity: c.Quantity, IdempotencyKey: key("reserve")})
		return err
	})
	if IsNoStock(err) {
		c.Outcome = OutOfStock
		return c.step(ctx, StepReject, func(in *Instance) error {
			_, err := in.Order.Reject(ctx, contracts.RejectOrder{OrderID: c.OrderID, Reason: "out of stock", IdempotencyKey: key("reject")})
			return err
		})
	}
	if err != nil {
		return err
	}
	c.PaymentID, c.Amount = contracts.PaymentID(c.OrderID), placed.Total
	pctx := payment.WithCorrelationID(ctx, c.OrderID)
	err = c.step(ctx, StepAuthorize, func(in *Instance) error {
		_, err := in.Payment.Authorize(pctx, contracts.AuthorizePayment{PaymentID: c.PaymentID, OrderID: c.OrderID,
			BuyerID: c.BuyerID, SellerID: placed.SellerID, Channel: placed.Channel, Jurisdiction: placed.Jurisdiction,
			Category: placed.Category, Amount: placed.Total, IdempotencyKey: key("authorize")})
		return err
	})
	if err != nil {
		return c.compensate(ctx, err, false)
	}
	err = c.step(ctx, StepCapture, func(in *Instance) error {
		_, err := in.Payment.Capture(pctx, contracts.CapturePayment{PaymentID: c.PaymentID, IdempotencyKey: key("capture")})
		return err
	})
	if err != nil {
		return c.compensate(ctx, err, true)
	}
	err = c.step(ctx, StepConfirm, func(in *Instance) error {
		_, err := in.Order.Confirm(ctx, contracts.ConfirmOrder{OrderID: c.OrderID, PaymentID: c.PaymentID, IdempotencyKey: key("confirm")})
		return err
	})
	if err != nil {
		return err
	}
	c.Outcome = Accepted
	return nil
}

// compensate undoes a checkout whose payment step a rule refused: void the
// authorization, release the stock, cancel the order. None of these may be
// refused by a freeze.
func (c *Checkout) compensate(ctx context.Context, cause error, authorized bool) error {
	if events.KindOf(cause) != events.KindFrozen {
		return cause
	}
	c.Outcome = Refused
	key := func(step string) string { return checkout.StepKey(c.OrderID, step) }
	if authorized {
		pctx := payment.WithCorrelationID(ctx, c.OrderID)
		if err := c.step(ctx, StepVoid, func(in *Instance) error {
			_, err := in.Payment.Void(pctx, contracts.VoidPayment{PaymentID: c.PaymentID, Reason: "capture refused by policy", IdempotencyKey: key("void")})
			return err
		}); err != nil {
			return err
		}
	}
	lctx := listing.WithCorrelationID(ctx, c.OrderID)
	if err := c.step(ctx, StepRelease, func(in *Instance) error {
		_, err := in.Listing.ReleaseStock(lctx, contracts.ReleaseStock{ListingID: c.ListingID, OrderID: c.OrderID,
			Quantity: c.Quantity, Reason: "payment refused by policy", IdempotencyKey: key("release")})
		return err
	}); err != nil {
		return err
	}
	return c.step(ctx, StepCancel, func(in *Instance) error {
		_, err := in.Order.Cancel(ctx, contracts.CancelOrder{OrderID: c.OrderID, Reason: "payment refused by policy", IdempotencyKey: key("cancel")})
		return err
	})
}

// step sends one command through the instance Pick chooses, retrying a
// transient failure, and records it. Refusals (frozen, out of stock) are
// returned for Run to act on; any other definitive error is wrapped with
// the order and step.
func (c *Checkout) step(ctx context.Context, name string, f func(*Instance) error) error {
	s := Step{Name: name, Issued: time.Now()}
	attempts, err := retry(ctx, func() error {
		in := c.Pick(name)
		s.Instance = in.Name
		return f(in)
	})
	s.Done, s.Err = time.Now(), err
	c.Steps = append(c.Steps, s)
	if err != nil && events.KindOf(err) != events.KindFrozen && !IsNoStock(err) {
		return fmt.Errorf("order %s: %s (after %d attempts): %w", c.OrderID, name, attempts, err)
	}
	return err
}

// IsNoStock reports a refusal for want of stock.
func IsNoStock(err error) bool {
	var e *events.Error
	return errors.As(err, &e) && e.Kind == events.KindConflict && strings.HasSuffix(e.Field, "/quantity")
}

// transient reports an error after which the same command, with the same
// idempotency key, may be sent again: the log was unreachable or the
// outcome unknown (a leader election, a request that timed out inside the
// store), or the runner gave up under contention on a hot aggregate. The
// caller's own context ending stops retry by itself.
func transient(err error) bool {
	switch events.KindOf(err) {
	case events.KindUnavailable, events.KindOther:
		return true
	case events.KindConflict:
		return !IsNoStock(err) && strings.Contains(err.Error(), "gave up after")
	}
	return false
}

// maxAttempts bounds the sends of one command: a failure that repeats that
// often is not transient.
const maxAttempts = 100

// retry calls f until it succeeds, fails definitively, or ctx ends, with a
// short capped backoff between transient failures. It returns the number of
// attempts made.
func retry(ctx context.Context, f func() error) (int, error) {
	backoff := 5 * time.Millisecond
	for n := 1; ; n++ {
		err := f()
		if err == nil || !transient(err) || n >= maxAttempts || ctx.Err() != nil {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}
