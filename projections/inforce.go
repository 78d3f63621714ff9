package projections

// This file is the audit's one reading of when a policy rule is in force
// (the positional activation the services enforce): every model that judges
// trade against a rule asks the activation kept here, and nothing else in
// the package reads a rule's effective instant to decide it.
//
// The shared definition is contracts.RuleTimeline (InForceAt, DueBy) with
// contracts.PolicyTimeline.Apply and the typed "activation" field and
// policy.rule_activated event; until those are on this branch, the adapter
// below reads the same facts from the stored body with the same rules: the
// "activation" field of a change event, and a change event without one
// (written before activations existed) read as scheduled at its
// effective_at. Swapping in the shared functions changes this file only:
// activation becomes contracts.RuleTimeline, inForceAt is InForceAt and
// decidedInForce is DueBy(e.PolicyPosition, e.OccurredAt).

import (
	"encoding/json"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// How a policy change takes effect, as its stored body states it.
const (
	// activationOnRecording: the change event is its own activation.
	activationOnRecording = "on_recording"
	// activationScheduled: a policy.rule_activated event activates it once
	// its effective instant arrives.
	activationScheduled = "scheduled"
)

// ruleActivatedType is the event the policy service appends when a
// scheduled change's instant arrives.
const ruleActivatedType = "policy.rule_activated"

// activation is where in the log a rule and its lift take effect.
type activation struct {
	// ChangePosition is the position of the rule's change event
	// (freeze_imposed, floor_price_set).
	ChangePosition uint64 `json:"change_position"`
	// ScheduledAt is the instant E of a scheduled rule; zero for a rule
	// that took effect on its recording.
	ScheduledAt time.Time `json:"scheduled_at,omitzero"`
	// ActivePosition is the rule's activation position; 0 until stored.
	ActivePosition uint64 `json:"active_position,omitempty"`
	// LiftScheduledAt is the instant of a scheduled lift, zero otherwise.
	LiftScheduledAt time.Time `json:"lift_scheduled_at,omitzero"`
	// LiftPosition is the lift's activation position; 0 until stored. A
	// lift is honoured only from here, never early by clock.
	LiftPosition uint64 `json:"lift_position,omitempty"`
}

// inForceAt reports whether the rule is in force, positionally, for an
// event at position p: activated before p and no lift activated before p.
func (a *activation) inForceAt(p uint64) bool {
	return a.ActivePosition != 0 && a.ActivePosition < p && (a.LiftPosition == 0 || a.LiftPosition >= p)
}

// decidedInForce reports whether e was decided under a view that held the
// scheduled rule at or after its instant: the deciding service knew of the
// rule (its policy position is at or after the change), decided at or after
// E, and no lift had been activated within what it knew.
func (a *activation) decidedInForce(e *events.Event) bool {
	return !a.ScheduledAt.IsZero() && a.ChangePosition <= e.PolicyPosition && !e.OccurredAt.Before(a.ScheduledAt) &&
		(a.LiftPosition == 0 || a.LiftPosition > e.PolicyPosition)
}

// inFlight reports whether e was in flight at the scheduled rule's instant:
// decided before E, recorded after it, and stored before the activation.
// It is not a violation; audits count it so that a regulator sees it.
func (a *activation) inFlight(e *events.Event) bool {
	return !a.ScheduledAt.IsZero() && a.ActivePosition == 0 && a.ChangePosition < e.Position &&
		e.OccurredAt.Before(a.ScheduledAt) && e.RecordedAt.After(a.ScheduledAt)
}

// changeScheduled reads how the change event e with stated instant
// effective takes effect: scheduled at effective, or on its recording. A
// body without the field predates activations: its effective_at is read as
// scheduled, which the policy service's activator then activates.
func changeScheduled(e *events.Event, effective time.Time) bool {
	var body struct {
		Activation string `json:"activation"`
	}
	if len(e.Data) > 0 && json.Unmarshal(e.Data, &body) == nil && body.Activation != "" {
		return body.Activation == activationScheduled
	}
	return !effective.IsZero()
}

// ruleActivated is the body of a policy.rule_activated event.
type ruleActivated struct {
	RuleID      string    `json:"rule_id"`
	Activates   string    `json:"activates"`
	ScheduledAt time.Time `json:"scheduled_at"`
}

// activatedOf returns the activation e stores, if e is one.
func activatedOf(e *events.Event) (ruleActivated, bool) {
	var r ruleActivated
	if e.Type != ruleActivatedType || json.Unmarshal(e.Data, &r) != nil || r.RuleID == "" {
		return r, false
	}
	return r, true
}

// activations is every rule's activation, by rule id.
type activations map[string]*activation

// apply folds a policy event into the activations; other events are
// ignored. A second imposition of a rule, a lift of an unknown rule and an
// activation of nothing scheduled change nothing: the policy decider never
// stores them, and an audit must not be moved by them either.
func (as activations) apply(e *events.Event, payload any) {
	switch p := payload.(type) {
	case contracts.FreezeImposed:
		as.impose(e, p.RuleID, p.EffectiveAt)
	case contracts.FloorPriceSet:
		as.impose(e, p.RuleID, p.EffectiveAt)
	case contracts.FreezeLifted:
		as.lift(e, p.RuleID, p.EffectiveAt)
	case contracts.FloorPriceLifted:
		as.lift(e, p.RuleID, p.EffectiveAt)
	default:
		if r, ok := activatedOf(e); ok {
			as.activated(e, r)
		}
	}
}

func (as activations) impose(e *events.Event, ruleID string, effective time.Time) {
	if _, ok := as[ruleID]; ok {
		return
	}
	a := &activation{ChangePosition: e.Position}
	if changeScheduled(e, effective) {
		a.ScheduledAt = utc(effective)
	} else {
		a.ActivePosition = e.Position
	}
	as[ruleID] = a
}

func (as activations) lift(e *events.Event, ruleID string, effective time.Time) {
	a, ok := as[ruleID]
	if !ok || a.LiftPosition != 0 || !a.LiftScheduledAt.IsZero() {
		return
	}
	if changeScheduled(e, effective) {
		a.LiftScheduledAt = utc(effective)
	} else {
		a.LiftPosition = e.Position
	}
}

func (as activations) activated(e *events.Event, r ruleActivated) {
	a, ok := as[r.RuleID]
	if !ok {
		return
	}
	switch r.Activates {
	case "freeze_imposed", "floor_price_set":
		if a.ActivePosition == 0 && !a.ScheduledAt.IsZero() {
			a.ActivePosition = e.Position
		}
	case "freeze_lifted", "floor_price_lifted":
		if a.LiftPosition == 0 && !a.LiftScheduledAt.IsZero() {
			a.LiftPosition = e.Position
		}
	}
}
