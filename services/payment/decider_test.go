package payment

import (
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit/decidertest"
)

var t0 = time.Date(2023, 10, 4, 10, 0, 0, 0, time.UTC) // 17:00 WIB

// spec is the payment decider under test, on payment p1, with a fee of
// 250 basis points and no rules unless a case adjusts them. Without an
// order of its own (forOrder) a case's order is o1 (see orderFor), priced
// as the command or the payment: placed for an authorization, confirmed
// with p1 for any other command (the course of a checkout, which captures
// on confirmation).
var spec = decidertest.Spec[State, Inputs]{ID: "p1", Initial: Initial, Evolve: Evolve, Decide: Decide, Now: t0,
	Inputs: func(s State, cmd any) Inputs {
		o := confirmedWith(contracts.Money{AmountMinor: s.AuthorizedMinor, Currency: s.Currency}, "p1")
		if c, ok := cmd.(contracts.AuthorizePayment); ok {
			o = orderFor(c.Amount)
		}
		return Inputs{Order: o, FeeBasisPoints: 250}
	},
	// The history with the decided events still replays without breaking
	// an invariant, and every event of it passes its contract.
	Check: func(t testing.TB, history []any, s State) {
		t.Helper()
		for _, e := range history {
			if _, _, _, err := contracts.Encode(e); err != nil {
				t.Errorf("contract: %T: %v", e, err)
			}
		}
		if s.Corrupt != nil {
			t.Errorf("replay: %v", s.Corrupt)
		}
		checkBalanced(t, s.Balances)
	},
}

// Given starts a case on payment p1 with its past events.
func Given(past ...any) decidertest.Case[State, Inputs] { return spec.Given(past...) }

// under sets the policy rules the decision sees.
func under(rules ...contracts.Rule) func(*Inputs) { return func(in *Inputs) { in.Rules = rules } }

// fee sets the platform fee.
func fee(bps int64) func(*Inputs) { return func(in *Inputs) { in.FeeBasisPoints = bps } }

// forOrder sets the order the payment is for, as the log has it.
func forOrder(o Order) func(*Inputs) { return func(in *Inputs) { in.Order = o } }

// orderFor is order o1 as the log has it: one unit at total from a
// domestic social-commerce listing of seller s1 in Indonesia, bought by b1.
func orderFor(total contracts.Money) Order {
	return Order{ID: "o1", Placed: true, BuyerID: "b1", SellerID: "s1", UnitPrice: total, Total: total,
		Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Category: "fashion", Origin: contracts.OriginDomestic}
}

// confirmedWith is order o1 (see orderFor) confirmed with payment pid.
func confirmedWith(total contracts.Money, pid string) Order {
	o := orderFor(total)
	o.Confirmed, o.PaymentID = true, pid
	return o
}

func checkBalanced(t testing.TB, b map[BalanceKey]int64) {
	t.Helper()
	sums := map[string]int64{}
	for k, v := range b {
		sums[k.Currency] += v
	}
	for c, v := range sums {
		if v != 0 {
			t.Errorf("balances in %s sum to %d", c, v)
		}
	}
}

func usd(x int64) contracts.Money { return contracts.Money{AmountMinor: x, Currency: "USD"} }

func authorize(x int64) contracts.AuthorizePayment {
	return contracts.AuthorizePayment{PaymentID: "p1", OrderID: "o1", BuyerID: "b1", SellerID: "s1",
		Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Category: "fashion", Amount: usd(x)}
}

func authorized(x int64) contracts.PaymentAuthorized {
	return contracts.PaymentAuthorized{PaymentID: "p1", OrderID: "o1", BuyerID: "b1", SellerID: "s1",
		Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Category: "fashion", Amount: usd(x),
		PendingPostings: legs("buyer:b1", "escrow:o1", x)}
}

func captured(x int64) contracts.PaymentCaptured {
	return contracts.PaymentCaptured{PaymentID: "p1", OrderID: "o1", Amount: usd(x), Postings: legs("buyer:b1", "escrow:o1", x)}
}

func refunded(id string, x int64, from string) contracts.PaymentRefunded {
	return contracts.PaymentRefunded{PaymentID: "p1", OrderID: "o1", RefundID: id, Amount: usd(x), Reason: "returned",
		Postings: legs(from, contracts.AccountRefunds, x)}
}

