package order

import (
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/runtime/command"
)

// Listing is the order service's own minimal view of a listing aggregate:
// what an order copies at placement. It is folded from the listing's
// contract events, because the order service never imports the listing
// service.
type Listing struct {
	ID           string
	Created      bool
	Delisted     bool
	SellerID     string
	Category     string
	Channel      contracts.Channel
	Jurisdiction string
	Origin       contracts.Origin
	Price        contracts.Money
	Stock        int64
}

// Target returns the listing as a policy target.
func (l Listing) Target() contracts.Target {
	return contracts.Target{Jurisdiction: l.Jurisdiction, Channel: l.Channel, Category: l.Category,
		SellerID: l.SellerID, Origin: l.Origin}
}

// ListingAggregate loads a listing with command.Load.
var ListingAggregate = command.Aggregate[Listing]{
	Context: contracts.ServiceListing,
	Initial: func(id string) Listing { return Listing{ID: id} },
	Evolve:  EvolveListing,
	// The view holds only values: a copy is a clone.
	Clone: func(l Listing) Listing { return l },
}

// EvolveListing applies one listing event to the view.
func EvolveListing(l Listing, payload any) Listing {
	switch e := payload.(type) {
	case contracts.ListingCreated:
		l = Listing{ID: e.ListingID, Created: true, SellerID: e.SellerID, Category: e.Category, Channel: e.Channel,
			Jurisdiction: e.Jurisdiction, Origin: e.Origin, Price: e.Price, Stock: e.Stock}
	case contracts.ListingPriceChanged:
		l.Price = e.Price
	case contracts.ListingStockChanged:
		l.Stock = e.Stock
	case contracts.ListingStockReserved:
		l.Stock = e.Stock
	case contracts.ListingStockReleased:
		l.Stock = e.Stock
	case contracts.ListingDelisted:
		l.Delisted = true
	}
	return l
}
