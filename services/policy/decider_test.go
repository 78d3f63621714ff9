package policy

import (
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit/decidertest"
)

var t0 = time.Date(2023, 10, 4, 10, 0, 0, 0, time.UTC) // 17:00 WIB

// spec is the policy decider under test, on rule r1. It needs no inputs.
var spec = decidertest.Spec[State, Inputs]{ID: "r1", Initial: Initial, Evolve: Evolve, Decide: Decide, Now: t0}

// Given starts a case with the rule's past events.
func Given(past ...any) decidertest.Case[State, Inputs] { return spec.Given(past...) }

var socialID = contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}}

func impose() contracts.ImposeFreeze {
	return contracts.ImposeFreeze{RuleID: "r1", Scope: socialID, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}
}

// imposed is the freeze decided at t0 effective at at: on its recording
// unless at is after t0.
func imposed(at time.Time) contracts.FreezeImposed {
	return contracts.FreezeImposed{RuleID: "r1", Scope: socialID, BlockedOperations: contracts.FreezeOperations,
		EffectiveAt: at, Activation: activation(at, t0), LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}
}

func TestImposeFreezeNowWithDefaultOperations(t *testing.T) {
	Given().When(impose()).Then(t, imposed(t0))
}

func TestImposeFreezeLater(t *testing.T) {
	c := impose()
	c.EffectiveAt = t0.Add(time.Hour)
	Given().When(c).Then(t, imposed(t0.Add(time.Hour)))
}

func TestImposeFreezeWithinToleranceIsRecordedAsAsked(t *testing.T) {
	c := impose()
	c.EffectiveAt = t0.Add(-EffectiveTolerance)
	Given().When(c).Then(t, imposed(t0.Add(-EffectiveTolerance)))
}

func TestImposeFreezeInThePast(t *testing.T) {
	c := impose()
	c.EffectiveAt = t0.Add(-EffectiveTolerance - time.Millisecond)
	Given().When(c).ThenError(t, events.KindInvalid, "/effective_at")
}

func TestImposeFreezeAllExplicit(t *testing.T) {
	c := impose()
	c.Scope = contracts.Scope{All: true}
	want := imposed(t0)
	want.Scope = c.Scope
	Given().When(c).Then(t, want)
}

func TestImposeFreezeBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		edit  func(*contracts.ImposeFreeze)
		field string
	}{
		"no scope":          {func(c *contracts.ImposeFreeze) { c.Scope = contracts.Scope{} }, "/scope"},
		"all with lists":    {func(c *contracts.ImposeFreeze) { c.Scope.All = true }, "/scope/all"},
		"unknown country":   {func(c *contracts.ImposeFreeze) { c.Scope.Jurisdictions = []string{"ID", "XX"} }, "/scope/jurisdictions/1"},
		"unknown channel":   {func(c *contracts.ImposeFreeze) { c.Scope.Channels = []contracts.Channel{"radio"} }, "/scope/channels/0"},
		"unknown operation": {func(c *contracts.ImposeFreeze) { c.BlockedOperations = []contracts.Operation{"payment.refund"} }, "/blocked_operations/0"},
		"duplicate op": {func(c *contracts.ImposeFreeze) {
			c.BlockedOperations = []contracts.Operation{contracts.OpOrderPlace, contracts.OpOrderPlace}
		}, "/blocked_operations/1"},
		"no basis":  {func(c *contracts.ImposeFreeze) { c.LegalBasis = " " }, "/legal_basis"},
		"no issuer": {func(c *contracts.ImposeFreeze) { c.Issuer = "" }, "/issuer"},
	} {
		t.Run(name, func(t *testing.T) {
			c := impose()
			tc.edit(&c)
			Given().When(c).ThenError(t, events.KindInvalid, tc.field)
		})
	}
}

func TestImposeFreezeTwice(t *testing.T) {
	Given(imposed(t0)).When(impose()).ThenError(t, events.KindConflict, "/rule_id")
}

func lift() contracts.LiftFreeze {
	return contracts.LiftFreeze{RuleID: "r1", LegalBasis: "agreement to serve again", Issuer: "kemendag"}
}

