package models

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// refundOf is a refund of x out of order o's escrow into the shared refunds
// account: the account every refund of the marketplace grows.
func refundOf(o string, x int64) contracts.PaymentRefunded {
	return contracts.PaymentRefunded{PaymentID: "p-" + o, OrderID: o, RefundID: "r1", Amount: contracts.Money{AmountMinor: x, Currency: "IDR"},
		Reason: "returned", Postings: []contracts.Posting{{Account: contracts.EscrowAccount(o), AmountMinor: -x, Currency: "IDR"},
			{Account: contracts.AccountRefunds, AmountMinor: x, Currency: "IDR"}}}
}

// wantOverflow asserts err is a loud integrity error naming the position,
// the account and the currency.
func wantOverflow(t *testing.T, err error, pos uint64, account, currency string) {
	t.Helper()
	if !errors.Is(err, events.ErrIntegrity) {
		t.Fatalf("got %v, want an integrity error", err)
	}
	for _, s := range []string{fmt.Sprintf("position %d", pos), account, currency, "overflow"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
}

// TestBalancesRefuseOverflowOfASharedAccount: every refund is within the
// per-posting bound, but the shared refunds account passes math.MaxInt64
// after 1024 of the largest. The 1025th must stop the model, not wrap (the
// zero-sum check alone cannot see a wrap: the sum still holds modulo 2^64).
func TestBalancesRefuseOverflowOfASharedAccount(t *testing.T) {
	b := NewBalances()
	const x = contracts.MaxAmountMinor
	n := uint64(math.MaxInt64/x) + 1 // the first refund that does not fit
	for i := uint64(1); i < n; i++ {
		if err := b.Apply(events.Event{Type: "payment.refunded", Position: i}, refundOf(fmt.Sprintf("o%d", i), x)); err != nil {
			t.Fatalf("refund %d: %v", i, err)
		}
	}
	before := b.Balance(contracts.AccountRefunds, "IDR")
	snap, _ := b.Snapshot()
	err := b.Apply(events.Event{Type: "payment.refunded", Position: n}, refundOf("last", x))
	wantOverflow(t, err, n, contracts.AccountRefunds, "IDR")
	if got := b.Balance(contracts.AccountRefunds, "IDR"); got != before {
		t.Errorf("refunds balance %d after the refused event, want %d unchanged", got, before)
	}
	if after, _ := b.Snapshot(); string(after) != string(snap) {
		t.Error("a refused event changed the model")
	}
}

// TestBalancesRefuseOverflowNearMaxInt64: from a snapshot whose escrow is
// a few units below math.MaxInt64, a capture into it overflows.
func TestBalancesRefuseOverflowNearMaxInt64(t *testing.T) {
	b := NewBalances()
	top := int64(math.MaxInt64 - 10)
	if err := b.Restore(fmt.Appendf(nil, `{"balances":{"escrow:o1":{"USD":%d},"buyer:b0":{"USD":%d}},"pending":{},"authorizations":{}}`, top, -top)); err != nil {
		t.Fatal(err)
	}
	capture := contracts.PaymentCaptured{PaymentID: "p1", OrderID: "o1", Amount: contracts.Money{AmountMinor: 100, Currency: "USD"},
		Postings: []contracts.Posting{{Account: "buyer:b1", AmountMinor: -100, Currency: "USD"}, {Account: "escrow:o1", AmountMinor: 100, Currency: "USD"}}}
	wantOverflow(t, b.Apply(events.Event{Type: "payment.captured", Position: 7}, capture), 7, "escrow:o1", "USD")
	if got := b.Balance("escrow:o1", "USD"); got != top {
		t.Errorf("escrow %d after the refused event, want %d", got, top)
	}
	// A pending authorization into the same account overflows the pending book.
	if err := b.Restore(fmt.Appendf(nil, `{"balances":{},"pending":{"escrow:o1":{"USD":%d},"buyer:b0":{"USD":%d}},"authorizations":{}}`, top, -top)); err != nil {
		t.Fatal(err)
	}
	auth := contracts.PaymentAuthorized{PaymentID: "p2", OrderID: "o1", BuyerID: "b1", SellerID: "s1", Channel: contracts.ChannelMarketplace,
		Jurisdiction: "ID", Category: "fashion", Amount: contracts.Money{AmountMinor: 100, Currency: "USD"}, PendingPostings: capture.Postings}
	wantOverflow(t, b.Apply(events.Event{Type: "payment.authorized", Position: 8}, auth), 8, "escrow:o1", "USD")
}

// TestBalancesRestoreRefusesOverflowingTotals: a snapshot whose balances
// sum to zero only modulo 2^64 is refused.
func TestBalancesRestoreRefusesOverflowingTotals(t *testing.T) {
	b := NewBalances()
	// MaxInt64 + MaxInt64 + 2 wraps to 0.
	data := fmt.Appendf(nil, `{"balances":{"a:1":{"USD":%d},"a:2":{"USD":%d},"a:3":{"USD":2}},"pending":{},"authorizations":{}}`,
		int64(math.MaxInt64), int64(math.MaxInt64))
	if err := b.Restore(data); !errors.Is(err, events.ErrIntegrity) || !strings.Contains(err.Error(), "USD") {
		t.Errorf("restore of a snapshot summing to zero modulo 2^64: %v", err)
	}
}

// TestSellerSalesRefuseOverflow: a seller's day of sales in one currency
// passes math.MaxInt64; the model stops, naming the position, seller and
// currency.
func TestSellerSalesRefuseOverflow(t *testing.T) {
	s := NewSellerSales()
	at := time.Date(2023, 10, 4, 3, 0, 0, 0, time.UTC)
	const x = contracts.MaxAmountMinor
	n := uint64(math.MaxInt64/x) + 1
	for i := uint64(1); i <= n; i++ {
		p := contracts.OrderPlaced{OrderID: fmt.Sprintf("o%d", i), BuyerID: "b", ListingID: "l", SellerID: "s-1", Quantity: 1,
			UnitPrice: contracts.Money{AmountMinor: x, Currency: "IDR"}, Total: contracts.Money{AmountMinor: x, Currency: "IDR"}}
		err := s.Apply(events.Event{Type: "order.placed", Position: i, OccurredAt: at}, p)
		if i < n {
			if err != nil {
				t.Fatalf("order %d: %v", i, err)
			}
			continue
		}
		wantOverflow(t, err, n, "s-1", "IDR")
	}
	if d, _ := s.Day("s-1", "2023-10-04", "IDR"); d.PlacedMinor < 0 || d.OrdersPlaced != int64(n-1) {
		t.Errorf("day after the refused event: %+v", d)
	}
}
