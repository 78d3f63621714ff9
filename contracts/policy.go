package contracts

import (
	"slices"
	"time"
)

// Policy events. The aggregate is one rule; its id is rule_id. A rule is
// imposed once and lifted at most once.

// Scope says which trade a rule applies to. Each list narrows the scope; an
// empty list means "every value". A freeze must name at least one list or set
// All, so that freezing the whole marketplace is always explicit.
type Scope struct {
	All           bool      `json:"all,omitempty" doc:"explicitly everything; required for a freeze with no list"`
	Jurisdictions []string  `json:"jurisdictions,omitempty" schema:"country,maxItems=300,unique" doc:"ISO 3166-1 alpha-2 jurisdictions; empty means all"`
	Channels      []Channel `json:"channels,omitempty" schema:"maxItems=2,unique" doc:"sales channels; empty means all"`
	Categories    []string  `json:"categories,omitempty" schema:"slug,maxItems=1000,unique" doc:"categories; empty means all"`
	Sellers       []string  `json:"sellers,omitempty" schema:"id,maxItems=10000,unique" doc:"seller ids; empty means all"`
}

// Target is the trade a service asks a rule about.
type Target struct {
	Jurisdiction string
	Channel      Channel
	Category     string
	SellerID     string
	Origin       Origin
}

// Covers reports whether the scope includes the target: every non-empty list
// contains the target's value.
func (s Scope) Covers(t Target) bool {
	return coversOne(s.Jurisdictions, t.Jurisdiction) && coversOne(s.Channels, t.Channel) &&
		coversOne(s.Categories, t.Category) && coversOne(s.Sellers, t.SellerID)
}

// IsEmpty reports whether no list is set (All aside).
func (s Scope) IsEmpty() bool {
	return len(s.Jurisdictions) == 0 && len(s.Channels) == 0 && len(s.Categories) == 0 && len(s.Sellers) == 0
}

func coversOne[T comparable](list []T, v T) bool {
	return len(list) == 0 || slices.Contains(list, v)
}

// FreezeImposed records a freeze: from EffectiveAt, the blocked operations
// in scope are refused by every service.
type FreezeImposed struct {
	RuleID            string      `json:"rule_id" schema:"id" doc:"the rule (aggregate id)"`
	Scope             Scope       `json:"scope" doc:"the trade the freeze applies to"`
	BlockedOperations []Operation `json:"blocked_operations" schema:"minItems=1,maxItems=5,unique" doc:"operations refused in scope"`
	EffectiveAt       time.Time   `json:"effective_at" doc:"RFC 3339 instant from which the freeze applies when scheduled; the decision instant, for information only, when activation is on_recording"`
	Activation        Activation  `json:"activation,omitempty" doc:"on_recording: in force from this event's position; scheduled: from its policy.rule_activated at effective_at; absent (older events): scheduled"`
	LegalBasis        string      `json:"legal_basis" schema:"text=500" doc:"the law or order that requires it, e.g. Permendag 31/2023"`
	Issuer            string      `json:"issuer" schema:"text=200" doc:"who imposed it (holder of the policy role)"`
	Description       string      `json:"description,omitempty" schema:"text=2000" doc:"free text for operators and regulators"`
}

// FreezeLifted records the end of a freeze from EffectiveAt.
type FreezeLifted struct {
	RuleID      string     `json:"rule_id" schema:"id" doc:"the freeze lifted (aggregate id)"`
	EffectiveAt time.Time  `json:"effective_at" doc:"RFC 3339 instant from which trade is allowed again when scheduled; the decision instant, for information only, when activation is on_recording"`
	Activation  Activation `json:"activation,omitempty" doc:"on_recording: effective from this event's position; scheduled: from its policy.rule_activated at effective_at; absent (older events): scheduled"`
	LegalBasis  string     `json:"legal_basis" schema:"text=500" doc:"the law or order that allows it"`
	Issuer      string     `json:"issuer" schema:"text=200" doc:"who lifted it (holder of the policy role)"`
}

