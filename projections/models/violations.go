package models

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// ViolationKind is a way an accepted transaction can break a rule (see
// docs/adr and the shared definition of "in force").
type ViolationKind string

// The ways an accepted transaction can break a rule.
const (
	// ViolationPositional: the event is stored after the rule's activation
	// position and before its lift's: the rule was in force for it.
	ViolationPositional ViolationKind = "positional"
	// ViolationDecisionInstant: the rule is scheduled with instant E, the
	// deciding service knew of it (its policy position is at or after the
	// rule's change event), it decided at or after E (ce-time) and no lift
	// was activated within what it knew.
	ViolationDecisionInstant ViolationKind = "decision_instant"
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
	Kinds          []ViolationKind     `json:"kinds"`
	OccurredAt     time.Time           `json:"occurred_at"`
	RecordedAt     time.Time           `json:"recorded_at"`
	PolicyPosition uint64              `json:"policy_position"`
}

// trade is what the audit remembers of a listing, an order or a payment to
// judge the events that do not carry their own scope.
type trade struct {
	Target    contracts.Target `json:"target"`
	UnitPrice contracts.Money  `json:"unit_price"`
}

// Violations is the policy audit. It checks every accepted event of a
// blockable operation (listing.created, listing.price_changed,
// order.placed, payment.authorized, payment.captured: every
// contracts.Operation) against the policy rules as the log holds them
// before the event, by the shared definition of "in force": a rule is in
// force for the events stored after its activation position and before its
// lift's (ViolationPositional), and a scheduled rule also binds a decision
// made at or after its instant by a service that knew of it
// (ViolationDecisionInstant). An event decided before a scheduled instant,
// recorded after it and stored before the activation was in flight at the
// instant: it is counted (InFlight), not a violation.
//
// Zero violations over the whole log is what the freeze guarantee promises;
// the regulator bundle reports the count.
type Violations struct {
	state struct {
		Violations []Violation              `json:"violations"`
		Timeline   contracts.PolicyTimeline `json:"timeline"`
		Listings   map[string]trade         `json:"listings"`
		Orders     map[string]trade         `json:"orders"`
		Payments   map[string]trade         `json:"payments"`
		Checked    int64                    `json:"checked"`
		InFlight   int64                    `json:"in_flight"`
	}
	touched
	monotone
}

// NewViolations returns an empty audit.
func NewViolations() *Violations {
	m := &Violations{}
	m.init()
	return m
}

func (m *Violations) init() {
	if m.state.Violations == nil {
		m.state.Violations = []Violation{}
	}
	if m.state.Timeline == nil {
		m.state.Timeline = contracts.PolicyTimeline{}
	}
	if m.state.Listings == nil {
		m.state.Listings = map[string]trade{}
	}
	if m.state.Orders == nil {
		m.state.Orders = map[string]trade{}
	}
	if m.state.Payments == nil {
		m.state.Payments = map[string]trade{}
	}
}

// Name implements Model.
func (m *Violations) Name() string { return ModelViolations }

// Version implements Versioned: version 2 audits every blockable operation
// by positional activation, and its snapshots are not version 1's.
func (m *Violations) Version() int { return 2 }

// Apply implements Model.
func (m *Violations) Apply(e events.Event, payload any) error {
	m.state.Timeline = m.state.Timeline.Apply(e.Position, payload)
	if _, activated := payload.(contracts.RuleActivated); activated || ruleID(payload) != "" {
		m.touch("timeline")
	}
	switch p := payload.(type) {
	case contracts.ListingCreated:
		t := trade{Target: contracts.Target{Jurisdiction: p.Jurisdiction, Channel: p.Channel, Category: p.Category,
			SellerID: p.SellerID, Origin: p.Origin}, UnitPrice: p.Price}
		m.state.Listings[p.ListingID] = t
		m.touch("listing/" + p.ListingID)
		m.check(&e, contracts.OpListingCreate, t)
	case contracts.ListingPriceChanged:
		if t, ok := m.state.Listings[p.ListingID]; ok {
			t.UnitPrice = p.Price
			m.state.Listings[p.ListingID] = t
			m.touch("listing/" + p.ListingID)
			m.check(&e, contracts.OpListingChangePrice, t)
		}
	case contracts.OrderPlaced:
		t := trade{Target: contracts.Target{Jurisdiction: p.Jurisdiction, Channel: p.Channel, Category: p.Category,
			SellerID: p.SellerID, Origin: p.Origin}, UnitPrice: p.UnitPrice}
		m.state.Orders[p.OrderID] = t
		m.touch("order/" + p.OrderID)
		m.check(&e, contracts.OpOrderPlace, t)
	case contracts.PaymentAuthorized:
		t, ok := m.state.Orders[p.OrderID]
		if !ok {
			// The payment carries the order's scope for this reason.
			t = trade{Target: contracts.Target{Jurisdiction: p.Jurisdiction, Channel: p.Channel, Category: p.Category,
				SellerID: p.SellerID}, UnitPrice: p.Amount}
		}
		m.state.Payments[p.PaymentID] = t
		m.touch("payment/" + p.PaymentID)
		m.check(&e, contracts.OpPaymentAuthorize, t)
	case contracts.PaymentCaptured:
		if t, ok := m.state.Payments[p.PaymentID]; ok {
			m.check(&e, contracts.OpPaymentCapture, t)
		}
	}
	return nil
}

