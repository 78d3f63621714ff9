package scenario

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
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

// FreezeRecord is a freeze as the log holds it, with its lift if any.
type FreezeRecord struct {
	RuleID   string
	Position uint64
	Recorded time.Time
	Imposed  contracts.FreezeImposed
	// InForce is contracts.InForceFrom(effective_at, recorded): the instant
	// the services and the audit judge the freeze from.
	InForce time.Time
	Lift    *LiftRecord
}

// LiftRecord is the lift of a freeze as the log holds it.
type LiftRecord struct {
	Position uint64
	Recorded time.Time
	Lifted   contracts.FreezeLifted
	InForce  time.Time
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
			l.Freezes[p.RuleID] = &FreezeRecord{RuleID: p.RuleID, Position: e.Position, Recorded: e.RecordedAt, Imposed: p,
				InForce: contracts.InForceFrom(p.EffectiveAt, e.RecordedAt)}
		case contracts.FreezeLifted:
			if f := l.Freezes[p.RuleID]; f != nil {
				f.Lift = &LiftRecord{Position: e.Position, Recorded: e.RecordedAt, Lifted: p,
					InForce: contracts.InForceFrom(p.EffectiveAt, e.RecordedAt)}
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
// log alone and describes each one that breaks it:
//
//   - an event stored after the freeze must have been decided under it
//     (policy position at least the freeze's), or the fence failed;
//   - while the freeze is not lifted (as the log held it before the event),
//     an accepted event must have occurred, and have been recorded, before
//     the freeze's in-force instant; a recording at that very instant
//     counts as before only if the event precedes the freeze in the log;
//   - a freeze that took effect when it was recorded ("now") admits no
//     accepted event after it in the log nor decided under it;
//   - after a lift recorded before the event, an event decided at or after
//     the freeze's instant must have occurred at or after the lift's.
func (l *Log) Violations(f *FreezeRecord) []string {
	var out []string
	bad := func(x Tx, why string, args ...any) {
		out = append(out, fmt.Sprintf("%s %s at %d (policy %d, occurred %s, recorded %s): %s", x.Type, x.AggregateID, x.Position,
			x.PolicyPosition, x.OccurredAt.Format(time.RFC3339Nano), x.RecordedAt.Format(time.RFC3339Nano), fmt.Sprintf(why, args...)))
	}
	immediate := !f.InForce.After(f.Recorded)
	for _, x := range l.InScope(f) {
		if x.Position > f.Position && x.PolicyPosition < f.Position {
			bad(x, "stored after freeze %s (%d) but decided under policy %d", f.RuleID, f.Position, x.PolicyPosition)
		}
		if f.Lift != nil && f.Lift.Position < x.Position {
			if !x.OccurredAt.Before(f.InForce) && x.OccurredAt.Before(f.Lift.InForce) {
				bad(x, "occurred after freeze %s took effect (%s) and before its lift did (%s)", f.RuleID,
					f.InForce.Format(time.RFC3339Nano), f.Lift.InForce.Format(time.RFC3339Nano))
			}
			continue
		}
		if !x.OccurredAt.Before(f.InForce) {
			bad(x, "occurred at or after freeze %s took effect (%s)", f.RuleID, f.InForce.Format(time.RFC3339Nano))
		}
		if x.RecordedAt.After(f.InForce) || (x.RecordedAt.Equal(f.InForce) && x.Position > f.Position) {
			bad(x, "recorded at or after freeze %s took effect (%s)", f.RuleID, f.InForce.Format(time.RFC3339Nano))
		}
		if immediate && (x.Position > f.Position || x.PolicyPosition >= f.Position) {
			bad(x, "accepted after the immediate freeze %s (%d) in the log", f.RuleID, f.Position)
		}
	}
	return out
}

// Audit folds the whole log into the projections' violations audit and
// returns it.
func Audit(ctx context.Context, store events.Store) (*projections.Violations, error) {
	v := projections.NewViolations()
	if _, _, err := projections.Fold(ctx, store, events.Query{}, []projections.Model{v}, nil, nil); err != nil {
		return nil, err
	}
	return v, nil
}
