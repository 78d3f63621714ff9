package policy

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit/decidertest"
	"pgregory.net/rapid"
)

// ruleModel is the world of one run over two rules: the decision instant,
// which moves forward, and the rules whose lift took effect (they must
// never be in force again).
type ruleModel struct {
	now   time.Time
	ended map[string]bool
}

// next draws an impose, a lift, a floor price or an activation on one of
// two rules, or moves the clock.
func (m *ruleModel) next(t *rapid.T, i int, _ func(string) State) (decidertest.Step[Inputs], bool) {
	id := rapid.SampledFrom([]string{"r1", "r2"}).Draw(t, fmt.Sprintf("rule%d", i))
	// Effective instants around the decision instant: absent, past the
	// tolerance (refused), within it, or scheduled ahead.
	var at time.Time
	if off := rapid.IntRange(-8, 8).Draw(t, fmt.Sprintf("effective%d", i)); off != 0 {
		at = m.now.Add(time.Duration(off) * time.Second)
	}
	var cmd any
	switch rapid.IntRange(0, 5).Draw(t, fmt.Sprintf("cmd%d", i)) {
	case 0:
		cmd = contracts.ImposeFreeze{RuleID: id, Scope: socialID, EffectiveAt: at, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}
	case 1:
		cmd = contracts.SetFloorPrice{RuleID: id, Scope: contracts.Scope{Jurisdictions: []string{"ID"}},
			Amount: contracts.Money{AmountMinor: 100_00, Currency: "USD"}, EffectiveAt: at, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}
	case 2:
		cmd = contracts.LiftFreeze{RuleID: id, EffectiveAt: at, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}
	case 3:
		cmd = contracts.LiftFloorPrice{RuleID: id, EffectiveAt: at, LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}
	case 4:
		cmd = ActivateDue{RuleID: id}
	default:
		m.now = m.now.Add(time.Duration(rapid.IntRange(1, 4).Draw(t, fmt.Sprintf("seconds%d", i))) * time.Second)
		return decidertest.Step[Inputs]{}, false
	}
	return decidertest.Step[Inputs]{ID: id, Cmd: cmd, Now: m.now}, true
}

// accepted checks each decided change against the rule before it.
func (m *ruleModel) accepted(t *rapid.T, id string, s State, e any) {
	switch e := e.(type) {
	case contracts.FreezeImposed, contracts.FloorPriceSet:
		if s.Exists() {
			t.Fatalf("%s imposed twice: %T on %+v", id, e, s)
		}
	case contracts.FreezeLifted, contracts.FloorPriceLifted:
		if !s.Exists() || s.Lifted {
			t.Fatalf("%s lifted twice or before it was imposed: %T on %+v", id, e, s)
		}
	case contracts.RuleActivated:
		switch e.Activates {
		case contracts.ChangeFreezeImposed, contracts.ChangeFloorPriceSet:
			if s.Activated || s.LiftActivated || s.ScheduledAt.IsZero() || m.now.Before(s.ScheduledAt) {
				t.Fatalf("%s activated when not due at %s: %+v", id, m.now, s)
			}
		default:
			if !s.Lifted || s.LiftActivated || s.LiftScheduledAt.IsZero() || m.now.Before(s.LiftScheduledAt) {
				t.Fatalf("%s lift activated when not due at %s: %+v", id, m.now, s)
			}
		}
	}
}

// invariant checks every rule after a step: a lift that took effect ends
// the rule for good; a lifted rule stays in force only while its lift is
// scheduled and not yet activated; and activating what is due is done in
// one decision (a second one at the same instant decides nothing).
func (m *ruleModel) invariant(t *rapid.T, states map[string]State) {
	for id, s := range states {
		if s.LiftActivated {
			m.ended[id] = true
		}
		switch {
		case (s.Activated || s.Lifted) && !s.Exists():
			t.Fatalf("%s activated or lifted but never imposed: %+v", id, s)
		case s.LiftActivated && !s.Lifted:
			t.Fatalf("%s lift activated without a lift: %+v", id, s)
		case m.ended[id] && s.InForce():
			t.Fatalf("%s in force after its lift took effect: %+v", id, s)
		case s.Lifted && s.InForce() && s.LiftScheduledAt.IsZero():
			t.Fatalf("%s both lifted on recording and in force: %+v", id, s)
		}
		if !s.Exists() {
			continue
		}
		evs, err := Decide(s, ActivateDue{RuleID: id}, Inputs{}, m.now)
		if err != nil {
			t.Fatalf("%s: activate: %v", id, err)
		}
		for _, e := range evs {
			s = Evolve(s, e)
		}
		if again, err := Decide(s, ActivateDue{RuleID: id}, Inputs{}, m.now); err != nil || len(again) != 0 {
			t.Fatalf("%s: a second activation at %s decided %v, %v", id, m.now, again, err)
		}
	}
}

// TestRuleProperties runs random sequences of impositions, lifts, floor
// prices, activations and clock steps over two rules: a rule is imposed
// once and lifted once (a second lift is refused), it is never both
// lifted on recording and in force nor in force again after its lift took
// effect, activation decides what is due in one go, and each rule folded
// from its accepted events is the rule the run built.
func TestRuleProperties(t *testing.T) {
	spec.Property(t, func(t *rapid.T) decidertest.Model[State, Inputs] {
		m := &ruleModel{now: t0, ended: map[string]bool{}}
		return decidertest.Model[State, Inputs]{StepsMax: 60, Next: m.next, Accepted: m.accepted, Invariant: m.invariant}
	})
}

// TestLiftTwiceIsRefused: whatever the instants, a rule lifted once
// refuses a second lift, as a conflict on the rule id.
func TestLiftTwiceIsRefused(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		first := time.Duration(rapid.IntRange(0, 10).Draw(t, "first")) * time.Second
		second := time.Duration(rapid.IntRange(0, 10).Draw(t, "second")) * time.Second
		c := Given(imposed(t0)).At(t0.Add(first)).When(contracts.LiftFreeze{RuleID: "r1", LegalBasis: "x", Issuer: "y"})
		evs, err := c.Decide()
		if err != nil || len(evs) != 1 {
			t.Fatalf("first lift: %v, %v", evs, err)
		}
		lifted := Given(imposed(t0), evs[0]).At(t0.Add(first + second)).When(contracts.LiftFreeze{RuleID: "r1", LegalBasis: "x", Issuer: "y"})
		var e *events.Error
		if _, err := lifted.Decide(); !errors.As(err, &e) || e.Kind != events.KindConflict || e.Field != "/rule_id" {
			t.Fatalf("second lift: %v, want a conflict on /rule_id", err)
		}
	})
}
