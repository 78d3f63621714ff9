// Package invariant holds checks of the ledger's business invariants that
// are judged from the log alone, so that any test (a checkout test, a crash
// and restart, the fault simulation) can run them on what was stored. It
// reads through events.Store and decodes with contracts; it never writes.
package invariant

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// MaxReported bounds the violations one error lists; the count is exact.
const MaxReported = 20

// Holdings is what the log says orders hold: their status, the units
// reserved for them per listing, and their payments.
type Holdings struct {
	// Status is the order's last status event ("placed", "confirmed",
	// "cancelled", "rejected", "shipped", "completed").
	Status map[string]string
	// Held is the units still reserved, per order and listing.
	Held map[string]map[string]int64
	// Payments are the payments made for each order.
	Payments map[string][]*Payment
	payments map[string]*Payment
}

// Payment is one payment as its events leave it.
type Payment struct {
	ID            string
	OrderID       string
	Status        string // authorized, captured, voided
	CapturedMinor int64
	RefundedMinor int64
}

// NewHoldings returns empty holdings; Apply folds events into them.
func NewHoldings() *Holdings {
	return &Holdings{Status: map[string]string{}, Held: map[string]map[string]int64{},
		Payments: map[string][]*Payment{}, payments: map[string]*Payment{}}
}

// Apply folds one decoded event payload into the holdings.
func (h *Holdings) Apply(payload any) {
	switch e := payload.(type) {
	case contracts.OrderPlaced:
		h.Status[e.OrderID] = "placed"
	case contracts.OrderConfirmed:
		h.Status[e.OrderID] = "confirmed"
	case contracts.OrderCancelled:
		h.Status[e.OrderID] = "cancelled"
	case contracts.OrderRejected:
		h.Status[e.OrderID] = "rejected"
	case contracts.OrderShipped:
		h.Status[e.OrderID] = "shipped"
	case contracts.OrderCompleted:
		h.Status[e.OrderID] = "completed"
	case contracts.ListingStockReserved:
		h.hold(e.OrderID, e.ListingID, e.Quantity)
	case contracts.ListingStockReleased:
		h.hold(e.OrderID, e.ListingID, -e.Quantity)
	case contracts.PaymentAuthorized:
		p := &Payment{ID: e.PaymentID, OrderID: e.OrderID, Status: "authorized"}
		h.payments[e.PaymentID] = p
		h.Payments[e.OrderID] = append(h.Payments[e.OrderID], p)
	case contracts.PaymentVoided:
		if p := h.payments[e.PaymentID]; p != nil {
			p.Status = "voided"
		}
	case contracts.PaymentCaptured:
		if p := h.payments[e.PaymentID]; p != nil {
			p.Status, p.CapturedMinor = "captured", e.Amount.AmountMinor
		}
	case contracts.PaymentRefunded:
		if p := h.payments[e.PaymentID]; p != nil {
			p.RefundedMinor += e.Amount.AmountMinor
		}
	}
}

func (h *Holdings) hold(orderID, listingID string, units int64) {
	m := h.Held[orderID]
	if m == nil {
		m = map[string]int64{}
		h.Held[orderID] = m
	}
	if m[listingID] += units; m[listingID] == 0 {
		delete(m, listingID)
	}
}

// Violations returns what the holdings break, sorted: every order that
// ended rejected or cancelled holds no stock, no open authorization and no
// unrefunded capture; every reservation belongs to an order the log has
// that is live or went on to be confirmed (placed, confirmed, shipped,
// completed).
func (h *Holdings) Violations() []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(h.Held)) {
		for _, l := range slices.Sorted(maps.Keys(h.Held[id])) {
			switch units, st := h.Held[id][l], h.Status[id]; {
			case units < 0:
				out = append(out, fmt.Sprintf("order %s released %d more units of listing %s than it reserved", id, -units, l))
			case st == "":
				out = append(out, fmt.Sprintf("listing %s holds %d units for order %s, which the log does not have", l, units, id))
			case st == "cancelled" || st == "rejected":
				out = append(out, fmt.Sprintf("order %s ended %s and still holds %d units of listing %s", id, st, units, l))
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(h.Payments)) {
		st := h.Status[id]
		if st != "cancelled" && st != "rejected" {
			continue
		}
		for _, p := range h.Payments[id] {
			switch {
			case p.Status == "authorized":
				out = append(out, fmt.Sprintf("order %s ended %s and payment %s is still authorized", id, st, p.ID))
			case p.CapturedMinor > p.RefundedMinor:
				out = append(out, fmt.Sprintf("order %s ended %s and payment %s holds %d captured, unrefunded",
					id, st, p.ID, p.CapturedMinor-p.RefundedMinor))
			}
		}
	}
	return out
}

// NothingStranded reads the whole log of st and returns an error naming
// the orders that strand stock or money (see Holdings.Violations), or nil.
// Run it when the checkout has settled: an order still placed may hold
// both, by right.
func NothingStranded(ctx context.Context, st events.Store) error {
	h, err := Read(ctx, st)
	if err != nil {
		return err
	}
	return h.Err()
}

// Read folds the whole log of st into holdings.
func Read(ctx context.Context, st events.Store) (*Holdings, error) {
	h := NewHoldings()
	for e, err := range st.Read(ctx, events.Query{}) {
		if err != nil {
			return nil, err
		}
		switch e.Context() {
		case contracts.ServiceOrder, contracts.ServiceListing, contracts.ServicePayment:
		default:
			continue
		}
		v, err := contracts.Decode(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			return nil, fmt.Errorf("invariant: event at position %d: %w", e.Position, err)
		}
		h.Apply(v)
	}
	return h, nil
}

// Err returns the violations as one error, or nil.
func (h *Holdings) Err() error {
	v := h.Violations()
	if len(v) == 0 {
		return nil
	}
	shown := v[:min(len(v), MaxReported)]
	return fmt.Errorf("stock or money stranded (%d violations):\n  %s", len(v), strings.Join(shown, "\n  "))
}
