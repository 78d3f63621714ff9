package scenario

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/models"
)

// Tx is one transaction event a freeze can block (order.placed,
// payment.authorized, payment.captured), with the scope it was decided in.
type Tx struct {
	Position       uint64
	PolicyPosition uint64
	Type           string
	Operation      contracts.Operation
	AggregateID    string
	OrderID        string
	OccurredAt     time.Time
	RecordedAt     time.Time
	Target         contracts.Target
}

// FreezeRecord is a freeze as the log holds it, with its activation and
// its lift if any. It is read from the log directly, not through the
// contracts' timeline, so that the scenarios judge the services with a
// reading of their own (POLICY-SPEC, ADR 0004).
type FreezeRecord struct {
	RuleID   string
	Position uint64
	Recorded time.Time
	Imposed  contracts.FreezeImposed
	// Scheduled is the freeze's E when it was scheduled; zero when it took
	// effect on its recording.
	Scheduled time.Time
	// ActivationPosition and ActivationRecorded are where and when (the
	// server's stamp) the freeze took effect: its own event when effective
	// at once, its policy.rule_activated otherwise; 0 and zero until then.
	ActivationPosition uint64
	ActivationRecorded time.Time
	// InForce is ActivationRecorded: the instant from which the log says the
	// freeze is enforced.
	InForce time.Time
	Lift    *LiftRecord
}

// LiftRecord is the lift of a freeze as the log holds it.
type LiftRecord struct {
	Position           uint64
	Recorded           time.Time
	Lifted             contracts.FreezeLifted
	Scheduled          time.Time
	ActivationPosition uint64
	// InForce is the recorded time of the lift's activation.
	InForce time.Time
}

// Log is what a scenario reads back from the log to judge it: every
// transaction event and every freeze, and the other events by type.
type Log struct {
	Txs     []Tx
	Freezes map[string]*FreezeRecord
	// Counts counts events by type, and ByOrder the types of each order's
	// and payment's events, so that a test can see what a checkout did.
	Counts  map[string]int
	ByOrder map[string][]string
	// Stock is the last stock each listing recorded.
	Stock map[string]int64
	// Head is the position of the last event read.
	Head uint64
}

// ReadLog reads the whole log through store and folds what the scenarios
// judge. It decodes every event with the contracts, so an event the
// contracts do not know fails the read.
func ReadLog(ctx context.Context, store events.Store) (*Log, error) {
	l := &Log{Freezes: map[string]*FreezeRecord{}, Counts: map[string]int{}, ByOrder: map[string][]string{}, Stock: map[string]int64{}}
	targets := map[string]contracts.Target{} // payment id -> scope at authorization
	for e, err := range store.Read(ctx, events.Query{}) {
		if err != nil {
			return nil, err
		}
		l.Head = e.Position
		payload, err := contracts.Decode(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			return nil, fmt.Errorf("position %d (%s): %w", e.Position, e.Type, err)
		}
		l.Counts[e.Type]++
		tx := Tx{Position: e.Position, PolicyPosition: e.PolicyPosition, Type: e.Type, AggregateID: e.AggregateID,
			OccurredAt: e.OccurredAt, RecordedAt: e.RecordedAt}
		switch p := payload.(type) {
		case contracts.OrderPlaced:
			tx.Operation, tx.OrderID = contracts.OpOrderPlace, p.OrderID
			tx.Target = contracts.Target{Jurisdiction: p.Jurisdiction, Channel: p.Channel, Category: p.Category,
				SellerID: p.SellerID, Origin: p.Origin}
			l.Txs = append(l.Txs, tx)
		case contracts.PaymentAuthorized:
			tx.Operation, tx.OrderID = contracts.OpPaymentAuthorize, p.OrderID
			tx.Target = contracts.Target{Jurisdiction: p.Jurisdiction, Channel: p.Channel, Category: p.Category, SellerID: p.SellerID}
			targets[p.PaymentID] = tx.Target
			l.Txs = append(l.Txs, tx)
		case contracts.PaymentCaptured:
			tx.Operation, tx.OrderID = contracts.OpPaymentCapture, p.OrderID
			tx.Target = targets[p.PaymentID]
			l.Txs = append(l.Txs, tx)
		case contracts.FreezeImposed:
			f := &FreezeRecord{RuleID: p.RuleID, Position: e.Position, Recorded: e.RecordedAt, Imposed: p}
			if p.Activation == contracts.ActivationOnRecording {
				f.ActivationPosition, f.ActivationRecorded, f.InForce = e.Position, e.RecordedAt, e.RecordedAt
			} else {
				f.Scheduled = p.EffectiveAt
			}
			l.Freezes[p.RuleID] = f
		case contracts.FreezeLifted:
			if f := l.Freezes[p.RuleID]; f != nil {
				f.Lift = &LiftRecord{Position: e.Position, Recorded: e.RecordedAt, Lifted: p}
				if p.Activation == contracts.ActivationOnRecording {
					f.Lift.ActivationPosition, f.Lift.InForce = e.Position, e.RecordedAt
				} else {
					f.Lift.Scheduled = p.EffectiveAt
				}
			}
		case contracts.RuleActivated:
			f := l.Freezes[p.RuleID]
			switch {
			case f == nil:
			case p.Activates == contracts.ChangeFreezeImposed && f.ActivationPosition == 0:
				f.ActivationPosition, f.ActivationRecorded, f.InForce = e.Position, e.RecordedAt, e.RecordedAt
			case p.Activates == contracts.ChangeFreezeLifted && f.Lift != nil && f.Lift.ActivationPosition == 0:
				f.Lift.ActivationPosition, f.Lift.InForce = e.Position, e.RecordedAt
			}
		case contracts.ListingCreated:
			l.Stock[p.ListingID] = p.Stock
		case contracts.ListingStockReserved:
			l.Stock[p.ListingID] = p.Stock
		case contracts.ListingStockReleased:
			l.Stock[p.ListingID] = p.Stock
		case contracts.ListingStockChanged:
			l.Stock[p.ListingID] = p.Stock
		}
		if id := orderOf(payload); id != "" {
			l.ByOrder[id] = append(l.ByOrder[id], e.Type)
		}
	}
	return l, nil
}

