package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// EffectiveTolerance is how far before the decision instant a requested
// effective instant may lie (contracts.EffectiveTolerance): clocks differ by
// a little, and an operator typing "now" takes a moment. Anything earlier
// is refused, because a rule must never reach back to trade decided before
// it was recorded. An instant inside the tolerance is recorded as asked;
// contracts.InForceFrom makes it take effect at its recording.
const EffectiveTolerance = contracts.EffectiveTolerance

// State is one rule folded from its events.
type State struct {
	ID string
	// Rule is the rule's read view; Rule.Kind is empty until it is imposed.
	Rule contracts.Rule
	// Lifted is true once the rule was lifted (Rule.LiftedAt holds the
	// lift's effective instant).
	Lifted bool
}

// Exists reports whether the rule was imposed.
func (s State) Exists() bool { return s.Rule.Kind != "" }

// Initial is the state of a rule with no events.
func Initial(id string) State { return State{ID: id} }

// Evolve applies one policy event to the rule.
func Evolve(s State, payload any) State {
	switch e := payload.(type) {
	case contracts.FreezeImposed:
		s.Rule = e.Rule()
	case contracts.FloorPriceSet:
		s.Rule = e.Rule()
	case contracts.FreezeLifted:
		s.Rule.LiftedAt, s.Lifted = e.EffectiveAt, true
	case contracts.FloorPriceLifted:
		s.Rule.LiftedAt, s.Lifted = e.EffectiveAt, true
	}
	return s
}

// Decide returns the events cmd produces on s at the decision instant now,
// or an error naming the field and rule it breaks. cmd is one of the
// contracts policy commands (a value, not a pointer). The issuer's role is
// checked by the handler before, because it needs an Authorizer.
func Decide(s State, cmd any, now time.Time) ([]any, error) {
	switch c := cmd.(type) {
	case contracts.ImposeFreeze:
		return decideImposeFreeze(s, c, now)
	case contracts.LiftFreeze:
		return decideLift(s, "policy.lift_freeze", contracts.RuleFreeze, c.EffectiveAt, c.LegalBasis, c.Issuer, now)
	case contracts.SetFloorPrice:
		return decideSetFloorPrice(s, c, now)
	case contracts.LiftFloorPrice:
		return decideLift(s, "policy.lift_floor_price", contracts.RuleFloorPrice, c.EffectiveAt, c.LegalBasis, c.Issuer, now)
	}
	return nil, &events.Error{Op: "policy.Decide", Kind: events.KindInvalid, Rule: fmt.Sprintf("%T is not a policy command", cmd)}
}

func decideImposeFreeze(s State, c contracts.ImposeFreeze, now time.Time) ([]any, error) {
	const op = "policy.impose_freeze"
	if s.Exists() {
		return nil, exists(op, s)
	}
	if !c.Scope.All && c.Scope.IsEmpty() {
		return nil, invalid(op, "/scope", "a freeze names at least one of jurisdictions, channels, categories, sellers, or sets all: true")
	}
	ops, eff, err := common(op, c.Scope, c.BlockedOperations, contracts.FreezeOperations, c.EffectiveAt, c.LegalBasis, c.Issuer, now)
	if err != nil {
		return nil, err
	}
	return []any{contracts.FreezeImposed{RuleID: s.ID, Scope: c.Scope, BlockedOperations: ops, EffectiveAt: eff,
		LegalBasis: c.LegalBasis, Issuer: c.Issuer, Description: c.Description}}, nil
}

func decideSetFloorPrice(s State, c contracts.SetFloorPrice, now time.Time) ([]any, error) {
	const op = "policy.set_floor_price"
	if s.Exists() {
		return nil, exists(op, s)
	}
	if err := c.Amount.Validate(); err != nil {
		if e, ok := err.(*events.Error); ok {
			return nil, invalid(op, "/amount"+e.Field, e.Rule)
		}
		return nil, err
	}
	if c.Origin != "" && !c.Origin.Valid() {
		return nil, invalid(op, "/origin", "enum [domestic cross_border]")
	}
	ops, eff, err := common(op, c.Scope, c.BlockedOperations, contracts.FloorPriceOperations, c.EffectiveAt, c.LegalBasis, c.Issuer, now)
	if err != nil {
		return nil, err
	}
	return []any{contracts.FloorPriceSet{RuleID: s.ID, Scope: c.Scope, BlockedOperations: ops, Amount: c.Amount, Origin: c.Origin,
		EffectiveAt: eff, LegalBasis: c.LegalBasis, Issuer: c.Issuer, Description: c.Description}}, nil
}

