package market

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/services/listing"
	"github.com/marketledger/ledger/services/order"
	"github.com/marketledger/ledger/services/payment"
)

type checkoutResult int

const (
	accepted checkoutResult = iota + 1
	refused
	outOfStock
	cancelled
)

// checkout drives one order through the services the way the checkout
// process manager does: place, reserve stock, authorize, capture, confirm;
// a refusal or an empty stock ends it with compensation, and a buyer who
// changes their mind cancels after authorization (void, release, cancel).
// Payment commands carry idempotency keys derived from the order, so a retry
// can never charge twice.
func (m *market) checkout(ctx context.Context, b *buy) error {
	it := m.listings[b.item]
	ctx = order.WithCorrelationID(ctx, b.orderID)
	placed, err := m.svc.Order.Place(ctx, contracts.PlaceOrder{OrderID: b.orderID, BuyerID: b.buyer, ListingID: it.id, Quantity: b.qty})
	if events.KindOf(err) == events.KindFrozen {
		b.result = refused
		return nil
	}
	if isNoStock(err) {
		b.result = outOfStock
		return nil
	}
	if err != nil {
		return fmt.Errorf("order %s: place: %w", b.orderID, err)
	}
	lctx := listing.WithCorrelationID(ctx, b.orderID)
	if _, err := m.svc.Listing.ReserveStock(lctx, contracts.ReserveStock{ListingID: it.id, OrderID: b.orderID, Quantity: b.qty}); err != nil {
		if isNoStock(err) {
			b.result = outOfStock
			_, rerr := m.svc.Order.Reject(ctx, contracts.RejectOrder{OrderID: b.orderID, Reason: "out of stock"})
			return rerr
		}
		return fmt.Errorf("order %s: reserve: %w", b.orderID, err)
	}
	o := placed.State
	b.paymentID, b.amount = "pay-"+b.orderID, o.Total.AmountMinor
	pctx := payment.WithCorrelationID(ctx, b.orderID)
	_, err = m.svc.Payment.Authorize(pctx, contracts.AuthorizePayment{PaymentID: b.paymentID, OrderID: b.orderID,
		BuyerID: b.buyer, SellerID: o.SellerID, Channel: o.Channel, Jurisdiction: o.Jurisdiction, Category: o.Category,
		Amount: o.Total, IdempotencyKey: "checkout:" + b.orderID + ":authorize"})
	if err != nil {
		return m.compensate(ctx, b, it, err, false)
	}
	if b.cancel {
		if _, err := m.svc.Payment.Void(pctx, contracts.VoidPayment{PaymentID: b.paymentID, Reason: "buyer cancelled"}); err != nil {
			return fmt.Errorf("order %s: void: %w", b.orderID, err)
		}
		b.result = cancelled
		return m.release(ctx, b, it, "buyer cancelled")
	}
	if _, err := m.svc.Payment.Capture(pctx, contracts.CapturePayment{PaymentID: b.paymentID,
		IdempotencyKey: "checkout:" + b.orderID + ":capture"}); err != nil {
		return m.compensate(ctx, b, it, err, true)
	}
	if _, err := m.svc.Order.Confirm(ctx, contracts.ConfirmOrder{OrderID: b.orderID, PaymentID: b.paymentID}); err != nil {
		return fmt.Errorf("order %s: confirm: %w", b.orderID, err)
	}
	b.result = accepted
	return nil
}

// compensate undoes a checkout whose payment step was refused by a rule
// (a freeze that took effect mid-checkout): void an authorization, release
// the stock, cancel the order.
func (m *market) compensate(ctx context.Context, b *buy, it shopItem, cause error, authorized bool) error {
	if events.KindOf(cause) != events.KindFrozen {
		return fmt.Errorf("order %s: payment: %w", b.orderID, cause)
	}
	if authorized {
		pctx := payment.WithCorrelationID(ctx, b.orderID)
		if _, err := m.svc.Payment.Void(pctx, contracts.VoidPayment{PaymentID: b.paymentID, Reason: "capture refused by policy"}); err != nil {
			return fmt.Errorf("order %s: void: %w", b.orderID, err)
		}
	}
	b.result = refused
	return m.release(ctx, b, it, "payment refused by policy")
}

func (m *market) release(ctx context.Context, b *buy, it shopItem, reason string) error {
	lctx := listing.WithCorrelationID(ctx, b.orderID)
	if _, err := m.svc.Listing.ReleaseStock(lctx, contracts.ReleaseStock{ListingID: it.id, OrderID: b.orderID, Quantity: b.qty, Reason: reason}); err != nil {
		return fmt.Errorf("order %s: release: %w", b.orderID, err)
	}
	if _, err := m.svc.Order.Cancel(ctx, contracts.CancelOrder{OrderID: b.orderID, Reason: reason}); err != nil {
		return fmt.Errorf("order %s: cancel: %w", b.orderID, err)
	}
	return nil
}

// cutPrice lowers a social-commerce listing's price by 10 to 30 percent, as
// sellers did in the hours before the closure.
func (m *market) cutPrice(ctx context.Context, i int) error {
	it := &m.listings[i]
	cut := 10 + int64(i%3)*10
	price := it.price * (100 - cut) / 100 / 100 * 100
	if price <= 0 {
		return nil
	}
	if _, err := m.svc.Listing.ChangePrice(ctx, contracts.ChangePrice{ListingID: it.id, Price: idr(price)}); err != nil {
		return fmt.Errorf("listing %s: change price: %w", it.id, err)
	}
	it.price = price
	return nil
}

func (m *market) refund(ctx context.Context, now time.Time, r *refund) (bool, error) {
	p := m.captured[r.idx]
	refundID := fmt.Sprintf("rf-%s-%d", p.orderID, p.refunded)
	pctx := payment.WithCorrelationID(ctx, p.orderID)
	_, err := m.svc.Payment.Refund(pctx, contracts.RefundPayment{PaymentID: p.paymentID, RefundID: refundID,
		Amount: idr(r.amount), Reason: "buyer request", IdempotencyKey: "refund:" + refundID})
	if err != nil {
		return false, fmt.Errorf("payment %s: refund: %w", p.paymentID, err)
	}
	return true, nil
}

func (m *market) settle(ctx context.Context, i int) (bool, error) {
	p := m.captured[i]
	pctx := payment.WithCorrelationID(ctx, p.orderID)
	if _, err := m.svc.Payment.Settle(pctx, contracts.SettlePayment{PaymentID: p.paymentID, IdempotencyKey: "settle:" + p.paymentID}); err != nil {
		return false, fmt.Errorf("payment %s: settle: %w", p.paymentID, err)
	}
	return true, nil
}

// isNoStock reports a refusal for want of stock (the quantity asked exceeds
// what the listing has left).
func isNoStock(err error) bool {
	var e *events.Error
	return errors.As(err, &e) && e.Kind == events.KindConflict && strings.HasSuffix(e.Field, "/quantity")
}
