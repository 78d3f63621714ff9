package projections

import (
	"slices"
	"strings"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// The ways an accepted transaction can break a rule.
const (
	// ViolationBusinessTime: the event's occurred-at is at or after the
	// rule's effective instant while the rule was in force.
	ViolationBusinessTime = "business_time"
	// ViolationRecordedTime: the server stored the event at or after the
	// rule's effective instant while the rule was in force, and the event's
	// business clock was live (see LiveClockSkew).
	ViolationRecordedTime = "recorded_time"
	// ViolationStalePolicy: the event was decided under a policy position
	// older than a rule-imposing policy event stored before it that covers
	// it: the decision ignored a rule the log already held.
	ViolationStalePolicy = "stale_policy"
)

// Violation is one accepted transaction event that a rule blocks.
type Violation struct {
	Position       uint64              `json:"position"`
	EventID        string              `json:"event_id"`
	Type           string              `json:"type"`
	Operation      contracts.Operation `json:"operation"`
	AggregateID    string              `json:"aggregate_id"`
	RuleID         string              `json:"rule_id"`
	LegalBasis     string              `json:"legal_basis"`
	Kinds          []string            `json:"kinds"`
	OccurredAt     time.Time           `json:"occurred_at"`
	RecordedAt     time.Time           `json:"recorded_at"`
	PolicyPosition uint64              `json:"policy_position"`
}

// LiveClockSkew is how far an event's occurred-at may be from its recorded
// time for the event to count as stamped by a live clock. Only such events
// are judged on the server's clock too: a simulated or imported history
// (the 2023 day replayed today) is recorded long after its business time,
// and judging it by the server clock would call every trade after the
// rule's effective instant a violation. An event stamped a little early to
// slip under a deadline is within the skew and is caught.
const LiveClockSkew = 5 * time.Minute

// trade is what the audit remembers of an order or payment to judge the
// events that do not carry their own scope.
type trade struct {
	Target    contracts.Target `json:"target"`
	UnitPrice contracts.Money  `json:"unit_price"`
}

// Violations is the policy audit. It checks every transaction event
// (order.placed, payment.authorized, payment.captured) against the policy
// timeline as the log held it before the event, and records every rule the
// event breaks (see the Violation* kinds). Rules recorded after an event
// never make it a violation: no service could have known them.
//
// Zero violations over the whole log is what the freeze guarantee promises;
// the regulator bundle reports the count.
type Violations struct {
	state struct {
		Violations []Violation       `json:"violations"`
		Rules      rules             `json:"rules"`
		Orders     map[string]trade  `json:"orders"`
		Payments   map[string]string `json:"payments"` // payment -> order
		Checked    int64             `json:"checked"`
	}
}

// NewViolations returns an empty audit.
func NewViolations() *Violations {
	m := &Violations{}
	m.state.Violations = []Violation{}
	m.state.Rules = rules{}
	m.state.Orders = map[string]trade{}
	m.state.Payments = map[string]string{}
	return m
}

// Name implements Model.
func (m *Violations) Name() string { return ModelViolations }

// Apply implements Model.
func (m *Violations) Apply(e events.Event, payload any) error {
	m.state.Rules.apply(&e, payload)
	switch p := payload.(type) {
	case contracts.OrderPlaced:
		t := trade{Target: contracts.Target{Jurisdiction: p.Jurisdiction, Channel: p.Channel, Category: p.Category,
			SellerID: p.SellerID, Origin: p.Origin}, UnitPrice: p.UnitPrice}
		m.state.Orders[p.OrderID] = t
		m.check(&e, contracts.OpOrderPlace, t)
	case contracts.PaymentAuthorized:
		m.state.Payments[p.PaymentID] = p.OrderID
		t, ok := m.state.Orders[p.OrderID]
		if !ok {
			// The payment carries the order's scope for this reason.
			t = trade{Target: contracts.Target{Jurisdiction: p.Jurisdiction, Channel: p.Channel, Category: p.Category,
				SellerID: p.SellerID}, UnitPrice: p.Amount}
		}
		m.check(&e, contracts.OpPaymentAuthorize, t)
	case contracts.PaymentCaptured:
		if t, ok := m.state.Orders[m.state.Payments[p.PaymentID]]; ok {
			m.check(&e, contracts.OpPaymentCapture, t)
		}
	}
	return nil
}

// check records a violation if any rule known before e blocks op on t.
func (m *Violations) check(e *events.Event, op contracts.Operation, t trade) {
	m.state.Checked++
	var worst *Violation
	for _, id := range sortedKeys(m.state.Rules) {
		r := m.state.Rules[id]
		if r.ImposedPosition >= e.Position {
			continue
		}
		kinds := m.kinds(e, op, t, r)
		if len(kinds) == 0 {
			continue
		}
		v := Violation{Position: e.Position, EventID: e.ID, Type: e.Type, Operation: op, AggregateID: e.AggregateID,
			RuleID: r.RuleID, LegalBasis: r.LegalBasis, Kinds: kinds, OccurredAt: utc(e.OccurredAt),
			RecordedAt: utc(e.RecordedAt), PolicyPosition: e.PolicyPosition}
		if worst == nil || len(kinds) > len(worst.Kinds) {
			worst = &v
		}
	}
	if worst != nil {
		m.state.Violations = append(m.state.Violations, *worst)
	}
}

// kinds returns how e breaks r, judging the lift only if the log held it
// before e.
func (m *Violations) kinds(e *events.Event, op contracts.Operation, t trade, r *RuleRecord) []string {
	rule := r.Rule()
	if r.LiftedPosition >= e.Position {
		rule.LiftedAt = time.Time{}
	}
	var out []string
	if rule.Blocks(op, t.Target, t.UnitPrice, e.OccurredAt) {
		out = append(out, ViolationBusinessTime)
	}
	if live(e) && rule.Blocks(op, t.Target, t.UnitPrice, e.RecordedAt) {
		out = append(out, ViolationRecordedTime)
	}
	if e.PolicyPosition < r.ImposedPosition && coversAlways(rule, op, t) {
		out = append(out, ViolationStalePolicy)
	}
	return out
}

func live(e *events.Event) bool {
	d := e.RecordedAt.Sub(e.OccurredAt)
	return d <= LiveClockSkew && d >= -LiveClockSkew
}

// coversAlways reports whether the rule blocks op on t at some instant:
// scope, operation and price, whatever the time.
func coversAlways(r contracts.Rule, op contracts.Operation, t trade) bool {
	r.LiftedAt = time.Time{}
	return r.Blocks(op, t.Target, t.UnitPrice, r.EffectiveAt)
}

// Snapshot implements Model.
func (m *Violations) Snapshot() ([]byte, error) { return canonical(&m.state) }

// Restore implements Model.
func (m *Violations) Restore(data []byte) error {
	n := NewViolations()
	if err := restore(m.Name(), data, &n.state); err != nil {
		return err
	}
	if n.state.Violations == nil {
		n.state.Violations = []Violation{}
	}
	if n.state.Rules == nil {
		n.state.Rules = rules{}
	}
	if n.state.Orders == nil {
		n.state.Orders = map[string]trade{}
	}
	if n.state.Payments == nil {
		n.state.Payments = map[string]string{}
	}
	m.state = n.state
	return nil
}

// Count returns the number of violations found.
func (m *Violations) Count() int { return len(m.state.Violations) }

// Checked returns the number of transaction events checked.
func (m *Violations) Checked() int64 { return m.state.Checked }

// List returns a copy of the violations in log order.
func (m *Violations) List() []Violation { return slices.Clone(m.state.Violations) }

// Rows implements Model.
func (m *Violations) Rows() Table {
	t := Table{Columns: []string{"position", "event_id", "type", "operation", "aggregate_id", "rule_id", "legal_basis",
		"kinds", "occurred_at", "recorded_at", "policy_position"}}
	for _, v := range m.state.Violations {
		t.Rows = append(t.Rows, []string{utoa(v.Position), v.EventID, v.Type, string(v.Operation), v.AggregateID,
			v.RuleID, v.LegalBasis, strings.Join(v.Kinds, " "), formatTime(v.OccurredAt), formatTime(v.RecordedAt),
			utoa(v.PolicyPosition)})
	}
	return t
}