// legs is a two-leg movement of x from one account to another.
func legs(from, to string, x int64) []contracts.Posting {
	return []contracts.Posting{{Account: from, AmountMinor: -x, Currency: "USD"}, {Account: to, AmountMinor: x, Currency: "USD"}}
}

func freeze(id string, scope contracts.Scope, at time.Time) contracts.Rule {
	return contracts.FreezeImposed{RuleID: id, Scope: scope, BlockedOperations: contracts.FreezeOperations,
		EffectiveAt: at, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}.Rule()
}

var socialID = contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}}

func TestAuthorize(t *testing.T) {
	Given().When(authorize(10_000)).Then(t, authorized(10_000))
}

func TestAuthorizeTwiceConflicts(t *testing.T) {
	Given(authorized(100)).When(authorize(100)).ThenError(t, events.KindConflict, "/payment_id")
}

func TestAuthorizeBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		edit  func(*contracts.AuthorizePayment)
		kind  events.Kind
		field string
	}{
		"no order id":  {func(c *contracts.AuthorizePayment) { c.OrderID = "" }, events.KindInvalid, "/order_id"},
		"other order":  {func(c *contracts.AuthorizePayment) { c.OrderID = "o2" }, events.KindNotFound, "/order_id"},
		"zero":         {func(c *contracts.AuthorizePayment) { c.Amount.AmountMinor = 0 }, events.KindInvalid, "/amount"},
		"negative":     {func(c *contracts.AuthorizePayment) { c.Amount.AmountMinor = -5 }, events.KindInvalid, "/amount"},
		"overflow":     {func(c *contracts.AuthorizePayment) { c.Amount.AmountMinor = contracts.MaxAmountMinor + 1 }, events.KindInvalid, "/amount"},
		"currency":     {func(c *contracts.AuthorizePayment) { c.Amount.Currency = "XYZ" }, events.KindInvalid, "/amount"},
		"jurisdiction": {func(c *contracts.AuthorizePayment) { c.Jurisdiction = "QQ" }, events.KindInvalid, "/jurisdiction"},
		"channel":      {func(c *contracts.AuthorizePayment) { c.Channel = "tv" }, events.KindInvalid, "/channel"},
		"marketplace":  {func(c *contracts.AuthorizePayment) { c.Channel = contracts.ChannelMarketplace }, events.KindInvalid, "/channel"},
		"seller":       {func(c *contracts.AuthorizePayment) { c.SellerID = "s2" }, events.KindInvalid, "/seller_id"},
		"buyer":        {func(c *contracts.AuthorizePayment) { c.BuyerID = "b2" }, events.KindInvalid, "/buyer_id"},
		"category":     {func(c *contracts.AuthorizePayment) { c.Category = "books" }, events.KindInvalid, "/category"},
	} {
		t.Run(name, func(t *testing.T) {
			c := authorize(100)
			tc.edit(&c)
			Given().Adjust(forOrder(orderFor(usd(100)))).When(c).ThenError(t, tc.kind, tc.field)
		})
	}
}

// TestAuthorizeFromTheOrder: a command that names only the order gets the
// order's parties, scope and total.
func TestAuthorizeFromTheOrder(t *testing.T) {
	Given().Adjust(forOrder(orderFor(usd(700)))).When(contracts.AuthorizePayment{PaymentID: "p1", OrderID: "o1"}).Then(t, authorized(700))
}

// TestAuthorizeMarketplaceClaimFrozen: claiming the marketplace channel for
// a social-commerce order under a social-commerce freeze is refused.
func TestAuthorizeMarketplaceClaimFrozen(t *testing.T) {
	c := authorize(100)
	c.Channel = contracts.ChannelMarketplace
	Given().Adjust(under(freeze("r1", socialID, t0))).When(c).ThenError(t, events.KindInvalid, "/channel")
}

func TestAuthorizeFrozenInScope(t *testing.T) {
	e := Given().Adjust(under(freeze("r1", socialID, t0))).When(authorize(100)).ThenError(t, events.KindFrozen, "r1")
	if !strings.Contains(e.Error(), "Permendag 31/2023") {
		t.Errorf("error does not name the legal basis: %v", e)
	}
}

func TestAuthorizeBeforeFreezeInstant(t *testing.T) {
	Given().Adjust(under(freeze("r1", socialID, t0.Add(time.Second)))).When(authorize(100)).Then(t, authorized(100))
}

