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
	EffectiveAt       time.Time             `json:"effective_at"`
	LegalBasis        string                `json:"legal_basis"`
	Issuer            string                `json:"issuer"`
	LiftedAt          time.Time             `json:"lifted_at,omitzero"`
	// InForce tells whether the rule applies at the listing's AsOf.
	InForce bool `json:"in_force"`
}

func viewOf(r contracts.Rule, at time.Time) RuleView {
	return RuleView{RuleID: r.RuleID, Kind: r.Kind, Scope: r.Scope, BlockedOperations: r.BlockedOperations, Floor: r.Floor,
		Origin: r.Origin, EffectiveAt: r.EffectiveAt, LegalBasis: r.LegalBasis, Issuer: r.Issuer, LiftedAt: r.LiftedAt,
		InForce: !at.IsZero() && r.InForce(at)}
}

// List folds every policy event recorded at or before asOf (now when zero)
// with the same Evolve the decider uses, and reports each rule and whether
// it is in force at asOf.
func (s *Service) List(ctx context.Context, asOf time.Time) (Listing, error) {
	if asOf.IsZero() {
		asOf = s.runner.Clock()
	}
	to, err := s.store.PositionAt(ctx, asOf)
	if err != nil {
		return Listing{}, err
	}
	out := Listing{AsOf: asOf, Position: to, Rules: []RuleView{}}
	if to == 0 {
		return out, nil
	}
	states := map[string]State{}
	var order []string
	// Read to the head and stop past to: a filtered read bounded by a
	// position no policy event has might wait for one.
	for e, err := range s.store.Read(ctx, events.Query{Subjects: []string{events.FenceSubject}}) {
		if err != nil {
			return Listing{}, err
		}
		if e.Position > to {
			break
		}
		p, err := contracts.Decode(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			return Listing{}, err
		}
		st, seen := states[e.AggregateID]
		if !seen {
			st, order = Initial(e.AggregateID), append(order, e.AggregateID)
		}
		states[e.AggregateID] = Evolve(st, p)
	}
	for _, id := range order {
		out.Rules = append(out.Rules, viewOf(states[id].Rule, asOf))
	}
	return out, nil
}
