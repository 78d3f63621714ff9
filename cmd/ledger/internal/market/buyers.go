package market

import (
	"context"
	"fmt"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
	"github.com/marketledger/ledger/services/order"
)

// checkoutResult is how a buyer's checkout ended, as the log has it.
type checkoutResult int

const (
	accepted   checkoutResult = iota + 1 // the order is confirmed and paid
	refused                              // refused by the freeze: at placement, or its payment
	outOfStock                           // refused at placement, or rejected at reservation, for want of stock
	cancelled                            // cancelled by its buyer after confirmation, and unwound
)

// drainMax bounds the wait for the checkout to finish the orders of one
// simulated step without sending a step: far beyond what a step takes, so
// that a checkout that stopped fails the day instead of hanging it, while
// one that a busy machine slows down goes on.
var drainMax = 2 * time.Minute

// place is a buyer placing an order, and all a buyer does to check out:
// the checkout (services/checkout, the one `ledger serve` runs) reserves,
// authorizes, confirms and captures. A placement refused by the freeze or
// for want of stock is the buyer's answer; nothing of it is in the log.
func (m *market) place(ctx context.Context, b *buy) error {
	it := m.listings[b.item]
	ctx = command.WithCorrelationID(ctx, b.orderID)
	_, err := m.svc.Order.Place(ctx, contracts.PlaceOrder{OrderID: b.orderID, BuyerID: b.buyer, ListingID: it.id, Quantity: b.qty})
	switch {
	case events.KindOf(err) == events.KindFrozen:
		b.result = refused
	case isNoStock(err):
		b.result = outOfStock
	case err != nil:
		return fmt.Errorf("order %s: place: %w", b.orderID, err)
	default:
		b.placed = true
	}
	return nil
}

// finish waits for the checkout to finish the orders placed in this step,
// lets the buyers who changed their mind cancel their confirmed orders,
// waits for the checkout to unwind those (refund and release), and reads
// how every order ended from the log. The clock does not move meanwhile,
// so the checkout's business deadline is kept on the simulated clock and
// the day is the same for the same seed.
func (m *market) finish(ctx context.Context, buys []buy) error {
	if err := m.drain(ctx); err != nil {
		return err
	}
	if err := m.parallel(len(buys), func(i int) error { return m.changeMind(ctx, &buys[i]) }); err != nil {
		return err
	}
	if err := m.drain(ctx); err != nil {
		return err
	}
	return m.parallel(len(buys), func(i int) error { return m.ended(ctx, &buys[i]) })
}

func (m *market) drain(ctx context.Context) error {
	for {
		sent := m.svc.Checkout.Steps()
		dctx, cancel := context.WithTimeout(ctx, drainMax)
		err := m.svc.Checkout.Drain(dctx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() == nil && m.svc.Checkout.Steps() != sent:
			continue // slow, not stopped: a busy machine
		}
		return fmt.Errorf("waiting for the checkout to finish the step's orders (no step sent for %s): %w", drainMax, err)
	}
}

// changeMind is a buyer cancelling a confirmed order, as buyers do; the
// checkout refunds the capture and releases the stock.
func (m *market) changeMind(ctx context.Context, b *buy) error {
	if !b.placed || !b.cancel {
		return nil
	}
	o, _, err := m.svc.Order.Load(ctx, b.orderID)
	if err != nil {
		return fmt.Errorf("order %s: %w", b.orderID, err)
	}
	if o.Status != order.StatusConfirmed {
		return nil // the checkout ended it: nothing to cancel
	}
	ctx = command.WithCorrelationID(ctx, b.orderID)
	if _, err := m.svc.Order.Cancel(ctx, contracts.CancelOrder{OrderID: b.orderID, Reason: "buyer changed their mind"}); err != nil {
		return fmt.Errorf("order %s: cancel: %w", b.orderID, err)
	}
	b.cancelled = true
	return nil
}

// ended reads how a placed order ended from the log. Every order is over
// once the checkout is drained: one still placed is a checkout that did
// not do its work, and fails the day.
func (m *market) ended(ctx context.Context, b *buy) error {
	if !b.placed {
		return nil
	}
	o, _, err := m.svc.Order.Load(ctx, b.orderID)
	if err != nil {
		return fmt.Errorf("order %s: %w", b.orderID, err)
	}
	switch o.Status {
	case order.StatusConfirmed:
		b.result, b.paymentID, b.amount = accepted, contracts.PaymentID(o.ID), o.Total.AmountMinor
	case order.StatusRejected:
		b.result = outOfStock // the checkout rejects an order whose stock it could not reserve
	case order.StatusCancelled:
		b.result = refused // the checkout cancels an order whose payment was refused
		if b.cancelled {
			b.result = cancelled
		}
	default:
		return fmt.Errorf("order %s is %s after the checkout finished: want confirmed, rejected or cancelled", o.ID, o.Status)
	}
	return nil
}

// refund is a buyer asking for (part of) an accepted order's money back.
func (m *market) refund(ctx context.Context, r *refund) (bool, error) {
	p := m.captured[r.idx]
	refundID := fmt.Sprintf("rf-%s-%d", p.orderID, p.refunded)
	pctx := command.WithCorrelationID(ctx, p.orderID)
	_, err := m.svc.Payment.Refund(pctx, contracts.RefundPayment{PaymentID: p.paymentID, RefundID: refundID,
		Amount: idr(r.amount), Reason: "buyer request", IdempotencyKey: "refund:" + refundID})
	if err != nil {
		return false, fmt.Errorf("payment %s: refund: %w", p.paymentID, err)
	}
	return true, nil
}

// isNoStock reports a refusal for want of stock (the quantity asked exceeds
// what the listing has left).
func isNoStock(err error) bool { return events.ReasonOf(err) == events.ReasonNoStock }