func TestLiftFreeze(t *testing.T) {
	Given(imposed(t0.Add(-time.Hour))).When(lift()).
		Then(t, contracts.FreezeLifted{RuleID: "r1", EffectiveAt: t0, Activation: contracts.ActivationOnRecording,
			LegalBasis: "agreement to serve again", Issuer: "kemendag"})
}

func TestLiftFreezeUnknown(t *testing.T) {
	Given().When(lift()).ThenError(t, events.KindNotFound, "/rule_id")
}

func TestLiftFreezeTwice(t *testing.T) {
	Given(imposed(t0), contracts.FreezeLifted{RuleID: "r1", EffectiveAt: t0, LegalBasis: "x", Issuer: "y"}).
		When(lift()).ThenError(t, events.KindConflict, "/rule_id")
}

func TestLiftFreezeOnFloorPrice(t *testing.T) {
	Given(floorSet()).When(lift()).ThenError(t, events.KindNotFound, "/rule_id")
}

func TestLiftFreezeNeedsBasis(t *testing.T) {
	c := lift()
	c.LegalBasis = ""
	Given(imposed(t0)).When(c).ThenError(t, events.KindInvalid, "/legal_basis")
}

func TestLiftFreezeInThePast(t *testing.T) {
	c := lift()
	c.EffectiveAt = t0.Add(-time.Minute)
	Given(imposed(t0.Add(-time.Hour))).When(c).ThenError(t, events.KindInvalid, "/effective_at")
}

func setFloor() contracts.SetFloorPrice {
	return contracts.SetFloorPrice{RuleID: "r1", Scope: contracts.Scope{Jurisdictions: []string{"ID"}},
		Amount: contracts.Money{AmountMinor: 10_000, Currency: "USD"}, Origin: contracts.OriginCrossBorder,
		LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}
}

func floorSet() contracts.FloorPriceSet {
	return contracts.FloorPriceSet{RuleID: "r1", Scope: contracts.Scope{Jurisdictions: []string{"ID"}},
		BlockedOperations: contracts.FloorPriceOperations, Amount: contracts.Money{AmountMinor: 10_000, Currency: "USD"},
		Origin: contracts.OriginCrossBorder, EffectiveAt: t0, Activation: contracts.ActivationOnRecording,
		LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}
}

func TestSetFloorPrice(t *testing.T) {
	Given().When(setFloor()).Then(t, floorSet())
}

func TestSetFloorPriceEmptyScopeMeansAll(t *testing.T) {
	c := setFloor()
	c.Scope = contracts.Scope{}
	want := floorSet()
	want.Scope = contracts.Scope{}
	Given().When(c).Then(t, want)
}

func TestSetFloorPriceBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		edit  func(*contracts.SetFloorPrice)
		field string
	}{
		"zero amount":      {func(c *contracts.SetFloorPrice) { c.Amount.AmountMinor = 0 }, "/amount/amount_minor"},
		"unknown currency": {func(c *contracts.SetFloorPrice) { c.Amount.Currency = "ABC" }, "/amount/currency"},
		"overflow":         {func(c *contracts.SetFloorPrice) { c.Amount.AmountMinor = contracts.MaxAmountMinor + 1 }, "/amount/amount_minor"},
		"origin":           {func(c *contracts.SetFloorPrice) { c.Origin = "mars" }, "/origin"},
		"country":          {func(c *contracts.SetFloorPrice) { c.Scope.Jurisdictions = []string{"id"} }, "/scope/jurisdictions/0"},
		"no issuer":        {func(c *contracts.SetFloorPrice) { c.Issuer = "" }, "/issuer"},
	} {
		t.Run(name, func(t *testing.T) {
			c := setFloor()
			tc.edit(&c)
			Given().When(c).ThenError(t, events.KindInvalid, tc.field)
		})
	}
}

func TestSetFloorPriceTwice(t *testing.T) {
	Given(floorSet()).When(setFloor()).ThenError(t, events.KindConflict, "/rule_id")
}

