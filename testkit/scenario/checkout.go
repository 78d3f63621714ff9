package scenario

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/services/checkout"
	"github.com/marketledger/ledger/services/order"
)

// Outcome is how a checkout ended.
type Outcome int

// The outcomes of a checkout.
const (
	// Accepted: placed, then reserved, authorized, confirmed and captured
	// by the checkout.
	Accepted Outcome = iota + 1
	// Refused: a policy rule refused the placement, or the checkout's
	// authorization or capture, and the checkout cancelled the order.
	Refused
	// OutOfStock: the placement or the reservation found too few units;
	// the checkout rejected the order.
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

// The steps of a checkout, as the idempotency keys of services/checkout
// name them. A buyer sends only the placement (and may cancel); the
// checkout (services/checkout) sends the others. Place, authorize and
// capture are the operations a freeze blocks; the others must never be
// blocked.
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

// Step is one command a buyer sent, as the buyer saw it. Issued is when it
// was first sent, Done when its final answer came (after retries of a
// transient failure, with the same idempotency key).
type Step struct {
	Name     string
	Instance string
	Issued   time.Time
	Done     time.Time
	Err      error
}

// Checkout is one buyer's checkout: the buyer places the order through an
// instance, as a client of the services would, and the product's checkout
// (services/checkout, run on the log by NewCheckout) does the rest.
type Checkout struct {
	OrderID   string
	BuyerID   string
	ListingID string
	Quantity  int64
	// Pick chooses the instance the buyer sends each command to; several
	// instances make every command a decision of whichever process got it.
	Pick func(step string) *Instance

	Outcome   Outcome
	PaymentID string
	Amount    contracts.Money
	// Reason is the order's rejection or cancellation reason in the log.
	Reason string
	// Steps are the commands the buyer sent.
	Steps []Step
}

// Run places the order with its idempotency key and waits until the log
// tells how the checkout ended: captured (Accepted), cancelled because a
// rule refused its payment (Refused), or rejected for want of stock
// (OutOfStock). A placement that a freeze refuses, or that finds too few
// units, ends it at once. It returns an error for a failure that is
// neither a refusal nor transient, and for an order that ended otherwise.
func (c *Checkout) Run(ctx context.Context) error {
	ctx = command.WithCorrelationID(ctx, c.OrderID)
	var placed order.Order
	var log *Checkouts
	err := c.step(ctx, StepPlace, func(in *Instance) error {
		log = in.Checkouts
		res, err := in.Order.Place(ctx, contracts.PlaceOrder{OrderID: c.OrderID, BuyerID: c.BuyerID,
			ListingID: c.ListingID, Quantity: c.Quantity, IdempotencyKey: checkout.StepKey(c.OrderID, "place")})
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
	case log == nil:
		return fmt.Errorf("order %s: no checkout runs on the instances' log (NewCheckout)", c.OrderID)
	}
	c.PaymentID, c.Amount = contracts.PaymentID(c.OrderID), placed.Total
	end, err := log.Await(ctx, c.OrderID)
	if err != nil {
		return fmt.Errorf("order %s: %w", c.OrderID, err)
	}
	c.Outcome, c.Reason = end.Outcome, end.Reason
	if c.Outcome == 0 {
		return fmt.Errorf("order %s ended %s: %s", c.OrderID, end.Status, end.Reason)
	}
	return nil
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

// End is how the log says an order's checkout ended.
type End struct {
	Status  string // "captured", "rejected" or "cancelled"
	Reason  string // the rejection's or cancellation's
	Outcome Outcome
}

// Checkouts runs the product's checkout on one log and follows the log to
// tell each order's end: the instances' view of what the checkout did.
type Checkouts struct {
	Runner *checkout.Runner
	store  *events.JetStreamStore

	mu      sync.Mutex
	ends    map[string]End
	changed chan struct{} // closed and replaced whenever ends grows
}

// Await returns the end of order id's checkout once the log has it.
func (w *Checkouts) Await(ctx context.Context, id string) (End, error) {
	for {
		w.mu.Lock()
		e, ok := w.ends[id]
		changed := w.changed
		w.mu.Unlock()
		if ok {
			return e, nil
		}
		select {
		case <-ctx.Done():
			return End{}, fmt.Errorf("checkout not ended: %w", ctx.Err())
		case <-changed:
		}
	}
}

// follow records the end of every checkout from position from until ctx
// ends, subscribing again from where it stopped after a failure (a leader
// election).
func (w *Checkouts) follow(ctx context.Context, from uint64) {
	for ctx.Err() == nil {
		_ = w.store.Subscribe(ctx, events.Query{From: from, Subjects: endSubjects}, func(e events.Event) error {
			from = e.Position + 1
			w.observe(e)
			return nil
		})
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// endSubjects select the events that end a checkout, which observe reads.
var endSubjects = []string{"ledger.payment.*.captured", "ledger.order.*.rejected", "ledger.order.*.cancelled"}

func (w *Checkouts) observe(e events.Event) {
	var id string
	var end End
	switch e.Type {
	case "payment.captured", "order.rejected", "order.cancelled":
	default:
		return
	}
	v, err := contracts.Decode(e.Type, e.SchemaVersion, e.Data)
	if err != nil {
		return // the store checked the body against its contract: never here
	}
	switch p := v.(type) {
	case contracts.PaymentCaptured:
		id, end = p.OrderID, End{Status: "captured", Outcome: Accepted}
	case contracts.OrderRejected:
		id, end = p.OrderID, End{Status: "rejected", Reason: p.Reason}
		if strings.HasPrefix(p.Reason, "stock not reserved") {
			end.Outcome = OutOfStock
		}
	case contracts.OrderCancelled:
		id, end = p.OrderID, End{Status: "cancelled", Reason: p.Reason}
		if strings.HasPrefix(p.Reason, "payment refused") || strings.HasPrefix(p.Reason, "capture refused") {
			end.Outcome = Refused
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.ends[id]; ok {
		return // the checkout's end; a buyer's later cancellation is after-sales
	}
	w.ends[id] = end
	close(w.changed)
	w.changed = make(chan struct{})
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
