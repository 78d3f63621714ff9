package judge

import (
	"fmt"
	"strings"
	"time"
)

// FindingKind names a general check of the log that failed.
type FindingKind string

// The general checks. Each is made from the raw messages alone.
const (
	// FindingGap: the stream's sequences are not 1, 2, 3, ... up to its
	// last sequence (a message deleted, the head purged, the log shortened).
	FindingGap FindingKind = "gap"
	// FindingMalformed: a message is not a well-formed event or record, or
	// a body the judge needs does not decode.
	FindingMalformed FindingKind = "malformed"
	// FindingHash: an event's ce-hash is not the hash of its content.
	FindingHash FindingKind = "hash"
	// FindingChain: an aggregate's chain is broken: a version skipped or
	// repeated, a ce-prevhash that is not the previous event's hash, a
	// ce-prevposition that is not the previous event's position.
	FindingChain FindingKind = "chain"
	// FindingDuplicateID: an event id stored twice.
	FindingDuplicateID FindingKind = "duplicate_id"
	// FindingPostings: a movement's postings do not sum to zero per
	// currency, or a posting is zero.
	FindingPostings FindingKind = "postings"
	// FindingOverflow: a sum of minor units (a movement's legs per
	// currency, an account's balance) leaves the int64 range.
	FindingOverflow FindingKind = "overflow"
	// FindingReference: an event refers to what the log does not hold
	// before it (a payment for an unknown order, a lift of an unknown rule,
	// a price change of an unknown listing), or states a scope other than
	// its order's.
	FindingReference FindingKind = "reference"
	// FindingActivation: a rule_activated event that activates nothing
	// scheduled, activates twice, names another instant than the change,
	// or was decided before its instant.
	FindingActivation FindingKind = "activation"
	// FindingStalePolicy: a transaction of a blockable operation was stored
	// after a policy event while decided under an older policy position:
	// the policy fence did not hold.
	FindingStalePolicy FindingKind = "stale_policy"
)

// Finding is one failed general check.
type Finding struct {
	Kind     FindingKind `json:"kind"`
	Position uint64      `json:"position"`
	EventID  string      `json:"event_id,omitempty"`
	Detail   string      `json:"detail"`
}

func (f Finding) String() string {
	id := ""
	if f.EventID != "" {
		id = " " + f.EventID
	}
	return fmt.Sprintf("%s at %d%s: %s", f.Kind, f.Position, id, f.Detail)
}

// ViolationKind says which clause of the policy spec's rule 4 an accepted
// transaction breaks.
type ViolationKind string

// The violation kinds.
const (
	// ViolationPositional (rule 4a): the rule was in force at the event's
	// position: activated before it and not lifted by an activation before it.
	ViolationPositional ViolationKind = "positional"
	// ViolationDecisionInstant (rule 4b): the rule was scheduled, the
	// deciding service knew of it (its change at or before the event's
	// ce-policyposition), the event was decided at or after the instant and
	// no lift had been activated at or before that policy position.
	ViolationDecisionInstant ViolationKind = "decision_instant"
)