func TestAuthorizeOutOfScope(t *testing.T) {
	c := authorize(100)
	c.Channel = contracts.ChannelMarketplace
	o := orderFor(usd(100))
	o.Channel = contracts.ChannelMarketplace
	want := authorized(100)
	want.Channel = contracts.ChannelMarketplace
	Given().Adjust(forOrder(o)).Adjust(under(freeze("r1", socialID, t0))).When(c).Then(t, want)
}

func TestAuthorizeAfterLift(t *testing.T) {
	r := freeze("r1", socialID, t0.Add(-time.Hour))
	r.LiftedAt = t0
	Given().Adjust(under(r)).When(authorize(100)).Then(t, authorized(100))
}

func floorOn(amount contracts.Money, origin contracts.Origin, ops ...contracts.Operation) contracts.Rule {
	return contracts.FloorPriceSet{RuleID: "f1", Scope: contracts.Scope{Jurisdictions: []string{"ID"}},
		BlockedOperations: ops, Amount: amount, Origin: origin,
		EffectiveAt: t0.Add(-time.Hour), LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}.Rule()
}

// TestAuthorizeFloorPrice: a floor on payment.authorize refuses an order
// whose unit price is below it, exactly as order.place is refused: the
// unit price, not the total, and only for the floor's origin.
func TestAuthorizeFloorPrice(t *testing.T) {
	below := orderFor(usd(99))
	below.Total = usd(99 * 3) // three units: the total is above the floor, the unit price is not
	e := Given().Adjust(forOrder(below)).Adjust(under(floorOn(usd(100), "", contracts.OpPaymentAuthorize))).
		When(contracts.AuthorizePayment{PaymentID: "p1", OrderID: "o1"}).ThenError(t, events.KindFrozen, "/order_id")
	if !strings.Contains(e.Error(), "f1") || !strings.Contains(e.Error(), "Permendag 31/2023") {
		t.Errorf("floor refusal does not name the rule and its basis: %v", e)
	}
	Given().Adjust(forOrder(orderFor(usd(100)))).Adjust(under(floorOn(usd(100), "", contracts.OpPaymentAuthorize))).
		When(authorize(100)).Then(t, authorized(100))
	Given().Adjust(forOrder(orderFor(usd(99)))).Adjust(under(floorOn(usd(100), contracts.OriginCrossBorder, contracts.OpPaymentAuthorize))).
		When(authorize(99)).Then(t, authorized(99))
	Given().Adjust(forOrder(orderFor(usd(99)))).Adjust(under(floorOn(usd(100), "", contracts.OpOrderPlace))).
		When(authorize(99)).Then(t, authorized(99))
}

// TestCaptureFloorPrice: a floor set after the authorization on
// payment.capture refuses the capture; voiding stays possible.
func TestCaptureFloorPrice(t *testing.T) {
	Given(authorized(99)).Adjust(under(floorOn(usd(100), "", contracts.OpPaymentCapture))).
		When(contracts.CapturePayment{PaymentID: "p1"}).ThenError(t, events.KindFrozen, "/order_id")
	Given(authorized(99)).Adjust(under(floorOn(usd(100), "", contracts.OpPaymentCapture))).
		When(contracts.VoidPayment{PaymentID: "p1", Reason: "below the floor"}).
		Then(t, contracts.PaymentVoided{PaymentID: "p1", OrderID: "o1", Amount: usd(99), Reason: "below the floor"})
}

// TestCaptureJudgedByTheOrder: a payment authorized (before payments took
// their scope from the log) as a marketplace one for a social-commerce
// order is judged at capture by the order, and an authorization for an
// order the log does not have cannot be captured.
func TestCaptureJudgedByTheOrder(t *testing.T) {
	lied := authorized(500)
	lied.Channel = contracts.ChannelMarketplace
	Given(lied).Adjust(under(freeze("r1", socialID, t0))).When(contracts.CapturePayment{PaymentID: "p1"}).ThenError(t, events.KindFrozen, "r1")
	Given(authorized(500)).Adjust(forOrder(Order{ID: "o1"})).When(contracts.CapturePayment{PaymentID: "p1"}).ThenError(t, events.KindConflict, "/payment_id")
}

func TestCaptureFull(t *testing.T) {
	Given(authorized(500)).When(contracts.CapturePayment{PaymentID: "p1"}).Then(t, captured(500))
}

func TestCapturePartial(t *testing.T) {
	m := usd(200)
	Given(authorized(500)).When(contracts.CapturePayment{PaymentID: "p1", Amount: &m}).Then(t, captured(200))
}

