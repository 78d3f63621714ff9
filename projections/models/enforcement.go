package models

import (
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// ModelEnforcement is the name of the enforcement read model.
const ModelEnforcement = "enforcement"

// Refusal is one command a policy rule refused, as its record in the log
// states it (enforcement.command_refused, ADR 0020).
type Refusal struct {
	Position       uint64              `json:"position"`
	RefusalID      string              `json:"refusal_id"`
	Command        contracts.Operation `json:"command"`
	AggregateID    string              `json:"aggregate_id"`
	RuleID         string              `json:"rule_id"`
	RuleKind       contracts.RuleKind  `json:"rule_kind"`
	LegalBasis     string              `json:"legal_basis"`
	Actor          string              `json:"actor"`
	Principal      string              `json:"principal"`
	CorrelationID  string              `json:"correlation_id"`
	PolicyPosition uint64              `json:"policy_position"`
	OccurredAt     time.Time           `json:"occurred_at"`
	RecordedAt     time.Time           `json:"recorded_at"`
}

// Enforcement is the read model of the refusals on record: every command
// a policy rule refused, in log order, so that a regulator's bundle shows
// enforcement beside the violations audit. A refusal the services' limits
// kept off the log is not in it (docs/operations.md, Refusals on record).
//
// Its rows are keyed by refusal id (Keyed): a record's id is unique in the
// log (its aggregate takes one event), and each record touches only its own
// row, whatever came before it (Monotone).
type Enforcement struct {
	state struct {
		Refusals []Refusal `json:"refusals"`
	}
	byID map[string]int // refusal id -> index in state.Refusals
	touched
	monotone
}

// NewEnforcement returns an empty enforcement model.
func NewEnforcement() *Enforcement {
	m := &Enforcement{}
	m.state.Refusals = []Refusal{}
	return m
}

// Name implements Model.
func (m *Enforcement) Name() string { return ModelEnforcement }

// Apply implements Model.
func (m *Enforcement) Apply(e events.Event, payload any) error {
	p, ok := payload.(contracts.CommandRefused)
	if !ok {
		return nil
	}
	if m.byID == nil {
		m.index()
	}
	m.byID[p.RefusalID] = len(m.state.Refusals)
	m.touch(p.RefusalID)
	m.state.Refusals = append(m.state.Refusals, Refusal{Position: e.Position, RefusalID: p.RefusalID, Command: p.Command,
		AggregateID: p.AggregateID, RuleID: p.RuleID, RuleKind: p.RuleKind, LegalBasis: p.LegalBasis, Actor: p.Actor,
		Principal: p.Principal, CorrelationID: e.CorrelationID, PolicyPosition: p.PolicyPosition,
		OccurredAt: utc(e.OccurredAt), RecordedAt: utc(e.RecordedAt)})
	return nil
}

// Snapshot implements Model.
func (m *Enforcement) Snapshot() ([]byte, error) { return canonical(&m.state) }

// Restore implements Model.
func (m *Enforcement) Restore(data []byte) error {
	n := NewEnforcement()
	if err := restore(m.Name(), data, &n.state); err != nil {
		return err
	}
	if n.state.Refusals == nil {
		n.state.Refusals = []Refusal{}
	}
	m.state = n.state
	m.index()
	return nil
}

func (m *Enforcement) index() {
	m.byID = make(map[string]int, len(m.state.Refusals))
	for i, r := range m.state.Refusals {
		m.byID[r.RefusalID] = i
	}
}

// Row implements Keyed: one refusal by its id.
func (m *Enforcement) Row(key string) ([]byte, bool) {
	if m.byID == nil {
		m.index()
	}
	i, ok := m.byID[key]
	if !ok {
		return nil, false
	}
	return row(m.state.Refusals[i], true)
}

// RowKeys implements Keyed.
func (m *Enforcement) RowKeys() []string {
	if m.byID == nil {
		m.index()
	}
	return sortedKeys(m.byID)
}

// Refusals returns the refusals on record, in log order.
func (m *Enforcement) Refusals() []Refusal { return append([]Refusal(nil), m.state.Refusals...) }

// Count returns how many refusals are on record.
func (m *Enforcement) Count() int { return len(m.state.Refusals) }

// Rows implements Model.
func (m *Enforcement) Rows() Table {
	t := Table{Columns: m.Columns()}
	for i := range m.state.Refusals {
		t.Rows = append(t.Rows, refusalRecord(&m.state.Refusals[i]))
	}
	return t
}

// Columns implements Tabular.
func (m *Enforcement) Columns() []string {
	return []string{"position", "refusal_id", "command", "aggregate_id", "rule_id", "rule_kind", "legal_basis",
		"actor", "principal", "correlation_id", "policy_position", "occurred_at", "recorded_at"}
}

// TableRows implements Tabular: every row is one refusal. In key order
// the refusals come by id, not in log order as Rows gives them.
func (m *Enforcement) TableRows(_ string, body []byte) ([][]string, error) {
	var r Refusal
	if err := restore(m.Name(), body, &r); err != nil {
		return nil, err
	}
	return [][]string{refusalRecord(&r)}, nil
}

func refusalRecord(r *Refusal) []string {
	return []string{utoa(r.Position), r.RefusalID, string(r.Command), r.AggregateID, r.RuleID, string(r.RuleKind),
		r.LegalBasis, r.Actor, r.Principal, r.CorrelationID, utoa(r.PolicyPosition), formatTime(r.OccurredAt), formatTime(r.RecordedAt)}
}
