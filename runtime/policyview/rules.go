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

// Rules is the policy timeline as of a policy position: every rule folded
// from the policy events up to and including Position, with where each was
// imposed, activated, lifted and where its lift was activated. A decision
// made under it is judged by contracts.RuleTimeline.Enforced(Position, now):
// the rules in force positionally for the event it would store, and the
// scheduled freezes and floors whose instant the decision clock has
// reached. It is immutable: Apply returns new Rules.
type Rules struct {
	// Position is the newest policy position folded (control records
	// included): the position decisions under these rules are fenced on.
	Position uint64
	// Timeline is every rule, in the order imposed.
	Timeline contracts.PolicyTimeline
}

// Fold returns the rules of the given policy payloads, stored at positions
// 1, 2, ... in order: a timeline for tests and tools.
func Fold(payloads ...any) Rules {
	var rs Rules
	for _, p := range payloads {
		rs = rs.Apply(rs.Position+1, p)
	}
	return rs
}

// Refusal is the cause carried by the KindFrozen error that Check returns:
// the rule that refused the operation, so that callers can record its id
// and legal basis (OrderRejected does).
type Refusal struct {
	RuleID     string
	Kind       contracts.RuleKind
	LegalBasis string
	// Floor is the floor price of a floor_price rule, nil for a freeze.
	Floor *contracts.Money
	// Actor is the buyer or seller the refused command acts for, when the
	// decider knows one (WithActor): a record of the refusal names it.
	Actor string
}

// WithActor names actor as the buyer or seller a refusal from Check acted
// for, and returns err; an error that is no refusal is returned as is.
func WithActor(err error, actor string) error {
	if r, ok := RefusalOf(err); ok {
		r.Actor = actor
	}
	return err
}

// Error says what the refusal means for the caller; the error it is the
// cause of already names the rule, its kind and legal basis, so this does
// not repeat them.
func (r *Refusal) Error() string {
	if r.Floor != nil {
		return fmt.Sprintf("the unit price is below the floor of %s", r.Floor)
	}
	return "suspended while the rule is in force"
}

// Check returns nil if no rule enforced at instant now under the rules'
// position blocks op on target at unitPrice, and otherwise a KindFrozen
// *events.Error whose Rule names the first blocking rule and its legal
// basis and whose cause is a *Refusal. A freeze is reported before a floor
// price: it is the stronger reason.
func (rs Rules) Check(op contracts.Operation, target contracts.Target, unitPrice contracts.Money, now time.Time) error {
	return check(op, len(rs.Timeline), func(i int) (*contracts.Rule, bool) {
		r := &rs.Timeline[i]
		return &r.Rule, r.Enforced(rs.Position, now) && r.Matches(op, target, unitPrice)
	})
}

// CheckRules is Check over rules a decider was handed as contracts.Rule
// values (Rules.InForce resolves them, stated instants cleared), judged by
// contracts.Rule.Blocks at now.
func CheckRules(rules []contracts.Rule, op contracts.Operation, target contracts.Target, unitPrice contracts.Money, now time.Time) error {
	return check(op, len(rules), func(i int) (*contracts.Rule, bool) {
		return &rules[i], rules[i].Blocks(op, target, unitPrice, now)
	})
}

// check returns the refusal of the first blocking freeze among n rules, or
// else of the first blocking floor price, or nil.
func check(op contracts.Operation, n int, blocks func(i int) (*contracts.Rule, bool)) error {
	var floor *contracts.Rule
	for i := range n {
		r, ok := blocks(i)
		if !ok {
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

// InForce returns the rules enforced at instant now under the rules'
// position, as contracts.Rule values in force at every instant (their
// stated instants cleared): for deciders that judge contracts.Rule.Blocks
// themselves. Enforcement stays the view's: positional and by the clock
// for a known scheduled instant, never by an instant an event states.
func (rs Rules) InForce(now time.Time) []contracts.Rule {
	var out []contracts.Rule
	for _, r := range rs.Timeline {
		if r.Enforced(rs.Position, now) {
			rule := r.Rule
			rule.EffectiveAt, rule.LiftedAt = time.Time{}, time.Time{}
			out = append(out, rule)
		}
	}
	return out
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

// Apply folds one decoded policy payload stored at position pos and moves
// the rules' position to pos; rs is not modified, so a snapshot handed out
// earlier stays valid. Control records move the position with a nil
// payload. Payloads of other types only move the position.
func (rs Rules) Apply(pos uint64, payload any) Rules {
	if payload != nil {
		rs.Timeline = rs.Timeline.Apply(pos, payload)
	}
	if pos > rs.Position {
		rs.Position = pos
	}
	return rs
}
