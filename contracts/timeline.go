package contracts

import (
	"slices"
	"time"
)

// RuleActivated records that a scheduled policy change takes effect: every
// event stored after it is judged under the change. The policy service
// appends it on the rule's aggregate when its clock reaches ScheduledAt,
// with the aggregate's expected version, so one activation is stored
// however many policy instances run. It is a policy event: it moves the
// fence of every decision made under an older policy position.
type RuleActivated struct {
	RuleID      string       `json:"rule_id" schema:"id" doc:"the rule (aggregate id)"`
	Activates   PolicyChange `json:"activates" doc:"the scheduled event of the rule this activates"`
	ScheduledAt time.Time    `json:"scheduled_at" doc:"RFC 3339 instant the change was scheduled for (its effective_at)"`
}

// RuleTimeline is one rule's history by log position: where it was
// imposed, where it took effect, where it was lifted and where the lift
// took effect. It is the one definition of "in force" that the services,
// the policy listing and the audit share (ADR 0004). Positions are global
// log positions; 0 means "not (yet) in the log".
type RuleTimeline struct {
	// Rule is the rule as imposed (scope, blocked operations, floor, legal
	// basis). Its EffectiveAt and LiftedAt are the instants the events
	// state, for display only: enforcement reads the positions below.
	Rule
	// ChangePosition is the position of the freeze_imposed or
	// floor_price_set event.
	ChangePosition uint64
	// ScheduledAt is the instant the change was scheduled for; zero when it
	// took effect on recording.
	ScheduledAt time.Time
	// ActivationPosition is where the rule took effect: ChangePosition when
	// on recording, its policy.rule_activated otherwise; 0 until then.
	ActivationPosition uint64
	// LiftPosition is the position of the lift event; 0 when not lifted.
	LiftPosition uint64
	// LiftScheduledAt is the instant the lift was scheduled for; zero when
	// it took effect on recording (or there is no lift).
	LiftScheduledAt time.Time
	// LiftActivationPosition is where the lift took effect; 0 until then.
	LiftActivationPosition uint64
}

// InForceAt reports whether the rule is in force for an event stored at
// position p: it was activated before p and no activation of its lift
// came before p.
func (r RuleTimeline) InForceAt(p uint64) bool {
	return r.ActivationPosition != 0 && r.ActivationPosition < p &&
		(r.LiftActivationPosition == 0 || r.LiftActivationPosition >= p)
}

// DueBy reports whether a decision made at instant decided under policy
// position policyPos must already treat the rule as in force by the clock:
// the rule is scheduled for an instant at or before decided, its change
// was known at policyPos, and no lift of it had taken effect by policyPos.
// A lift is never honoured early by the clock: only its activation counts.
func (r RuleTimeline) DueBy(policyPos uint64, decided time.Time) bool {
	return !r.ScheduledAt.IsZero() && r.ChangePosition != 0 && r.ChangePosition <= policyPos &&
		!decided.Before(r.ScheduledAt) &&
		(r.LiftActivationPosition == 0 || r.LiftActivationPosition > policyPos)
}

// Enforced reports whether a service deciding at instant decided under
// policy position policyPos must hold the rule in force: positionally for
// the event it would store (the fence guarantees no policy event between
// policyPos and it) or by the clock.
func (r RuleTimeline) Enforced(policyPos uint64, decided time.Time) bool {
	return r.InForceAt(policyPos+1) || r.DueBy(policyPos, decided)
}

// Lifted reports whether the lift of the rule had taken effect at position p.
func (r RuleTimeline) Lifted(p uint64) bool {
	return r.LiftActivationPosition != 0 && r.LiftActivationPosition < p
}

// PendingAt returns the activations that are due at instant now and not yet
// stored, in the order they must be appended: the rule's own, then its
// lift's. A rule whose lift took effect before it did is never activated.
func (r RuleTimeline) PendingAt(now time.Time) []PolicyChange {
	var out []PolicyChange
	if r.ActivationPosition == 0 && r.LiftActivationPosition == 0 && !r.ScheduledAt.IsZero() && !now.Before(r.ScheduledAt) {
		out = append(out, r.change(false))
	}
	if r.LiftPosition != 0 && r.LiftActivationPosition == 0 && !r.LiftScheduledAt.IsZero() && !now.Before(r.LiftScheduledAt) {
		out = append(out, r.change(true))
	}
	return out
}

