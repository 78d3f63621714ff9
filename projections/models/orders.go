package models

import (
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// Order statuses in the orders model.
const (
	StatusPlaced    = "placed"
	StatusConfirmed = "confirmed"
	StatusCancelled = "cancelled"
	StatusShipped   = "shipped"
	StatusCompleted = "completed"
	StatusRejected  = "rejected"
)

// Order is one row of the orders model.
type Order struct {
	OrderID        string            `json:"order_id"`
	BuyerID        string            `json:"buyer_id"`
	SellerID       string            `json:"seller_id"`
	ListingID      string            `json:"listing_id"`
	Quantity       int64             `json:"quantity"`
	UnitPrice      contracts.Money   `json:"unit_price"`
	Total          contracts.Money   `json:"total"`
	Channel        contracts.Channel `json:"channel"`
	Jurisdiction   string            `json:"jurisdiction"`
	Category       string            `json:"category"`
	Origin         contracts.Origin  `json:"origin"`
	Status         string            `json:"status"`
	PaymentID      string            `json:"payment_id,omitempty"`
	Reason         string            `json:"reason,omitempty"`
	RuleID         string            `json:"rule_id,omitempty"`
	PolicyPosition uint64            `json:"policy_position"`
	PlacedAt       time.Time         `json:"placed_at"`
	PlacedPosition uint64            `json:"placed_position"`
	UpdatedAt      time.Time         `json:"updated_at"`
	Position       uint64            `json:"position"`
}

// Orders is the read model of every order and its status.
type Orders struct {
	state struct {
		Orders map[string]*Order `json:"orders"`
	}
	touched
	monotone
}

// NewOrders returns an empty orders model.
func NewOrders() *Orders {
	m := &Orders{}
	m.state.Orders = map[string]*Order{}
	return m
}

// Name implements Model.
func (m *Orders) Name() string { return ModelOrders }

// Apply implements Model.
func (m *Orders) Apply(e events.Event, payload any) error {
	switch p := payload.(type) {
	case contracts.OrderPlaced:
		m.state.Orders[p.OrderID] = &Order{OrderID: p.OrderID, BuyerID: p.BuyerID, SellerID: p.SellerID,
			ListingID: p.ListingID, Quantity: p.Quantity, UnitPrice: p.UnitPrice, Total: p.Total, Channel: p.Channel,
			Jurisdiction: p.Jurisdiction, Category: p.Category, Origin: p.Origin, Status: StatusPlaced,
			PolicyPosition: e.PolicyPosition, PlacedAt: utc(e.OccurredAt), PlacedPosition: e.Position,
			UpdatedAt: utc(e.OccurredAt), Position: e.Position}
		m.touch(p.OrderID)
	case contracts.OrderConfirmed:
		m.update(p.OrderID, &e, func(o *Order) { o.Status, o.PaymentID = StatusConfirmed, p.PaymentID })
	case contracts.OrderCancelled:
		m.update(p.OrderID, &e, func(o *Order) { o.Status, o.Reason = StatusCancelled, p.Reason })
	case contracts.OrderShipped:
		m.update(p.OrderID, &e, func(o *Order) { o.Status = StatusShipped })
	case contracts.OrderCompleted:
		m.update(p.OrderID, &e, func(o *Order) { o.Status = StatusCompleted })
	case contracts.OrderRejected:
		m.update(p.OrderID, &e, func(o *Order) { o.Status, o.Reason, o.RuleID = StatusRejected, p.Reason, p.RuleID })
	}
	return nil
}

func (m *Orders) update(id string, e *events.Event, f func(*Order)) {
	m.touch(id)
	o, ok := m.state.Orders[id]
	if !ok {
		return
	}
	f(o)
	o.UpdatedAt, o.Position = utc(e.OccurredAt), e.Position
}

// Snapshot implements Model.
func (m *Orders) Snapshot() ([]byte, error) { return canonical(&m.state) }

// Restore implements Model.
func (m *Orders) Restore(data []byte) error {
	n := NewOrders()
	if err := restore(m.Name(), data, &n.state); err != nil {
		return err
	}
	if n.state.Orders == nil {
		n.state.Orders = map[string]*Order{}
	}
	m.state = n.state
	return nil
}

// Order returns a copy of one order.
func (m *Orders) Order(id string) (Order, bool) {
	o, ok := m.state.Orders[id]
	if !ok {
		return Order{}, false
	}
	return *o, true
}

// Len returns the number of orders.
func (m *Orders) Len() int { return len(m.state.Orders) }

// Rows implements Model.
func (m *Orders) Rows() Table {
	t := Table{Columns: m.Columns()}
	for _, id := range sortedKeys(m.state.Orders) {
		t.Rows = append(t.Rows, orderRecord(m.state.Orders[id]))
	}
	return t
}

// Columns implements Tabular.
func (m *Orders) Columns() []string {
	return []string{"order_id", "buyer_id", "seller_id", "listing_id", "quantity", "unit_price_minor",
		"total_minor", "currency", "channel", "jurisdiction", "category", "origin", "status", "payment_id", "reason",
		"rule_id", "policy_position", "placed_at", "placed_position", "updated_at", "position"}
}

// TableRows implements Tabular: every row is one order.
func (m *Orders) TableRows(_ string, body []byte) ([][]string, error) {
	var o Order
	if err := restore(m.Name(), body, &o); err != nil {
		return nil, err
	}
	return [][]string{orderRecord(&o)}, nil
}

func orderRecord(o *Order) []string {
	return []string{o.OrderID, o.BuyerID, o.SellerID, o.ListingID, itoa(o.Quantity),
		itoa(o.UnitPrice.AmountMinor), itoa(o.Total.AmountMinor), o.Total.Currency, string(o.Channel),
		o.Jurisdiction, o.Category, string(o.Origin), o.Status, o.PaymentID, o.Reason, o.RuleID,
		utoa(o.PolicyPosition), formatTime(o.PlacedAt), utoa(o.PlacedPosition), formatTime(o.UpdatedAt), utoa(o.Position)}
}

// Row implements Keyed: one order by id.
func (m *Orders) Row(key string) ([]byte, bool) {
	o, ok := m.state.Orders[key]
	return row(o, ok)
}

// RowKeys implements Keyed.
func (m *Orders) RowKeys() []string { return sortedKeys(m.state.Orders) }
