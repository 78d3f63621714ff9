package listing

import (
	"fmt"
	"maps"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/policyview"
)

// MaxStock bounds the units of one listing, as the contract does.
const MaxStock = 1_000_000_000

// MaxQuantity bounds the units of one reservation, as the contract does.
const MaxQuantity = 10_000

// Listing is the state of one listing aggregate. Stock counts the units
// still available; units held for orders are in Reserved until the order
// is fulfilled or they are released.
type Listing struct {
	ID           string            `json:"listing_id"`
	Created      bool              `json:"created"`
	Delisted     bool              `json:"delisted"`
	SellerID     string            `json:"seller_id,omitempty"`
	Title        string            `json:"title,omitempty"`
	Category     string            `json:"category,omitempty"`
	Channel      contracts.Channel `json:"channel,omitempty"`
	Jurisdiction string            `json:"jurisdiction,omitempty"`
	Origin       contracts.Origin  `json:"origin,omitempty"`
	Price        contracts.Money   `json:"price"`
	Stock        int64             `json:"stock"`
	// Reserved maps an order id to the units still held for it.
	Reserved map[string]int64 `json:"reserved,omitempty"`
	// Released marks orders whose units were all given back; a reservation
	// for them is refused, so a late retry cannot hold units again.
	Released map[string]bool `json:"released,omitempty"`
}

// Target returns the listing as a policy target.
func (s Listing) Target() contracts.Target {
	return contracts.Target{Jurisdiction: s.Jurisdiction, Channel: s.Channel, Category: s.Category,
		SellerID: s.SellerID, Origin: s.Origin}
}

// Initial returns the state of a listing that has no events.
func Initial(id string) Listing { return Listing{ID: id} }

// Evolve applies one listing event. It never modifies s's maps, so earlier
// states stay valid (the property tests keep them).
func Evolve(s Listing, payload any) Listing {
	switch e := payload.(type) {
	case contracts.ListingCreated:
		s = Listing{ID: e.ListingID, Created: true, SellerID: e.SellerID, Title: e.Title, Category: e.Category,
			Channel: e.Channel, Jurisdiction: e.Jurisdiction, Origin: e.Origin, Price: e.Price, Stock: e.Stock}
	case contracts.ListingPriceChanged:
		s.Price = e.Price
	case contracts.ListingStockChanged:
		s.Stock = e.Stock
	case contracts.ListingStockReserved:
		s.Reserved = maps.Clone(s.Reserved)
		if s.Reserved == nil {
			s.Reserved = map[string]int64{}
		}
		s.Reserved[e.OrderID] += e.Quantity
		s.Stock = e.Stock
	case contracts.ListingStockReleased:
		s.Reserved = maps.Clone(s.Reserved)
		if s.Reserved[e.OrderID] -= e.Quantity; s.Reserved[e.OrderID] <= 0 {
			delete(s.Reserved, e.OrderID)
			s.Released = maps.Clone(s.Released)
			if s.Released == nil {
				s.Released = map[string]bool{}
			}
			s.Released[e.OrderID] = true
		}
		s.Stock = e.Stock
	case contracts.ListingDelisted:
		s.Delisted = true
	}
	return s
}

// Inputs is what a listing decision needs besides the listing's own state.
type Inputs struct {
	// Rules are the policy rules the decision is judged by (a creation
	// and a price change may meet a floor price).
	Rules policyview.Rules
}

// Decide answers one command (a value of a contracts listing command type)
// given the listing's state, its inputs and the decision instant. It
// returns the events to append; none means the command changes nothing (a
// repeated reservation, a price set to what it is).
func Decide(s Listing, cmd any, in Inputs, now time.Time) ([]any, error) {
	switch c := cmd.(type) {
	case contracts.CreateListing:
		return decideCreate(s, c, in.Rules, now)
	case contracts.ChangePrice:
		return decideChangePrice(s, c, in.Rules, now)
	case contracts.ChangeStock:
		return decideChangeStock(s, c)
	case contracts.Delist:
		return decideDelist(s, c)
	case contracts.ReserveStock:
		return decideReserve(s, c)
	case contracts.ReleaseStock:
		return decideRelease(s, c)
	}
	return nil, &events.Error{Op: "listing.Decide", Kind: events.KindInvalid, Rule: fmt.Sprintf("unknown command %T", cmd)}
}

