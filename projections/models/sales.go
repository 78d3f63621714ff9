package models

import (
	"fmt"
	"slices"
	"strings"
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
	touched
	monotone
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

// Apply implements Model. Every sum of minor units is overflow-checked: an
// event that would take a day's sum past int64 stops the model with an
// integrity error naming the position, the seller, the day and the
// currency, and changes nothing.
func (m *SellerSales) Apply(e events.Event, payload any) error {
	var (
		seller string
		amount contracts.Money
		column func(*DaySales) *int64
	)
	switch p := payload.(type) {
	case contracts.OrderPlaced:
		seller, amount = p.SellerID, p.Total
		column = func(d *DaySales) *int64 { return &d.PlacedMinor }
	case contracts.PaymentAuthorized:
		m.state.Payments[p.PaymentID] = p.SellerID
		m.touch("payment/" + p.PaymentID)
		return nil
	case contracts.PaymentCaptured:
		seller, amount = m.state.Payments[p.PaymentID], p.Amount
		column = func(d *DaySales) *int64 { return &d.CapturedMinor }
	case contracts.PaymentRefunded:
		seller, amount = m.state.Payments[p.PaymentID], p.Amount
		column = func(d *DaySales) *int64 { return &d.RefundedMinor }
	case contracts.PaymentSettled:
		seller, amount = p.SellerID, p.Net
		column = func(d *DaySales) *int64 { return &d.SettledMinor }
	default:
		return nil
	}
	if seller == "" {
		return nil // a capture or refund of a payment this model never saw authorized
	}
	day := e.OccurredAt.In(WIB).Format(time.DateOnly)
	old := int64(0)
	if d, ok := m.state.Days[seller+"|"+day+"|"+amount.Currency]; ok {
		old = *column(d)
	}
	sum, ok := contracts.AddMinor(old, amount.AmountMinor)
	if !ok {
		return invariantErr("projections.SellerSales", e.Position, fmt.Sprintf(
			"sales of seller %s on %s in %s overflow int64: %d + %d", seller, day, amount.Currency, old, amount.AmountMinor))
	}
	d := m.day(seller, e.OccurredAt, amount.Currency)
	m.touch("day/" + seller + "|" + day + "|" + amount.Currency)
	*column(d) = sum
	if p, ok := payload.(contracts.OrderPlaced); ok {
		d.OrdersPlaced++
		d.UnitsPlaced += p.Quantity // at most 10 000 an order: no count of orders reaches 2^63 / 10 000
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
	t := Table{Columns: m.Columns()}
	for _, k := range sortedKeys(m.state.Days) {
		t.Rows = append(t.Rows, dayRecord(m.state.Days[k]))
	}
	return t
}

// Columns implements Tabular.
func (m *SellerSales) Columns() []string {
	return []string{"seller_id", "day", "currency", "orders_placed", "units_placed", "placed_minor",
		"captured_minor", "refunded_minor", "settled_net_minor"}
}

// TableRows implements Tabular: a "day/" row is one table row; a
// "payment/" row is in none.
func (m *SellerSales) TableRows(key string, body []byte) ([][]string, error) {
	if !strings.HasPrefix(key, "day/") {
		return nil, nil
	}
	var d DaySales
	if err := restore(m.Name(), body, &d); err != nil {
		return nil, err
	}
	return [][]string{dayRecord(&d)}, nil
}

func dayRecord(d *DaySales) []string {
	return []string{d.SellerID, d.Day, d.Currency, itoa(d.OrdersPlaced), itoa(d.UnitsPlaced),
		itoa(d.PlacedMinor), itoa(d.CapturedMinor), itoa(d.RefundedMinor), itoa(d.SettledMinor)}
}

// Row implements Keyed: "day/<seller>|<day>|<currency>" is one seller's
// sales on one WIB day; "payment/<payment>" is the seller of a payment.
func (m *SellerSales) Row(key string) ([]byte, bool) {
	if id, ok := strings.CutPrefix(key, "payment/"); ok {
		s, ok := m.state.Payments[id]
		return row(s, ok)
	}
	if k, ok := strings.CutPrefix(key, "day/"); ok {
		d, ok := m.state.Days[k]
		return row(d, ok)
	}
	return nil, false
}

// RowKeys implements Keyed.
func (m *SellerSales) RowKeys() []string {
	keys := append(prefixed("day/", sortedKeys(m.state.Days)), prefixed("payment/", sortedKeys(m.state.Payments))...)
	slices.Sort(keys)
	return keys
}