// FloorPriceSet records a minimum unit price: from EffectiveAt, the blocked
// operations in scope are refused for goods priced below Amount (in
// Amount's currency; other currencies are not comparable and are refused).
type FloorPriceSet struct {
	RuleID            string      `json:"rule_id" schema:"id" doc:"the rule (aggregate id)"`
	Scope             Scope       `json:"scope" doc:"the trade the floor applies to"`
	BlockedOperations []Operation `json:"blocked_operations" schema:"minItems=1,maxItems=5,unique" doc:"operations refused below the floor"`
	Amount            Money       `json:"amount" doc:"the minimum unit price"`
	Origin            Origin      `json:"origin,omitempty" doc:"origin of goods the floor applies to; empty means all"`
	EffectiveAt       time.Time   `json:"effective_at" doc:"RFC 3339 instant from which the floor applies when scheduled; the decision instant, for information only, when activation is on_recording"`
	Activation        Activation  `json:"activation,omitempty" doc:"on_recording: in force from this event's position; scheduled: from its policy.rule_activated at effective_at; absent (older events): scheduled"`
	LegalBasis        string      `json:"legal_basis" schema:"text=500" doc:"the law or order that requires it"`
	Issuer            string      `json:"issuer" schema:"text=200" doc:"who set it (holder of the policy role)"`
	Description       string      `json:"description,omitempty" schema:"text=2000" doc:"free text for operators and regulators"`
}

// FloorPriceLifted records the end of a floor price from EffectiveAt.
type FloorPriceLifted struct {
	RuleID      string     `json:"rule_id" schema:"id" doc:"the floor lifted (aggregate id)"`
	EffectiveAt time.Time  `json:"effective_at" doc:"RFC 3339 instant from which the floor no longer applies when scheduled; the decision instant, for information only, when activation is on_recording"`
	Activation  Activation `json:"activation,omitempty" doc:"on_recording: effective from this event's position; scheduled: from its policy.rule_activated at effective_at; absent (older events): scheduled"`
	LegalBasis  string     `json:"legal_basis" schema:"text=500" doc:"the law or order that allows it"`
	Issuer      string     `json:"issuer" schema:"text=200" doc:"who lifted it (holder of the policy role)"`
}

// Rule is the read view of a policy rule, as deciders and projections keep
// it after folding the policy events.
type Rule struct {
	RuleID            string
	Kind              RuleKind
	Scope             Scope
	BlockedOperations []Operation
	Floor             *Money // floor_price only
	Origin            Origin // floor_price only; empty means all
	EffectiveAt       time.Time
	LegalBasis        string
	Issuer            string
	// LiftedAt is the effective instant of the lift; zero while in force.
	LiftedAt time.Time
}

// Rule returns the freeze as a Rule.
func (e FreezeImposed) Rule() Rule {
	return Rule{RuleID: e.RuleID, Kind: RuleFreeze, Scope: e.Scope, BlockedOperations: e.BlockedOperations,
		EffectiveAt: e.EffectiveAt, LegalBasis: e.LegalBasis, Issuer: e.Issuer}
}

// Rule returns the floor price as a Rule.
func (e FloorPriceSet) Rule() Rule {
	amount := e.Amount
	return Rule{RuleID: e.RuleID, Kind: RuleFloorPrice, Scope: e.Scope, BlockedOperations: e.BlockedOperations,
		Floor: &amount, Origin: e.Origin, EffectiveAt: e.EffectiveAt, LegalBasis: e.LegalBasis, Issuer: e.Issuer}
}

// InForce reports whether the rule applies at instant t: at or after its
// effective instant and before its lift's.
func (r Rule) InForce(t time.Time) bool {
	return !t.Before(r.EffectiveAt) && (r.LiftedAt.IsZero() || t.Before(r.LiftedAt))
}

// Blocks reports whether the rule, in force at instant at by its stated
// instants, refuses op on target at the given unit price. It reads the
// instants the events state, for displays that ask "as of an instant";
// enforcement reads positions (RuleTimeline.Enforced and Matches).
func (r Rule) Blocks(op Operation, t Target, unitPrice Money, at time.Time) bool {
	return r.InForce(at) && r.Matches(op, t, unitPrice)
}