func TestLiftFloorPrice(t *testing.T) {
	Given(floorSet()).When(contracts.LiftFloorPrice{RuleID: "r1", EffectiveAt: t0.Add(time.Hour), LegalBasis: "x", Issuer: "y"}).
		Then(t, contracts.FloorPriceLifted{RuleID: "r1", EffectiveAt: t0.Add(time.Hour), Activation: contracts.ActivationScheduled, LegalBasis: "x", Issuer: "y"})
}

func TestLiftFloorPriceOnFreeze(t *testing.T) {
	Given(imposed(t0)).When(contracts.LiftFloorPrice{RuleID: "r1", LegalBasis: "x", Issuer: "y"}).ThenError(t, events.KindNotFound, "/rule_id")
}

func TestEvolveLiftSetsLiftedAt(t *testing.T) {
	s := Evolve(Evolve(Initial("r1"), imposed(t0)), contracts.FreezeLifted{RuleID: "r1", EffectiveAt: t0.Add(time.Hour),
		Activation: contracts.ActivationOnRecording})
	if !s.Lifted || !s.Rule.LiftedAt.Equal(t0.Add(time.Hour)) || s.InForce() {
		t.Errorf("lifted rule: %+v", s)
	}
}

func TestImposeFreezeNowIsActivatedOnRecording(t *testing.T) {
	s := Evolve(Initial("r1"), imposed(t0))
	if !s.InForce() || imposed(t0).Activation != contracts.ActivationOnRecording {
		t.Errorf("effective-now freeze not in force on recording: %+v", s)
	}
}

func activated(change contracts.PolicyChange, at time.Time) contracts.RuleActivated {
	return contracts.RuleActivated{RuleID: "r1", Activates: change, ScheduledAt: at}
}

// TestActivateDue walks a scheduled freeze and its scheduled lift through
// the activator's command: nothing before the instant, one activation at
// it, nothing again once stored.
func TestActivateDue(t *testing.T) {
	e := t0.Add(time.Hour)
	later := imposed(e)
	if later.Activation != contracts.ActivationScheduled {
		t.Fatalf("freeze an hour ahead: activation %q", later.Activation)
	}
	Given(later).At(e.Add(-time.Nanosecond)).When(ActivateDue{RuleID: "r1"}).Then(t)
	Given(later).At(e).When(ActivateDue{RuleID: "r1"}).Then(t, activated(contracts.ChangeFreezeImposed, e))
	Given(later, activated(contracts.ChangeFreezeImposed, e)).At(e.Add(time.Minute)).When(ActivateDue{RuleID: "r1"}).Then(t)

	l := e.Add(time.Hour)
	liftLater := contracts.FreezeLifted{RuleID: "r1", EffectiveAt: l, Activation: contracts.ActivationScheduled, LegalBasis: "x", Issuer: "y"}
	Given(later, activated(contracts.ChangeFreezeImposed, e), liftLater).At(l).When(ActivateDue{RuleID: "r1"}).
		Then(t, activated(contracts.ChangeFreezeLifted, l))
	// Both due at once (the activator was down): the rule's first.
	Given(later, liftLater).At(l).When(ActivateDue{RuleID: "r1"}).
		Then(t, activated(contracts.ChangeFreezeImposed, e), activated(contracts.ChangeFreezeLifted, l))
	// A scheduled freeze cancelled by a lift on recording is never activated.
	Given(later, contracts.FreezeLifted{RuleID: "r1", EffectiveAt: t0, Activation: contracts.ActivationOnRecording}).At(e).
		When(ActivateDue{RuleID: "r1"}).Then(t)
	Given().When(ActivateDue{RuleID: "r1"}).ThenError(t, events.KindNotFound, "/rule_id")
}

// TestLegacyScheduledChangeIsActivated checks that a change stored before
// activations existed (no activation field) is activated at its instant.
func TestLegacyScheduledChangeIsActivated(t *testing.T) {
	old := imposed(t0)
	old.Activation = ""
	Given(old).When(ActivateDue{RuleID: "r1"}).Then(t, activated(contracts.ChangeFreezeImposed, t0))
}