func TestCaptureAboveAuthorized(t *testing.T) {
	m := usd(501)
	Given(authorized(500)).When(contracts.CapturePayment{PaymentID: "p1", Amount: &m}).ThenError(t, events.KindInvalid, "/amount/amount_minor")
}

func TestCaptureOtherCurrency(t *testing.T) {
	m := contracts.Money{AmountMinor: 100, Currency: "IDR"}
	Given(authorized(500)).When(contracts.CapturePayment{PaymentID: "p1", Amount: &m}).ThenError(t, events.KindInvalid, "/amount/currency")
}

func TestCaptureUnknown(t *testing.T) {
	Given().When(contracts.CapturePayment{PaymentID: "p1"}).ThenError(t, events.KindNotFound, "/payment_id")
}

func TestCaptureVoidedNever(t *testing.T) {
	Given(authorized(500), contracts.PaymentVoided{PaymentID: "p1", OrderID: "o1", Amount: usd(500), Reason: "x"}).
		When(contracts.CapturePayment{PaymentID: "p1"}).ThenError(t, events.KindConflict, "/payment_id")
}

func TestCaptureTwice(t *testing.T) {
	Given(authorized(500), captured(500)).When(contracts.CapturePayment{PaymentID: "p1"}).ThenError(t, events.KindConflict, "/payment_id")
}

func TestCaptureFrozenUsesAuthorizationScope(t *testing.T) {
	Given(authorized(500)).Adjust(under(freeze("r1", socialID, t0))).When(contracts.CapturePayment{PaymentID: "p1"}).ThenError(t, events.KindFrozen, "r1")
}

func TestVoid(t *testing.T) {
	Given(authorized(500)).Adjust(under(freeze("r1", socialID, t0))).When(contracts.VoidPayment{PaymentID: "p1", Reason: "order cancelled"}).
		Then(t, contracts.PaymentVoided{PaymentID: "p1", OrderID: "o1", Amount: usd(500), Reason: "order cancelled"})
}

func TestVoidCaptured(t *testing.T) {
	Given(authorized(500), captured(500)).When(contracts.VoidPayment{PaymentID: "p1", Reason: "x"}).ThenError(t, events.KindConflict, "/payment_id")
}

func TestVoidUnknown(t *testing.T) {
	// A void before any authorization is a tombstone, not a refusal (see
	// TestVoidBeforeAuthorizationRecordsATombstone).
	Given().When(contracts.VoidPayment{PaymentID: "p1", Reason: "x"}).Then(t, contracts.PaymentCancelled{PaymentID: "p1", Reason: "x"})
}

func refund(id string, x int64) contracts.RefundPayment {
	return contracts.RefundPayment{PaymentID: "p1", RefundID: id, Amount: usd(x), Reason: "returned"}
}

func TestRefundPartialUnderFreeze(t *testing.T) {
	Given(authorized(500), captured(500)).Adjust(under(freeze("r1", socialID, t0))).When(refund("f1", 200)).
		Then(t, refunded("f1", 200, "escrow:o1"))
}

func TestRefundRest(t *testing.T) {
	Given(authorized(500), captured(500), refunded("f1", 200, "escrow:o1")).When(refund("f2", 300)).
		Then(t, refunded("f2", 300, "escrow:o1"))
}

func TestRefundAboveCaptured(t *testing.T) {
	Given(authorized(500), captured(500), refunded("f1", 200, "escrow:o1")).When(refund("f2", 301)).
		ThenError(t, events.KindInvalid, "/amount/amount_minor")
}

func TestRefundAbovePartialCapture(t *testing.T) {
	Given(authorized(500), captured(100)).When(refund("f1", 101)).ThenError(t, events.KindInvalid, "/amount/amount_minor")
}

func TestRefundDuplicateID(t *testing.T) {
	Given(authorized(500), captured(500), refunded("f1", 1, "escrow:o1")).When(refund("f1", 1)).ThenError(t, events.KindConflict, "/refund_id")
}

func TestRefundUncaptured(t *testing.T) {
	Given(authorized(500)).When(refund("f1", 1)).ThenError(t, events.KindConflict, "/payment_id")
}

func TestRefundBadAmount(t *testing.T) {
	Given(authorized(500), captured(500)).When(refund("f1", 0)).ThenError(t, events.KindInvalid, "/amount/amount_minor")
}

