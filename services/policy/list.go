package policy

import (
	"context"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// ListRequest asks for the policy rules as the ledger knew them at AsOf
// (the server's recording time); zero means now.
type ListRequest struct {
	AsOf time.Time `json:"as_of,omitzero"`
}

// Listing is the policy timeline folded up to a position.
type Listing struct {
	// AsOf is the instant asked for (the query time when none was).
	AsOf time.Time `json:"as_of"`
	// Position is the newest log position included (policy or not).
	Position uint64 `json:"position"`
	// Rules are every rule recorded by then, in the order imposed.
	Rules []RuleView `json:"rules"`
}

// RuleView is the JSON view of a rule.
type RuleView struct {
	RuleID            string                `json:"rule_id"`
	Kind              contracts.RuleKind    `json:"kind"`
	Scope             contracts.Scope       `json:"scope"`
	BlockedOperations []contracts.Operation `json:"blocked_operations"`
	Floor             *contracts.Money      `json:"floor,omitempty"`
	Origin            contracts.Origin      `json:"origin,omitempty"`
	// EffectiveAt is the instant the imposing event states: the scheduled
	// instant, or (on recording) the decision instant, for information.
	EffectiveAt time.Time `json:"effective_at"`
	// ScheduledAt is the instant a scheduled rule waits for; absent when
	// the rule took effect on its recording.
	ScheduledAt time.Time `json:"scheduled_at,omitzero"`
	// ActivationPosition is the log position from which the rule is in
	// force; absent until it is activated (or when not known to the answer).
	ActivationPosition uint64    `json:"activation_position,omitempty"`
	LegalBasis         string    `json:"legal_basis"`
	Issuer             string    `json:"issuer"`
	LiftedAt           time.Time `json:"lifted_at,omitzero"`
	// LiftActivationPosition is the log position from which the lift is
	// in force; absent until then.
	LiftActivationPosition uint64 `json:"lift_activation_position,omitempty"`
	// InForce tells whether the rule applies to the next event stored after
	// the answer's position (by position: activated and its lift not).
	InForce bool `json:"in_force"`
}

func viewOf(r contracts.RuleTimeline, next uint64) RuleView {
	return RuleView{RuleID: r.RuleID, Kind: r.Kind, Scope: r.Scope, BlockedOperations: r.BlockedOperations, Floor: r.Floor,
		Origin: r.Origin, EffectiveAt: r.EffectiveAt, ScheduledAt: r.ScheduledAt, ActivationPosition: r.ActivationPosition,
		LegalBasis: r.LegalBasis, Issuer: r.Issuer, LiftedAt: r.LiftedAt, LiftActivationPosition: r.LiftActivationPosition,
		InForce: r.InForceAt(next)}
}

// List folds every policy event recorded at or before asOf (now when zero)
// into the shared timeline (contracts.PolicyTimeline) and reports each rule
// and whether it is in force for an event stored after that position.
func (s *Service) List(ctx context.Context, asOf time.Time) (Listing, error) {
	if asOf.IsZero() {
		asOf = s.runner.Clock()
	}
	to, err := s.store.PositionAt(ctx, asOf)
	if err != nil {
		return Listing{}, err
	}
	return s.ListAt(ctx, to, asOf)
}

// ListAt is List as of a log position, however the caller resolved it (an
// instant on the business or the recorded clock, or a position): every
// policy event stored at or before position to, each rule judged for an
// event stored after it. asOf is reported as the instant asked for.
func (s *Service) ListAt(ctx context.Context, to uint64, asOf time.Time) (Listing, error) {
	out := Listing{AsOf: asOf, Position: to, Rules: []RuleView{}}
	if to == 0 {
		return out, nil
	}
	pt, err := s.timeline(ctx, to)
	if err != nil {
		return Listing{}, err
	}
	for _, r := range pt {
		out.Rules = append(out.Rules, viewOf(r, to+1))
	}
	return out, nil
}

// timeline folds the policy events stored at positions up to to (0: the
// head) into the shared timeline.
func (s *Service) timeline(ctx context.Context, to uint64) (contracts.PolicyTimeline, error) {
	pt, _, err := s.foldTimeline(ctx, nil, 1, to)
	return pt, err
}

// foldTimeline applies the policy events from position from (up to to; 0:
// the head) to pt and returns it with the position of the last event
// applied (from-1 when none).
func (s *Service) foldTimeline(ctx context.Context, pt contracts.PolicyTimeline, from, to uint64) (contracts.PolicyTimeline, uint64, error) {
	last := from - 1
	// Read to the head and stop past to: a filtered read bounded by a
	// position no policy event has might wait for one.
	for e, err := range s.store.Read(ctx, events.Query{From: from, Subjects: []string{contracts.PolicySubject}}) {
		if err != nil {
			return nil, 0, err
		}
		if to != 0 && e.Position > to {
			break
		}
		p, err := contracts.Decode(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			return nil, 0, err
		}
		pt, last = pt.Apply(e.Position, p), e.Position
	}
	return pt, last, nil
}
