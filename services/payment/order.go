package payment

import (
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/runtime/command"
)

// Order is the payment service's own view of an order aggregate: what a
// payment is judged by under the policy (the order's scope and unit price)
// and what it moves (the order's buyer, seller and total). It is folded
// from the order's contract events, because the payment service never
// imports the order service and never takes a caller's word for what it is
// paying for: the log is the only source of an order's scope (ADR 0014).
type Order struct {
	ID string
	// Placed is true once the order's order.placed event is in the log.
	// Nothing an order does afterwards changes the fields below.
	Placed       bool
	BuyerID      string
	SellerID     string
	UnitPrice    contracts.Money
	Total        contracts.Money
	Channel      contracts.Channel
	Jurisdiction string
	Category     string
	Origin       contracts.Origin
	// Confirmed is true once the order was confirmed with PaymentID: a
	// capture of that payment, and of no other, is the marketplace's
	// normal course.
	Confirmed bool
	PaymentID string
	// Ended is "cancelled" or "rejected" once the order was given up, and
	// empty while it lives. No money may move towards an ended order:
	// authorizing or capturing for it would strand the buyer's money.
	Ended string
}

// Live reports whether the order is in the log and was not given up.
func (o Order) Live() bool { return o.Placed && o.Ended == "" }

// Target returns the order as a policy target, origin included, so that a
// floor price limited to an origin judges a payment as it judged the order.
func (o Order) Target() contracts.Target {
	return contracts.Target{Jurisdiction: o.Jurisdiction, Channel: o.Channel, Category: o.Category,
		SellerID: o.SellerID, Origin: o.Origin}
}

// OrderAggregate loads an order's view with command.Load.
var OrderAggregate = command.Aggregate[Order]{
	Context: contracts.ServiceOrder,
	Initial: func(id string) Order { return Order{ID: id} },
	Evolve:  EvolveOrder,
	// The view holds only values: a copy is a clone.
	Clone: func(o Order) Order { return o },
}

// EvolveOrder applies one order event to the view. An order's scope,
// parties and price are fixed when it is placed (a version 1 order.placed
// arrives upcast, with its default channel); afterwards only whether it
// was confirmed and whether it was given up change.
func EvolveOrder(o Order, payload any) Order {
	switch e := payload.(type) {
	case contracts.OrderPlaced:
		o = Order{ID: e.OrderID, Placed: true, BuyerID: e.BuyerID, SellerID: e.SellerID, UnitPrice: e.UnitPrice,
			Total: e.Total, Channel: e.Channel, Jurisdiction: e.Jurisdiction, Category: e.Category, Origin: e.Origin}
	case contracts.OrderConfirmed:
		o.Confirmed, o.PaymentID = true, e.PaymentID
	case contracts.OrderCancelled:
		o.Ended = "cancelled"
	case contracts.OrderRejected:
		o.Ended = "rejected"
	}
	return o
}
