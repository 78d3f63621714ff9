package contracts

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"
)

// examples holds one valid body per event version and command. The
// catalogue and the AsyncAPI document show them, and the tests and fuzz
// seeds start from them, so every example is checked against its schema.
// They replay the day the design is about: 4 October 2023 in Jakarta.
var (
	exWIB       = time.FixedZone("WIB", 7*3600)
	exFreezeAt  = time.Date(2023, 10, 4, 17, 0, 0, 0, exWIB)
	exLiftAt    = time.Date(2023, 12, 12, 0, 0, 0, 0, exWIB)
	exPrice     = Money{AmountMinor: 15000000, Currency: "IDR"} // Rp 150.000,00
	exTotal     = Money{AmountMinor: 30000000, Currency: "IDR"}
	exFloor     = Money{AmountMinor: 10000, Currency: "USD"} // USD 100.00
	exSocialID  = Scope{Jurisdictions: []string{"ID"}, Channels: []Channel{ChannelSocialCommerce}}
	exCrossID   = Scope{Jurisdictions: []string{"ID"}}
	exPermendag = "Permendag 31/2023"
	exIssuer    = "Kementerian Perdagangan RI"
	exCapture   = []Posting{
		{Account: "buyer:b-1001", AmountMinor: -30000000, Currency: "IDR"},
		{Account: "escrow:o-2001", AmountMinor: 30000000, Currency: "IDR"},
	}
)

