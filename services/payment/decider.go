package payment

import (
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// Status is where a payment is in its life.
type Status string

// The payment statuses. A payment is authorized once, then either voided or
// captured; a captured payment may be refunded and settled.
const (
	StatusNew        Status = ""
	StatusAuthorized Status = "authorized"
	StatusCaptured   Status = "captured"
	StatusVoided     Status = "voided"
	// StatusCancelled is a payment id spent by a void that came before any
	// authorization (a tombstone): nothing was reserved, and nothing ever
	// will be under this id.
	StatusCancelled Status = "cancelled"
)

// MaxRefunds bounds the refunds of one payment, so that a payment's history
// (and the cost of loading it) stays small whatever callers do.
const MaxRefunds = 32

// MaxFeeBasisPoints bounds the platform fee just below 100 %: with at most
// 9999 basis points the seller's net, gross - floor(gross*bps/10000), is at
// least ceil(gross/10000) >= 1, so a settlement always pays the seller
// something and its net is a valid Money.
const MaxFeeBasisPoints = 9_999

// BalanceKey names one account balance in one currency.
type BalanceKey struct {
	Account  string
	Currency string
}

// State is a payment folded from its events. The aggregate id is the
// payment id (one order may see several payment attempts, each its own
// aggregate, so a declined or voided attempt never blocks the next one).
type State struct {
	ID       string
	Status   Status
	OrderID  string
	BuyerID  string
	SellerID string
	// Target is the policy scope payment.authorized recorded. A capture
	// is judged by the order as the log has it, not by this: an
	// authorization written before payments took their scope from the log
	// may carry a scope its caller stated (ADR 0014).
	Target   contracts.Target
	Currency string
	// The amounts, in minor units of Currency.
	AuthorizedMinor int64
	CapturedMinor   int64
	RefundedMinor   int64
	// Settled is true once the payment was paid out to the seller.
	Settled      bool
	SettledMinor int64 // gross taken out of escrow at settlement
	FeeMinor     int64
	RefundIDs    []string
	// Pending is the pending (two-phase) transfer of the authorization:
	// reserved, not on Balances, until captured or voided.
	Pending []contracts.Posting
	// Balances are the posted movements of this payment, per account and
	// currency. They always sum to zero per currency.
	Balances map[BalanceKey]int64
	// Corrupt is set when replay met an event that breaks an invariant
	// (unbalanced postings, refunds above captures). Every command on a
	// corrupt payment is refused: the ledger must not build on bad history.
	Corrupt error
}

// RefundableMinor is what may still be refunded: captured minus refunded.
func (s State) RefundableMinor() int64 { return s.CapturedMinor - s.RefundedMinor }

// Initial is the state of a payment with no events.
func Initial(id string) State { return State{ID: id} }

// Evolve applies one event to the state. It re-checks the double-entry
// invariants of every movement it applies (the assertion after replay,
// matching contracts.CheckPostings before append), and marks the state
// Corrupt instead of applying a movement that breaks them.
func Evolve(s State, payload any) State {
	if s.Corrupt != nil {
		return s
	}
	switch e := payload.(type) {
	case contracts.PaymentAuthorized:
		if err := contracts.CheckPostings(e.PendingPostings); err != nil {
			return corrupt(s, "payment.authorized", err)
		}
		s.Status, s.OrderID, s.BuyerID, s.SellerID = StatusAuthorized, e.OrderID, e.BuyerID, e.SellerID
		s.Target = contracts.Target{Jurisdiction: e.Jurisdiction, Channel: e.Channel, Category: e.Category, SellerID: e.SellerID}
		s.Currency, s.AuthorizedMinor = e.Amount.Currency, e.Amount.AmountMinor
		s.Pending = slices.Clone(e.PendingPostings)
	case contracts.PaymentVoided:
		s.Status, s.Pending = StatusVoided, nil
	case contracts.PaymentCancelled:
		if s.Status != StatusNew {
			return corrupt(s, "payment.cancelled", fmt.Errorf("a tombstone on a payment that is %s", s.Status))
		}
		s.Status = StatusCancelled
	case contracts.PaymentCaptured:
		s = post(s, "payment.captured", e.Postings)
		s.Status, s.Pending = StatusCaptured, nil
		s.CapturedMinor = e.Amount.AmountMinor
	case contracts.PaymentRefunded:
		s = post(s, "payment.refunded", e.Postings)
		s.RefundedMinor += e.Amount.AmountMinor // bounded: both at most MaxAmountMinor
		s.RefundIDs = append(slices.Clone(s.RefundIDs), e.RefundID)
		if s.RefundedMinor > s.CapturedMinor {
			return corrupt(s, "payment.refunded", fmt.Errorf("refunded %d exceeds captured %d", s.RefundedMinor, s.CapturedMinor))
		}
	case contracts.PaymentSettled:
		s = post(s, "payment.settled", e.Postings)
		s.Settled, s.SettledMinor, s.FeeMinor = true, e.Gross.AmountMinor, e.FeeMinor
	}
	return s
}

// post adds a movement to the balances after checking it balances.
func post(s State, typ string, ps []contracts.Posting) State {
	if err := contracts.CheckPostings(ps); err != nil {
		return corrupt(s, typ, err)
	}
	b := maps.Clone(s.Balances)
	if b == nil {
		b = map[BalanceKey]int64{}
	}
	for _, p := range ps {
		k := BalanceKey{p.Account, p.Currency}
		sum, ok := addChecked(b[k], p.AmountMinor)
		if !ok {
			return corrupt(s, typ, fmt.Errorf("balance of %s %s overflows", p.Account, p.Currency))
		}
		b[k] = sum
	}
	s.Balances = b
	return s
}

func corrupt(s State, typ string, err error) State {
	s.Corrupt = &events.Error{Op: "payment.Evolve", Kind: events.KindIntegrity, Field: typ,
		Rule: "replayed movement breaks the ledger invariants", Err: err}
	return s
}

// addChecked adds with signed overflow detection (math/bits, so the check
// is exact and cannot be reasoned away by the compiler).
func addChecked(a, b int64) (int64, bool) {
	s, _ := bits.Add64(uint64(a), uint64(b), 0)
	r := int64(s)
	if (a >= 0) == (b >= 0) && (r >= 0) != (a >= 0) {
		return 0, false
	}
	return r, true
}

// Fee returns the platform fee on gross at feeBps basis points:
// floor(gross*feeBps/10000), computed in 128 bits so that no product
// overflows; the remainder of the division goes to the seller. It refuses a
// negative gross and a rate outside 0..MaxFeeBasisPoints.
func Fee(gross, feeBps int64) (int64, error) {
	if gross < 0 || feeBps < 0 || feeBps > MaxFeeBasisPoints {
		return 0, &events.Error{Op: "payment.Fee", Kind: events.KindInvalid, Field: "fee_basis_points",
			Rule: fmt.Sprintf("gross >= 0 and 0 <= basis points <= %d", MaxFeeBasisPoints)}
	}
	hi, lo := bits.Mul64(uint64(gross), uint64(feeBps))
	q, _ := bits.Div64(hi, lo, 10_000) // hi < 10000 since gross < 2^63 and feeBps < 10000: no panic
	return int64(q), nil
}

// Inputs is what a payment decision needs besides the payment's own state.
type Inputs struct {
	// Order is the order the payment is for, as the log has it (zero when
	// the command needs none): authorization and capture are judged by the
	// order's scope and unit price, never by what the caller says about
	// them.
	Order Order
	// Rules are the policy rules in force at the decision instant
	// (policyview.Rules.InForce).
	Rules []contracts.Rule
	// FeeBasisPoints is the platform fee taken at settlement, in basis
	// points of the gross (250 = 2.5 %): the service's configuration.
	FeeBasisPoints int64
}

// Decide returns the events cmd produces on s given its inputs at the
// decision instant now, or an error naming the field and rule it breaks.
// cmd is one of the contracts payment commands (a value, not a pointer).
// Decide is pure: configuration and time arrive as inputs.
func Decide(s State, cmd any, in Inputs, now time.Time) ([]any, error) {
	if s.Corrupt != nil {
		return nil, s.Corrupt
	}
	switch c := cmd.(type) {
	case contracts.AuthorizePayment:
		return decideAuthorize(s, c, in.Order, in.Rules, now)
	case contracts.CapturePayment:
		return decideCapture(s, c, in.Order, in.Rules, now)
	case contracts.VoidPayment:
		return decideVoid(s, c)
	case contracts.RefundPayment:
		return decideRefund(s, c)
	case contracts.SettlePayment:
		return decideSettle(s, c, in.FeeBasisPoints)
	}
	return nil, &events.Error{Op: "payment.Decide", Kind: events.KindInvalid, Rule: fmt.Sprintf("%T is not a payment command", cmd)}
}

// decideAuthorize reserves the order's total. The parties, the scope and
// the amount are the order's, from the log; a command that states any of
// them differently is refused, naming the field, so that no caller can
// authorize a social-commerce order as a marketplace one.
func decideAuthorize(s State, c contracts.AuthorizePayment, o Order, rules []contracts.Rule, now time.Time) ([]any, error) {
	const op = "payment.authorize"
	if s.Status == StatusCancelled {
		return nil, wrongState(op, s, "a void came before this authorization; the payment id is spent")
	}
	if s.Status != StatusNew {
		return nil, wrongState(op, s, "a payment is authorized once; use a new payment_id")
	}
	switch {
	case c.OrderID == "":
		return nil, invalid(op, "/order_id", "required")
	case !o.Placed || o.ID != c.OrderID:
		return nil, &events.Error{Op: op, Kind: events.KindNotFound, Field: "/order_id",
			Rule: fmt.Sprintf("no order %q in the log: a payment is for a placed order", c.OrderID)}
	}
	if err := agrees(op, c, o); err != nil {
		return nil, err
	}
	if err := checkAmount(op, "/order_id", o.Total, ""); err != nil {
		return nil, err
	}
	// A rule that blocks the authorization is the answer whatever state the
	// order is in, so that a refusal by a rule is always on record as one.
	if err := blocked(contracts.OpPaymentAuthorize, o, rules, now); err != nil {
		return nil, err
	}
	switch {
	case o.Ended != "":
		return nil, givenUp(op, o)
	case o.Confirmed:
		return nil, &events.Error{Op: op, Kind: events.KindConflict, Field: "/order_id",
			Rule: fmt.Sprintf("order %s is confirmed: it has its payment", o.ID)}
	}
	x, cur := o.Total.AmountMinor, o.Total.Currency
	pending := []contracts.Posting{
		{Account: contracts.BuyerAccount(o.BuyerID), AmountMinor: -x, Currency: cur},
		{Account: contracts.EscrowAccount(o.ID), AmountMinor: x, Currency: cur},
	}
	if err := contracts.CheckPostings(pending); err != nil {
		return nil, err
	}
	return []any{contracts.PaymentAuthorized{PaymentID: s.ID, OrderID: o.ID, BuyerID: o.BuyerID, SellerID: o.SellerID,
		Channel: o.Channel, Jurisdiction: o.Jurisdiction, Category: o.Category, Amount: o.Total, PendingPostings: pending}}, nil
}

// agrees refuses an authorization that states a field of the order other
// than the log has it. Every such field may be left out.
func agrees(op string, c contracts.AuthorizePayment, o Order) error {
	for _, f := range []struct{ field, got, want string }{
		{"/buyer_id", c.BuyerID, o.BuyerID},
		{"/seller_id", c.SellerID, o.SellerID},
		{"/channel", string(c.Channel), string(o.Channel)},
		{"/jurisdiction", c.Jurisdiction, o.Jurisdiction},
		{"/category", c.Category, o.Category},
	} {
		if f.got != "" && f.got != f.want {
			return invalid(op, f.field, fmt.Sprintf("the order's %s %q, as the log has it (may be left out)", f.field[1:], f.want))
		}
	}
	if c.Amount != (contracts.Money{}) && c.Amount != o.Total {
		return invalid(op, "/amount", fmt.Sprintf("the order's total %s, as the log has it (may be left out)", o.Total))
	}
	return nil
}

// decideCapture posts the pending transfer, in full or in part. One capture
// per payment: a partial capture releases the rest of the authorization, as
// a TigerBeetle post_pending_transfer with a smaller amount does.
func decideCapture(s State, c contracts.CapturePayment, o Order, rules []contracts.Rule, now time.Time) ([]any, error) {
	const op = "payment.capture"
	if s.Status == StatusNew {
		return nil, notFound(op, s.ID)
	}
	if s.Status != StatusAuthorized {
		return nil, wrongState(op, s, "only an authorized, uncaptured payment can be captured")
	}
	amount := contracts.Money{AmountMinor: s.AuthorizedMinor, Currency: s.Currency}
	if c.Amount != nil {
		if err := checkAmount(op, "/amount", *c.Amount, s.Currency); err != nil {
			return nil, err
		}
		if c.Amount.AmountMinor > s.AuthorizedMinor {
			return nil, invalid(op, "/amount/amount_minor", fmt.Sprintf("at most the authorized %d", s.AuthorizedMinor))
		}
		amount = *c.Amount
	}
	if !o.Placed || o.ID != s.OrderID {
		// Authorized before payments took their scope from the log, for
		// an order the log does not have: there is no scope to judge the
		// capture by, so it is refused rather than let through. Voiding
		// it stays possible.
		return nil, &events.Error{Op: op, Kind: events.KindConflict, Field: "/payment_id",
			Rule: fmt.Sprintf("payment %s is for order %q, which is not in the log: its policy scope cannot be judged; void it", s.ID, s.OrderID)}
	}
	// A marketplace captures on confirmation (ADR 0016): money is taken
	// only for an order the log says is confirmed, and only under the
	// payment it was confirmed with, so that no capture lands on an order
	// still in checkout or charges a buyer twice.
	switch {
	case o.Ended != "":
		return nil, givenUp(op, o)
	case !o.Confirmed:
		return nil, &events.Error{Op: op, Kind: events.KindConflict, Field: "/order_id",
			Rule: fmt.Sprintf("order %s is not confirmed: a payment is captured once its order is confirmed", o.ID)}
	case o.PaymentID != s.ID:
		return nil, &events.Error{Op: op, Kind: events.KindConflict, Field: "/payment_id",
			Rule: fmt.Sprintf("order %s was confirmed with payment %s: only that payment is captured; void this one", o.ID, o.PaymentID)}
	}
	if err := blocked(contracts.OpPaymentCapture, o, rules, now); err != nil {
		return nil, err
	}
	ps := []contracts.Posting{
		{Account: contracts.BuyerAccount(s.BuyerID), AmountMinor: -amount.AmountMinor, Currency: s.Currency},
		{Account: contracts.EscrowAccount(s.OrderID), AmountMinor: amount.AmountMinor, Currency: s.Currency},
	}
	if err := contracts.CheckPostings(ps); err != nil {
		return nil, err
	}
	return []any{contracts.PaymentCaptured{PaymentID: s.ID, OrderID: s.OrderID, Amount: amount, Postings: ps}}, nil
}

// decideVoid releases the pending transfer. It needs no postings: a pending
// transfer was never on the balances, so releasing it compensates by
// dropping the reservation. A freeze never blocks it.
func decideVoid(s State, c contracts.VoidPayment) ([]any, error) {
	const op = "payment.void"
	switch s.Status {
	case StatusNew:
		// The authorization may still be on its way (sent before this
		// void, delivered after it): spend the id, so that it is refused.
		return []any{contracts.PaymentCancelled{PaymentID: s.ID, Reason: c.Reason}}, nil
	case StatusCancelled:
		return nil, nil // spent before: a retry
	}
	if s.Status != StatusAuthorized {
		return nil, wrongState(op, s, "only an authorized, uncaptured payment can be voided; refund a captured one")
	}
	return []any{contracts.PaymentVoided{PaymentID: s.ID, OrderID: s.OrderID,
		Amount: contracts.Money{AmountMinor: s.AuthorizedMinor, Currency: s.Currency}, Reason: c.Reason}}, nil
}

// givenUp refuses to move money towards an order the log says was
// cancelled or rejected: nothing would ever release it.
func givenUp(op string, o Order) error {
	return &events.Error{Op: op, Kind: events.KindConflict, Field: "/order_id",
		Rule: fmt.Sprintf("order %s is %s: no money moves towards it", o.ID, o.Ended)}
}

// decideRefund returns captured money to the buyer: out of escrow before
// settlement, out of the seller's payable after it (the platform keeps its
// fee; recovering it is a matter between platform and seller).
func decideRefund(s State, c contracts.RefundPayment) ([]any, error) {
	const op = "payment.refund"
	if s.Status == StatusNew {
		return nil, notFound(op, s.ID)
	}
	if s.Status != StatusCaptured {
		return nil, wrongState(op, s, "only a captured payment can be refunded")
	}
	if err := checkAmount(op, "/amount", c.Amount, s.Currency); err != nil {
		return nil, err
	}
	switch {
	case c.RefundID == "":
		return nil, invalid(op, "/refund_id", "required")
	case slices.Contains(s.RefundIDs, c.RefundID):
		return nil, &events.Error{Op: op, Kind: events.KindConflict, Field: "/refund_id", Rule: fmt.Sprintf("refund %s exists", c.RefundID)}
	case len(s.RefundIDs) >= MaxRefunds:
		return nil, wrongState(op, s, fmt.Sprintf("at most %d refunds per payment", MaxRefunds))
	case c.Amount.AmountMinor > s.RefundableMinor():
		return nil, invalid(op, "/amount/amount_minor", fmt.Sprintf("at most captured minus refunded, %d", s.RefundableMinor()))
	}
	from := contracts.EscrowAccount(s.OrderID)
	if s.Settled {
		from = contracts.SellerPayableAccount(s.SellerID)
	}
	ps := []contracts.Posting{
		{Account: from, AmountMinor: -c.Amount.AmountMinor, Currency: s.Currency},
		{Account: contracts.AccountRefunds, AmountMinor: c.Amount.AmountMinor, Currency: s.Currency},
	}
	if err := contracts.CheckPostings(ps); err != nil {
		return nil, err
	}
	return []any{contracts.PaymentRefunded{PaymentID: s.ID, OrderID: s.OrderID, RefundID: c.RefundID,
		Amount: c.Amount, Reason: c.Reason, Postings: ps}}, nil
}

// decideSettle pays what is left in escrow (captured minus refunded) to the
// seller less the platform fee, once. A freeze never blocks it: settling
// already captured trade is unwinding, not new trade.
func decideSettle(s State, _ contracts.SettlePayment, feeBps int64) ([]any, error) {
	const op = "payment.settle"
	if s.Status == StatusNew {
		return nil, notFound(op, s.ID)
	}
	switch {
	case s.Status != StatusCaptured:
		return nil, wrongState(op, s, "only a captured payment can be settled")
	case s.Settled:
		return nil, wrongState(op, s, "a payment is settled once")
	case s.RefundableMinor() == 0:
		return nil, wrongState(op, s, "fully refunded: nothing to settle")
	}
	gross := s.RefundableMinor()
	fee, err := Fee(gross, feeBps)
	if err != nil {
		return nil, err
	}
	net := gross - fee // >= 1: see MaxFeeBasisPoints
	ps := []contracts.Posting{
		{Account: contracts.EscrowAccount(s.OrderID), AmountMinor: -gross, Currency: s.Currency},
		{Account: contracts.SellerPayableAccount(s.SellerID), AmountMinor: net, Currency: s.Currency},
	}
	if fee > 0 {
		ps = append(ps, contracts.Posting{Account: contracts.AccountPlatformFeeRevenue, AmountMinor: fee, Currency: s.Currency})
	}
	if err := contracts.CheckPostings(ps); err != nil {
		return nil, err
	}
	return []any{contracts.PaymentSettled{PaymentID: s.ID, OrderID: s.OrderID, SellerID: s.SellerID,
		Gross: contracts.Money{AmountMinor: gross, Currency: s.Currency}, FeeMinor: fee,
		Net: contracts.Money{AmountMinor: net, Currency: s.Currency}, Postings: ps}}, nil
}
