package models

import (
	"strings"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// RuleRecord is one policy rule as the log has recorded it so far: the rule,
// and where and when the log learnt of its imposition and lift.
type RuleRecord struct {
	RuleID            string                `json:"rule_id"`
	Kind              contracts.RuleKind    `json:"kind"`
	Scope             contracts.Scope       `json:"scope"`
	BlockedOperations []contracts.Operation `json:"blocked_operations"`
	Floor             *contracts.Money      `json:"floor,omitempty"`
	Origin            contracts.Origin      `json:"origin,omitempty"`
	EffectiveAt       time.Time             `json:"effective_at"`
	LegalBasis        string                `json:"legal_basis"`
	Issuer            string                `json:"issuer"`
	ImposedPosition   uint64                `json:"imposed_position"`
	ImposedRecordedAt time.Time             `json:"imposed_recorded_at"`
	LiftedAt          time.Time             `json:"lifted_at,omitzero"`
	LiftLegalBasis    string                `json:"lift_legal_basis,omitempty"`
	LiftedPosition    uint64                `json:"lifted_position,omitempty"`
	LiftedRecordedAt  time.Time             `json:"lifted_recorded_at,omitzero"`
}

// Rule returns the record as the contracts' Rule, for its InForce and Blocks.
func (r *RuleRecord) Rule() contracts.Rule {
	return contracts.Rule{RuleID: r.RuleID, Kind: r.Kind, Scope: r.Scope, BlockedOperations: r.BlockedOperations,
		Floor: r.Floor, Origin: r.Origin, EffectiveAt: r.EffectiveAt, LegalBasis: r.LegalBasis, Issuer: r.Issuer,
		LiftedAt: r.LiftedAt}
}

// rules is the policy fold that several models embed: each rule by id.
type rules map[string]*RuleRecord

// apply folds a policy event; other events are ignored. It reports whether
// the event imposed a rule (which is what a stale decision can miss).
func (rs rules) apply(e *events.Event, payload any) (imposed *RuleRecord) {
	switch p := payload.(type) {
	case contracts.FreezeImposed:
		r := fromRule(p.Rule(), e)
		rs[p.RuleID] = r
		return r
	case contracts.FloorPriceSet:
		r := fromRule(p.Rule(), e)
		rs[p.RuleID] = r
		return r
	case contracts.FreezeLifted:
		rs.lift(p.RuleID, p.EffectiveAt, p.LegalBasis, e)
	case contracts.FloorPriceLifted:
		rs.lift(p.RuleID, p.EffectiveAt, p.LegalBasis, e)
	}
	return nil
}

func fromRule(r contracts.Rule, e *events.Event) *RuleRecord {
	ops := r.BlockedOperations
	if ops == nil {
		ops = []contracts.Operation{}
	}
	return &RuleRecord{RuleID: r.RuleID, Kind: r.Kind, Scope: r.Scope, BlockedOperations: ops, Floor: r.Floor,
		Origin: r.Origin, EffectiveAt: utc(r.EffectiveAt), LegalBasis: r.LegalBasis, Issuer: r.Issuer,
		ImposedPosition: e.Position, ImposedRecordedAt: utc(e.RecordedAt)}
}

func (rs rules) lift(id string, at time.Time, basis string, e *events.Event) {
	r, ok := rs[id]
	if !ok {
		return // a lift of an unknown rule lifts nothing; the policy decider refuses it anyway
	}
	r.LiftedAt, r.LiftLegalBasis, r.LiftedPosition, r.LiftedRecordedAt = utc(at), basis, e.Position, utc(e.RecordedAt)
}

// blocking returns the first rule, by id, that blocks op on target at unit
// price at instant at, or nil.
func (rs rules) blocking(op contracts.Operation, t contracts.Target, price contracts.Money, at time.Time, kind contracts.RuleKind) *RuleRecord {
	var found *RuleRecord
	for _, r := range rs {
		if kind != "" && r.Kind != kind {
			continue
		}
		if r.Rule().Blocks(op, t, price, at) && (found == nil || r.RuleID < found.RuleID) {
			found = r
		}
	}
	return found
}

// PolicyTimeline is the read model of every policy rule: what it blocks,
// where, from when to when, on what legal basis, and where in the log it was
// recorded.
type PolicyTimeline struct {
	state struct {
		Rules rules `json:"rules"`
	}
	touched
	monotone
}

// NewPolicyTimeline returns an empty policy timeline.
func NewPolicyTimeline() *PolicyTimeline {
	m := &PolicyTimeline{}
	m.state.Rules = rules{}
	return m
}

// Name implements Model.
func (m *PolicyTimeline) Name() string { return ModelPolicy }

// Apply implements Model.
func (m *PolicyTimeline) Apply(e events.Event, payload any) error {
	m.state.Rules.apply(&e, payload)
	if id := ruleID(payload); id != "" {
		m.touch(id)
	}
	return nil
}

// Snapshot implements Model.
func (m *PolicyTimeline) Snapshot() ([]byte, error) { return canonical(&m.state) }

// Restore implements Model.
func (m *PolicyTimeline) Restore(data []byte) error {
	n := NewPolicyTimeline()
	if err := restore(m.Name(), data, &n.state); err != nil {
		return err
	}
	if n.state.Rules == nil {
		n.state.Rules = rules{}
	}
	m.state = n.state
	return nil
}

// Rules returns the rules by id (the model's own records: do not modify).
func (m *PolicyTimeline) Rules() map[string]*RuleRecord { return m.state.Rules }

// Rows implements Model.
func (m *PolicyTimeline) Rows() Table {
	t := Table{Columns: m.Columns()}
	for _, id := range sortedKeys(m.state.Rules) {
		t.Rows = append(t.Rows, ruleRecord(m.state.Rules[id]))
	}
	return t
}

// Columns implements Tabular.
func (m *PolicyTimeline) Columns() []string {
	return []string{"rule_id", "kind", "scope_all", "jurisdictions", "channels", "categories", "sellers",
		"blocked_operations", "floor", "origin", "effective_at", "lifted_at", "legal_basis", "issuer",
		"imposed_position", "imposed_recorded_at", "lifted_position", "lifted_recorded_at"}
}

// TableRows implements Tabular: every row is one rule.
func (m *PolicyTimeline) TableRows(_ string, body []byte) ([][]string, error) {
	var r RuleRecord
	if err := restore(m.Name(), body, &r); err != nil {
		return nil, err
	}
	return [][]string{ruleRecord(&r)}, nil
}

func ruleRecord(r *RuleRecord) []string {
	floor := ""
	if r.Floor != nil {
		floor = r.Floor.String()
	}
	chans := make([]string, len(r.Scope.Channels))
	for i, c := range r.Scope.Channels {
		chans[i] = string(c)
	}
	ops := make([]string, len(r.BlockedOperations))
	for i, o := range r.BlockedOperations {
		ops[i] = string(o)
	}
	return []string{r.RuleID, string(r.Kind), btoa(r.Scope.All),
		strings.Join(r.Scope.Jurisdictions, " "), strings.Join(chans, " "), strings.Join(r.Scope.Categories, " "),
		strings.Join(r.Scope.Sellers, " "), strings.Join(ops, " "), floor, string(r.Origin),
		formatTime(r.EffectiveAt), formatTime(r.LiftedAt), r.LegalBasis, r.Issuer,
		utoa(r.ImposedPosition), formatTime(r.ImposedRecordedAt), utoa(r.LiftedPosition), formatTime(r.LiftedRecordedAt)}
}

// Row implements Keyed: one rule by id.
func (m *PolicyTimeline) Row(key string) ([]byte, bool) {
	r, ok := m.state.Rules[key]
	return row(r, ok)
}

// RowKeys implements Keyed.
func (m *PolicyTimeline) RowKeys() []string { return sortedKeys(m.state.Rules) }

// ruleID returns the rule a policy event is about ("" for other events).
func ruleID(payload any) string {
	switch p := payload.(type) {
	case contracts.FreezeImposed:
		return p.RuleID
	case contracts.FloorPriceSet:
		return p.RuleID
	case contracts.FreezeLifted:
		return p.RuleID
	case contracts.FloorPriceLifted:
		return p.RuleID
	}
	return ""
}