func TestRefundAfterSettlementFromSellerPayable(t *testing.T) {
	Given(authorized(1000), captured(1000), settled(1000, 25)).When(refund("f1", 100)).
		Then(t, refunded("f1", 100, "seller_payable:s1"))
}

func settled(gross, fee int64) contracts.PaymentSettled {
	ps := []contracts.Posting{{Account: "escrow:o1", AmountMinor: -gross, Currency: "USD"},
		{Account: "seller_payable:s1", AmountMinor: gross - fee, Currency: "USD"}}
	if fee > 0 {
		ps = append(ps, contracts.Posting{Account: contracts.AccountPlatformFeeRevenue, AmountMinor: fee, Currency: "USD"})
	}
	return contracts.PaymentSettled{PaymentID: "p1", OrderID: "o1", SellerID: "s1", Gross: usd(gross), FeeMinor: fee,
		Net: usd(gross - fee), Postings: ps}
}

func TestSettleRoundsFeeDown(t *testing.T) {
	// 999 * 250 / 10000 = 24.975: the fee is 24, the seller gets 975.
	Given(authorized(999), captured(999)).Adjust(under(freeze("r1", socialID, t0))).When(contracts.SettlePayment{PaymentID: "p1"}).
		Then(t, settled(999, 24))
}

func TestSettleWhatIsLeftAfterRefunds(t *testing.T) {
	Given(authorized(1000), captured(1000), refunded("f1", 600, "escrow:o1")).When(contracts.SettlePayment{PaymentID: "p1"}).
		Then(t, settled(400, 10))
}

func TestSettleNoFeeLegWhenZero(t *testing.T) {
	Given(authorized(39), captured(39)).When(contracts.SettlePayment{PaymentID: "p1"}).Then(t, settled(39, 0))
}

func TestSettleOnce(t *testing.T) {
	Given(authorized(1000), captured(1000), settled(1000, 25)).When(contracts.SettlePayment{PaymentID: "p1"}).
		ThenError(t, events.KindConflict, "/payment_id")
}

func TestSettleFullyRefunded(t *testing.T) {
	Given(authorized(1000), captured(1000), refunded("f1", 1000, "escrow:o1")).When(contracts.SettlePayment{PaymentID: "p1"}).
		ThenError(t, events.KindConflict, "/payment_id")
}

func TestSettleUncaptured(t *testing.T) {
	Given(authorized(1000)).When(contracts.SettlePayment{PaymentID: "p1"}).ThenError(t, events.KindConflict, "/payment_id")
}

func TestSettleUnknown(t *testing.T) {
	Given().When(contracts.SettlePayment{PaymentID: "p1"}).ThenError(t, events.KindNotFound, "/payment_id")
}

func TestSettleFeeOutOfRange(t *testing.T) {
	Given(authorized(1000), captured(1000)).Adjust(fee(10_000)).When(contracts.SettlePayment{PaymentID: "p1"}).
		ThenError(t, events.KindInvalid, "fee_basis_points")
}

func TestFee(t *testing.T) {
	for _, tc := range []struct{ gross, bps, want int64 }{
		{0, 250, 0}, {1, 9_999, 0}, {10_000, 250, 250}, {10_001, 250, 250}, {39, 250, 0}, {40, 250, 1},
		{contracts.MaxAmountMinor, 9_999, 9_006_298_534_815_516},
		{1<<63 - 1, 9_999, 9_222_449_699_651_090_329}, // the product needs 77 bits
	} {
		got, err := Fee(tc.gross, tc.bps)
		if err != nil || got != tc.want {
			t.Errorf("Fee(%d, %d) = %d, %v; want %d", tc.gross, tc.bps, got, err, tc.want)
		}
	}
}

func TestReplayRefusesUnbalancedHistory(t *testing.T) {
	bad := captured(500)
	bad.Postings[1].AmountMinor = 499
	e := Given(authorized(500), bad).When(refund("f1", 1)).ThenError(t, events.KindIntegrity, "payment.captured")
	if !strings.Contains(e.Error(), "sum to -1") {
		t.Errorf("error does not say the sum: %v", e)
	}
}

func TestReplayRefusesRefundsAboveCaptured(t *testing.T) {
	Given(authorized(500), captured(100), refunded("f1", 101, "escrow:o1")).When(contracts.SettlePayment{PaymentID: "p1"}).
		ThenError(t, events.KindIntegrity, "payment.refunded")
}