var eventExamples = map[eventKey]any{
	{"listing.created", 1}: ListingCreated{ListingID: "l-1", SellerID: "s-77", Title: "Batik tulis shirt",
		Category: "fashion", Channel: ChannelSocialCommerce, Jurisdiction: "ID", Origin: OriginDomestic, Price: exPrice, Stock: 10},
	{"listing.price_changed", 1}:  ListingPriceChanged{ListingID: "l-1", Price: Money{AmountMinor: 14000000, Currency: "IDR"}, PreviousPrice: exPrice},
	{"listing.stock_changed", 1}:  ListingStockChanged{ListingID: "l-1", Stock: 25, PreviousStock: 10},
	{"listing.stock_reserved", 1}: ListingStockReserved{ListingID: "l-1", OrderID: "o-2001", Quantity: 2, Stock: 8},
	{"listing.stock_released", 1}: ListingStockReleased{ListingID: "l-1", OrderID: "o-2001", Quantity: 2, Stock: 10,
		Reason: "order cancelled"},
	{"listing.delisted", 1}: ListingDelisted{ListingID: "l-1", Reason: "seller closed the shop"},
	{"order.placed", 1}: OrderPlacedV1{OrderID: "o-1999", BuyerID: "b-1001", ListingID: "l-1", SellerID: "s-77",
		Quantity: 2, UnitPrice: exPrice, Total: exTotal, Jurisdiction: "ID", Category: "fashion", Origin: OriginDomestic},
	{"order.placed", 2}: OrderPlaced{OrderID: "o-2001", BuyerID: "b-1001", ListingID: "l-1", SellerID: "s-77",
		Quantity: 2, UnitPrice: exPrice, Total: exTotal, Channel: ChannelSocialCommerce, Jurisdiction: "ID",
		Category: "fashion", Origin: OriginDomestic},
	{"order.confirmed", 1}: OrderConfirmed{OrderID: "o-2001", PaymentID: "p-3001"},
	{"order.cancelled", 1}: OrderCancelled{OrderID: "o-2001", Reason: "buyer changed their mind"},
	{"order.shipped", 1}:   OrderShipped{OrderID: "o-2001", Carrier: "JNE", TrackingNumber: "JNE123456789"},
	{"order.completed", 1}: OrderCompleted{OrderID: "o-2001"},
	{"order.rejected", 1}: OrderRejected{OrderID: "o-2002", Reason: "payment authorization refused by policy",
		RuleID: "permendag-31-2023-social", LegalBasis: exPermendag},
	{"payment.authorized", 1}: PaymentAuthorized{PaymentID: "p-3001", OrderID: "o-2001", BuyerID: "b-1001", SellerID: "s-77",
		Channel: ChannelSocialCommerce, Jurisdiction: "ID", Category: "fashion", Amount: exTotal, PendingPostings: exCapture},
	{"payment.authorization_failed", 1}: PaymentAuthorizationFailed{PaymentID: "p-3002", OrderID: "o-2002", BuyerID: "b-1002",
		Amount: exTotal, Reason: "frozen by Permendag 31/2023", RuleID: "permendag-31-2023-social"},
	{"payment.captured", 1}:  PaymentCaptured{PaymentID: "p-3001", OrderID: "o-2001", Amount: exTotal, Postings: exCapture},
	{"payment.voided", 1}:    PaymentVoided{PaymentID: "p-3001", OrderID: "o-2001", Amount: exTotal, Reason: "order cancelled"},
	{"payment.cancelled", 1}: PaymentCancelled{PaymentID: "p-3003", Reason: "order cancelled before its authorization arrived"},
	{"payment.refunded", 1}: PaymentRefunded{PaymentID: "p-3001", OrderID: "o-2001", RefundID: "r-1", Amount: Money{AmountMinor: 15000000, Currency: "IDR"},
		Reason: "one item returned", Postings: []Posting{
			{Account: "escrow:o-2001", AmountMinor: -15000000, Currency: "IDR"},
			{Account: "refunds", AmountMinor: 15000000, Currency: "IDR"}}},
	{"payment.settled", 1}: PaymentSettled{PaymentID: "p-3001", OrderID: "o-2001", SellerID: "s-77",
		Gross: Money{AmountMinor: 15000000, Currency: "IDR"}, FeeMinor: 750000, Net: Money{AmountMinor: 14250000, Currency: "IDR"},
		Postings: []Posting{
			{Account: "escrow:o-2001", AmountMinor: -15000000, Currency: "IDR"},
			{Account: "seller_payable:s-77", AmountMinor: 14250000, Currency: "IDR"},
			{Account: "platform_fee_revenue", AmountMinor: 750000, Currency: "IDR"}}},
	{"policy.freeze_imposed", 1}: FreezeImposed{RuleID: "permendag-31-2023-social", Scope: exSocialID,
		BlockedOperations: FreezeOperations, EffectiveAt: exFreezeAt, Activation: ActivationScheduled, LegalBasis: exPermendag, Issuer: exIssuer,
		Description: "social commerce may promote goods but not take orders or payments"},
	{"policy.freeze_lifted", 1}: FreezeLifted{RuleID: "permendag-31-2023-social", EffectiveAt: exLiftAt, Activation: ActivationScheduled,
		LegalBasis: "licence as an e-commerce platform", Issuer: exIssuer},
	{"policy.floor_price_set", 1}: FloorPriceSet{RuleID: "permendag-31-2023-floor", Scope: exCrossID,
		BlockedOperations: FloorPriceOperations, Amount: exFloor, Origin: OriginCrossBorder, EffectiveAt: exFreezeAt,
		Activation: ActivationScheduled, LegalBasis: exPermendag, Issuer: exIssuer},
	{"policy.floor_price_lifted", 1}: FloorPriceLifted{RuleID: "permendag-31-2023-floor", EffectiveAt: exLiftAt, Activation: ActivationOnRecording,
		LegalBasis: exPermendag, Issuer: exIssuer},
	{"policy.rule_activated", 1}: RuleActivated{RuleID: "permendag-31-2023-social", Activates: ChangeFreezeImposed, ScheduledAt: exFreezeAt},
	{"enforcement.command_refused", 1}: CommandRefused{RefusalID: RefusalID("order.place", "o-2003", "place-o-2003"), Command: OpOrderPlace,
		AggregateID: "o-2003", RuleID: "permendag-31-2023-social", RuleKind: RuleFreeze, LegalBasis: exPermendag,
		Detail: "rule permendag-31-2023-social (freeze, Permendag 31/2023) blocks order.place", Actor: "b-1003",
		IdempotencyKey: "place-o-2003", CommandDigest: hex.EncodeToString(sha256.New().Sum(nil)), PolicyPosition: 41},
	{"notary.checkpointed", 1}: exampleCheckpoint(),
}

