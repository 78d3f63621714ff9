package policyview

import (
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

var (
	wib      = time.FixedZone("WIB", 7*3600)
	freezeAt = time.Date(2023, 10, 4, 17, 0, 0, 0, wib)
	social   = contracts.Target{Jurisdiction: "ID", Channel: contracts.ChannelSocialCommerce, Category: "apparel",
		SellerID: "s1", Origin: contracts.OriginCrossBorder}
	usd = func(minor int64) contracts.Money { return contracts.Money{AmountMinor: minor, Currency: "USD"} }
)

func timeline() Rules {
	var rs Rules
	rs = rs.Apply(contracts.FreezeImposed{RuleID: "fz", Scope: contracts.Scope{Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		BlockedOperations: contracts.FreezeOperations, EffectiveAt: freezeAt, LegalBasis: "Permendag 31/2023"}, time.Time{})
	rs = rs.Apply(contracts.FloorPriceSet{RuleID: "fl", BlockedOperations: contracts.FloorPriceOperations, Amount: usd(100_00),
		Origin: contracts.OriginCrossBorder, EffectiveAt: freezeAt, LegalBasis: "Permendag 31/2023"}, time.Time{})
	return rs.Apply(contracts.FreezeLifted{RuleID: "fz", EffectiveAt: freezeAt.Add(time.Hour)}, time.Time{})
}

func TestCheck(t *testing.T) {
	rs := timeline()
	market := social
	market.Channel = contracts.ChannelMarketplace
	tests := []struct {
		name   string
		op     contracts.Operation
		target contracts.Target
		price  contracts.Money
		at     time.Time
		rule   string // "" when allowed
	}{
		{"before the freeze", contracts.OpOrderPlace, social, usd(150_00), freezeAt.Add(-time.Nanosecond), ""},
		{"at the freeze instant", contracts.OpOrderPlace, social, usd(150_00), freezeAt, "fz"},
		{"freeze before floor", contracts.OpOrderPlace, social, usd(1), freezeAt, "fz"},
		{"out of scope", contracts.OpOrderPlace, market, usd(150_00), freezeAt, ""},
		{"not a blocked operation", contracts.OpListingCreate, social, usd(150_00), freezeAt, ""},
		{"below the floor", contracts.OpListingCreate, social, usd(99_99), freezeAt, "fl"},
		{"at the lift instant", contracts.OpOrderPlace, social, usd(150_00), freezeAt.Add(time.Hour), ""},
		{"below the floor after the lift", contracts.OpOrderPlace, social, usd(99_99), freezeAt.Add(time.Hour), "fl"},
	}
	for _, tc := range tests {
		err := rs.Check(tc.op, tc.target, tc.price, tc.at)
		r, _ := RefusalOf(err)
		switch {
		case tc.rule == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.rule != "" && (events.KindOf(err) != events.KindFrozen || r == nil || r.RuleID != tc.rule || r.LegalBasis != "Permendag 31/2023"):
			t.Errorf("%s: got %v, want a refusal by %s", tc.name, err, tc.rule)
		}
	}
}

// TestApplyKeepsSnapshots checks that folding a lift does not change a
// snapshot handed out before it.
func TestApplyKeepsSnapshots(t *testing.T) {
	var rs Rules
	before := rs.Apply(contracts.FreezeImposed{RuleID: "fz", Scope: contracts.Scope{All: true},
		BlockedOperations: contracts.FreezeOperations, EffectiveAt: freezeAt}, time.Time{})
	after := before.Apply(contracts.FreezeLifted{RuleID: "fz", EffectiveAt: freezeAt}, time.Time{})
	if !before[0].LiftedAt.IsZero() || after[0].LiftedAt.IsZero() {
		t.Errorf("before %v after %v", before[0].LiftedAt, after[0].LiftedAt)
	}
}

// TestApplyUsesRecording checks that an "effective now" freeze stated a
// moment before the server recorded it takes effect at the recording.
func TestApplyUsesRecording(t *testing.T) {
	rec := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	rs := Rules(nil).Apply(contracts.FreezeImposed{RuleID: "fz", Scope: contracts.Scope{All: true},
		BlockedOperations: contracts.FreezeOperations, EffectiveAt: rec.Add(-time.Millisecond)}, rec)
	if !rs[0].EffectiveAt.Equal(rec) {
		t.Errorf("effective %v, want the recording %v", rs[0].EffectiveAt, rec)
	}
}
