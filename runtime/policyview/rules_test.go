package policyview

import (
	"strings"
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

// timeline is a freeze and a floor scheduled at freezeAt and activated,
// and the freeze lifted an hour later, on its recording.
func timeline() Rules {
	return Fold(
		contracts.FreezeImposed{RuleID: "fz", Scope: contracts.Scope{Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
			BlockedOperations: contracts.FreezeOperations, EffectiveAt: freezeAt, Activation: contracts.ActivationScheduled, LegalBasis: "Permendag 31/2023"},
		contracts.FloorPriceSet{RuleID: "fl", BlockedOperations: contracts.FloorPriceOperations, Amount: usd(100_00),
			Origin: contracts.OriginCrossBorder, EffectiveAt: freezeAt, Activation: contracts.ActivationScheduled, LegalBasis: "Permendag 31/2023"},
		contracts.RuleActivated{RuleID: "fz", Activates: contracts.ChangeFreezeImposed, ScheduledAt: freezeAt},
		contracts.RuleActivated{RuleID: "fl", Activates: contracts.ChangeFloorPriceSet, ScheduledAt: freezeAt},
	)
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
		{"activated, whatever the clock", contracts.OpOrderPlace, social, usd(150_00), freezeAt.Add(-time.Hour), "fz"},
		{"at the freeze instant", contracts.OpOrderPlace, social, usd(150_00), freezeAt, "fz"},
		{"freeze before floor", contracts.OpOrderPlace, social, usd(1), freezeAt, "fz"},
		{"out of scope", contracts.OpOrderPlace, market, usd(150_00), freezeAt, ""},
		{"not a blocked operation", contracts.OpListingCreate, social, usd(150_00), freezeAt, ""},
		{"below the floor", contracts.OpListingCreate, social, usd(99_99), freezeAt, "fl"},
	}
	for _, tc := range tests {
		err := rs.Check(tc.op, tc.target, tc.price, tc.at)
		r, _ := RefusalOf(err)
		switch {
		case tc.rule == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.rule != "" && (events.KindOf(err) != events.KindFrozen || r == nil || r.RuleID != tc.rule || r.LegalBasis != "Permendag 31/2023"):
			t.Errorf("%s: got %v, want a refusal by %s", tc.name, err, tc.rule)
		case tc.rule != "" && (strings.Count(err.Error(), "rule "+tc.rule) != 1 || strings.Count(err.Error(), "Permendag 31/2023") != 1):
			// The message is a 423's detail: the rule and its basis once.
			t.Errorf("%s: %q names the rule or its legal basis more than once", tc.name, err)
		}
	}
}

// TestCheckByPosition checks that activated rules hold whatever the
// decision clock says, that the clock refuses from a known scheduled
// instant before the activation, and that a lift counts only from its
// activation.
func TestCheckByPosition(t *testing.T) {
	scheduled := Fold(contracts.FreezeImposed{RuleID: "fz", Scope: contracts.Scope{All: true},
		BlockedOperations: contracts.FreezeOperations, EffectiveAt: freezeAt, Activation: contracts.ActivationScheduled, LegalBasis: "Permendag 31/2023"})
	activated := scheduled.Apply(scheduled.Position+1, contracts.RuleActivated{RuleID: "fz", Activates: contracts.ChangeFreezeImposed, ScheduledAt: freezeAt})
	liftAt := freezeAt.Add(time.Hour)
	liftScheduled := activated.Apply(activated.Position+1, contracts.FreezeLifted{RuleID: "fz", EffectiveAt: liftAt, Activation: contracts.ActivationScheduled})
	liftActivated := liftScheduled.Apply(liftScheduled.Position+1, contracts.RuleActivated{RuleID: "fz", Activates: contracts.ChangeFreezeLifted, ScheduledAt: liftAt})
	now := Fold(contracts.FreezeImposed{RuleID: "fz", Scope: contracts.Scope{All: true},
		BlockedOperations: contracts.FreezeOperations, EffectiveAt: freezeAt, Activation: contracts.ActivationOnRecording, LegalBasis: "x"})
	early := freezeAt.Add(-time.Hour)
	for _, tc := range []struct {
		name    string
		rules   Rules
		at      time.Time
		refused bool
	}{
		{"scheduled, before its instant", scheduled, freezeAt.Add(-time.Nanosecond), false},
		{"scheduled, at its instant, not yet activated", scheduled, freezeAt, true},
		{"activated, decision clock behind", activated, early, true},
		{"on recording, decision clock behind its stated instant", now, early, true},
		{"lift scheduled and due, not activated", liftScheduled, liftAt.Add(time.Minute), true},
		{"lift activated", liftActivated, liftAt.Add(-time.Minute), false},
	} {
		err := tc.rules.Check(contracts.OpOrderPlace, social, usd(1), tc.at)
		if got := err != nil; got != tc.refused {
			t.Errorf("%s: refused %v (%v), want %v", tc.name, got, err, tc.refused)
		}
	}
}

// TestApplyKeepsSnapshots checks that folding a lift does not change a
// snapshot handed out before it.
func TestApplyKeepsSnapshots(t *testing.T) {
	before := Fold(contracts.FreezeImposed{RuleID: "fz", Scope: contracts.Scope{All: true},
		BlockedOperations: contracts.FreezeOperations, EffectiveAt: freezeAt, Activation: contracts.ActivationOnRecording})
	after := before.Apply(2, contracts.FreezeLifted{RuleID: "fz", EffectiveAt: freezeAt, Activation: contracts.ActivationOnRecording})
	if before.Timeline[0].LiftPosition != 0 || after.Timeline[0].LiftActivationPosition != 2 || before.Position != 1 || after.Position != 2 {
		t.Errorf("before %+v after %+v", before, after)
	}
}