var commandExamples = map[string]any{
	"listing.create": CreateListing{ListingID: "l-1", SellerID: "s-77", Title: "Batik tulis shirt", Category: "fashion",
		Channel: ChannelSocialCommerce, Jurisdiction: "ID", Origin: OriginDomestic, Price: exPrice, Stock: 10, IdempotencyKey: "create-l-1"},
	"listing.change_price":  ChangePrice{ListingID: "l-1", Price: Money{AmountMinor: 14000000, Currency: "IDR"}},
	"listing.change_stock":  ChangeStock{ListingID: "l-1", Stock: 25},
	"listing.delist":        Delist{ListingID: "l-1", Reason: "seller closed the shop"},
	"listing.reserve_stock": ReserveStock{ListingID: "l-1", OrderID: "o-2001", Quantity: 2, IdempotencyKey: "reserve-o-2001"},
	"listing.release_stock": ReleaseStock{ListingID: "l-1", OrderID: "o-2001", Quantity: 2, Reason: "order cancelled"},
	"order.place":           PlaceOrder{OrderID: "o-2001", BuyerID: "b-1001", ListingID: "l-1", Quantity: 2, IdempotencyKey: "checkout-7f3a"},
	"order.confirm":         ConfirmOrder{OrderID: "o-2001", PaymentID: "p-3001"},
	"order.cancel":          CancelOrder{OrderID: "o-2001", Reason: "buyer changed their mind"},
	"order.reject":          RejectOrder{OrderID: "o-2002", Reason: "payment authorization refused by policy", RuleID: "permendag-31-2023-social", LegalBasis: exPermendag},
	"order.ship":            ShipOrder{OrderID: "o-2001", Carrier: "JNE", TrackingNumber: "JNE123456789"},
	"order.complete":        CompleteOrder{OrderID: "o-2001"},
	"payment.authorize": AuthorizePayment{PaymentID: "p-3001", OrderID: "o-2001", BuyerID: "b-1001", SellerID: "s-77",
		Channel: ChannelSocialCommerce, Jurisdiction: "ID", Category: "fashion", Amount: exTotal, IdempotencyKey: "auth-o-2001"},
	"payment.capture": CapturePayment{PaymentID: "p-3001"},
	"payment.void":    VoidPayment{PaymentID: "p-3001", Reason: "order cancelled"},
	"payment.refund": RefundPayment{PaymentID: "p-3001", RefundID: "r-1", Amount: Money{AmountMinor: 15000000, Currency: "IDR"},
		Reason: "one item returned", IdempotencyKey: "refund-r-1"},
	"payment.settle": SettlePayment{PaymentID: "p-3001"},
	"policy.impose_freeze": ImposeFreeze{RuleID: "permendag-31-2023-social", Scope: exSocialID, EffectiveAt: exFreezeAt,
		LegalBasis: exPermendag, Issuer: exIssuer},
	"policy.lift_freeze": LiftFreeze{RuleID: "permendag-31-2023-social", EffectiveAt: exLiftAt, LegalBasis: "licence as an e-commerce platform", Issuer: exIssuer},
	"policy.set_floor_price": SetFloorPrice{RuleID: "permendag-31-2023-floor", Scope: exCrossID, Amount: exFloor,
		Origin: OriginCrossBorder, EffectiveAt: exFreezeAt, LegalBasis: exPermendag, Issuer: exIssuer},
	"policy.lift_floor_price": LiftFloorPrice{RuleID: "permendag-31-2023-floor", LegalBasis: exPermendag, Issuer: exIssuer},
}

// exampleCheckpoint signs a checkpoint with a key derived from a fixed seed,
// so the example is a real, verifiable signature and stable across runs.
func exampleCheckpoint() NotaryCheckpointed {
	seed := sha256.Sum256([]byte("marketledger example notary key"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	pub := priv.Public().(ed25519.PublicKey)
	keyID := sha256.Sum256(pub)
	root := sha256.Sum256([]byte("example root"))
	c := NotaryCheckpointed{Position: 4096, TreeSize: 4096, RootHash: hex.EncodeToString(root[:]),
		RecordedAt: time.Date(2023, 10, 4, 9, 59, 59, 0, time.UTC), KeyID: hex.EncodeToString(keyID[:]),
		PublicKey: base64.StdEncoding.EncodeToString(pub)}
	c.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, c.SignedMessage()))
	return c
}
