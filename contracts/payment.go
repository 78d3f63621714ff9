package contracts

// Payment events. The aggregate is one payment; its id is payment_id. Every
// money movement carries its double-entry postings (see Posting for the
// chart of accounts and the legs of each movement).

// PaymentAuthorized records a pending two-phase transfer from the buyer to
// the order's escrow, as TigerBeetle's pending transfers: the postings are
// reserved, not yet on balances, until captured or voided. It records the
// order's policy scope so that an audit can judge it without the order.
type PaymentAuthorized struct {
	PaymentID       string    `json:"payment_id" schema:"id" doc:"the payment (aggregate id)"`
	OrderID         string    `json:"order_id" schema:"id" doc:"the order paid for"`
	BuyerID         string    `json:"buyer_id" schema:"id" doc:"the paying buyer"`
	SellerID        string    `json:"seller_id" schema:"id" doc:"the order's seller"`
	Channel         Channel   `json:"channel" doc:"the order's sales channel"`
	Jurisdiction    string    `json:"jurisdiction" schema:"country" doc:"the order's ISO 3166-1 alpha-2 jurisdiction"`
	Category        string    `json:"category" schema:"slug" doc:"the order's category"`
	Amount          Money     `json:"amount" doc:"amount authorized"`
	PendingPostings []Posting `json:"pending_postings" schema:"minItems=2,maxItems=16" doc:"the pending transfer: buyer -amount, escrow +amount; not on balances until captured"`
}

// PaymentAuthorizationFailed records that the payment could not be
// authorized (declined, frozen, timed out); nothing was reserved.
type PaymentAuthorizationFailed struct {
	PaymentID string `json:"payment_id" schema:"id" doc:"the payment (aggregate id)"`
	OrderID   string `json:"order_id" schema:"id" doc:"the order paid for"`
	BuyerID   string `json:"buyer_id" schema:"id" doc:"the buyer"`
	Amount    Money  `json:"amount" doc:"amount that was asked for"`
	Reason    string `json:"reason" schema:"text=500" doc:"why authorization failed"`
	RuleID    string `json:"rule_id,omitempty" schema:"id" doc:"the policy rule that refused it, when one did"`
}

// PaymentCaptured records that (part of) the authorized amount moved from
// the buyer into the order's escrow.
type PaymentCaptured struct {
	PaymentID string    `json:"payment_id" schema:"id" doc:"the payment (aggregate id)"`
	OrderID   string    `json:"order_id" schema:"id" doc:"the order paid for"`
	Amount    Money     `json:"amount" doc:"amount captured, at most the amount authorized"`
	Postings  []Posting `json:"postings" schema:"minItems=2,maxItems=16" doc:"buyer -amount, escrow +amount"`
}

// PaymentVoided records that the pending authorization was released
// without capture; no money moved.
type PaymentVoided struct {
	PaymentID string `json:"payment_id" schema:"id" doc:"the payment (aggregate id)"`
	OrderID   string `json:"order_id" schema:"id" doc:"the order paid for"`
	Amount    Money  `json:"amount" doc:"amount released"`
	Reason    string `json:"reason" schema:"text=500" doc:"why the authorization was voided"`
}

// PaymentCancelled records that a void came for a payment id under which
// nothing was authorized yet: a tombstone. The id is spent, so an
// authorization that arrives late (sent before the void, delivered after
// it) is refused instead of standing for an order that was given up.
type PaymentCancelled struct {
	PaymentID string `json:"payment_id" schema:"id" doc:"the payment (aggregate id)"`
	Reason    string `json:"reason" schema:"text=500" doc:"why the payment was given up"`
}

