package contracts

import (
	"fmt"
	"regexp"
	"strconv"
)

// Posting is one leg of a double-entry money movement. A positive amount
// adds to the account's balance, a negative one takes from it; the legs of
// one movement sum to zero per currency.
//
// The chart of accounts (the account name grammar is AccountPattern):
//
//	buyer:<buyer_id>            the buyer's funding source; goes negative by what the buyer paid
//	escrow:<order_id>           money held for an order between capture and settlement
//	seller_payable:<seller_id>  what the platform owes a seller after settlement
//	platform_fee_revenue        the platform's fee income, credited at settlement
//	refunds                     money returned to buyers through the payment rail
//
// The movements, with amount X:
//
//	payment.authorized  pending (two-phase, not yet on balances): buyer -X, escrow +X
//	payment.captured    buyer -X, escrow +X (X at most the authorized amount)
//	payment.voided      no postings: the pending transfer is released
//	payment.refunded    escrow -X (before settlement) or seller_payable -X (after), refunds +X
//	payment.settled     escrow -gross, seller_payable +(gross-fee), platform_fee_revenue +fee
//
// A leg of zero is left out rather than written, so every posting is
// non-zero (a zero platform fee has no fee leg).
type Posting struct {
	// Account is an account of the chart above.
	Account string `json:"account" schema:"account" doc:"account of the chart of accounts (docs/events.md)"`
	// AmountMinor is signed minor units: positive adds to the account.
	AmountMinor int64 `json:"amount_minor" schema:"nonzero" doc:"signed amount in minor units; positive adds to the account, never 0"`
	// Currency is an active ISO 4217 code.
	Currency string `json:"currency" schema:"currency" doc:"ISO 4217 currency code"`
}

// Account names of the chart of accounts.
const (
	AccountPlatformFeeRevenue = "platform_fee_revenue"
	AccountRefunds            = "refunds"
)

// AccountPattern is the grammar of account names.
const AccountPattern = `^((buyer|escrow|seller_payable):[A-Za-z0-9][A-Za-z0-9_-]{0,127}|platform_fee_revenue|refunds)$`

var accountRe = regexp.MustCompile(AccountPattern)

// BuyerAccount names a buyer's account.
func BuyerAccount(buyerID string) string { return "buyer:" + buyerID }

// EscrowAccount names an order's escrow account.
func EscrowAccount(orderID string) string { return "escrow:" + orderID }

// SellerPayableAccount names a seller's payable account.
func SellerPayableAccount(sellerID string) string { return "seller_payable:" + sellerID }

// MaxPostings bounds the legs of one movement.
const MaxPostings = 16

// CheckPostings asserts the double-entry invariants of one movement: at
// least two legs and at most MaxPostings, every account in the chart, every
// amount non-zero and within MaxAmountMinor, every currency known, and the
// sum per currency exactly zero, computed with overflow detection. Services
// call it before appending and after replaying; the Checker calls it on
// every payment event.
func CheckPostings(ps []Posting) error {
	const op = "contracts.CheckPostings"
	if len(ps) < 2 || len(ps) > MaxPostings {
		return invalidAt(op, "", fmt.Sprintf("a movement has 2..%d postings, got %d", MaxPostings, len(ps)))
	}
	sums := map[string]int64{}
	var order []string
	for i, p := range ps {
		at := "/" + strconv.Itoa(i)
		if !accountRe.MatchString(p.Account) {
			return invalidAt(op, at+"/account", "pattern "+AccountPattern)
		}
		if !IsCurrency(p.Currency) {
			return invalidAt(op, at+"/currency", "ISO 4217 currency code")
		}
		if p.AmountMinor == 0 {
			return invalidAt(op, at+"/amount_minor", "not 0")
		}
		if p.AmountMinor > MaxAmountMinor || p.AmountMinor < -MaxAmountMinor {
			return invalidAt(op, at+"/amount_minor", fmt.Sprintf("absolute value at most %d", int64(MaxAmountMinor)))
		}
		s, seen := sums[p.Currency]
		if !seen {
			order = append(order, p.Currency)
		}
		sum, ok := AddMinor(s, p.AmountMinor)
		if !ok {
			return invalidAt(op, at+"/amount_minor", "sum per currency overflows int64")
		}
		sums[p.Currency] = sum
	}
	for _, c := range order {
		if sums[c] != 0 {
			return invalidAt(op, "", fmt.Sprintf("postings in %s sum to %d, not 0", c, sums[c]))
		}
	}
	return nil
}
