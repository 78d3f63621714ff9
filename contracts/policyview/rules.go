// Package policyview keeps a service's local view of the policy timeline:
// it follows the policy events of the log, folds them into the rules in
// force (freezes, lifts, floor prices) and hands deciders consistent
// snapshots stamped with the position of the newest policy event applied,
// so that the store can fence every decision made under them.
//
// The package must never decide anything about trade itself (that is the
// deciders' job, through Rules.Check) and never call another service: a
// service honours a freeze by reading the log alone.
package policyview

import (
	"fmt"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// Rules is the policy timeline folded into rules, in the order they were
// imposed. A lifted rule stays in the list with its LiftedAt set, so that a
// decision judged at an earlier instant still sees it.
type Rules []contracts.Rule

// Refusal is the cause carried by the KindFrozen error that Check returns:
// the rule that refused the operation, so that callers can record its id
// and legal basis (OrderRejected does).
type Refusal struct {
	RuleID     string
	Kind       contracts.RuleKind
	LegalBasis string
	// Floor is the floor price of a floor_price rule, nil for a freeze.
	Floor *contracts.Money
}

func (r *Refusal) Error() string {
	if r.Floor != nil {
		return fmt.Sprintf("unit price below the floor of %s set by rule %s (%s)", r.Floor, r.RuleID, r.LegalBasis)
	}
	return fmt.Sprintf("frozen by rule %s (%s)", r.RuleID, r.LegalBasis)
}

// Check returns nil if no rule in force at now blocks op on target at
// unitPrice, and otherwise a KindFrozen *events.Error whose Rule names the
// first blocking rule and its legal basis and whose cause is a *Refusal.
// A freeze is reported before a floor price: it is the stronger reason.
func (rs Rules) Check(op contracts.Operation, target contracts.Target, unitPrice contracts.Money, now time.Time) error {
	var floor *contracts.Rule
	for i := range rs {
		r := &rs[i]
		if !r.Blocks(op, target, unitPrice, now) {
			continue
		}
		if r.Kind == contracts.RuleFreeze {
			return refuse(op, "", r)
		}
		if floor == nil {
			floor = r
		}
	}
	if floor != nil {
		return refuse(op, "/price", floor)
	}
	return nil
}

func refuse(op contracts.Operation, field string, r *contracts.Rule) error {
	ref := &Refusal{RuleID: r.RuleID, Kind: r.Kind, LegalBasis: r.LegalBasis, Floor: r.Floor}
	rule := fmt.Sprintf("rule %s (%s, %s) blocks %s", r.RuleID, r.Kind, r.LegalBasis, op)
	return &events.Error{Op: string(op), Kind: events.KindFrozen, Field: field, Rule: rule, Err: ref}
}

// RefusalOf returns the rule behind a KindFrozen error from Check.
func RefusalOf(err error) (*Refusal, bool) {
	for err != nil {
		if r, ok := err.(*Refusal); ok {
			return r, true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return nil, false
		}
		err = u.Unwrap()
	}
	return nil, false
}

// Apply folds one decoded policy event, recorded by the server at
// recorded (zero if unknown), into the rules and returns the new list; rs
// is not modified, so a snapshot handed out earlier stays valid. Every
// effective instant goes through contracts.InForceFrom, the one rule the
// services and the audit share. Events of other types are ignored.
func (rs Rules) Apply(payload any, recorded time.Time) Rules {
	switch e := payload.(type) {
	case contracts.FreezeImposed:
		r := e.Rule()
		r.EffectiveAt = contracts.InForceFrom(r.EffectiveAt, recorded)
		return append(rs[:len(rs):len(rs)], r)
	case contracts.FloorPriceSet:
		r := e.Rule()
		r.EffectiveAt = contracts.InForceFrom(r.EffectiveAt, recorded)
		return append(rs[:len(rs):len(rs)], r)
	case contracts.FreezeLifted:
		return rs.lift(e.RuleID, contracts.RuleFreeze, contracts.InForceFrom(e.EffectiveAt, recorded))
	case contracts.FloorPriceLifted:
		return rs.lift(e.RuleID, contracts.RuleFloorPrice, contracts.InForceFrom(e.EffectiveAt, recorded))
	}
	return rs
}

func (rs Rules) lift(id string, kind contracts.RuleKind, at time.Time) Rules {
	out := make(Rules, len(rs))
	copy(out, rs)
	for i := range out {
		if out[i].RuleID == id && out[i].Kind == kind && out[i].LiftedAt.IsZero() {
			out[i].LiftedAt = at
		}
	}
	return out
}

// early returns the rules with every effective instant moved d earlier: the
// guard of View.SetGuard. Lifts are not moved: a rule ends no earlier.
func (rs Rules) early(d time.Duration) Rules {
	if d <= 0 || len(rs) == 0 {
		return rs
	}
	out := make(Rules, len(rs))
	for i, r := range rs {
		r.EffectiveAt = r.EffectiveAt.Add(-d)
		out[i] = r
	}
	return out
}