// PaymentRefunded records money returned to the buyer, in full or in part;
// the refunds of a payment never exceed what was captured.
type PaymentRefunded struct {
	PaymentID string    `json:"payment_id" schema:"id" doc:"the payment (aggregate id)"`
	OrderID   string    `json:"order_id" schema:"id" doc:"the order paid for"`
	RefundID  string    `json:"refund_id" schema:"id" doc:"this refund, unique within the payment"`
	Amount    Money     `json:"amount" doc:"amount refunded"`
	Reason    string    `json:"reason" schema:"text=500" doc:"why the money was returned"`
	Postings  []Posting `json:"postings" schema:"minItems=2,maxItems=16" doc:"escrow (or seller_payable after settlement) -amount, refunds +amount"`
}

// PaymentSettled records the payout of a completed order to the seller, less
// the platform fee.
type PaymentSettled struct {
	PaymentID string    `json:"payment_id" schema:"id" doc:"the payment (aggregate id)"`
	OrderID   string    `json:"order_id" schema:"id" doc:"the order paid for"`
	SellerID  string    `json:"seller_id" schema:"id" doc:"the seller paid"`
	Gross     Money     `json:"gross" doc:"captured minus refunded, taken out of escrow"`
	FeeMinor  int64     `json:"fee_minor" schema:"min=0" doc:"platform fee in minor units of gross.currency"`
	Net       Money     `json:"net" doc:"gross minus fee, owed to the seller"`
	Postings  []Posting `json:"postings" schema:"minItems=2,maxItems=16" doc:"escrow -gross, seller_payable +net, platform_fee_revenue +fee (left out when 0)"`
}

// Payment commands.

// AuthorizePayment asks for a pending transfer of the order's total. The
// payment service takes the order's parties, policy scope and total from
// the log (the order's own events), never from the caller: the fields that
// restate them are optional, and a command whose stated value differs from
// the order's is refused, naming the field (ADR 0014).
type AuthorizePayment struct {
	PaymentID      string  `json:"payment_id" schema:"id" doc:"the new payment's id, chosen by the caller"`
	OrderID        string  `json:"order_id" schema:"id" doc:"the order to pay for; it must be in the log"`
	BuyerID        string  `json:"buyer_id,omitempty" schema:"id" doc:"the order's buyer; taken from the order, refused when it differs"`
	SellerID       string  `json:"seller_id,omitempty" schema:"id" doc:"the order's seller; taken from the order, refused when it differs"`
	Channel        Channel `json:"channel,omitempty" doc:"the order's sales channel; taken from the order, refused when it differs"`
	Jurisdiction   string  `json:"jurisdiction,omitempty" schema:"country" doc:"the order's ISO 3166-1 alpha-2 jurisdiction; taken from the order, refused when it differs"`
	Category       string  `json:"category,omitempty" schema:"slug" doc:"the order's category; taken from the order, refused when it differs"`
	Amount         Money   `json:"amount,omitzero" doc:"the order's total; taken from the order, refused when it differs"`
	IdempotencyKey string  `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// CapturePayment moves the authorized amount (or part of it) into escrow.
type CapturePayment struct {
	PaymentID      string `json:"payment_id" schema:"id" doc:"the payment"`
	Amount         *Money `json:"amount,omitempty" doc:"amount to capture; the whole authorization when absent"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// VoidPayment releases an authorization that was not captured.
type VoidPayment struct {
	PaymentID      string `json:"payment_id" schema:"id" doc:"the payment"`
	Reason         string `json:"reason" schema:"text=500" doc:"why the authorization is released"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// RefundPayment returns captured money to the buyer, in full or in part.
type RefundPayment struct {
	PaymentID      string `json:"payment_id" schema:"id" doc:"the payment"`
	RefundID       string `json:"refund_id" schema:"id" doc:"this refund's id, chosen by the caller"`
	Amount         Money  `json:"amount" doc:"amount to refund, at most captured minus refunded"`
	Reason         string `json:"reason" schema:"text=500" doc:"why the money is returned"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// SettlePayment pays a completed order out to the seller, less the platform
// fee configured in the payment service.
type SettlePayment struct {
	PaymentID      string `json:"payment_id" schema:"id" doc:"the payment"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}