// decideLift ends an imposed, not yet lifted rule of kind. Lifting a
// scheduled rule before its instant cancels it: it is then never in force.
func decideLift(s State, op string, kind contracts.RuleKind, at time.Time, basis, issuer string, now time.Time) ([]any, error) {
	if s.Rule.Kind != kind {
		return nil, &events.Error{Op: op, Kind: events.KindNotFound, Field: "/rule_id", Rule: fmt.Sprintf("no %s rule %q", kind, s.ID)}
	}
	if s.Lifted {
		return nil, &events.Error{Op: op, Kind: events.KindConflict, Field: "/rule_id",
			Rule: fmt.Sprintf("rule %s was lifted from %s", s.ID, s.Rule.LiftedAt.UTC().Format(time.RFC3339))}
	}
	eff, err := effective(op, at, now)
	if err != nil {
		return nil, err
	}
	if err := basisAndIssuer(op, basis, issuer); err != nil {
		return nil, err
	}
	if kind == contracts.RuleFreeze {
		return []any{contracts.FreezeLifted{RuleID: s.ID, EffectiveAt: eff, LegalBasis: basis, Issuer: issuer}}, nil
	}
	return []any{contracts.FloorPriceLifted{RuleID: s.ID, EffectiveAt: eff, LegalBasis: basis, Issuer: issuer}}, nil
}

// common checks what every new rule has: scope values, blocked operations
// (defaulted when absent), effective instant, legal basis and issuer.
func common(op string, sc contracts.Scope, ops, defaults []contracts.Operation, at time.Time, basis, issuer string,
	now time.Time) ([]contracts.Operation, time.Time, error) {
	if err := checkScope(op, sc); err != nil {
		return nil, time.Time{}, err
	}
	if len(ops) == 0 {
		ops = slices.Clone(defaults)
	}
	for i, o := range ops {
		if !o.Valid() {
			return nil, time.Time{}, invalid(op, "/blocked_operations/"+strconv.Itoa(i), fmt.Sprintf("unknown operation %q; one of %v", o, contracts.Operations))
		}
		if slices.Contains(ops[:i], o) {
			return nil, time.Time{}, invalid(op, "/blocked_operations/"+strconv.Itoa(i), "uniqueItems")
		}
	}
	eff, err := effective(op, at, now)
	if err != nil {
		return nil, time.Time{}, err
	}
	return ops, eff, basisAndIssuer(op, basis, issuer)
}

func checkScope(op string, sc contracts.Scope) error {
	if sc.All && !sc.IsEmpty() {
		return invalid(op, "/scope/all", "all: true excludes jurisdictions, channels, categories and sellers")
	}
	for i, j := range sc.Jurisdictions {
		if !contracts.IsCountry(j) {
			return invalid(op, "/scope/jurisdictions/"+strconv.Itoa(i), fmt.Sprintf("unknown ISO 3166-1 alpha-2 code %q", j))
		}
	}
	for i, c := range sc.Channels {
		if !c.Valid() {
			return invalid(op, "/scope/channels/"+strconv.Itoa(i), "enum [marketplace social_commerce]")
		}
	}
	return nil
}

// effective resolves the requested effective instant: absent means now;
// more than EffectiveTolerance in the past is refused.
func effective(op string, at, now time.Time) (time.Time, error) {
	switch {
	case at.IsZero():
		return now, nil
	case at.Before(now.Add(-EffectiveTolerance)):
		return time.Time{}, invalid(op, "/effective_at", fmt.Sprintf("not earlier than the decision instant %s minus %s",
			now.UTC().Format(time.RFC3339), EffectiveTolerance))
	}
	return at, nil
}

func basisAndIssuer(op, basis, issuer string) error {
	if strings.TrimSpace(basis) == "" {
		return invalid(op, "/legal_basis", "required, not blank")
	}
	if strings.TrimSpace(issuer) == "" {
		return invalid(op, "/issuer", "required, not blank")
	}
	return nil
}

func invalid(op, field, rule string) error {
	return &events.Error{Op: op, Kind: events.KindInvalid, Field: field, Rule: rule}
}

func exists(op string, s State) error {
	return &events.Error{Op: op, Kind: events.KindConflict, Field: "/rule_id", Rule: fmt.Sprintf("rule %s exists (%s)", s.ID, s.Rule.Kind)}
}
