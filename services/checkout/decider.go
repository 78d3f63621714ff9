package checkout

import (
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/runtime/command"
)

// Status is where an order is in its life, as the checkout sees it.
type Status string

// The statuses the checkout tells apart.
const (
	StatusNone      Status = ""
	StatusPlaced    Status = "placed"
	StatusConfirmed Status = "confirmed"
	StatusCancelled Status = "cancelled"
	StatusRejected  Status = "rejected"
	// StatusFulfilled is an order shipped or completed: the checkout is long over.
	StatusFulfilled Status = "fulfilled"
)

// Order is the checkout's own view of an order aggregate, folded from the
// order's contract events: the checkout never imports the order service.
type Order struct {
	ID           string
	Status       Status
	BuyerID      string
	SellerID     string
	ListingID    string
	Quantity     int64
	Total        contracts.Money
	Channel      contracts.Channel
	Jurisdiction string
	Category     string
	// PaymentID is the payment the order was confirmed with.
	PaymentID string
}

// Ended reports whether the order was given up: nothing may stay held for it.
func (o Order) Ended() bool { return o.Status == StatusRejected || o.Status == StatusCancelled }

// OwnPayment is the order's payment: the one it was confirmed with, or the
// checkout's (contracts.PaymentID).
func (o Order) OwnPayment() string {
	if o.PaymentID != "" {
		return o.PaymentID
	}
	return contracts.PaymentID(o.ID)
}

// EvolveOrder applies one order event to the view.
func EvolveOrder(o Order, payload any) Order {
	switch e := payload.(type) {
	case contracts.OrderPlaced:
		o = Order{ID: e.OrderID, Status: StatusPlaced, BuyerID: e.BuyerID, SellerID: e.SellerID, ListingID: e.ListingID,
			Quantity: e.Quantity, Total: e.Total, Channel: e.Channel, Jurisdiction: e.Jurisdiction, Category: e.Category}
	case contracts.OrderConfirmed:
		o.Status, o.PaymentID = StatusConfirmed, e.PaymentID
	case contracts.OrderCancelled:
		o.Status = StatusCancelled
	case contracts.OrderRejected:
		o.Status = StatusRejected
	case contracts.OrderShipped, contracts.OrderCompleted:
		o.Status = StatusFulfilled
	}
	return o
}

// OrderAggregate loads the order view with command.Load.
var OrderAggregate = command.Aggregate[Order]{
	Context: contracts.ServiceOrder,
	Initial: func(id string) Order { return Order{ID: id} },
	Evolve:  EvolveOrder,
	Clone:   func(o Order) Order { return o }, // values only
}

// Payment is the checkout's own view of a payment aggregate: what it needs
// to leave no money behind an order that ended.
type Payment struct {
	ID string
	// Status is "" (nothing in the log), "authorized", "captured",
	// "voided" or "cancelled" (a void came first: the id is spent).
	Status        string
	Currency      string
	CapturedMinor int64
	RefundedMinor int64
}

// Open reports whether money may still be reserved under the payment:
// nothing is in the log yet (an authorization may be on its way) or an
// authorization stands.
func (p Payment) Open() bool { return p.Status == "" || p.Status == "authorized" }

// RefundableMinor is what was captured and not yet refunded.
func (p Payment) RefundableMinor() int64 { return p.CapturedMinor - p.RefundedMinor }

// EvolvePayment applies one payment event to the view.
func EvolvePayment(p Payment, payload any) Payment {
	switch e := payload.(type) {
	case contracts.PaymentAuthorized:
		p.Status, p.Currency = "authorized", e.Amount.Currency
	case contracts.PaymentCaptured:
		p.Status, p.CapturedMinor = "captured", e.Amount.AmountMinor
	case contracts.PaymentVoided:
		p.Status = "voided"
	case contracts.PaymentCancelled:
		p.Status = "cancelled"
	case contracts.PaymentRefunded:
		p.RefundedMinor += e.Amount.AmountMinor // bounded: refunds never exceed the capture
	}
	return p
}

// PaymentAggregate loads the payment view with command.Load.
var PaymentAggregate = command.Aggregate[Payment]{
	Context: contracts.ServicePayment,
	Initial: func(id string) Payment { return Payment{ID: id} },
	Evolve:  EvolvePayment,
	Clone:   func(p Payment) Payment { return p }, // values only
}

// Kind names a step of the checkout.
type Kind string

// The steps, each sent to the service that decides it.
const (
	Reserve   Kind = "reserve"   // listing.reserve_stock
	Authorize Kind = "authorize" // payment.authorize
	Confirm   Kind = "confirm"   // order.confirm
	Capture   Kind = "capture"   // payment.capture
	Reject    Kind = "reject"    // order.reject
	Cancel    Kind = "cancel"    // order.cancel
	Void      Kind = "void"      // payment.void
	Refund    Kind = "refund"    // payment.refund
	Release   Kind = "release"   // listing.release_stock
)

// Step is one command the checkout sends next.
type Step struct {
	Kind Kind
	// PaymentID is the payment a payment step goes to.
	PaymentID string
	// Reason is why an order is ended, for reject and cancel.
	Reason string
	// Deadline tells the runner that the step is bounded by the checkout's
	// business deadline: past it, the step is looked up, not sent afresh.
	Deadline bool
}

