package contracts

// Listing events. The aggregate is one listing; its id is listing_id.

// ListingCreated records a new listing, offered from the moment it is
// created. A listing on the social_commerce channel is still created while a
// freeze is in force: it is shown as promotion only.
type ListingCreated struct {
	ListingID    string  `json:"listing_id" schema:"id" doc:"the listing (aggregate id)"`
	SellerID     string  `json:"seller_id" schema:"id" doc:"the seller offering the goods"`
	Title        string  `json:"title" schema:"text=200" doc:"title shown to buyers"`
	Category     string  `json:"category" schema:"slug" doc:"category slug, lower case"`
	Channel      Channel `json:"channel" doc:"sales channel"`
	Jurisdiction string  `json:"jurisdiction" schema:"country" doc:"ISO 3166-1 alpha-2 country whose rules apply"`
	Origin       Origin  `json:"origin" doc:"where the goods ship from"`
	Price        Money   `json:"price" doc:"unit price"`
	Stock        int64   `json:"stock" schema:"min=0,max=1000000000" doc:"units available for sale"`
}

// ListingPriceChanged records a new unit price. Orders placed before it keep
// the price they were placed at.
type ListingPriceChanged struct {
	ListingID     string `json:"listing_id" schema:"id" doc:"the listing (aggregate id)"`
	Price         Money  `json:"price" doc:"new unit price"`
	PreviousPrice Money  `json:"previous_price" doc:"unit price before the change"`
}

// ListingStockChanged records a seller's restock or correction: the new
// number of units available.
type ListingStockChanged struct {
	ListingID     string `json:"listing_id" schema:"id" doc:"the listing (aggregate id)"`
	Stock         int64  `json:"stock" schema:"min=0,max=1000000000" doc:"units available after the change"`
	PreviousStock int64  `json:"previous_stock" schema:"min=0,max=1000000000" doc:"units available before the change"`
}

// ListingStockReserved records units held for an order. Reservation is what
// prevents oversell: the order is placed only if the units were reserved.
type ListingStockReserved struct {
	ListingID string `json:"listing_id" schema:"id" doc:"the listing (aggregate id)"`
	OrderID   string `json:"order_id" schema:"id" doc:"the order the units are held for"`
	Quantity  int64  `json:"quantity" schema:"min=1,max=10000" doc:"units reserved"`
	Stock     int64  `json:"stock" schema:"min=0,max=1000000000" doc:"units still available after the reservation"`
}

// ListingStockReleased records units given back after an order was
// cancelled or rejected.
type ListingStockReleased struct {
	ListingID string `json:"listing_id" schema:"id" doc:"the listing (aggregate id)"`
	OrderID   string `json:"order_id" schema:"id" doc:"the order the units were held for"`
	Quantity  int64  `json:"quantity" schema:"min=1,max=10000" doc:"units released"`
	Stock     int64  `json:"stock" schema:"min=0,max=1000000000" doc:"units available after the release"`
	Reason    string `json:"reason" schema:"text=500" doc:"why the units were released"`
}

// ListingDelisted records that a listing is no longer offered. It is final.
type ListingDelisted struct {
	ListingID string `json:"listing_id" schema:"id" doc:"the listing (aggregate id)"`
	Reason    string `json:"reason,omitempty" schema:"text=500" doc:"why the listing was withdrawn"`
}

// Listing commands.

// CreateListing asks the listing service to create a listing.
type CreateListing struct {
	ListingID      string  `json:"listing_id" schema:"id" doc:"the new listing's id, chosen by the caller"`
	SellerID       string  `json:"seller_id" schema:"id" doc:"the seller offering the goods"`
	Title          string  `json:"title" schema:"text=200" doc:"title shown to buyers"`
	Category       string  `json:"category" schema:"slug" doc:"category slug, lower case"`
	Channel        Channel `json:"channel" doc:"sales channel"`
	Jurisdiction   string  `json:"jurisdiction" schema:"country" doc:"ISO 3166-1 alpha-2 country whose rules apply"`
	Origin         Origin  `json:"origin" doc:"where the goods ship from"`
	Price          Money   `json:"price" doc:"unit price"`
	Stock          int64   `json:"stock" schema:"min=0,max=1000000000" doc:"units available for sale"`
	IdempotencyKey string  `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// ChangePrice asks for a new unit price.
type ChangePrice struct {
	ListingID      string `json:"listing_id" schema:"id" doc:"the listing"`
	Price          Money  `json:"price" doc:"new unit price, in the listing's currency"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// ChangeStock sets the number of units available.
type ChangeStock struct {
	ListingID      string `json:"listing_id" schema:"id" doc:"the listing"`
	Stock          int64  `json:"stock" schema:"min=0,max=1000000000" doc:"units available after the change"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// Delist withdraws a listing for good.
type Delist struct {
	ListingID      string `json:"listing_id" schema:"id" doc:"the listing"`
	Reason         string `json:"reason,omitempty" schema:"text=500" doc:"why the listing is withdrawn"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// ReserveStock holds units for an order (sent by the order service).
type ReserveStock struct {
	ListingID      string `json:"listing_id" schema:"id" doc:"the listing"`
	OrderID        string `json:"order_id" schema:"id" doc:"the order the units are held for"`
	Quantity       int64  `json:"quantity" schema:"min=1,max=10000" doc:"units to reserve"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}

// ReleaseStock gives back the units held for an order.
type ReleaseStock struct {
	ListingID      string `json:"listing_id" schema:"id" doc:"the listing"`
	OrderID        string `json:"order_id" schema:"id" doc:"the order the units were held for"`
	Quantity       int64  `json:"quantity" schema:"min=1,max=10000" doc:"units to release"`
	Reason         string `json:"reason" schema:"text=500" doc:"why the units are released"`
	IdempotencyKey string `json:"idempotency_key,omitempty" schema:"key" doc:"retries with the same key return the first result"`
}