// Violation is one accepted transaction of a blocked operation that a rule
// in its scope forbade.
type Violation struct {
	Position       uint64          `json:"position"`
	EventID        string          `json:"event_id"`
	Type           string          `json:"type"`
	Operation      string          `json:"operation"`
	AggregateID    string          `json:"aggregate_id"`
	RuleID         string          `json:"rule_id"`
	Kinds          []ViolationKind `json:"kinds"`
	Decided        time.Time       `json:"decided"`
	Recorded       time.Time       `json:"recorded"`
	PolicyPosition uint64          `json:"policy_position"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s %s at %d breaks rule %s (%v): decided %s under policy position %d, recorded %s",
		v.Type, v.AggregateID, v.Position, v.RuleID, v.Kinds, v.Decided.Format(time.RFC3339Nano),
		v.PolicyPosition, v.Recorded.Format(time.RFC3339Nano))
}

// InFlight is an accepted transaction in a scheduled rule's scope that was
// recorded at or after the rule's instant, but positioned before its
// activation and decided before the instant: not a violation, listed so
// that a regulator sees it.
type InFlight struct {
	Position           uint64    `json:"position"`
	EventID            string    `json:"event_id"`
	Type               string    `json:"type"`
	RuleID             string    `json:"rule_id"`
	Decided            time.Time `json:"decided"`
	Recorded           time.Time `json:"recorded"`
	ScheduledAt        time.Time `json:"scheduled_at"`
	ActivationPosition uint64    `json:"activation_position"`
}

// RuleCount is one rule's record as the log holds it and the transactions
// judged against it.
type RuleCount struct {
	RuleID string `json:"rule_id"`
	Kind   string `json:"kind"` // freeze or floor_price
	// Activation is on_recording or scheduled as stored, or legacy_now /
	// legacy_scheduled for a change stored without the field.
	Activation         string    `json:"activation"`
	ChangePosition     uint64    `json:"change_position"`
	ScheduledAt        time.Time `json:"scheduled_at,omitzero"`
	ActivationPosition uint64    `json:"activation_position,omitempty"`
	LiftPosition       uint64    `json:"lift_position,omitempty"`
	// LiftActivationPosition is the position from which the lift is in
	// force; 0 while it is not (or for a legacy lift scheduled by clock).
	LiftActivationPosition uint64 `json:"lift_activation_position,omitempty"`
	// Accepted counts the accepted transactions the rule matches (scope,
	// operation, price) stored after its change and before its lift's
	// activation: those it could have stopped.
	Accepted int `json:"accepted"`
	// Refused counts the events that record a refusal naming the rule
	// (order.rejected and payment.authorization_failed with its rule_id,
	// and the enforcement.command_refused records of commands it refused).
	Refused    int `json:"refused"`
	Violations int `json:"violations"`
	InFlight   int `json:"in_flight"`
}

// Report is what the judge found in one log.
type Report struct {
	// Messages counts every message read, Events the events among them and
	// Records the store's own records (idempotency records and fences).
	Messages int `json:"messages"`
	Events   int `json:"events"`
	Records  int `json:"records"`
	// LastSeq is the last stream sequence read.
	LastSeq uint64 `json:"last_seq"`
	// Checked counts the transactions of blockable operations judged.
	Checked    int         `json:"checked"`
	Findings   []Finding   `json:"findings"`
	Violations []Violation `json:"violations"`
	InFlight   []InFlight  `json:"in_flight"`
	Rules      []RuleCount `json:"rules"`
}

// OK reports whether the log passed every check: no finding and no
// violation.
func (r *Report) OK() bool { return len(r.Findings) == 0 && len(r.Violations) == 0 }

// Problems returns every finding and violation, one line each.
func (r *Report) Problems() []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.String())
	}
	for _, v := range r.Violations {
		out = append(out, "violation: "+v.String())
	}
	return out
}

// Summary describes the report in a few lines.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "read %d messages to sequence %d: %d events, %d records; %d transactions judged\n",
		r.Messages, r.LastSeq, r.Events, r.Records, r.Checked)
	fmt.Fprintf(&b, "%d findings, %d violations, %d in flight at an instant\n", len(r.Findings), len(r.Violations), len(r.InFlight))
	for _, c := range r.Rules {
		fmt.Fprintf(&b, "rule %s (%s, %s, change at %d", c.RuleID, c.Kind, c.Activation, c.ChangePosition)
		if c.ActivationPosition != 0 {
			fmt.Fprintf(&b, ", activated at %d", c.ActivationPosition)
		}
		if c.LiftPosition != 0 {
			fmt.Fprintf(&b, ", lift at %d", c.LiftPosition)
		}
		fmt.Fprintf(&b, "): accepted %d, refused %d, violations %d, in flight %d\n", c.Accepted, c.Refused, c.Violations, c.InFlight)
	}
	return b.String()
}
