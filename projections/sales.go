package projections

import (
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// WIB is Western Indonesia Time (Asia/Jakarta), UTC+7 without daylight
// saving. It is fixed here rather than loaded from the tz database so that a
// machine without tzdata computes the same days.
var WIB = time.FixedZone("WIB", 7*3600)

// DaySales is one seller's trade on one WIB calendar day in one currency.
type DaySales struct {
	SellerID      string `json:"seller_id"`
	Day           string `json:"day"` // YYYY-MM-DD in WIB
	Currency      string `json:"currency"`
	OrdersPlaced  int64  `json:"orders_placed"`
	UnitsPlaced   int64  `json:"units_placed"`
	PlacedMinor   int64  `json:"placed_minor"`
	CapturedMinor int64  `json:"captured_minor"`
	RefundedMinor int64  `json:"refunded_minor"`
	SettledMinor  int64  `json:"settled_net_minor"`
}

// SellerSales is the read model of seller sales per WIB calendar day. A
// day is the WIB date of each event's occurred-at (business time): orders
// placed, money captured and refunded, and net settled, on the day each
// happened.
type SellerSales struct {
	state struct {
		Days map[string]*DaySales `json:"days"` // seller|day|currency
		// Payments maps a payment to its seller, which captures and
		// refunds do not carry.
		Payments map[string]string `json:"payments"`
	}
}

// NewSellerSales returns an empty sales model.
func NewSellerSales() *SellerSales {
	m := &SellerSales{}
	m.state.Days = map[string]*DaySales{}
	m.state.Payments = map[string]string{}
	return m
}

// Name implements Model.
func (m *SellerSales) Name() string { return ModelSales }

// Apply implements Model.
func (m *SellerSales) Apply(e events.Event, payload any) error {
	switch p := payload.(type) {
	case contracts.OrderPlaced:
		d := m.day(p.SellerID, e.OccurredAt, p.Total.Currency)
		d.OrdersPlaced++
		d.UnitsPlaced += p.Quantity
		d.PlacedMinor += p.Total.AmountMinor
	case contracts.PaymentAuthorized:
		m.state.Payments[p.PaymentID] = p.SellerID
	case contracts.PaymentCaptured:
		if s, ok := m.state.Payments[p.PaymentID]; ok {
			m.day(s, e.OccurredAt, p.Amount.Currency).CapturedMinor += p.Amount.AmountMinor
		}
	case contracts.PaymentRefunded:
		if s, ok := m.state.Payments[p.PaymentID]; ok {
			m.day(s, e.OccurredAt, p.Amount.Currency).RefundedMinor += p.Amount.AmountMinor
		}
	case contracts.PaymentSettled:
		m.day(p.SellerID, e.OccurredAt, p.Net.Currency).SettledMinor += p.Net.AmountMinor
	}
	return nil
}

func (m *SellerSales) day(seller string, at time.Time, currency string) *DaySales {
	day := at.In(WIB).Format(time.DateOnly)
	k := seller + "|" + day + "|" + currency
	d, ok := m.state.Days[k]
	if !ok {
		d = &DaySales{SellerID: seller, Day: day, Currency: currency}
		m.state.Days[k] = d
	}
	return d
}

// Snapshot implements Model.
func (m *SellerSales) Snapshot() ([]byte, error) { return canonical(&m.state) }

// Restore implements Model.
func (m *SellerSales) Restore(data []byte) error {
	n := NewSellerSales()
	if err := restore(m.Name(), data, &n.state); err != nil {
		return err
	}
	if n.state.Days == nil {
		n.state.Days = map[string]*DaySales{}
	}
	if n.state.Payments == nil {
		n.state.Payments = map[string]string{}
	}
	m.state = n.state
	return nil
}

// Day returns one seller's sales on one WIB day (YYYY-MM-DD) in a currency.
func (m *SellerSales) Day(seller, day, currency string) (DaySales, bool) {
	d, ok := m.state.Days[seller+"|"+day+"|"+currency]
	if !ok {
		return DaySales{}, false
	}
	return *d, true
}

// Rows implements Model.
func (m *SellerSales) Rows() Table {
	t := Table{Columns: []string{"seller_id", "day", "currency", "orders_placed", "units_placed", "placed_minor",
		"captured_minor", "refunded_minor", "settled_net_minor"}}
	for _, k := range sortedKeys(m.state.Days) {
		d := m.state.Days[k]
		t.Rows = append(t.Rows, []string{d.SellerID, d.Day, d.Currency, itoa(d.OrdersPlaced), itoa(d.UnitsPlaced),
			itoa(d.PlacedMinor), itoa(d.CapturedMinor), itoa(d.RefundedMinor), itoa(d.SettledMinor)})
	}
	return t
}