// Outcome is what became of a step the runner sent, as far as the log
// does not tell: a refusal (with its detail) or the deadline.
type Outcome struct {
	Refused string
	Late    bool
}

// State is what the decider decides on: the order and its payments as the
// log has them, the event that made this round, and the outcomes of the
// steps sent in this round.
type State struct {
	Order Order
	// Payments are the order's own payment first, then the payment whose
	// event made this round, when it is another.
	Payments []Payment
	// Trigger is the type of the event this round handles. Only
	// order.placed drives a checkout forward; every event of an ended
	// order compensates it (ADR 0015).
	Trigger string
	// Done holds the outcome of every step sent in this round, by key
	// (see StepOf).
	Done map[string]Outcome
}

func doneKey(k Kind, pid string) string { return string(k) + "/" + pid }

// After returns s with the outcome of step recorded.
func (s State) After(step Step, out Outcome) State {
	done := make(map[string]Outcome, len(s.Done)+1)
	for k, v := range s.Done {
		done[k] = v
	}
	done[doneKey(step.Kind, step.PaymentID)] = out
	s.Done = done
	return s
}

func (s State) outcome(k Kind, pid string) (Outcome, bool) {
	o, ok := s.Done[doneKey(k, pid)]
	return o, ok
}

// Next returns the step to send next, and false when this round is over.
// It is pure: the same state gives the same step.
//
// A live order is driven only by its placement: reserve, authorize,
// confirm, then capture (a marketplace captures on confirmation). A
// refused or late reservation rejects the order; a refused or late
// authorization cancels it, and so does a refused capture (a freeze that
// took effect in between). An ended order is compensated, money first:
// every open payment voided, every capture refunded, then the stock
// released.
func Next(s State) (Step, bool) {
	o := s.Order
	switch {
	case o.Status == StatusNone:
		return Step{}, false
	case o.Ended():
		return compensation(s)
	case s.Trigger != "order.placed":
		return Step{}, false
	case o.Status == StatusPlaced:
		return forward(s)
	case o.Status == StatusConfirmed:
		return capture(s)
	}
	return Step{}, false
}

// Alongside returns a step that may be sent together with st, the step
// Next returned for s, and false when there is none. The authorization
// does not wait for the reservation: sent together, a checkout takes one
// round trip less. A reservation then refused rejects the order, and the
// rejected order's compensation voids the authorization, as it voids any
// open payment of an ended order; an authorization refused cancels the
// order, and its compensation releases the stock.
func Alongside(s State, st Step) (Step, bool) {
	if st.Kind != Reserve {
		return Step{}, false
	}
	next, ok := Next(s.After(st, Outcome{}))
	if !ok || next.Kind != Authorize {
		return Step{}, false
	}
	return next, true
}

// forward drives a placed order towards its confirmation.
func forward(s State) (Step, bool) {
	if _, ok := s.outcome(Reject, ""); ok {
		return Step{}, false // refused: someone else moved the order on
	}
	if _, ok := s.outcome(Cancel, ""); ok {
		return Step{}, false
	}
	r, ok := s.outcome(Reserve, "")
	switch {
	case !ok:
		return Step{Kind: Reserve, Deadline: true}, true
	case r.Refused != "":
		return Step{Kind: Reject, Reason: "stock not reserved: " + r.Refused}, true
	case r.Late:
		return Step{Kind: Reject, Reason: "checkout timed out before the stock was reserved"}, true
	}
	pid := s.Order.OwnPayment()
	a, ok := s.outcome(Authorize, pid)
	switch {
	case !ok:
		return Step{Kind: Authorize, PaymentID: pid, Deadline: true}, true
	case a.Refused != "":
		return Step{Kind: Cancel, Reason: "payment refused: " + a.Refused}, true
	case a.Late:
		return Step{Kind: Cancel, Reason: "checkout timed out waiting for the payment authorization"}, true
	}
	if _, ok := s.outcome(Confirm, pid); !ok {
		return Step{Kind: Confirm, PaymentID: pid}, true
	}
	return Step{}, false // confirmation refused and the order still placed: another hand holds it
}

// capture takes the money of a confirmed order.
func capture(s State) (Step, bool) {
	pid := s.Order.OwnPayment()
	c, sent := s.outcome(Capture, pid)
	if c.Refused != "" {
		if _, ok := s.outcome(Cancel, ""); !ok {
			return Step{Kind: Cancel, Reason: "capture refused: " + c.Refused}, true
		}
		return Step{}, false
	}
	if sent || len(s.Payments) == 0 || s.Payments[0].ID != pid || s.Payments[0].Status != "authorized" {
		return Step{}, false
	}
	return Step{Kind: Capture, PaymentID: pid}, true
}

// compensation leaves nothing held for an ended order.
func compensation(s State) (Step, bool) {
	for _, p := range s.Payments {
		if _, sent := s.outcome(Void, p.ID); p.Open() && !sent {
			return Step{Kind: Void, PaymentID: p.ID}, true
		}
		if _, sent := s.outcome(Refund, p.ID); p.Status == "captured" && p.RefundableMinor() > 0 && !sent {
			return Step{Kind: Refund, PaymentID: p.ID}, true
		}
	}
	if _, sent := s.outcome(Release, ""); !sent {
		return Step{Kind: Release}, true
	}
	return Step{}, false
}