// NextDue returns the earliest instant at which an activation of the rule
// becomes due, and false when none is pending.
func (r RuleTimeline) NextDue() (time.Time, bool) {
	var next time.Time
	if r.ActivationPosition == 0 && r.LiftActivationPosition == 0 && !r.ScheduledAt.IsZero() {
		next = r.ScheduledAt
	}
	if r.LiftPosition != 0 && r.LiftActivationPosition == 0 && !r.LiftScheduledAt.IsZero() &&
		(next.IsZero() || r.LiftScheduledAt.Before(next)) {
		next = r.LiftScheduledAt
	}
	return next, !next.IsZero()
}

func (r RuleTimeline) change(lift bool) PolicyChange {
	switch {
	case r.Kind == RuleFreeze && !lift:
		return ChangeFreezeImposed
	case r.Kind == RuleFreeze:
		return ChangeFreezeLifted
	case !lift:
		return ChangeFloorPriceSet
	}
	return ChangeFloorPriceLifted
}

// Matches reports whether the rule, when in force, refuses op on target at
// the given unit price (ignored by a freeze). A floor price refuses a price
// in another currency, because it cannot be compared without a rate.
func (r Rule) Matches(op Operation, t Target, unitPrice Money) bool {
	if !slices.Contains(r.BlockedOperations, op) || !r.Scope.Covers(t) {
		return false
	}
	switch r.Kind {
	case RuleFreeze:
		return true
	case RuleFloorPrice:
		if r.Floor == nil || (r.Origin != "" && r.Origin != t.Origin) {
			return false
		}
		return unitPrice.Currency != r.Floor.Currency || unitPrice.AmountMinor < r.Floor.AmountMinor
	}
	return false
}

// PolicyTimeline is every rule folded from the policy events, in the order
// the rules were imposed. It is immutable: Apply returns a new timeline, so
// a snapshot handed out earlier stays valid.
type PolicyTimeline []RuleTimeline

// Apply folds one decoded policy payload stored at position pos and
// returns the new timeline. A change without an activation field is read
// as scheduled at its effective instant. Payloads of other types, a second
// imposition of a rule, a lift of an unknown rule and an activation of
// nothing pending are ignored: the fold never fails on a log it did not
// write.
func (pt PolicyTimeline) Apply(pos uint64, payload any) PolicyTimeline {
	switch e := payload.(type) {
	case FreezeImposed:
		return pt.impose(pos, e.Rule(), e.Activation, e.EffectiveAt)
	case FloorPriceSet:
		return pt.impose(pos, e.Rule(), e.Activation, e.EffectiveAt)
	case FreezeLifted:
		return pt.update(e.RuleID, func(r *RuleTimeline) { r.lift(pos, RuleFreeze, e.Activation, e.EffectiveAt) })
	case FloorPriceLifted:
		return pt.update(e.RuleID, func(r *RuleTimeline) { r.lift(pos, RuleFloorPrice, e.Activation, e.EffectiveAt) })
	case RuleActivated:
		return pt.update(e.RuleID, func(r *RuleTimeline) { r.activate(pos, e.Activates) })
	}
	return pt
}

// Find returns the timeline of rule id.
func (pt PolicyTimeline) Find(id string) (RuleTimeline, bool) {
	for _, r := range pt {
		if r.RuleID == id {
			return r, true
		}
	}
	return RuleTimeline{}, false
}

func (pt PolicyTimeline) impose(pos uint64, rule Rule, a Activation, at time.Time) PolicyTimeline {
	if _, ok := pt.Find(rule.RuleID); ok {
		return pt
	}
	r := RuleTimeline{Rule: rule, ChangePosition: pos}
	if a == ActivationOnRecording {
		r.ActivationPosition = pos
	} else {
		r.ScheduledAt = at
	}
	return append(pt[:len(pt):len(pt)], r)
}

func (pt PolicyTimeline) update(id string, f func(*RuleTimeline)) PolicyTimeline {
	for i := range pt {
		if pt[i].RuleID == id {
			out := slices.Clone(pt)
			f(&out[i])
			return out
		}
	}
	return pt
}

func (r *RuleTimeline) lift(pos uint64, kind RuleKind, a Activation, at time.Time) {
	if r.Kind != kind || r.LiftPosition != 0 {
		return
	}
	r.LiftPosition, r.LiftedAt = pos, at
	if a == ActivationOnRecording {
		r.LiftActivationPosition = pos
	} else {
		r.LiftScheduledAt = at
	}
}

func (r *RuleTimeline) activate(pos uint64, c PolicyChange) {
	switch {
	case c == r.change(false) && r.ActivationPosition == 0:
		r.ActivationPosition = pos
	case c == r.change(true) && r.LiftPosition != 0 && r.LiftActivationPosition == 0:
		r.LiftActivationPosition = pos
	}
}