func decideCreate(s Listing, c contracts.CreateListing, rules policyview.Rules, now time.Time) ([]any, error) {
	const op = "listing.create"
	if s.Created {
		return nil, fail(op, events.KindConflict, "/listing_id", "listing already exists")
	}
	if err := checkCreate(op, c); err != nil {
		return nil, err
	}
	e := contracts.ListingCreated{ListingID: c.ListingID, SellerID: c.SellerID, Title: c.Title, Category: c.Category,
		Channel: c.Channel, Jurisdiction: c.Jurisdiction, Origin: c.Origin, Price: c.Price, Stock: c.Stock}
	if err := rules.Check(contracts.OpListingCreate, Evolve(s, e).Target(), c.Price, now); err != nil {
		return nil, policyview.WithActor(err, c.SellerID)
	}
	return []any{e}, nil
}

// checkCreate applies the rules of the contract that the decider relies
// on, so that a command reaching it by any path is refused by field.
func checkCreate(op string, c contracts.CreateListing) error {
	switch {
	case c.ListingID == "":
		return fail(op, events.KindInvalid, "/listing_id", "required")
	case c.SellerID == "":
		return fail(op, events.KindInvalid, "/seller_id", "required")
	case c.Title == "":
		return fail(op, events.KindInvalid, "/title", "required")
	case c.Category == "":
		return fail(op, events.KindInvalid, "/category", "required")
	case !c.Channel.Valid():
		return fail(op, events.KindInvalid, "/channel", "one of marketplace, social_commerce")
	case !contracts.IsCountry(c.Jurisdiction):
		return fail(op, events.KindInvalid, "/jurisdiction", "ISO 3166-1 alpha-2 country code")
	case !c.Origin.Valid():
		return fail(op, events.KindInvalid, "/origin", "one of domestic, cross_border")
	case c.Stock < 0 || c.Stock > MaxStock:
		return fail(op, events.KindInvalid, "/stock", fmt.Sprintf("between 0 and %d", MaxStock))
	}
	return checkPrice(op, c.Price)
}

func checkPrice(op string, m contracts.Money) error {
	if err := m.Validate(); err != nil {
		e := *err.(*events.Error)
		e.Op, e.Field = op, "/price"+e.Field
		return &e
	}
	return nil
}

func decideChangePrice(s Listing, c contracts.ChangePrice, rules policyview.Rules, now time.Time) ([]any, error) {
	const op = "listing.change_price"
	if err := requireOpen(op, s); err != nil {
		return nil, err
	}
	if err := checkPrice(op, c.Price); err != nil {
		return nil, err
	}
	if c.Price.Currency != s.Price.Currency {
		return nil, fail(op, events.KindInvalid, "/price/currency", "the listing's currency "+s.Price.Currency)
	}
	if c.Price == s.Price {
		return nil, nil
	}
	if err := rules.Check(contracts.OpListingChangePrice, s.Target(), c.Price, now); err != nil {
		return nil, policyview.WithActor(err, s.SellerID)
	}
	return []any{contracts.ListingPriceChanged{ListingID: s.ID, Price: c.Price, PreviousPrice: s.Price}}, nil
}

func decideChangeStock(s Listing, c contracts.ChangeStock) ([]any, error) {
	const op = "listing.change_stock"
	if err := requireOpen(op, s); err != nil {
		return nil, err
	}
	if c.Stock < 0 || c.Stock > MaxStock {
		return nil, fail(op, events.KindInvalid, "/stock", fmt.Sprintf("between 0 and %d", MaxStock))
	}
	if c.Stock == s.Stock {
		return nil, nil
	}
	return []any{contracts.ListingStockChanged{ListingID: s.ID, Stock: c.Stock, PreviousStock: s.Stock}}, nil
}

