package contracts

// Order events. The aggregate is one order; its id is order_id.

// OrderPlaced (version 2) records an accepted order: the price and the
// listing's attributes as they were at decision time, so that the order
// never needs the listing again and the policy audit can judge it alone.
type OrderPlaced struct {
	OrderID      string  `json:"order_id" schema:"id" doc:"the order (aggregate id)"`
	BuyerID      string  `json:"buyer_id" schema:"id" doc:"the buyer"`
	ListingID    string  `json:"listing_id" schema:"id" doc:"the listing ordered from"`
	SellerID     string  `json:"seller_id" schema:"id" doc:"the listing's seller"`
	Quantity     int64   `json:"quantity" schema:"min=1,max=10000" doc:"units ordered"`
	UnitPrice    Money   `json:"unit_price" doc:"the listing's unit price at decision time"`
	Total        Money   `json:"total" doc:"unit_price times quantity"`
	Channel      Channel `json:"channel" doc:"the listing's sales channel (added in version 2)"`
	Jurisdiction string  `json:"jurisdiction" schema:"country" doc:"the listing's ISO 3166-1 alpha-2 jurisdiction"`
	Category     string  `json:"category" schema:"slug" doc:"the listing's category"`
	Origin       Origin  `json:"origin" doc:"the listing's origin"`
}

// OrderPlacedV1 is the first version of order.placed, written before the
// ledger knew about sales channels. It is only ever read, through
// UpcastOrderPlacedV1; nothing writes it any more.
type OrderPlacedV1 struct {
	OrderID      string `json:"order_id" schema:"id" doc:"the order (aggregate id)"`
	BuyerID      string `json:"buyer_id" schema:"id" doc:"the buyer"`
	ListingID    string `json:"listing_id" schema:"id" doc:"the listing ordered from"`
	SellerID     string `json:"seller_id" schema:"id" doc:"the listing's seller"`
	Quantity     int64  `json:"quantity" schema:"min=1,max=10000" doc:"units ordered"`
	UnitPrice    Money  `json:"unit_price" doc:"the listing's unit price at decision time"`
	Total        Money  `json:"total" doc:"unit_price times quantity"`
	Jurisdiction string `json:"jurisdiction" schema:"country" doc:"the listing's ISO 3166-1 alpha-2 jurisdiction"`
	Category     string `json:"category" schema:"slug" doc:"the listing's category"`
	Origin       Origin `json:"origin" doc:"the listing's origin"`
}

// DefaultChannelV1 is the channel an order.placed v1 event is read with.
// Version 1 was written while the marketplace was the only sales channel:
// social commerce checkout came later, together with the channel field, so
// every v1 order was a marketplace order. Defaulting to social_commerce
// instead would make old orders look like violations of a social-commerce
// freeze that did not exist when they were placed.
const DefaultChannelV1 = ChannelMarketplace

// UpcastOrderPlacedV1 turns a version 1 order.placed into the current type,
// with the channel set to DefaultChannelV1.
func UpcastOrderPlacedV1(v OrderPlacedV1) OrderPlaced {
	return OrderPlaced{
		OrderID: v.OrderID, BuyerID: v.BuyerID, ListingID: v.ListingID, SellerID: v.SellerID,
		Quantity: v.Quantity, UnitPrice: v.UnitPrice, Total: v.Total, Channel: DefaultChannelV1,
		Jurisdiction: v.Jurisdiction, Category: v.Category, Origin: v.Origin,
	}
}

// OrderConfirmed records that the order's payment was authorized: the
// checkout is complete and the seller may ship.
type OrderConfirmed struct {
	OrderID   string `json:"order_id" schema:"id" doc:"the order (aggregate id)"`
	PaymentID string `json:"payment_id" schema:"id" doc:"the authorized payment"`
}

// OrderCancelled records that the order will not be fulfilled; its reserved
// stock is released and any payment voided or refunded.
type OrderCancelled struct {
	OrderID string `json:"order_id" schema:"id" doc:"the order (aggregate id)"`
	Reason  string `json:"reason" schema:"text=500" doc:"why the order was cancelled"`
}

// OrderShipped records that the seller handed the goods to a carrier.
type OrderShipped struct {
	OrderID        string `json:"order_id" schema:"id" doc:"the order (aggregate id)"`
	Carrier        string `json:"carrier,omitempty" schema:"text=100" doc:"carrier name"`
	TrackingNumber string `json:"tracking_number,omitempty" schema:"text=100" doc:"the carrier's tracking number"`
}

// OrderCompleted records that the buyer received the goods; the payment may
// be settled to the seller.
type OrderCompleted struct {
	OrderID string `json:"order_id" schema:"id" doc:"the order (aggregate id)"`
}

// OrderRejected records that a placed order could not go ahead (payment
// failed, policy refused it at checkout, the checkout timed out). Unlike a
// cancellation nobody asked for it; the process manager decided it.
type OrderRejected struct {
	OrderID    string `json:"order_id" schema:"id" doc:"the order (aggregate id)"`
	Reason     string `json:"reason" schema:"text=500" doc:"why the order was rejected"`
	RuleID     string `json:"rule_id,omitempty" schema:"id" doc:"the policy rule that refused it, when one did"`
	LegalBasis string `json:"legal_basis,omitempty" schema:"text=500" doc:"that rule's legal basis"`
}

// Order commands.

// PlaceOrder asks for an order of a listing. The price, currency and the
// listing's attributes are taken from the listing at decision time, never
// from the caller.
type PlaceOrder struct {
	OrderID        string `json:"order_id" schema:"id" doc:"the new order's id, chosen by the caller"`
	BuyerID        string `json:"buyer_id" schema:"id" doc:"the buyer"`
	ListingID      string `json:"listing_id" schema:"id" doc:"the listing to order from"`
	Quantity       int64  `json:"quantity" schema:"min=1,max=10000" doc:"units to order"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// ConfirmOrder marks an order confirmed once its payment is authorized.
type ConfirmOrder struct {
	OrderID        string `json:"order_id" schema:"id" doc:"the order"`
	PaymentID      string `json:"payment_id" schema:"id" doc:"the authorized payment"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// CancelOrder cancels an order that has not shipped.
type CancelOrder struct {
	OrderID        string `json:"order_id" schema:"id" doc:"the order"`
	Reason         string `json:"reason" schema:"text=500" doc:"why the order is cancelled"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// ShipOrder marks a confirmed order shipped.
type ShipOrder struct {
	OrderID        string `json:"order_id" schema:"id" doc:"the order"`
	Carrier        string `json:"carrier,omitempty" schema:"text=100" doc:"carrier name"`
	TrackingNumber string `json:"tracking_number,omitempty" schema:"text=100" doc:"the carrier's tracking number"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// CompleteOrder marks a shipped order delivered.
type CompleteOrder struct {
	OrderID        string `json:"order_id" schema:"id" doc:"the order"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// RejectOrder is sent by the checkout process manager when a placed order
// cannot go ahead.
type RejectOrder struct {
	OrderID        string `json:"order_id" schema:"id" doc:"the order"`
	Reason         string `json:"reason" schema:"text=500" doc:"why the order is rejected"`
	RuleID         string `json:"rule_id,omitempty" schema:"id" doc:"the policy rule that refused it, when one did"`
	LegalBasis     string `json:"legal_basis,omitempty" schema:"text=500" doc:"that rule's legal basis"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}