// check records a violation if any rule in force for e blocks op on t, and
// counts e as in flight if it was, for some rule, and breaks none.
func (m *Violations) check(e *events.Event, op contracts.Operation, t trade) {
	m.state.Checked++
	// The violation key is touched whether or not one is found: after
	// another history (a business-time fold) this check may find one.
	m.touch("counts", violationKey(e.Position))
	var worst *Violation
	flight := false
	for i := range m.state.Timeline {
		r := &m.state.Timeline[i]
		if r.ChangePosition >= e.Position || !r.Matches(op, t.Target, t.UnitPrice) {
			continue
		}
		var kinds []ViolationKind
		if bindsPositionally(r, e) {
			kinds = append(kinds, ViolationPositional)
		}
		if bindsByDecision(r, e) {
			kinds = append(kinds, ViolationDecisionInstant)
		}
		if len(kinds) == 0 {
			flight = flight || inFlight(r, e)
			continue
		}
		v := Violation{Position: e.Position, EventID: e.ID, Type: e.Type, Operation: op, AggregateID: e.AggregateID,
			RuleID: r.RuleID, LegalBasis: r.LegalBasis, Kinds: kinds, OccurredAt: utc(e.OccurredAt),
			RecordedAt: utc(e.RecordedAt), PolicyPosition: e.PolicyPosition}
		if worst == nil || len(kinds) > len(worst.Kinds) || (len(kinds) == len(worst.Kinds) && v.RuleID < worst.RuleID) {
			worst = &v
		}
	}
	switch {
	case worst != nil:
		m.state.Violations = append(m.state.Violations, *worst)
	case flight:
		m.state.InFlight++
	}
}

// Snapshot implements Model.
func (m *Violations) Snapshot() ([]byte, error) { return canonical(&m.state) }

// Restore implements Model.
func (m *Violations) Restore(data []byte) error {
	n := &Violations{}
	if err := restore(m.Name(), data, &n.state); err != nil {
		return err
	}
	n.init()
	m.state = n.state
	return nil
}

// Count returns the number of violations found.
func (m *Violations) Count() int { return len(m.state.Violations) }

// InFlight returns the number of events that were in flight at a scheduled
// rule's instant: decided before it, recorded after it, stored before its
// activation. They are not violations; a regulator sees the count.
func (m *Violations) InFlight() int64 { return m.state.InFlight }

// Checked returns the number of transaction events checked.
func (m *Violations) Checked() int64 { return m.state.Checked }

// List returns a copy of the violations in log order.
func (m *Violations) List() []Violation { return slices.Clone(m.state.Violations) }

// Rows implements Model.
func (m *Violations) Rows() Table {
	t := Table{Columns: m.Columns()}
	for i := range m.state.Violations {
		t.Rows = append(t.Rows, violationRecord(&m.state.Violations[i]))
	}
	return t
}

// Columns implements Tabular.
func (m *Violations) Columns() []string {
	return []string{"position", "event_id", "type", "operation", "aggregate_id", "rule_id", "legal_basis",
		"kinds", "occurred_at", "recorded_at", "policy_position"}
}

// TableRows implements Tabular: a "violation/" row is one table row (its
// key orders them by position, as the table does); the audit's scopes,
// timeline and counts are in none.
func (m *Violations) TableRows(key string, body []byte) ([][]string, error) {
	if !strings.HasPrefix(key, "violation/") {
		return nil, nil
	}
	var v Violation
	if err := restore(m.Name(), body, &v); err != nil {
		return nil, err
	}
	return [][]string{violationRecord(&v)}, nil
}

func violationRecord(v *Violation) []string {
	return []string{utoa(v.Position), v.EventID, v.Type, string(v.Operation), v.AggregateID,
		v.RuleID, v.LegalBasis, joinKinds(v.Kinds), formatTime(v.OccurredAt), formatTime(v.RecordedAt),
		utoa(v.PolicyPosition)}
}

func joinKinds(ks []ViolationKind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, " ")
}

// Row implements Keyed: "violation/<position>" (20 digits) is the
// violation found at a position; "listing/<id>", "order/<id>" and
// "payment/<id>" are the scopes of the trades audited; "timeline" is the
// policy timeline; "counts" holds the events checked and in flight.
func (m *Violations) Row(key string) ([]byte, bool) {
	kind, id, _ := strings.Cut(key, "/")
	switch kind {
	case "violation":
		i, ok := slices.BinarySearchFunc(m.state.Violations, id, func(v Violation, id string) int {
			return strings.Compare(violationKey(v.Position)[len("violation/"):], id)
		})
		if !ok {
			return nil, false
		}
		return row(m.state.Violations[i], true)
	case "listing":
		t, ok := m.state.Listings[id]
		return row(t, ok)
	case "order":
		t, ok := m.state.Orders[id]
		return row(t, ok)
	case "payment":
		t, ok := m.state.Payments[id]
		return row(t, ok)
	case "timeline":
		return row(m.state.Timeline, id == "")
	case "counts":
		return row(violationCounts{Checked: m.state.Checked, InFlight: m.state.InFlight}, id == "")
	}
	return nil, false
}

type violationCounts struct {
	Checked  int64 `json:"checked"`
	InFlight int64 `json:"in_flight"`
}

func violationKey(pos uint64) string { return fmt.Sprintf("violation/%020d", pos) }

// RowKeys implements Keyed.
func (m *Violations) RowKeys() []string {
	keys := []string{"counts", "timeline"}
	for _, v := range m.state.Violations {
		keys = append(keys, violationKey(v.Position))
	}
	keys = append(keys, prefixed("listing/", sortedKeys(m.state.Listings))...)
	keys = append(keys, prefixed("order/", sortedKeys(m.state.Orders))...)
	keys = append(keys, prefixed("payment/", sortedKeys(m.state.Payments))...)
	slices.Sort(keys)
	return keys
}