// Policy commands.

// ImposeFreeze asks the policy service to impose a freeze.
type ImposeFreeze struct {
	RuleID            string      `json:"rule_id" schema:"id" doc:"the new rule's id, chosen by the caller"`
	Scope             Scope       `json:"scope" doc:"the trade to freeze; at least one list or all: true"`
	BlockedOperations []Operation `json:"blocked_operations,omitempty" schema:"maxItems=5,unique" doc:"operations to refuse; order.place, payment.authorize and payment.capture when absent"`
	EffectiveAt       time.Time   `json:"effective_at,omitzero" doc:"RFC 3339 instant from which it applies; the decision time when absent"`
	LegalBasis        string      `json:"legal_basis" schema:"text=500" doc:"the law or order that requires it"`
	Issuer            string      `json:"issuer" schema:"text=200" doc:"who imposes it (must hold the policy role)"`
	Description       string      `json:"description,omitempty" schema:"text=2000" doc:"free text for operators and regulators"`
	IdempotencyKey    string      `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// LiftFreeze asks the policy service to lift a freeze.
type LiftFreeze struct {
	RuleID         string    `json:"rule_id" schema:"id" doc:"the freeze to lift"`
	EffectiveAt    time.Time `json:"effective_at,omitzero" doc:"RFC 3339 instant from which trade is allowed again; the decision time when absent"`
	LegalBasis     string    `json:"legal_basis" schema:"text=500" doc:"the law or order that allows it"`
	Issuer         string    `json:"issuer" schema:"text=200" doc:"who lifts it (must hold the policy role)"`
	IdempotencyKey string    `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// SetFloorPrice asks the policy service to set a floor price.
type SetFloorPrice struct {
	RuleID            string      `json:"rule_id" schema:"id" doc:"the new rule's id, chosen by the caller"`
	Scope             Scope       `json:"scope" doc:"the trade the floor applies to; empty lists mean all"`
	BlockedOperations []Operation `json:"blocked_operations,omitempty" schema:"maxItems=5,unique" doc:"operations to refuse below the floor; listing.create, listing.change_price and order.place when absent"`
	Amount            Money       `json:"amount" doc:"the minimum unit price"`
	Origin            Origin      `json:"origin,omitempty" doc:"origin of goods the floor applies to; empty means all"`
	EffectiveAt       time.Time   `json:"effective_at,omitzero" doc:"RFC 3339 instant from which it applies; the decision time when absent"`
	LegalBasis        string      `json:"legal_basis" schema:"text=500" doc:"the law or order that requires it"`
	Issuer            string      `json:"issuer" schema:"text=200" doc:"who sets it (must hold the policy role)"`
	Description       string      `json:"description,omitempty" schema:"text=2000" doc:"free text for operators and regulators"`
	IdempotencyKey    string      `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// FloorPriceOperations are what a floor price blocks when its command names
// none: listing below the floor and ordering below it.
var FloorPriceOperations = []Operation{OpListingCreate, OpListingChangePrice, OpOrderPlace}

// LiftFloorPrice asks the policy service to lift a floor price.
type LiftFloorPrice struct {
	RuleID         string    `json:"rule_id" schema:"id" doc:"the floor to lift"`
	EffectiveAt    time.Time `json:"effective_at,omitzero" doc:"RFC 3339 instant from which the floor no longer applies; the decision time when absent"`
	LegalBasis     string    `json:"legal_basis" schema:"text=500" doc:"the law or order that allows it"`
	Issuer         string    `json:"issuer" schema:"text=200" doc:"who lifts it (must hold the policy role)"`
	IdempotencyKey string    `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// EffectiveTolerance is how far before the policy service's decision clock
// an effective instant may be stated ("now" as typed by an issuer a moment
// ago). Nothing earlier is accepted.
const EffectiveTolerance = 5 * time.Second
