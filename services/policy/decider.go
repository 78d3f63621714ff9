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
// it was recorded. An instant inside the tolerance, or absent, makes the
// change take effect on its recording (activation "on_recording").
const EffectiveTolerance = contracts.EffectiveTolerance

// State is one rule folded from its events.
type State struct {
	ID string
	// Rule is the rule's read view; Rule.Kind is empty until it is imposed.
	Rule contracts.Rule
	// Lifted is true once the rule was lifted (Rule.LiftedAt holds the
	// lift's stated instant).
	Lifted bool
	// ScheduledAt is the instant the rule was scheduled for; zero when it
	// took effect on its recording.
	ScheduledAt time.Time
	// Activated is true once the rule took effect: on its recording, or
	// by its policy.rule_activated.
	Activated bool
	// LiftScheduledAt is the instant the lift was scheduled for; zero when
	// it took effect on its recording.
	LiftScheduledAt time.Time
	// LiftActivated is true once the lift took effect.
	LiftActivated bool
}

// Exists reports whether the rule was imposed.
func (s State) Exists() bool { return s.Rule.Kind != "" }

// InForce reports whether the rule is in force for the next event stored:
// activated, and its lift not.
func (s State) InForce() bool { return s.Activated && !s.LiftActivated }

// Initial is the state of a rule with no events.
func Initial(id string) State { return State{ID: id} }

// Evolve applies one policy event to the rule. A change without an
// activation field (written before activations existed) is scheduled.
func Evolve(s State, payload any) State {
	switch e := payload.(type) {
	case contracts.FreezeImposed:
		s.Rule = e.Rule()
		s.impose(e.Activation, e.EffectiveAt)
	case contracts.FloorPriceSet:
		s.Rule = e.Rule()
		s.impose(e.Activation, e.EffectiveAt)
	case contracts.FreezeLifted:
		s.lift(e.Activation, e.EffectiveAt)
	case contracts.FloorPriceLifted:
		s.lift(e.Activation, e.EffectiveAt)
	case contracts.RuleActivated:
		switch e.Activates {
		case contracts.ChangeFreezeImposed, contracts.ChangeFloorPriceSet:
			s.Activated = true
		case contracts.ChangeFreezeLifted, contracts.ChangeFloorPriceLifted:
			s.LiftActivated = true
		}
	}
	return s
}

func (s *State) impose(a contracts.Activation, at time.Time) {
	if a == contracts.ActivationOnRecording {
		s.Activated = true
	} else {
		s.ScheduledAt = at
	}
}

func (s *State) lift(a contracts.Activation, at time.Time) {
	s.Rule.LiftedAt, s.Lifted = at, true
	if a == contracts.ActivationOnRecording {
		s.LiftActivated = true
	} else {
		s.LiftScheduledAt = at
	}
}

// ActivateDue asks the policy service to activate whatever of the rule is
// scheduled at or before the decision instant and not yet activated. It is
// the activator's command, never a client's: it carries no choice, only
// the clock's.
type ActivateDue struct {
	RuleID string `json:"rule_id"`
}

// Inputs is what a policy decision needs besides the rule's own state:
// nothing. It exists so that the policy decider has the shape of every
// other (Decide(state, command, inputs, now)).
type Inputs struct{}

// Decide returns the events cmd produces on s at the decision instant now,
// or an error naming the field and rule it breaks. cmd is one of the
// contracts policy commands (a value, not a pointer). The issuer's role is
// checked by the handler before, because it needs an Authorizer.
func Decide(s State, cmd any, _ Inputs, now time.Time) ([]any, error) {
	switch c := cmd.(type) {
	case contracts.ImposeFreeze:
		return decideImposeFreeze(s, c, now)
	case contracts.LiftFreeze:
		return decideLift(s, "policy.lift_freeze", contracts.RuleFreeze, c.EffectiveAt, c.LegalBasis, c.Issuer, now)
	case contracts.SetFloorPrice:
		return decideSetFloorPrice(s, c, now)
	case contracts.LiftFloorPrice:
		return decideLift(s, "policy.lift_floor_price", contracts.RuleFloorPrice, c.EffectiveAt, c.LegalBasis, c.Issuer, now)
	case ActivateDue:
		return decideActivate(s, now)
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
		Activation: activation(c.EffectiveAt, now), LegalBasis: c.LegalBasis, Issuer: c.Issuer, Description: c.Description}}, nil
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
		EffectiveAt: eff, Activation: activation(c.EffectiveAt, now), LegalBasis: c.LegalBasis, Issuer: c.Issuer, Description: c.Description}}, nil
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
		return []any{contracts.FreezeLifted{RuleID: s.ID, EffectiveAt: eff, Activation: activation(at, now), LegalBasis: basis, Issuer: issuer}}, nil
	}
	return []any{contracts.FloorPriceLifted{RuleID: s.ID, EffectiveAt: eff, Activation: activation(at, now), LegalBasis: basis, Issuer: issuer}}, nil
}

// activation says how a change asked for at (zero: now) takes effect: a
// change not after the decision instant takes effect on its recording,
// since no instant before the recording can be enforced; a later one is
// scheduled and waits for its policy.rule_activated.
func activation(at, now time.Time) contracts.Activation {
	if at.IsZero() || !at.After(now) {
		return contracts.ActivationOnRecording
	}
	return contracts.ActivationScheduled
}

// decideActivate returns the activations due at now and not yet stored:
// the rule's own, then its lift's. A rule whose lift took effect before it
// did is never activated. Nothing due decides nothing.
func decideActivate(s State, now time.Time) ([]any, error) {
	if !s.Exists() {
		return nil, &events.Error{Op: "policy.activate", Kind: events.KindNotFound, Field: "/rule_id", Rule: fmt.Sprintf("no rule %q", s.ID)}
	}
	var out []any
	imposed, lifted := contracts.ChangeFreezeImposed, contracts.ChangeFreezeLifted
	if s.Rule.Kind == contracts.RuleFloorPrice {
		imposed, lifted = contracts.ChangeFloorPriceSet, contracts.ChangeFloorPriceLifted
	}
	if !s.Activated && !s.LiftActivated && !s.ScheduledAt.IsZero() && !now.Before(s.ScheduledAt) {
		out = append(out, contracts.RuleActivated{RuleID: s.ID, Activates: imposed, ScheduledAt: s.ScheduledAt})
	}
	if s.Lifted && !s.LiftActivated && !s.LiftScheduledAt.IsZero() && !now.Before(s.LiftScheduledAt) {
		out = append(out, contracts.RuleActivated{RuleID: s.ID, Activates: lifted, ScheduledAt: s.LiftScheduledAt})
	}
	return out, nil
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
