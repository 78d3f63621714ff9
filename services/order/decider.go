package order

import (
	"fmt"
	"math/bits"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/policyview"
)

// MaxQuantity bounds the units of one order, as the contract does.
const MaxQuantity = 10_000

// Status is where an order is in its life.
type Status string

// The statuses of an order. Cancelled, completed and rejected are final.
const (
	StatusNone      Status = ""
	StatusPlaced    Status = "placed"
	StatusConfirmed Status = "confirmed"
	StatusCancelled Status = "cancelled"
	StatusShipped   Status = "shipped"
	StatusCompleted Status = "completed"
	StatusRejected  Status = "rejected"
)

// Order is the state of one order aggregate.
type Order struct {
	ID           string            `json:"order_id"`
	Status       Status            `json:"status"`
	BuyerID      string            `json:"buyer_id,omitempty"`
	ListingID    string            `json:"listing_id,omitempty"`
	SellerID     string            `json:"seller_id,omitempty"`
	Quantity     int64             `json:"quantity,omitempty"`
	UnitPrice    contracts.Money   `json:"unit_price"`
	Total        contracts.Money   `json:"total"`
	Channel      contracts.Channel `json:"channel,omitempty"`
	Jurisdiction string            `json:"jurisdiction,omitempty"`
	Category     string            `json:"category,omitempty"`
	Origin       contracts.Origin  `json:"origin,omitempty"`
	PaymentID    string            `json:"payment_id,omitempty"`
	Reason       string            `json:"reason,omitempty"`
}

// Ended reports whether the order was given up: rejected or cancelled. An
// ended order holds no stock and no money (ADR 0015).
func (o Order) Ended() bool { return o.Status == StatusRejected || o.Status == StatusCancelled }

// Initial returns the state of an order that has no events.
func Initial(id string) Order { return Order{ID: id} }

// Evolve applies one order event.
func Evolve(s Order, payload any) Order {
	switch e := payload.(type) {
	case contracts.OrderPlaced:
		s = Order{ID: e.OrderID, Status: StatusPlaced, BuyerID: e.BuyerID, ListingID: e.ListingID, SellerID: e.SellerID,
			Quantity: e.Quantity, UnitPrice: e.UnitPrice, Total: e.Total, Channel: e.Channel,
			Jurisdiction: e.Jurisdiction, Category: e.Category, Origin: e.Origin}
	case contracts.OrderConfirmed:
		s.Status, s.PaymentID = StatusConfirmed, e.PaymentID
	case contracts.OrderCancelled:
		s.Status, s.Reason = StatusCancelled, e.Reason
	case contracts.OrderShipped:
		s.Status = StatusShipped
	case contracts.OrderCompleted:
		s.Status = StatusCompleted
	case contracts.OrderRejected:
		s.Status, s.Reason = StatusRejected, e.Reason
	}
	return s
}

// Inputs is what an order decision needs besides the order's own state.
type Inputs struct {
	// Listing is the listing as it is now; only placement reads it (zero
	// for the other commands).
	Listing Listing
	// Rules are the policy rules the decision is judged by.
	Rules policyview.Rules
}

// Decide answers one command (a value of a contracts order command type)
// given the order's state, its inputs and the decision instant. It returns
// the events to append; none means the command was already done.
func Decide(s Order, cmd any, in Inputs, now time.Time) ([]any, error) {
	switch c := cmd.(type) {
	case contracts.PlaceOrder:
		return decidePlace(s, c, in.Listing, in.Rules, now)
	case contracts.ConfirmOrder:
		if s.Status == StatusConfirmed && s.PaymentID != c.PaymentID {
			return nil, fail("order.confirm", events.KindConflict, "/payment_id", "order was confirmed with payment "+s.PaymentID)
		}
		return transition("order.confirm", s, StatusConfirmed, contracts.OrderConfirmed{OrderID: s.ID, PaymentID: c.PaymentID}, StatusPlaced)
	case contracts.CancelOrder:
		if c.Reason == "" {
			return nil, fail("order.cancel", events.KindInvalid, "/reason", "required")
		}
		return transition("order.cancel", s, StatusCancelled, contracts.OrderCancelled{OrderID: s.ID, Reason: c.Reason}, StatusPlaced, StatusConfirmed)
	case contracts.ShipOrder:
		return transition("order.ship", s, StatusShipped, contracts.OrderShipped{OrderID: s.ID, Carrier: c.Carrier, TrackingNumber: c.TrackingNumber}, StatusConfirmed)
	case contracts.CompleteOrder:
		return transition("order.complete", s, StatusCompleted, contracts.OrderCompleted{OrderID: s.ID}, StatusShipped)
	case contracts.RejectOrder:
		if c.Reason == "" {
			return nil, fail("order.reject", events.KindInvalid, "/reason", "required")
		}
		return transition("order.reject", s, StatusRejected, contracts.OrderRejected{OrderID: s.ID, Reason: c.Reason,
			RuleID: c.RuleID, LegalBasis: c.LegalBasis}, StatusPlaced)
	}
	return nil, &events.Error{Op: "order.Decide", Kind: events.KindInvalid, Rule: fmt.Sprintf("unknown command %T", cmd)}
}