func decideDelist(s Listing, c contracts.Delist) ([]any, error) {
	if !s.Created {
		return nil, notFound("listing.delist", s.ID)
	}
	if s.Delisted {
		return nil, nil
	}
	return []any{contracts.ListingDelisted{ListingID: s.ID, Reason: c.Reason}}, nil
}

func decideReserve(s Listing, c contracts.ReserveStock) ([]any, error) {
	const op = "listing.reserve_stock"
	if err := requireOpen(op, s); err != nil {
		return nil, err
	}
	if c.OrderID == "" {
		return nil, fail(op, events.KindInvalid, "/order_id", "required")
	}
	if c.Quantity < 1 || c.Quantity > MaxQuantity {
		return nil, fail(op, events.KindInvalid, "/quantity", fmt.Sprintf("between 1 and %d", MaxQuantity))
	}
	if held, ok := s.Reserved[c.OrderID]; ok {
		if held == c.Quantity {
			return nil, nil // the same reservation again: already done
		}
		return nil, fail(op, events.KindConflict, "/quantity", fmt.Sprintf("order %s already holds %d units", c.OrderID, held))
	}
	if s.Released[c.OrderID] {
		return nil, fail(op, events.KindConflict, "/order_id", "the order's units were released; it cannot reserve again")
	}
	if c.Quantity > s.Stock {
		return nil, noStock(op, s.Stock)
	}
	return []any{contracts.ListingStockReserved{ListingID: s.ID, OrderID: c.OrderID, Quantity: c.Quantity,
		Stock: s.Stock - c.Quantity}}, nil
}

func decideRelease(s Listing, c contracts.ReleaseStock) ([]any, error) {
	const op = "listing.release_stock"
	if !s.Created {
		return nil, notFound(op, s.ID)
	}
	if c.Quantity < 1 || c.Quantity > MaxQuantity {
		return nil, fail(op, events.KindInvalid, "/quantity", fmt.Sprintf("between 1 and %d", MaxQuantity))
	}
	held, ok := s.Reserved[c.OrderID]
	switch {
	case !ok && s.Released[c.OrderID]:
		return nil, nil // released before: a retry
	case !ok:
		return nil, fail(op, events.KindNotFound, "/order_id", fmt.Sprintf("no units are held for order %q", c.OrderID))
	case c.Quantity > held:
		return nil, fail(op, events.KindInvalid, "/quantity", fmt.Sprintf("at most the %d units held for the order", held))
	case s.Stock+c.Quantity > MaxStock:
		return nil, fail(op, events.KindConflict, "/quantity", fmt.Sprintf("stock would exceed %d", MaxStock))
	}
	return []any{contracts.ListingStockReleased{ListingID: s.ID, OrderID: c.OrderID, Quantity: c.Quantity,
		Stock: s.Stock + c.Quantity, Reason: c.Reason}}, nil
}

// requireOpen refuses commands on a listing that does not exist (not found)
// or was delisted (invalid: delisting is final).
func requireOpen(op string, s Listing) error {
	if !s.Created {
		return notFound(op, s.ID)
	}
	if s.Delisted {
		return fail(op, events.KindInvalid, "/listing_id", "listing is delisted")
	}
	return nil
}

func notFound(op, id string) error {
	return fail(op, events.KindNotFound, "/listing_id", fmt.Sprintf("no listing %q", id))
}

func fail(op string, kind events.Kind, field, rule string) error {
	return &events.Error{Op: op, Kind: kind, Field: field, Rule: rule}
}

// noStock refuses a reservation of more units than are left.
func noStock(op string, left int64) error {
	return &events.Error{Op: op, Kind: events.KindConflict, Reason: events.ReasonNoStock, Field: "/quantity",
		Rule: fmt.Sprintf("only %d units available", left)}
}
