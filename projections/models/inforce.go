package models

// This file is where the audit meets the one definition of "in force" the
// services enforce: contracts.PolicyTimeline folds the policy events by
// position, contracts.RuleTimeline.InForceAt and DueBy say whether a rule
// binds an event, and Rule.Matches whether it covers the operation. Nothing
// else in the package decides when a rule applies.

import (
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// bindsPositionally reports whether r was in force for e by its position:
// stored after the rule's activation and before its lift's.
func bindsPositionally(r *contracts.RuleTimeline, e *events.Event) bool {
	return r.InForceAt(e.Position)
}

// bindsByDecision reports whether e was decided at or after the scheduled
// rule's instant by a service that knew of it, with no lift activated
// within what it knew.
func bindsByDecision(r *contracts.RuleTimeline, e *events.Event) bool {
	return r.DueBy(e.PolicyPosition, e.OccurredAt)
}

// inFlight reports whether e was in flight at the scheduled rule's instant:
// decided before it, recorded after it, and stored before the activation.
// It is not a violation; audits count it so that a regulator sees it.
func inFlight(r *contracts.RuleTimeline, e *events.Event) bool {
	return !r.ScheduledAt.IsZero() && r.ChangePosition < e.Position &&
		(r.ActivationPosition == 0 || e.Position < r.ActivationPosition) &&
		e.OccurredAt.Before(r.ScheduledAt) && e.RecordedAt.After(r.ScheduledAt)
}
