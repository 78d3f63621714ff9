package contracts

// Channel is the sales channel a listing is offered on. Permendag 31/2023
// treats the two differently: social commerce may promote but not transact.
type Channel string

// The sales channels.
const (
	ChannelMarketplace    Channel = "marketplace"
	ChannelSocialCommerce Channel = "social_commerce"
)

// Channels lists every Channel, in schema order.
var Channels = []Channel{ChannelMarketplace, ChannelSocialCommerce}

// Origin says whether goods ship from within the jurisdiction or from abroad.
type Origin string

// The origins.
const (
	OriginDomestic    Origin = "domestic"
	OriginCrossBorder Origin = "cross_border"
)

// Origins lists every Origin, in schema order.
var Origins = []Origin{OriginDomestic, OriginCrossBorder}

// Operation names an operation a policy rule can block. Operations are the
// names of the commands that create trade, so a service checks a rule with
// the name of the command it is deciding.
type Operation string

// The operations a rule may block. Refunds, voids, cancellations and
// settlement are deliberately absent: a regulator stops new trade, never the
// unwinding of old trade.
const (
	OpListingCreate      Operation = "listing.create"
	OpListingChangePrice Operation = "listing.change_price"
	OpOrderPlace         Operation = "order.place"
	OpPaymentAuthorize   Operation = "payment.authorize"
	OpPaymentCapture     Operation = "payment.capture"
)

// Operations lists every blockable Operation, in schema order.
var Operations = []Operation{OpListingCreate, OpListingChangePrice, OpOrderPlace, OpPaymentAuthorize, OpPaymentCapture}

// FreezeOperations are what a freeze blocks when its command names none:
// new orders, payment authorization and capture (DESIGN section 5).
var FreezeOperations = []Operation{OpOrderPlace, OpPaymentAuthorize, OpPaymentCapture}

// RuleKind is the kind of a policy rule.
type RuleKind string

// The rule kinds.
const (
	RuleFreeze     RuleKind = "freeze"
	RuleFloorPrice RuleKind = "floor_price"
)

// RuleKinds lists every RuleKind, in schema order.
var RuleKinds = []RuleKind{RuleFreeze, RuleFloorPrice}

// Valid reports whether c is a known channel.
func (c Channel) Valid() bool { return c == ChannelMarketplace || c == ChannelSocialCommerce }

// Valid reports whether o is a known origin.
func (o Origin) Valid() bool { return o == OriginDomestic || o == OriginCrossBorder }

// Valid reports whether op is a blockable operation.
func (op Operation) Valid() bool {
	for _, o := range Operations {
		if o == op {
			return true
		}
	}
	return false
}
