package contracts

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
)

func TestISOLists(t *testing.T) {
	if got, want := len(Countries()), 249; got != want {
		t.Errorf("ISO 3166-1 alpha-2 codes = %d, want %d", got, want)
	}
	tests := []struct {
		code string
		exp  int
		ok   bool
	}{
		{"IDR", 2, true}, {"USD", 2, true}, {"JPY", 0, true}, {"BHD", 3, true}, {"CLF", 4, true},
		{"HRK", 0, false}, {"XAU", 0, false}, {"usd", 0, false}, {"", 0, false},
	}
	for _, tt := range tests {
		exp, ok := CurrencyExponent(tt.code)
		if exp != tt.exp || ok != tt.ok {
			t.Errorf("CurrencyExponent(%q) = %d, %v; want %d, %v", tt.code, exp, ok, tt.exp, tt.ok)
		}
	}
	for _, c := range []string{"ID", "US", "SG"} {
		if !IsCountry(c) {
			t.Errorf("IsCountry(%q) = false", c)
		}
	}
	if IsCountry("XX") || IsCountry("id") {
		t.Error("IsCountry accepts a non-code")
	}
}

func TestParseMoney(t *testing.T) {
	tests := []struct {
		in    string
		want  Money
		field string // "" for success
	}{
		{"USD 100", Money{10000, "USD"}, ""},
		{"USD 100.5", Money{10050, "USD"}, ""},
		{"IDR 150000", Money{15000000, "IDR"}, ""},
		{"JPY 500", Money{500, "JPY"}, ""},
		{"BHD 1.234", Money{1234, "BHD"}, ""},
		{"USD 1.234", Money{}, "/amount_minor"},
		{"JPY 1.5", Money{}, "/amount_minor"},
		{"USD 0", Money{}, "/amount_minor"},
		{"USD -1", Money{}, "/amount_minor"},
		{"USD 1e3", Money{}, "/amount_minor"},
		{"USD 90071992547409.92", Money{}, "/amount_minor"},
		{"USD 99999999999999999999", Money{}, "/amount_minor"},
		{"XYZ 1", Money{}, "/currency"},
		{"USD", Money{}, ""},
	}
	for _, tt := range tests {
		got, err := ParseMoney(tt.in)
		var e *events.Error
		switch {
		case tt.want != (Money{}):
			if err != nil || got != tt.want {
				t.Errorf("ParseMoney(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		case !errors.As(err, &e) || e.Kind != events.KindInvalid || e.Field != tt.field:
			t.Errorf("ParseMoney(%q) = %v, %v; want invalid at %q", tt.in, got, err, tt.field)
		}
	}
}

func TestMoneyString(t *testing.T) {
	tests := []struct {
		m    Money
		want string
	}{
		{Money{10000, "USD"}, "USD 100.00"},
		{Money{5, "USD"}, "USD 0.05"},
		{Money{-5, "USD"}, "USD -0.05"},
		{Money{15000000, "IDR"}, "IDR 150000.00"},
		{Money{500, "JPY"}, "JPY 500"},
		{Money{1, "BHD"}, "BHD 0.001"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.m, got, tt.want)
		}
	}
}

func TestCheckPostings(t *testing.T) {
	p := func(acc string, amt int64, cur string) Posting { return Posting{acc, amt, cur} }
	tests := []struct {
		name  string
		ps    []Posting
		field string
		ok    bool
	}{
		{"capture", []Posting{p("buyer:b-1", -100, "USD"), p("escrow:o-1", 100, "USD")}, "", true},
		{"settle with fee", []Posting{p("escrow:o-1", -100, "USD"), p("seller_payable:s-1", 95, "USD"), p("platform_fee_revenue", 5, "USD")}, "", true},
		{"two currencies each balanced", []Posting{p("buyer:b-1", -1, "USD"), p("escrow:o-1", 1, "USD"), p("buyer:b-1", -1, "IDR"), p("escrow:o-1", 1, "IDR")}, "", true},
		{"one leg", []Posting{p("buyer:b-1", 0, "USD")}, "", false},
		{"unbalanced", []Posting{p("buyer:b-1", -100, "USD"), p("escrow:o-1", 99, "USD")}, "", false},
		{"balanced across currencies only", []Posting{p("buyer:b-1", -100, "USD"), p("escrow:o-1", 100, "IDR")}, "", false},
		{"zero leg", []Posting{p("buyer:b-1", -100, "USD"), p("escrow:o-1", 100, "USD"), p("refunds", 0, "USD")}, "/2/amount_minor", false},
		{"unknown account", []Posting{p("wallet:b-1", -100, "USD"), p("escrow:o-1", 100, "USD")}, "/0/account", false},
		{"unknown currency", []Posting{p("buyer:b-1", -100, "ZZZ"), p("escrow:o-1", 100, "ZZZ")}, "/0/currency", false},
		{"out of bounds", []Posting{p("buyer:b-1", math.MinInt64, "USD"), p("escrow:o-1", math.MinInt64, "USD")}, "/0/amount_minor", false},
	}
	for _, tt := range tests {
		err := CheckPostings(tt.ps)
		if tt.ok {
			if err != nil {
				t.Errorf("%s: CheckPostings = %v, want nil", tt.name, err)
			}
			continue
		}
		var e *events.Error
		if !errors.As(err, &e) || e.Kind != events.KindInvalid || e.Field != tt.field {
			t.Errorf("%s: CheckPostings = %v, want invalid at %q", tt.name, err, tt.field)
		}
	}
}

func TestAddMinor(t *testing.T) {
	tests := []struct {
		a, b int64
		want int64
		ok   bool
	}{
		{1, 2, 3, true},
		{math.MaxInt64, 1, 0, false},
		{math.MinInt64, -1, 0, false},
		{math.MaxInt64, math.MinInt64, -1, true},
		{math.MinInt64, 0, math.MinInt64, true},
	}
	for _, tt := range tests {
		got, ok := AddMinor(tt.a, tt.b)
		if got != tt.want || ok != tt.ok {
			t.Errorf("AddMinor(%d, %d) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSubMinor(t *testing.T) {
	tests := []struct {
		a, b int64
		want int64
		ok   bool
	}{
		{3, 2, 1, true},
		{0, math.MinInt64, 0, false},
		{-1, math.MinInt64, math.MaxInt64, true},
		{math.MinInt64, 1, 0, false},
		{math.MaxInt64, -1, 0, false},
		{math.MaxInt64, math.MaxInt64, 0, true},
		{-2, math.MaxInt64, 0, false},
		{-1, math.MaxInt64, math.MinInt64, true},
	}
	for _, tt := range tests {
		got, ok := SubMinor(tt.a, tt.b)
		if got != tt.want || ok != tt.ok {
			t.Errorf("SubMinor(%d, %d) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRuleBlocks(t *testing.T) {
	freeze := eventExamples[eventKey{"policy.freeze_imposed", 1}].(FreezeImposed).Rule()
	floor := eventExamples[eventKey{"policy.floor_price_set", 1}].(FloorPriceSet).Rule()
	social := Target{Jurisdiction: "ID", Channel: ChannelSocialCommerce, Category: "fashion", SellerID: "s-1", Origin: OriginDomestic}
	market := social
	market.Channel = ChannelMarketplace
	cross := market
	cross.Origin = OriginCrossBorder
	before, at := exFreezeAt.Add(-time.Nanosecond), exFreezeAt
	cheap, dear := Money{9999, "USD"}, Money{10000, "USD"}
	tests := []struct {
		name string
		rule Rule
		op   Operation
		t    Target
		p    Money
		at   time.Time
		want bool
	}{
		{"freeze, in scope, at the instant", freeze, OpOrderPlace, social, cheap, at, true},
		{"freeze, one nanosecond before", freeze, OpOrderPlace, social, cheap, before, false},
		{"freeze, other channel", freeze, OpOrderPlace, market, cheap, at, false},
		{"freeze, operation not blocked", freeze, OpListingCreate, social, cheap, at, false},
		{"freeze, after its lift", withLift(freeze, exLiftAt), OpPaymentCapture, social, cheap, exLiftAt, false},
		{"floor, below, cross-border", floor, OpOrderPlace, cross, cheap, at, true},
		{"floor, at the floor", floor, OpOrderPlace, cross, dear, at, false},
		{"floor, domestic goods", floor, OpOrderPlace, market, cheap, at, false},
		{"floor, other currency is refused", floor, OpListingCreate, cross, Money{99999999, "IDR"}, at, true},
	}
	for _, tt := range tests {
		if got := tt.rule.Blocks(tt.op, tt.t, tt.p, tt.at); got != tt.want {
			t.Errorf("%s: Blocks = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func withLift(r Rule, at time.Time) Rule {
	r.LiftedAt = at
	return r
}
