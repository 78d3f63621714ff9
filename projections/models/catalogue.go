package models

import (
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// Listing is one row of the catalogue.
type Listing struct {
	ListingID    string            `json:"listing_id"`
	SellerID     string            `json:"seller_id"`
	Title        string            `json:"title"`
	Category     string            `json:"category"`
	Channel      contracts.Channel `json:"channel"`
	Jurisdiction string            `json:"jurisdiction"`
	Origin       contracts.Origin  `json:"origin"`
	Price        contracts.Money   `json:"price"`
	Stock        int64             `json:"stock"`
	Delisted     bool              `json:"delisted"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
	Position     uint64            `json:"position"`
	// Purchasable and PromotionOnly are derived at the model's current
	// business time when the snapshot is taken; Restore recomputes them.
	Purchasable   bool   `json:"purchasable"`
	PromotionOnly bool   `json:"promotion_only"`
	BlockedBy     string `json:"blocked_by,omitempty"`
}

func (l *Listing) target() contracts.Target {
	return contracts.Target{Jurisdiction: l.Jurisdiction, Channel: l.Channel, Category: l.Category,
		SellerID: l.SellerID, Origin: l.Origin}
}

// Catalogue is the listing catalogue with the policy-derived flags.
//
// The model's current business time ("now") is the occurred-at of the last
// business event it applied (notary checkpoints carry no business time). It
// can step back when services' clocks disagree; the flags are judged at that instant, never at
// the wall clock, so that a rebuild and an as-of query agree. A listing is
// purchasable when it is not delisted, has stock, and no rule in force now
// blocks order.place on it (a freeze in scope, or a floor price above its
// price). It is promotion only when it is visible (not delisted) but a
// freeze in force now blocks order.place on it: shown, not sold.
type Catalogue struct {
	state struct {
		Now      time.Time           `json:"now"`
		Listings map[string]*Listing `json:"listings"`
		Rules    rules               `json:"rules"`
	}
	touched
}

// NewCatalogue returns an empty catalogue.
func NewCatalogue() *Catalogue {
	m := &Catalogue{}
	m.state.Listings = map[string]*Listing{}
	m.state.Rules = rules{}
	return m
}

// Name implements Model.
func (m *Catalogue) Name() string { return ModelCatalogue }

// Apply implements Model.
func (m *Catalogue) Apply(e events.Event, payload any) error {
	if !IsBusiness(&e) {
		return nil
	}
	// The flags derive from the time and the rules, the context (key ""):
	// every business event moves the time.
	m.touch("")
	m.state.Now = utc(e.OccurredAt)
	m.state.Rules.apply(&e, payload)
	switch p := payload.(type) {
	case contracts.ListingCreated:
		m.touch(p.ListingID)
		m.state.Listings[p.ListingID] = &Listing{ListingID: p.ListingID, SellerID: p.SellerID, Title: p.Title,
			Category: p.Category, Channel: p.Channel, Jurisdiction: p.Jurisdiction, Origin: p.Origin, Price: p.Price,
			Stock: p.Stock, CreatedAt: utc(e.OccurredAt), UpdatedAt: utc(e.OccurredAt), Position: e.Position}
	case contracts.ListingPriceChanged:
		m.update(p.ListingID, &e, func(l *Listing) { l.Price = p.Price })
	case contracts.ListingStockChanged:
		m.update(p.ListingID, &e, func(l *Listing) { l.Stock = p.Stock })
	case contracts.ListingStockReserved:
		m.update(p.ListingID, &e, func(l *Listing) { l.Stock = p.Stock })
	case contracts.ListingStockReleased:
		m.update(p.ListingID, &e, func(l *Listing) { l.Stock = p.Stock })
	case contracts.ListingDelisted:
		m.update(p.ListingID, &e, func(l *Listing) { l.Delisted = true })
	}
	return nil
}

func (m *Catalogue) update(id string, e *events.Event, f func(*Listing)) {
	m.touch(id)
	l, ok := m.state.Listings[id]
	if !ok {
		return // the listing decider never emits for an unknown listing
	}
	f(l)
	l.UpdatedAt, l.Position = utc(e.OccurredAt), e.Position
}

// derive sets the flags of every listing at the model's current time.
func (m *Catalogue) derive() {
	for _, l := range m.state.Listings {
		m.deriveOne(l)
	}
}

// deriveOne sets one listing's flags at the model's current time.
func (m *Catalogue) deriveOne(l *Listing) {
	freeze := m.state.Rules.blocking(contracts.OpOrderPlace, l.target(), l.Price, m.state.Now, contracts.RuleFreeze)
	any := freeze
	if any == nil {
		any = m.state.Rules.blocking(contracts.OpOrderPlace, l.target(), l.Price, m.state.Now, "")
	}
	l.PromotionOnly = !l.Delisted && freeze != nil
	l.Purchasable = !l.Delisted && l.Stock > 0 && any == nil
	l.BlockedBy = ""
	if any != nil && !l.Delisted {
		l.BlockedBy = any.RuleID
	}
}

// Snapshot implements Model.
func (m *Catalogue) Snapshot() ([]byte, error) {
	m.derive()
	return canonical(&m.state)
}

// Restore implements Model.
func (m *Catalogue) Restore(data []byte) error {
	n := NewCatalogue()
	if err := restore(m.Name(), data, &n.state); err != nil {
		return err
	}
	if n.state.Listings == nil {
		n.state.Listings = map[string]*Listing{}
	}
	if n.state.Rules == nil {
		n.state.Rules = rules{}
	}
	m.state = n.state
	return nil
}

// Now returns the model's current business time.
func (m *Catalogue) Now() time.Time { return m.state.Now }

// Listing returns a copy of one listing with its flags at the model's
// current time.
func (m *Catalogue) Listing(id string) (Listing, bool) {
	l, ok := m.state.Listings[id]
	if !ok {
		return Listing{}, false
	}
	m.derive()
	return *l, true
}

// Rows implements Model.
func (m *Catalogue) Rows() Table {
	m.derive()
	t := Table{Columns: m.Columns()}
	for _, id := range sortedKeys(m.state.Listings) {
		t.Rows = append(t.Rows, listingRecord(m.state.Listings[id]))
	}
	return t
}

// Columns implements Tabular.
func (m *Catalogue) Columns() []string {
	return []string{"listing_id", "seller_id", "title", "category", "channel", "jurisdiction", "origin",
		"price_minor", "currency", "stock", "delisted", "purchasable", "promotion_only", "blocked_by", "created_at",
		"updated_at", "position"}
}

// TableRows implements Tabular: every row is one listing, with its flags
// (Row's bytes, not StoredRow's).
func (m *Catalogue) TableRows(_ string, body []byte) ([][]string, error) {
	var l Listing
	if err := restore(m.Name(), body, &l); err != nil {
		return nil, err
	}
	return [][]string{listingRecord(&l)}, nil
}

func listingRecord(l *Listing) []string {
	return []string{l.ListingID, l.SellerID, l.Title, l.Category, string(l.Channel), l.Jurisdiction,
		string(l.Origin), itoa(l.Price.AmountMinor), l.Price.Currency, itoa(l.Stock), btoa(l.Delisted),
		btoa(l.Purchasable), btoa(l.PromotionOnly), l.BlockedBy, formatTime(l.CreatedAt), formatTime(l.UpdatedAt),
		utoa(l.Position)}
}

// Row implements Keyed: one listing by id, with its flags at the model's
// current time.
func (m *Catalogue) Row(key string) ([]byte, bool) {
	l, ok := m.state.Listings[key]
	if ok {
		m.deriveOne(l)
	}
	return row(l, ok)
}

// RowKeys implements Keyed.
func (m *Catalogue) RowKeys() []string { return sortedKeys(m.state.Listings) }

// catalogueContext is what a listing's flags derive from.
type catalogueContext struct {
	Now   time.Time `json:"now"`
	Rules rules     `json:"rules"`
}

// StoredRow implements Derived: a listing without its flags, or (key "")
// the model's time and rules.
func (m *Catalogue) StoredRow(key string) ([]byte, bool) {
	if key == "" {
		return row(catalogueContext{Now: m.state.Now, Rules: m.state.Rules}, true)
	}
	l, ok := m.state.Listings[key]
	if !ok {
		return nil, false
	}
	stored := *l
	stored.Purchasable, stored.PromotionOnly, stored.BlockedBy = false, false, ""
	return row(&stored, true)
}

// ContextEvent implements TimedContext: policy events change the rules.
func (m *Catalogue) ContextEvent(payload any) bool {
	switch payload.(type) {
	case contracts.FreezeImposed, contracts.FloorPriceSet, contracts.FreezeLifted, contracts.FloorPriceLifted:
		return true // the events rules.apply folds
	}
	return false
}

// ContextAt implements TimedContext.
func (m *Catalogue) ContextAt(context []byte, t time.Time) ([]byte, error) {
	var c catalogueContext
	if err := restore(m.Name(), context, &c); err != nil {
		return nil, err
	}
	c.Now = utc(t)
	return canonical(c)
}

// DeriveRow implements Derived: the listing's flags at the context's time
// under its rules, as Row gives them.
func (m *Catalogue) DeriveRow(stored, context []byte) ([]byte, error) {
	n := NewCatalogue()
	var c catalogueContext
	if context != nil {
		if err := restore(m.Name(), context, &c); err != nil {
			return nil, err
		}
	}
	var l Listing
	if err := restore(m.Name(), stored, &l); err != nil {
		return nil, err
	}
	n.state.Now, n.state.Rules = c.Now, c.Rules
	if n.state.Rules == nil {
		n.state.Rules = rules{}
	}
	n.deriveOne(&l)
	return canonical(&l)
}