// transition moves the order to status `to` with event e if it is in one
// of `from`; an order already in `to` gives no event, so retries are safe.
func transition(op string, s Order, to Status, e any, from ...Status) ([]any, error) {
	switch {
	case s.Status == StatusNone:
		return nil, fail(op, events.KindNotFound, "/order_id", fmt.Sprintf("no order %q", s.ID))
	case s.Status == to:
		return nil, nil
	}
	for _, f := range from {
		if s.Status == f {
			return []any{e}, nil
		}
	}
	return nil, fail(op, events.KindConflict, "/order_id", fmt.Sprintf("order is %s; %s needs it %v", s.Status, op, from))
}

func decidePlace(s Order, c contracts.PlaceOrder, l Listing, rules policyview.Rules, now time.Time) ([]any, error) {
	const op = "order.place"
	switch {
	case s.Status != StatusNone:
		return nil, fail(op, events.KindConflict, "/order_id", "order already exists")
	case c.BuyerID == "":
		return nil, fail(op, events.KindInvalid, "/buyer_id", "required")
	case c.Quantity < 1 || c.Quantity > MaxQuantity:
		return nil, fail(op, events.KindInvalid, "/quantity", fmt.Sprintf("between 1 and %d", MaxQuantity))
	case !l.Created:
		return nil, fail(op, events.KindNotFound, "/listing_id", fmt.Sprintf("no listing %q", c.ListingID))
	case l.Delisted:
		return nil, fail(op, events.KindInvalid, "/listing_id", "listing is delisted")
	}
	total, err := multiply(op, l.Price, c.Quantity)
	if err != nil {
		return nil, err
	}
	if err := rules.Check(contracts.OpOrderPlace, l.Target(), l.Price, now); err != nil {
		// The offending value of a floor refusal is the listing's price,
		// which the command names by its listing id.
		if e, ok := err.(*events.Error); ok && e.Field != "" {
			e.Field = "/listing_id"
		}
		return nil, policyview.WithActor(err, c.BuyerID)
	}
	if c.Quantity > l.Stock {
		return nil, &events.Error{Op: op, Kind: events.KindConflict, Reason: events.ReasonNoStock, Field: "/quantity",
			Rule: fmt.Sprintf("only %d units available", l.Stock)}
	}
	return []any{contracts.OrderPlaced{OrderID: s.ID, BuyerID: c.BuyerID, ListingID: l.ID, SellerID: l.SellerID,
		Quantity: c.Quantity, UnitPrice: l.Price, Total: total, Channel: l.Channel, Jurisdiction: l.Jurisdiction,
		Category: l.Category, Origin: l.Origin}}, nil
}

// multiply returns price × qty, refusing a product above MaxAmountMinor
// (which also rules out int64 overflow).
func multiply(op string, price contracts.Money, qty int64) (contracts.Money, error) {
	hi, lo := bits.Mul64(uint64(price.AmountMinor), uint64(qty))
	if price.AmountMinor < 1 || hi != 0 || lo > contracts.MaxAmountMinor {
		return contracts.Money{}, fail(op, events.KindInvalid, "/quantity",
			fmt.Sprintf("unit price %s × quantity %d exceeds the maximum amount %d", price, qty, int64(contracts.MaxAmountMinor)))
	}
	return contracts.Money{AmountMinor: int64(lo), Currency: price.Currency}, nil
}

func fail(op string, kind events.Kind, field, rule string) error {
	return &events.Error{Op: op, Kind: kind, Field: field, Rule: rule}
}