// orderOf returns the order an order or payment event belongs to.
func orderOf(payload any) string {
	switch p := payload.(type) {
	case contracts.OrderPlaced:
		return p.OrderID
	case contracts.OrderConfirmed:
		return p.OrderID
	case contracts.OrderCancelled:
		return p.OrderID
	case contracts.OrderRejected:
		return p.OrderID
	case contracts.PaymentAuthorized:
		return p.OrderID
	case contracts.PaymentCaptured:
		return p.OrderID
	case contracts.PaymentVoided:
		return p.PaymentID
	case contracts.ListingStockReserved:
		return p.OrderID
	case contracts.ListingStockReleased:
		return p.OrderID
	}
	return ""
}

// Has reports whether order id has an event of type typ.
func (l *Log) Has(id, typ string) bool { return slices.Contains(l.ByOrder[id], typ) }

// AcceptedOrders returns the orders whose checkout went through by the
// log: order.placed and payment.captured exist for them.
func (l *Log) AcceptedOrders() []string {
	var out []string
	for id := range l.ByOrder {
		if l.Has(id, "order.placed") && l.Has(id, "payment.captured") {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// InScope returns the transaction events freeze f blocks by scope and
// operation, whatever their time.
func (l *Log) InScope(f *FreezeRecord) []Tx {
	var out []Tx
	for _, x := range l.Txs {
		if f.Imposed.Scope.Covers(x.Target) && slices.Contains(f.Imposed.BlockedOperations, x.Operation) {
			out = append(out, x)
		}
	}
	return out
}

// Violations judges every transaction event in freeze f's scope from the
// log alone, by the shared definition (POLICY-SPEC rule 4), and describes
// each one that breaks it. An accepted event at position p decided at t
// (ce-time) under policy position P violates the freeze when
//
//   - the freeze is in force at p: its activation is before p and no
//     activation of its lift is; or
//   - the freeze is scheduled at E, its event is at or before P (the
//     deciding service knew it), t >= E, and no activation of its lift is
//     at or before P.
//
// An event decided before E and stored before the activation is not a
// violation, even when recorded after E: InFlight counts those.
func (l *Log) Violations(f *FreezeRecord) []string {
	var out []string
	bad := func(x Tx, why string, args ...any) {
		out = append(out, fmt.Sprintf("%s %s at %d (policy %d, occurred %s, recorded %s): %s", x.Type, x.AggregateID, x.Position,
			x.PolicyPosition, x.OccurredAt.Format(time.RFC3339Nano), x.RecordedAt.Format(time.RFC3339Nano), fmt.Sprintf(why, args...)))
	}
	for _, x := range l.InScope(f) {
		if f.inForceAt(x.Position) {
			bad(x, "stored after freeze %s took effect at %d", f.RuleID, f.ActivationPosition)
		}
		if f.dueBy(x.PolicyPosition, x.OccurredAt) {
			bad(x, "decided at or after freeze %s's instant %s, knowing it (policy %d >= %d)", f.RuleID,
				f.Scheduled.Format(time.RFC3339Nano), x.PolicyPosition, f.Position)
		}
	}
	return out
}

// InFlight returns the in-scope events that were recorded at or after the
// scheduled instant of f but stored before its activation, decided before
// the instant: not violations, but what a regulator reading recorded times
// sees after the instant.
func (l *Log) InFlight(f *FreezeRecord) []Tx {
	var out []Tx
	if f.Scheduled.IsZero() {
		return nil
	}
	for _, x := range l.InScope(f) {
		if !x.RecordedAt.Before(f.Scheduled) && !f.inForceAt(x.Position) && !f.dueBy(x.PolicyPosition, x.OccurredAt) {
			out = append(out, x)
		}
	}
	return out
}

func (f *FreezeRecord) liftedAt(p uint64, inclusive bool) bool {
	if f.Lift == nil || f.Lift.ActivationPosition == 0 {
		return false
	}
	return f.Lift.ActivationPosition < p || (inclusive && f.Lift.ActivationPosition == p)
}

func (f *FreezeRecord) inForceAt(p uint64) bool {
	return f.ActivationPosition != 0 && f.ActivationPosition < p && !f.liftedAt(p, false)
}

func (f *FreezeRecord) dueBy(policyPos uint64, decided time.Time) bool {
	return !f.Scheduled.IsZero() && f.Position <= policyPos && !decided.Before(f.Scheduled) && !f.liftedAt(policyPos, true)
}

// Audit folds the whole log into the projections' violations audit and
// returns it.
func Audit(ctx context.Context, store events.Store) (*models.Violations, error) {
	v := models.NewViolations()
	if _, _, err := projections.Fold(ctx, store, events.Query{}, []models.Model{v}, nil, nil); err != nil {
		return nil, err
	}
	return v, nil
}
