package models

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// The simulated day: 4 October 2023 in Jakarta, the freeze at 17:00 WIB.
var (
	dayStart = time.Date(2023, 10, 4, 8, 0, 0, 0, WIB)
	freezeAt = time.Date(2023, 10, 4, 17, 0, 0, 0, WIB)
)

func TestCatalogueFlagsBeforeFreeze(t *testing.T) {
	c := NewCatalogue()
	pos := uint64(0)
	apply := func(v any, at time.Time) {
		pos++
		typ, _, _, err := contracts.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Apply(events.Event{Type: typ, Position: pos, OccurredAt: at, RecordedAt: at}, v); err != nil {
			t.Fatal(err)
		}
	}
	apply(contracts.ListingCreated{ListingID: "l-1", SellerID: "s-1", Title: "t", Category: "fashion",
		Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Origin: contracts.OriginDomestic,
		Price: contracts.Money{AmountMinor: 100, Currency: "IDR"}, Stock: 3}, dayStart)
	apply(contracts.FreezeImposed{RuleID: "f", Scope: contracts.Scope{Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		BlockedOperations: contracts.FreezeOperations, EffectiveAt: freezeAt, LegalBasis: "x", Issuer: "y"}, dayStart)
	if l, _ := c.Listing("l-1"); !l.Purchasable || l.PromotionOnly {
		t.Errorf("before the effective instant: %+v", l)
	}
	apply(contracts.ListingStockChanged{ListingID: "l-1", Stock: 4, PreviousStock: 3}, freezeAt)
	if l, _ := c.Listing("l-1"); l.Purchasable || !l.PromotionOnly || l.BlockedBy != "f" {
		t.Errorf("at the effective instant: %+v", l)
	}
}

// TestViolationKinds judges synthetic events against a scheduled freeze,
// its activation and its lift, by the shared definition of "in force".
func TestViolationKinds(t *testing.T) {
	eff := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	freeze := contracts.FreezeImposed{RuleID: "f", Scope: contracts.Scope{Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		BlockedOperations: contracts.FreezeOperations, EffectiveAt: eff, LegalBasis: "x", Issuer: "y"}
	order := func(ch contracts.Channel) contracts.OrderPlaced {
		o := specOrder("o", 1)
		o.Channel = ch
		return o
	}
	social, market := contracts.ChannelSocialCommerce, contracts.ChannelMarketplace
	tests := []struct {
		name      string
		activated bool // the freeze's activation is stored at position 2
		lifted    bool // an effective-now lift is stored after it
		occ, rec  time.Time
		policyPos uint64
		ch        contracts.Channel
		want      string
		inFlight  int64
	}{
		{"before the instant", false, false, eff.Add(-time.Minute), eff.Add(-time.Minute), 1, social, "", 0},
		{"in flight at the instant", false, false, eff.Add(-time.Second), eff.Add(time.Second), 1, social, "", 1},
		{"decided at the instant, before the activation", false, false, eff, eff, 1, social, "decision_instant", 0},
		{"decided after the instant, not knowing the rule", false, false, eff.Add(time.Minute), eff.Add(time.Minute), 0, social, "", 0},
		{"slow clock, after the activation", true, false, eff.Add(-time.Minute), eff.Add(time.Minute), 2, social, "positional", 0},
		{"after the activation", true, false, eff, eff, 1, social, "positional decision_instant", 0},
		{"after the activation, stale", true, false, eff, eff, 0, social, "positional", 0},
		{"out of scope", true, false, eff, eff, 2, market, "", 0},
		{"after the lift", true, true, eff.Add(2 * time.Hour), eff.Add(2 * time.Hour), 3, social, "", 0},
		{"after the lift, decided under the freeze", true, true, eff.Add(2 * time.Hour), eff.Add(2 * time.Hour), 2, social, "decision_instant", 0},
	}
	for _, tt := range tests {
		l := newSpecLog(t)
		l.add(freeze, eff.Add(-2*time.Hour), eff.Add(-2*time.Hour), 0)
		if tt.activated {
			l.add(contracts.RuleActivated{RuleID: "f", Activates: contracts.ChangeFreezeImposed, ScheduledAt: eff}, eff, eff, 1)
		}
		if tt.lifted {
			l.add(contracts.FreezeLifted{RuleID: "f", EffectiveAt: eff.Add(time.Hour), Activation: contracts.ActivationOnRecording,
				LegalBasis: "x", Issuer: "y"}, eff.Add(time.Hour), eff.Add(time.Hour), 2)
		}
		l.add(order(tt.ch), tt.occ, tt.rec, tt.policyPos)
		got := ""
		if vs := l.v.List(); len(vs) == 1 {
			got = joinKinds(vs[0].Kinds)
		}
		if got != tt.want || l.v.InFlight() != tt.inFlight {
			t.Errorf("%s: got %q in flight %d, want %q in flight %d", tt.name, got, l.v.InFlight(), tt.want, tt.inFlight)
		}
	}
}

func TestBalancesRefuseUnbalancedPostings(t *testing.T) {
	b := NewBalances()
	// A body the checker would refuse: a model must still not trust it.
	p := contracts.PaymentCaptured{PaymentID: "p", OrderID: "o", Amount: contracts.Money{AmountMinor: 5, Currency: "IDR"},
		Postings: []contracts.Posting{{Account: "buyer:b", AmountMinor: -5, Currency: "IDR"}, {Account: "escrow:o", AmountMinor: 4, Currency: "IDR"}}}
	err := b.Apply(events.Event{Type: "payment.captured", Position: 42}, p)
	if err == nil || !strings.Contains(err.Error(), "position 42") {
		t.Fatalf("got %v, want an error naming position 42", err)
	}
	// A snapshot whose balances do not sum to zero is refused on Restore.
	if err := b.Restore([]byte(`{"balances":{"buyer:b":{"IDR":-5}},"pending":{},"authorizations":{}}`)); !errors.Is(err, events.ErrIntegrity) {
		t.Errorf("restore of an unbalanced snapshot: %v", err)
	}
}

func TestSellerSalesUseWIBDays(t *testing.T) {
	s := NewSellerSales()
	late := time.Date(2023, 10, 4, 17, 30, 0, 0, time.UTC) // 00:30 WIB on 5 October
	p := contracts.OrderPlaced{OrderID: "o", BuyerID: "b", ListingID: "l", SellerID: "s-1", Quantity: 2,
		UnitPrice: contracts.Money{AmountMinor: 10, Currency: "IDR"}, Total: contracts.Money{AmountMinor: 20, Currency: "IDR"}}
	if err := s.Apply(events.Event{Type: "order.placed", OccurredAt: late}, p); err != nil {
		t.Fatal(err)
	}
	if d, ok := s.Day("s-1", "2023-10-05", "IDR"); !ok || d.OrdersPlaced != 1 || d.PlacedMinor != 20 {
		t.Errorf("got %+v %v", d, ok)
	}
}

func TestUnknownModel(t *testing.T) {
	if _, err := NewModel("nope"); !errors.Is(err, events.ErrNotFound) || !strings.Contains(err.Error(), "catalogue") {
		t.Errorf("got %v", err)
	}
}
