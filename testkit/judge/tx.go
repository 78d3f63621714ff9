package judge

import (
	"encoding/json"
	"fmt"
)

// txBody holds the fields of every transaction event the judge reads; each
// type fills the ones it has.
type txBody struct {
	ListingID       string    `json:"listing_id"`
	OrderID         string    `json:"order_id"`
	PaymentID       string    `json:"payment_id"`
	SellerID        string    `json:"seller_id"`
	Channel         string    `json:"channel"`
	Jurisdiction    string    `json:"jurisdiction"`
	Category        string    `json:"category"`
	Origin          string    `json:"origin"`
	Price           *money    `json:"price"`
	UnitPrice       *money    `json:"unit_price"`
	PendingPostings []posting `json:"pending_postings"`
	Postings        []posting `json:"postings"`
}

func (b *txBody) target() target {
	return target{Jurisdiction: b.Jurisdiction, Channel: b.Channel, Category: b.Category, Seller: b.SellerID, Origin: b.Origin}
}

// operations maps each transaction event to the operation it accepts.
var operations = map[string]string{
	"listing.created":       "listing.create",
	"listing.price_changed": "listing.change_price",
	"order.placed":          "order.place",
	"payment.authorized":    "payment.authorize",
	"payment.captured":      "payment.capture",
}

// transaction records an accepted transaction with the scope it was
// decided in. Events that do not carry their whole scope take it from
// what the log holds before them: a price change from its listing, a
// payment from its order (the truth a caller cannot restate).
func (j *Judge) transaction(e *event) error {
	var b txBody
	if err := json.Unmarshal(e.Data, &b); err != nil {
		return err
	}
	x := tx{Pos: e.Seq, PolicyPos: e.PolicyPosition, ID: e.ID, Type: e.Type, AggID: e.AggregateID, Op: operations[e.Type],
		Decided: e.Decided, Recorded: e.Recorded}
	switch e.Type {
	case "listing.created":
		x.trade = trade{target: b.target(), price: b.Price}
		j.listings[b.ListingID] = x.trade
	case "listing.price_changed":
		l, ok := j.listings[b.ListingID]
		if !ok {
			j.find(FindingReference, e.Seq, e.ID, "price change of listing %s, which the log does not hold before it", b.ListingID)
		}
		l.price = b.Price
		j.listings[b.ListingID] = l
		x.trade = l
	case "order.placed":
		if b.Channel == "" && e.SchemaVersion == 1 {
			b.Channel = "marketplace" // version 1 predates channels: every order was a marketplace order
		}
		x.trade = trade{target: b.target(), price: b.UnitPrice}
		j.orders[b.OrderID] = x.trade
	case "payment.authorized":
		j.payments[b.PaymentID] = b.OrderID
		x.trade = j.orderTrade(e, b.OrderID, b.target())
		j.postings(e, b.PendingPostings, false)
	case "payment.captured":
		oid, ok := j.payments[b.PaymentID]
		if !ok {
			j.find(FindingReference, e.Seq, e.ID, "capture of payment %s, which the log does not hold before it", b.PaymentID)
			oid = b.OrderID
		}
		x.trade = j.orderTrade(e, oid, target{})
		j.postings(e, b.Postings, true)
	}
	if x.PolicyPos < j.policyHead {
		j.find(FindingStalePolicy, e.Seq, e.ID, "stored after the policy event at %d, decided under policy position %d", j.policyHead, x.PolicyPos)
	}
	j.txs = append(j.txs, x)
	return nil
}

// orderTrade returns the order's scope and unit price. A payment that
// states a scope (stated is not zero) must state its order's.
func (j *Judge) orderTrade(e *event, orderID string, stated target) trade {
	t, ok := j.orders[orderID]
	if !ok {
		j.find(FindingReference, e.Seq, e.ID, "payment for order %s, which the log does not hold before it", orderID)
		stated.Origin = ""
		return trade{target: stated}
	}
	if stated != (target{}) {
		want := t.target
		want.Origin = "" // a payment does not state the origin
		if stated != want {
			j.find(FindingReference, e.Seq, e.ID, "states scope %s, its order %s has %s", fmtTarget(stated), orderID, fmtTarget(want))
		}
	}
	return t
}

func fmtTarget(t target) string {
	return fmt.Sprintf("{channel %s, jurisdiction %s, category %s, seller %s}", t.Channel, t.Jurisdiction, t.Category, t.Seller)
}
